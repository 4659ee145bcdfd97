//! Deterministic validation of a trigger against the inventory and the policy.
//!
//! [`validate`] runs every check, records each with a status and a human reason, and decides
//! the approval path. Any failed check blocks the change; nothing unknown is guessed.
//!
//! The parts: `triggers.rs` (what starts a renewal and its idempotency key), `checks.rs`
//! (the facts the caller gathers, the checks and the path decision), `report.rs` (what the
//! checks report). [`ApprovalPath`] lives in [`crate::policy`] and is re-exported here.

mod checks;
mod report;
#[cfg(test)]
mod tests;
mod triggers;

pub use crate::policy::ApprovalPath;
pub use checks::{validate, Facts};
pub use report::{Check, CheckName, CheckStatus, ValidationReport};
pub use triggers::{ScanFinding, TicketTrigger, TicketType, Trigger, SCANNER_IDENTITY};
