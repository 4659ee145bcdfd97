//! The versioned runbook: the fixed, ordered steps a renewal executes.
//!
//! The runbook file is hashed byte for byte; the hash goes into the plan, so changing the
//! runbook after approval is plan drift.

use serde::{Deserialize, Serialize};

use crate::canonical::sha256_hex;
use crate::Error;

/// One kind of runbook step. The order is fixed: renew → deploy → reload → purge CDN →
/// verify → close ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepAction {
    /// Obtain the new certificate (or the fallback) from the issuer.
    Renew,
    /// Install it on every termination point.
    Deploy,
    /// Reload every termination point.
    Reload,
    /// Purge the CDN paths.
    PurgeCdn,
    /// Handshake with every endpoint from outside: new leaf, new expiry, valid chain.
    Verify,
    /// Write the evidence to the ticket and resolve/implement it.
    CloseTicket,
}

impl StepAction {
    /// The required order of steps.
    pub const ORDER: [StepAction; 6] = [
        StepAction::Renew,
        StepAction::Deploy,
        StepAction::Reload,
        StepAction::PurgeCdn,
        StepAction::Verify,
        StepAction::CloseTicket,
    ];
}

/// One step of the runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step does.
    pub action: StepAction,
    /// What the step promises, for humans reading the runbook.
    pub description: String,
    /// Upper bound for one attempt, in seconds.
    pub timeout_seconds: u32,
    /// Attempts before the step's error is caught (1 = no retry).
    #[serde(default = "one")]
    pub max_attempts: u32,
}

fn one() -> u32 {
    1
}

/// A parsed runbook with the SHA-256 of the exact text it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// Runbook id (e.g. `cert-renewal`).
    pub id: String,
    /// Runbook version (e.g. `1.0.0`).
    pub version: String,
    /// What the runbook is for.
    pub description: String,
    /// The steps, in the fixed order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
    /// Lowercase hex SHA-256 of the file's bytes (not part of the file).
    #[serde(skip)]
    pub content_sha256: String,
}

/// What a plan records about the runbook it will execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookRef {
    /// Runbook id.
    pub id: String,
    /// Runbook version.
    pub version: String,
    /// SHA-256 of the runbook file.
    pub sha256: String,
}

impl Runbook {
    /// Parses a runbook file and hashes its bytes. The steps must be exactly renew, deploy,
    /// reload, purge-cdn, verify, close-ticket — the order the state machine executes.
    pub fn from_toml_str(text: &str) -> Result<Runbook, Error> {
        let invalid = |msg: String| Error::InvalidInput(format!("runbook: {msg}"));
        let mut runbook: Runbook = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if runbook.id.trim().is_empty() || runbook.version.trim().is_empty() {
            return Err(invalid(
                "fields `id` and `version` must not be empty".into(),
            ));
        }
        let actions: Vec<StepAction> = runbook.steps.iter().map(|s| s.action).collect();
        if actions != StepAction::ORDER {
            return Err(invalid(format!(
                "steps must be {:?} in this order, found {:?}",
                StepAction::ORDER,
                actions
            )));
        }
        if let Some(step) = runbook
            .steps
            .iter()
            .find(|s| s.timeout_seconds == 0 || s.max_attempts == 0)
        {
            return Err(invalid(format!(
                "step {:?}: `timeout_seconds` and `max_attempts` must be > 0",
                step.action
            )));
        }
        runbook.content_sha256 = sha256_hex(text.as_bytes());
        Ok(runbook)
    }

    /// The reference a plan records.
    pub fn reference(&self) -> RunbookRef {
        RunbookRef {
            id: self.id.clone(),
            version: self.version.clone(),
            sha256: self.content_sha256.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../runbooks/cert-renewal.runbook.toml");

    #[test]
    fn the_example_runbook_parses_in_the_fixed_order() {
        let runbook = Runbook::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(runbook.id, "cert-renewal");
        let actions: Vec<StepAction> = runbook.steps.iter().map(|s| s.action).collect();
        assert_eq!(actions, StepAction::ORDER);
        assert_eq!(runbook.reference().sha256, sha256_hex(EXAMPLE.as_bytes()));
        assert_eq!(runbook.content_sha256.len(), 64);
    }

    #[test]
    fn any_byte_change_changes_the_hash() {
        let a = Runbook::from_toml_str(EXAMPLE).unwrap();
        let b = Runbook::from_toml_str(&format!("{EXAMPLE}\n# note\n")).unwrap();
        assert_ne!(a.content_sha256, b.content_sha256);
    }

    #[test]
    fn steps_out_of_order_are_rejected() {
        let swapped = EXAMPLE
            .replacen("action = \"deploy\"", "action = \"TMP\"", 1)
            .replacen("action = \"reload\"", "action = \"deploy\"", 1)
            .replacen("action = \"TMP\"", "action = \"reload\"", 1);
        let err = Runbook::from_toml_str(&swapped).unwrap_err().to_string();
        assert!(err.contains("in this order"), "{err}");
    }
}
