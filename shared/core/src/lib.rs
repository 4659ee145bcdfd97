//! certops-core: the pure domain core of certops.
//!
//! Inventory, policy, deterministic validation, the plan and its hash, approval rules, the
//! hash-chained audit trail, certificate fingerprints and the error names Step Functions
//! routes on. No I/O happens here: callers pass file contents, facts they gathered and `now`.
//!
//! ```
//! use certops_core::{validate, Facts, Inventory, Plan, Policy, Runbook, Trigger, ScanFinding};
//! use chrono::{TimeZone, Utc};
//!
//! let inventory = Inventory::from_toml_str(r#"
//!     [[certificate]]
//!     id = "docs-dev"
//!     ci = "docs-site-dev"
//!     common_name = "docs.dev.example.com"
//!     environment = "dev"
//!     service_owner = "team-docs@example.com"
//!     escalation = ["oncall-docs@example.com"]
//!     change_authority = ["dana@example.com"]
//!     fallback_cert = "keystore:fallback/docs-dev"
//!     issuer = { name = "corp-pki", method = "internal-pki" }
//!     targets = [{ kind = "local", id = "docs-01", reload = "hot-swap" }]
//!     endpoints = [{ host = "docs.dev.example.com", sni = "docs.dev.example.com" }]
//! "#)?;
//! let policy = Policy::from_toml_str(r#"
//!     version = "1"
//!     renewal = { planned_threshold_days = 30 }
//!     windows.dev = { timezone = "UTC", days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "18:00" }
//!     approval = { ecab = ["erin@example.com"], timeouts = { standard_minutes = 60, normal_minutes = 1440, emergency_minutes = 30 } }
//!     acme = { certificates_per_registered_domain_per_week = 50, safety_margin = 10 }
//! "#)?;
//! let runbook = Runbook::from_toml_str(include_str!("../../../runbooks/cert-renewal.runbook.toml"))?;
//!
//! let now = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(); // a Tuesday
//! let trigger = Trigger::Scan(ScanFinding {
//!     ci: "docs-site-dev".into(),
//!     observed_expiry: Utc.with_ymd_and_hms(2026, 12, 20, 0, 0, 0).unwrap(),
//!     observed_fingerprint: None,
//! });
//! let facts = Facts {
//!     keystore_refs: ["keystore:fallback/docs-dev".to_string()].into(),
//!     ..Facts::default()
//! };
//!
//! let report = validate(&inventory, &policy, &trigger, &facts, now);
//! assert_eq!(report.approval_path.as_str(), "normal");
//!
//! let cert = inventory.find_by_ci("docs-site-dev").unwrap();
//! let plan = Plan::build(runbook.reference(), cert, &report, None, None)?;
//! let approved = plan.hash(); // what the approver approves
//! certops_core::verify_plan_hash(&plan, &approved)?;
//! # Ok::<(), certops_core::Error>(())
//! ```

pub mod acme_ledger;
pub mod approval;
pub mod audit;
pub mod canonical;
pub mod error;
pub mod fingerprint;
pub mod integrations;
pub mod inventory;
pub mod lease;
pub mod plan;
pub mod policy;
pub mod ports;
pub mod renewal_info;
pub mod runbook;
pub mod signature;
pub mod validation;
pub mod workflow;

pub use approval::{approval_id, check_decision, ApprovalDecision, ApprovalRequest, Verdict};
pub use audit::{
    check_no_secrets, redact, verify_anchored, verify_chain, verify_chain_head, AuditChain,
    AuditEntry, AuditKey, AuditKind, AuditRecord, ChainHead, GENESIS_HASH,
};
pub use error::{Error, ERROR_NAMES};
pub use fingerprint::Fingerprint;
pub use inventory::{
    AcmeOptions, Cdn, CdnKind, CertObject, Endpoint, Environment, Inventory, Issuer, KeyType,
    ReloadMethod, RenewalMethod, Solver, Target, TargetKind,
};
pub use plan::{verify_plan_hash, Plan};
pub use policy::{ApprovalPath, ChatPlatform, DirectoryEntry, Policy};
pub use runbook::{Runbook, RunbookRef, StepAction};
pub use validation::{
    validate, Check, CheckName, CheckStatus, Facts, ScanFinding, TicketTrigger, TicketType,
    Trigger, ValidationReport,
};
