//! How long each logical table's records live: the [`TtlPolicy`] per table and the
//! retention defaults derived from Step Functions' limits.

use certops_core::ports::Table;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// How long Step Functions refuses to reuse the name of a closed STANDARD execution.
pub const EXECUTION_NAME_REUSE: Duration = Duration::from_secs(90 * 24 * 3600);
/// The renewal definition's `TimeoutSeconds` (48 h): an execution closes at the latest
/// this long after it started.
pub const EXECUTION_TIMEOUT: Duration = Duration::from_secs(48 * 3600);
/// How long an idempotency key (`triggers`) is kept by default: as long as Step Functions
/// may still refuse its execution name (90 days after the execution closed, which is at
/// most the execution time-out after the start). Dropped earlier, an identical trigger
/// would be started again and meet `ExecutionAlreadyExists` instead of the recorded one.
pub const DEFAULT_TRIGGER_RETENTION: Duration =
    Duration::from_secs(EXECUTION_NAME_REUSE.as_secs() + EXECUTION_TIMEOUT.as_secs());
/// How long a renewal lock (`locks`) is kept by default. Locks are released by the final
/// ITSM step; one older than this belongs to an execution that died without releasing it,
/// and expiring it lets the next renewal of that certificate run.
pub const DEFAULT_LOCK_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an approval is kept after its `expires_at` by default, so a late callback is
/// told the approval expired instead of that it does not exist.
pub const DEFAULT_APPROVAL_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// When records of one logical table expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlPolicy {
    /// Never: no `ttl` attribute.
    Keep,
    /// `retention` after each write.
    Retention(Duration),
    /// At the instant found at the first of `pointers` (JSON pointers into the value) that is
    /// present, as RFC 3339 text or epoch seconds, plus `grace`. No `ttl` when none is present.
    FromValue {
        /// JSON pointers tried in order, e.g. `/expires_at`.
        pointers: Vec<String>,
        /// Added to the instant found.
        grace: Duration,
    },
}

impl TtlPolicy {
    /// The `ttl` (epoch seconds) of `value` written at `now`, if it expires.
    pub fn expiry(&self, value: &Value, now: DateTime<Utc>) -> Option<i64> {
        match self {
            TtlPolicy::Keep => None,
            TtlPolicy::Retention(d) => Some(now.timestamp().saturating_add(secs(*d))),
            TtlPolicy::FromValue { pointers, grace } => pointers
                .iter()
                .find_map(|p| value.pointer(p).and_then(instant))
                .map(|at| at.saturating_add(secs(*grace))),
        }
    }
}

pub(super) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Epoch seconds of an RFC 3339 string or a number.
pub(super) fn instant(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp()),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The default policies: approvals expire [`DEFAULT_APPROVAL_GRACE`] after their
/// `expires_at` (top level, or inside `request` as the approval step stores it), triggers
/// and locks after [`DEFAULT_TRIGGER_RETENTION`] / [`DEFAULT_LOCK_RETENTION`]; issuances,
/// deployments, observations and chain heads are kept.
pub fn default_ttl_policies() -> HashMap<Table, TtlPolicy> {
    HashMap::from([
        (
            Table::Approvals,
            TtlPolicy::FromValue {
                pointers: vec!["/expires_at".into(), "/request/expires_at".into()],
                grace: DEFAULT_APPROVAL_GRACE,
            },
        ),
        (
            Table::Triggers,
            TtlPolicy::Retention(DEFAULT_TRIGGER_RETENTION),
        ),
        (Table::Locks, TtlPolicy::Retention(DEFAULT_LOCK_RETENTION)),
    ])
}
