//! What validation reports: every check with its status and a human reason, and the
//! approval path decided from them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::ApprovalPath;
use crate::Error;

/// The checks, in the order they run and are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    /// The trigger's CI resolves to a known certificate object.
    CiKnown,
    /// A ticket trigger has category `Certificate`.
    TicketCategory,
    /// The ticket's environment matches the certificate object's.
    Environment,
    /// The current expiry is known (from the scan or a probe).
    ExpiryKnown,
    /// The served fingerprint is the one the inventory expects.
    Fingerprint,
    /// The certificate is due (within the planned threshold) or a ticket asked for it.
    RenewalDue,
    /// Service owner and escalation path are recorded.
    Ownership,
    /// The renewal method is one certops executes.
    RenewalPath,
    /// The ACME rate-limit budget allows another certificate.
    RateLimit,
    /// The fallback certificate reference exists in the keystore.
    FallbackCert,
    /// Approvers exist for the decided path.
    ApproversKnown,
    /// The change window is open (or bypassed by an emergency).
    ChangeWindow,
}

impl CheckName {
    /// All checks in report order.
    pub const ALL: [CheckName; 12] = [
        CheckName::CiKnown,
        CheckName::TicketCategory,
        CheckName::Environment,
        CheckName::ExpiryKnown,
        CheckName::Fingerprint,
        CheckName::RenewalDue,
        CheckName::Ownership,
        CheckName::RenewalPath,
        CheckName::RateLimit,
        CheckName::FallbackCert,
        CheckName::ApproversKnown,
        CheckName::ChangeWindow,
    ];
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    /// The check holds.
    Pass,
    /// The check does not hold; the change is blocked.
    Fail,
    /// The check does not hold but is bypassed by the emergency/fallback path; flagged for
    /// review, does not block.
    Bypassed,
    /// Not evaluated because an earlier check failed (e.g. unknown CI); blocks nothing by
    /// itself.
    Skipped,
}

/// One check with its outcome and a human reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// Its outcome.
    pub status: CheckStatus,
    /// Why, in words a change manager understands.
    pub reason: String,
}

/// The result of [`validate`](super::validate): every check and the decided approval path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The policy version the checks ran against.
    pub policy_version: String,
    /// The certificate object the CI resolved to, if any.
    pub cert_id: Option<String>,
    /// Every check, in [`CheckName::ALL`] order.
    pub checks: Vec<Check>,
    /// The decided approval path.
    pub approval_path: ApprovalPath,
    /// The standard change that pre-approves this renewal, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_change: Option<String>,
    /// The expiry the decision was based on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the ACME budget is at risk.
    pub rate_limit_risk: bool,
    /// Whether the plan should install the fallback certificate instead of renewing.
    pub use_fallback: bool,
    /// When validation ran.
    pub validated_at: DateTime<Utc>,
    /// The key type the renewal must have: the inventory's, or the one the certificate object's
    /// re-import targets hold when the inventory names none. Absent: the renew step's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<crate::KeyType>,
}

impl ValidationReport {
    /// Whether the change is blocked.
    pub fn is_blocked(&self) -> bool {
        self.approval_path == ApprovalPath::Blocked
    }

    /// The check with this name.
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == CheckStatus::Fail)
    }

    /// `Ok(self)` unless blocked; blocked becomes [`Error::Blocked`] listing every failure.
    pub fn into_result(self) -> Result<ValidationReport, Error> {
        if self.is_blocked() {
            let reasons = self
                .failures()
                .map(|c| format!("{}: {}", kebab(c.name), c.reason))
                .collect();
            Err(Error::Blocked { reasons })
        } else {
            Ok(self)
        }
    }
}

fn kebab(name: CheckName) -> String {
    serde_json::to_value(name)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
