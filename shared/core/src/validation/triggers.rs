//! What starts a renewal: a scan finding or an ITSM ticket, and the idempotency key each
//! one yields (the Step Functions execution name).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::canonical::sha256_hex;

/// What started a renewal: a scan finding or an ITSM ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Trigger {
    /// The scheduled expiry scan found a certificate to renew.
    Scan(ScanFinding),
    /// A ServiceNow incident or change asks for a renewal.
    Ticket(TicketTrigger),
}

impl Trigger {
    /// The CI the trigger names.
    pub fn ci(&self) -> &str {
        match self {
            Trigger::Scan(s) => &s.ci,
            Trigger::Ticket(t) => &t.ci,
        }
    }

    /// Who asked for the change (the ticket's `requested_by`, or the scanner's identity).
    pub fn requested_by(&self) -> &str {
        match self {
            Trigger::Scan(_) => SCANNER_IDENTITY,
            Trigger::Ticket(t) => &t.requested_by,
        }
    }

    /// The ticket number, if the trigger is a ticket.
    pub fn ticket_number(&self) -> Option<&str> {
        match self {
            Trigger::Scan(_) => None,
            Trigger::Ticket(t) => Some(&t.number),
        }
    }

    /// The idempotency key, usable as a Step Functions execution name (at most 80 characters
    /// of `[A-Za-z0-9_-]`), derived losslessly: different tickets never share a key.
    ///
    /// A ticket's identity in ServiceNow is its table and `sys_id` (numbers are display
    /// values: `INC/0090201` and `INC.0090201` are different tickets). The key is
    /// `ticket-<inc|chg>-<sys_id>` when the `sys_id` is plain ASCII alphanumerics short enough
    /// to fit, else `ticket-<inc|chg>_<SHA-256 of the sys_id, 60 hex>` (the `_` keeps the two
    /// forms apart). The same scan observation of a CI (CI plus observed expiry and
    /// fingerprint) gives the same `scan-…` key.
    pub fn idempotency_key(&self) -> String {
        match self {
            Trigger::Ticket(t) => {
                let table = match t.ticket_type {
                    TicketType::Incident => "inc",
                    TicketType::Change => "chg",
                };
                let plain = !t.sys_id.is_empty()
                    && t.sys_id.len() <= 69
                    && t.sys_id.chars().all(|c| c.is_ascii_alphanumeric());
                if plain {
                    format!("ticket-{table}-{}", t.sys_id)
                } else {
                    let digest = sha256_hex(t.sys_id.as_bytes());
                    format!("ticket-{table}_{}", &digest[..60])
                }
            }
            Trigger::Scan(s) => {
                let identity = format!(
                    "{}\n{}\n{}",
                    s.ci,
                    s.observed_expiry.to_rfc3339(),
                    s.observed_fingerprint.as_deref().unwrap_or_default()
                );
                let digest = sha256_hex(identity.as_bytes());
                format!("scan-{}-{}", execution_safe(&s.ci, 40), &digest[..24])
            }
        }
    }
}

/// `text` with every character outside `[A-Za-z0-9_-]` replaced by `-`, at most `max` chars.
fn execution_safe(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The identity recorded as requester of scan-triggered changes.
pub const SCANNER_IDENTITY: &str = "certops-scanner";

/// A certificate the expiry scan observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanFinding {
    /// The CI the scanned endpoint belongs to.
    pub ci: String,
    /// The expiry (`notAfter`) the scan observed.
    pub observed_expiry: DateTime<Utc>,
    /// The SHA-256 fingerprint of the leaf the scan observed, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_fingerprint: Option<String>,
}

/// ServiceNow ticket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketType {
    /// An incident (e.g. "certificate expired").
    Incident,
    /// A change request.
    Change,
}

/// A ServiceNow ticket asking for a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketTrigger {
    /// Ticket number (`INC0012345`, `CHG0034567`).
    pub number: String,
    /// The ticket's `sys_id`.
    pub sys_id: String,
    /// Incident or change.
    #[serde(rename = "type")]
    pub ticket_type: TicketType,
    /// Category; must be `Certificate`.
    pub category: String,
    /// The CI the ticket is raised against.
    pub ci: String,
    /// The environment as the ticket states it; must match the inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Who raised the ticket; may not approve the change.
    pub requested_by: String,
    /// Ticket priority as ServiceNow reports it (e.g. `1 - Critical`).
    pub priority: String,
}
