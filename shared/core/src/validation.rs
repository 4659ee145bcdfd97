//! Deterministic validation of a trigger against the inventory and the policy.
//!
//! [`validate`] runs every check, records each with a status and a human reason, and decides
//! the approval path. Any failed check blocks the change; nothing unknown is guessed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::canonical::sha256_hex;
use crate::inventory::{CertObject, Environment, Inventory, KeyType, RenewalMethod};
pub use crate::policy::ApprovalPath;
use crate::policy::{Policy, WindowState};
use crate::Error;

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

/// Facts gathered by the caller before validation (the core does no I/O).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    /// The currently served expiry, if probed (used when the trigger does not carry one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_expiry: Option<DateTime<Utc>>,
    /// Certificates issued in the last 7 days, per registered domain (ACME only).
    #[serde(default)]
    pub recent_issuances: BTreeMap<String, u32>,
    /// Keystore references that exist (e.g. listed from the secrets store).
    #[serde(default)]
    pub keystore_refs: BTreeSet<String>,
    /// The ACME rate-limit ledger's counts for the certificate object (ACME only; see
    /// [`crate::acme_ledger`]). Absent: only `recent_issuances` is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<crate::acme_ledger::AcmeUsage>,
    /// The key algorithm (ACM's names, e.g. `RSA_2048`) each target that cannot change its
    /// key type on re-import holds now, by target id (an ACM certificate re-imported in place).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_key_algorithms: BTreeMap<String, String>,
    /// The CA's suggested renewal window for the served certificate (ACME Renewal
    /// Information, see [`crate::renewal_info`]), if the scan has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_window: Option<crate::ports::RenewalWindow>,
}

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

/// The result of [`validate`]: every check and the decided approval path.
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

/// Collects checks in a fixed order.
struct Checks(BTreeMap<CheckName, Check>);

impl Checks {
    fn set(&mut self, name: CheckName, status: CheckStatus, reason: impl Into<String>) {
        self.0.insert(
            name,
            Check {
                name,
                status,
                reason: reason.into(),
            },
        );
    }
    fn pass(&mut self, name: CheckName, reason: impl Into<String>) {
        self.set(name, CheckStatus::Pass, reason);
    }
    fn fail(&mut self, name: CheckName, reason: impl Into<String>) {
        self.set(name, CheckStatus::Fail, reason);
    }
    fn into_vec(mut self, skipped_reason: &str) -> Vec<Check> {
        CheckName::ALL
            .iter()
            .map(|&name| {
                self.0.remove(&name).unwrap_or(Check {
                    name,
                    status: CheckStatus::Skipped,
                    reason: skipped_reason.to_string(),
                })
            })
            .collect()
    }
}

/// The key type a renewal of `cert` must have. The inventory's `key_type` if it names one,
/// else the one its re-import targets hold (`facts.target_key_algorithms`), else `None` (the
/// renew step's default). `Err` with the reason when the targets disagree with each other or
/// with the inventory, or hold a key type certops cannot generate: a re-import cannot change
/// the key type, so such a plan is refused before anything is issued.
fn renewal_key_type(cert: &CertObject, facts: &Facts) -> Result<Option<KeyType>, String> {
    let mut held: Option<(KeyType, &str)> = None;
    for target in &cert.targets {
        let Some(name) = facts.target_key_algorithms.get(&target.id) else {
            continue;
        };
        let Some(kind) = KeyType::from_algorithm_name(name) else {
            return Err(format!(
                "target {} holds a {name} key, which certops cannot generate, and a re-import \
                 may not change the key type",
                target.id
            ));
        };
        match held {
            Some((other, other_id)) if other != kind => {
                return Err(format!(
                    "targets {other_id} ({}) and {} ({name}) hold different key types; one \
                     renewal cannot be re-imported into both",
                    other.algorithm_name(),
                    target.id
                ))
            }
            _ => held = Some((kind, &target.id)),
        }
    }
    match (cert.key_type, held) {
        (Some(wanted), Some((kind, id))) if wanted != kind => Err(format!(
            "the inventory asks for a {} key but target {id} holds a {} key, and a re-import \
             may not change the key type (set key_type to match, or move the consumers to a \
             new certificate)",
            wanted.algorithm_name(),
            kind.algorithm_name()
        )),
        (Some(wanted), _) => Ok(Some(wanted)),
        (None, held) => Ok(held.map(|(kind, _)| kind)),
    }
}

fn pass_with_key(checks: &mut Checks, key_type: &Result<Option<KeyType>, String>, reason: String) {
    match key_type {
        Ok(Some(kind)) => checks.pass(
            CheckName::RenewalPath,
            format!("{reason}, {} key", kind.algorithm_name()),
        ),
        Ok(None) => checks.pass(CheckName::RenewalPath, reason),
        Err(why) => checks.fail(CheckName::RenewalPath, format!("{reason}: {why}")),
    }
}

/// Runs every deterministic check for `trigger` at `now` and decides the approval path.
///
/// The path is `blocked` if any check fails; otherwise `emergency` if the certificate expires
/// within the policy's emergency threshold (or has expired) or the fallback must be used
/// without a standard change covering it; otherwise `pre-approved` if a standard change
/// covers it; otherwise `normal`. Emergency changes bypass the change window (flagged as
/// `bypassed`); all others must be inside it.
pub fn validate(
    inventory: &Inventory,
    policy: &Policy,
    trigger: &Trigger,
    facts: &Facts,
    now: DateTime<Utc>,
) -> ValidationReport {
    let mut checks = Checks(BTreeMap::new());
    let Some(cert) = inventory.find_by_ci(trigger.ci()) else {
        checks.fail(
            CheckName::CiKnown,
            format!(
                "CI \"{}\" is not in the inventory; targets are never guessed",
                trigger.ci()
            ),
        );
        return ValidationReport {
            policy_version: policy.version.clone(),
            cert_id: None,
            checks: checks.into_vec("not evaluated: certificate object unknown"),
            approval_path: ApprovalPath::Blocked,
            standard_change: None,
            expires_at: None,
            rate_limit_risk: false,
            use_fallback: false,
            validated_at: now,
            key_type: None,
        };
    };
    checks.pass(
        CheckName::CiKnown,
        format!(
            "CI \"{}\" is certificate object \"{}\"",
            trigger.ci(),
            cert.id
        ),
    );

    check_ticket(&mut checks, cert, trigger);

    // Expiry and urgency.
    let expires_at = match trigger {
        Trigger::Scan(s) => Some(s.observed_expiry),
        Trigger::Ticket(_) => facts.current_expiry,
    };
    match expires_at {
        Some(at) => checks.pass(
            CheckName::ExpiryKnown,
            format!("expires {}", at.to_rfc3339()),
        ),
        None => checks.fail(
            CheckName::ExpiryKnown,
            "current expiry unknown: probe the endpoints first",
        ),
    }
    let left = expires_at.map(|at| at - now);
    let emergency = left.is_some_and(|left| {
        left < TimeDelta::hours(i64::from(policy.renewal.emergency_threshold_hours))
    });

    check_fingerprint(&mut checks, cert, trigger);
    if let Some(left) = left {
        check_due(&mut checks, policy, trigger, left);
        if let Some(w) = facts.renewal_window.as_ref().filter(|w| w.is_due(now)) {
            if status_of(&checks, CheckName::RenewalDue) == Some(CheckStatus::Fail) {
                checks.pass(
                    CheckName::RenewalDue,
                    format!(
                        "inside the CA's renewal window (ARI) since {}{}",
                        w.start.to_rfc3339(),
                        w.explanation_url
                            .as_deref()
                            .map(|u| format!("; the CA explains: {u}"))
                            .unwrap_or_default()
                    ),
                );
            }
        }
    }
    check_ownership(&mut checks, cert);

    // Renewal path (with the key type the targets allow) and rate limit.
    let mut rate_limit_risk = false;
    let key_type = renewal_key_type(cert, facts);
    match cert.issuer.method {
        RenewalMethod::VendorManaged => {
            checks.fail(CheckName::RenewalPath, "vendor-managed: raise with vendor");
            checks.pass(CheckName::RateLimit, "not an ACME certificate");
        }
        RenewalMethod::InternalPki => {
            pass_with_key(
                &mut checks,
                &key_type,
                format!("internal-pki via \"{}\"", cert.issuer.name),
            );
            checks.pass(CheckName::RateLimit, "not an ACME certificate");
        }
        RenewalMethod::Acme => {
            pass_with_key(
                &mut checks,
                &key_type,
                format!("acme via \"{}\"", cert.issuer.name),
            );
            let domain = cert.issuer.registered_domain.as_deref().unwrap_or_default();
            let usable = policy.acme.usable();
            match facts.recent_issuances.get(domain) {
                None => checks.fail(
                    CheckName::RateLimit,
                    format!("issuance count for \"{domain}\" in the last 7 days is unknown"),
                ),
                Some(&count) if count.saturating_add(1) > usable => {
                    rate_limit_risk = true;
                    let reason = format!(
                        "rate-limit risk: {count} certificates for \"{domain}\" in the last 7 days; \
                         budget {usable} ({} per week minus safety margin {})",
                        policy.acme.certificates_per_registered_domain_per_week,
                        policy.acme.safety_margin
                    );
                    if has_fallback(cert, facts) {
                        checks.set(
                            CheckName::RateLimit,
                            CheckStatus::Bypassed,
                            format!("{reason}; the fallback certificate will be used"),
                        );
                    } else {
                        checks.fail(CheckName::RateLimit, reason);
                    }
                }
                Some(&count) => match ledger_risk(policy, facts.acme.as_ref(), now) {
                    None => checks.pass(
                        CheckName::RateLimit,
                        format!("{count} of {usable} certificates for \"{domain}\" used this week"),
                    ),
                    Some(reason) => {
                        rate_limit_risk = true;
                        if has_fallback(cert, facts) {
                            checks.set(
                                CheckName::RateLimit,
                                CheckStatus::Bypassed,
                                format!("{reason}; the fallback certificate will be used"),
                            );
                        } else {
                            checks.fail(CheckName::RateLimit, reason);
                        }
                    }
                },
            }
        }
    }

    match &cert.fallback_cert {
        None => checks.fail(
            CheckName::FallbackCert,
            "no fallback certificate reference in the inventory",
        ),
        Some(reference) if facts.keystore_refs.contains(reference) => checks.pass(
            CheckName::FallbackCert,
            format!("fallback \"{reference}\" is in the keystore"),
        ),
        Some(reference) => checks.fail(
            CheckName::FallbackCert,
            format!("fallback \"{reference}\" is not in the keystore"),
        ),
    }

    // Decide the path from what is known so far.
    let use_fallback = rate_limit_risk;
    let standard = policy.standard_change_for(cert, use_fallback);
    let path = if emergency || (use_fallback && standard.is_none()) {
        ApprovalPath::Emergency
    } else if standard.is_some() {
        ApprovalPath::PreApproved
    } else {
        ApprovalPath::Normal
    };

    match path {
        ApprovalPath::Normal | ApprovalPath::Emergency => {
            let approvers = policy.approvers(cert, path);
            if approvers.iter().all(|a| a.trim().is_empty()) {
                checks.fail(
                    CheckName::ApproversKnown,
                    format!("no approvers for a {path} change of \"{}\"", cert.id),
                );
            } else {
                checks.pass(
                    CheckName::ApproversKnown,
                    format!("{path} change: {} approver(s)", approvers.len()),
                );
            }
        }
        _ => checks.pass(
            CheckName::ApproversKnown,
            format!(
                "standard change \"{}\" is pre-approved",
                standard.map(|s| s.name.as_str()).unwrap_or_default()
            ),
        ),
    }

    check_window(&mut checks, policy, cert, path, now);

    let any_failed = checks.0.values().any(|c| c.status == CheckStatus::Fail);
    let report_path = if any_failed {
        ApprovalPath::Blocked
    } else {
        path
    };
    ValidationReport {
        policy_version: policy.version.clone(),
        cert_id: Some(cert.id.clone()),
        checks: checks.into_vec("not evaluated"),
        approval_path: report_path,
        standard_change: match report_path {
            ApprovalPath::PreApproved => standard.map(|s| s.name.clone()),
            _ => None,
        },
        expires_at,
        rate_limit_risk,
        use_fallback: use_fallback && !any_failed,
        validated_at: now,
        key_type: key_type.ok().flatten(),
    }
}

/// The first ACME ledger limit another order would break, as a reason; `None` if within budget.
fn ledger_risk(
    policy: &Policy,
    usage: Option<&crate::acme_ledger::AcmeUsage>,
    now: DateTime<Utc>,
) -> Option<String> {
    let usage = usage?;
    let budget = &policy.acme;
    if let Some(until) = usage.retry_after.filter(|t| *t > now) {
        return Some(format!(
            "rate-limit risk: the CA asked for no new order before {} (Retry-After)",
            until.to_rfc3339()
        ));
    }
    if usage.duplicates_this_week.saturating_add(1) > budget.usable_duplicates() {
        return Some(format!(
            "rate-limit risk: {} certificates with this exact name set in the last 7 days; \
             budget {} ({} per week minus 1 in reserve)",
            usage.duplicates_this_week,
            budget.usable_duplicates(),
            budget.duplicate_certificates_per_week
        ));
    }
    if usage.orders_last_3_hours.saturating_add(1) > budget.usable_orders() {
        return Some(format!(
            "rate-limit risk: {} new orders by the account in the last 3 hours; budget {} \
             ({} per 3 hours minus safety margin {})",
            usage.orders_last_3_hours,
            budget.usable_orders(),
            budget.new_orders_per_account_per_3_hours,
            budget.safety_margin
        ));
    }
    None
}

fn has_fallback(cert: &CertObject, facts: &Facts) -> bool {
    cert.fallback_cert
        .as_ref()
        .is_some_and(|r| facts.keystore_refs.contains(r))
}

fn check_ticket(checks: &mut Checks, cert: &CertObject, trigger: &Trigger) {
    match trigger {
        Trigger::Scan(_) => {
            checks.pass(CheckName::TicketCategory, "scan finding: no ticket yet");
            checks.pass(
                CheckName::Environment,
                format!(
                    "scan finding: environment from inventory is {}",
                    cert.environment
                ),
            );
        }
        Trigger::Ticket(ticket) => {
            if ticket.category.trim().eq_ignore_ascii_case("certificate") {
                checks.pass(CheckName::TicketCategory, "category is Certificate");
            } else {
                checks.fail(
                    CheckName::TicketCategory,
                    format!(
                        "ticket {} has category \"{}\", not \"Certificate\"",
                        ticket.number, ticket.category
                    ),
                );
            }
            match ticket.environment.as_deref() {
                None => checks.fail(
                    CheckName::Environment,
                    format!("ticket {} states no environment", ticket.number),
                ),
                Some(stated) => match Environment::from_itsm(stated) {
                    None => checks.fail(
                        CheckName::Environment,
                        format!("ticket environment \"{stated}\" is not prod, staging or dev"),
                    ),
                    Some(env) if env != cert.environment => checks.fail(
                        CheckName::Environment,
                        format!(
                            "environment mismatch: ticket says {env}, inventory says {} for \"{}\"",
                            cert.environment, cert.id
                        ),
                    ),
                    Some(env) => checks.pass(
                        CheckName::Environment,
                        format!("ticket and inventory agree: {env}"),
                    ),
                },
            }
        }
    }
}

fn check_fingerprint(checks: &mut Checks, cert: &CertObject, trigger: &Trigger) {
    let observed = match trigger {
        Trigger::Scan(s) => s.observed_fingerprint.as_deref(),
        Trigger::Ticket(_) => None,
    };
    match (cert.expected_fingerprint.as_deref(), observed) {
        (Some(expected), Some(observed)) if !same_fingerprint(expected, observed) => checks.fail(
            CheckName::Fingerprint,
            format!(
                "served certificate {observed} is not the expected {expected}: \
                 the inventory is out of date or something else is served"
            ),
        ),
        (Some(_), Some(_)) => checks.pass(
            CheckName::Fingerprint,
            "served certificate is the expected one",
        ),
        _ => checks.pass(CheckName::Fingerprint, "no fingerprint to compare"),
    }
}

/// Compares fingerprints ignoring case, `:` separators and a `sha256:` prefix.
fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        s.chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    norm(a) == norm(b)
}

fn status_of(checks: &Checks, name: CheckName) -> Option<CheckStatus> {
    checks.0.get(&name).map(|c| c.status)
}

fn check_due(checks: &mut Checks, policy: &Policy, trigger: &Trigger, left: TimeDelta) {
    let threshold = policy.renewal.planned_threshold_days;
    let days = left.num_days();
    let within = left <= TimeDelta::days(i64::from(threshold));
    let summary = if left <= TimeDelta::zero() {
        "already expired".to_string()
    } else {
        format!("expires in {days} day(s) ({} h)", left.num_hours())
    };
    match (within, trigger) {
        (true, _) => checks.pass(
            CheckName::RenewalDue,
            format!("{summary}, within the {threshold}-day threshold"),
        ),
        (false, Trigger::Ticket(t)) => checks.pass(
            CheckName::RenewalDue,
            format!(
                "{summary}, beyond the {threshold}-day threshold; requested by ticket {}",
                t.number
            ),
        ),
        (false, Trigger::Scan(_)) => checks.fail(
            CheckName::RenewalDue,
            format!("not due: {summary}, beyond the {threshold}-day threshold"),
        ),
    }
}

fn check_ownership(checks: &mut Checks, cert: &CertObject) {
    let owner = cert
        .service_owner
        .as_deref()
        .filter(|o| !o.trim().is_empty());
    let escalation: Vec<&str> = cert
        .escalation
        .iter()
        .map(String::as_str)
        .filter(|e| !e.trim().is_empty())
        .collect();
    match (owner, escalation.is_empty()) {
        (Some(owner), false) => checks.pass(
            CheckName::Ownership,
            format!("owner {owner}; escalation {}", escalation.join(" → ")),
        ),
        (None, true) => checks.fail(
            CheckName::Ownership,
            "no service owner and no escalation path",
        ),
        (None, false) => checks.fail(CheckName::Ownership, "no service owner"),
        (Some(_), true) => checks.fail(CheckName::Ownership, "no escalation path"),
    }
}

fn check_window(
    checks: &mut Checks,
    policy: &Policy,
    cert: &CertObject,
    path: ApprovalPath,
    now: DateTime<Utc>,
) {
    let env = cert.environment;
    let Some(window) = policy.windows.get(&env) else {
        if path == ApprovalPath::Emergency {
            checks.set(
                CheckName::ChangeWindow,
                CheckStatus::Bypassed,
                format!("emergency: no change window defined for {env}; bypassed"),
            );
        } else {
            checks.fail(
                CheckName::ChangeWindow,
                format!("no change window defined for {env}"),
            );
        }
        return;
    };
    let name = format!("{env} window ({})", window.describe());
    let at = now
        .with_timezone(&window.timezone)
        .format("%a %Y-%m-%d %H:%M %Z");
    let (open, why) = match window.state_at(now) {
        WindowState::Open => (true, format!("inside the {name} at {at}")),
        WindowState::Closed => (false, format!("outside the {name} at {at}")),
        WindowState::Frozen(freeze) => (
            false,
            format!("freeze \"{freeze}\" closes the {name} at {at}"),
        ),
    };
    match (open, path) {
        (true, _) => checks.pass(CheckName::ChangeWindow, why),
        (false, ApprovalPath::Emergency) => checks.set(
            CheckName::ChangeWindow,
            CheckStatus::Bypassed,
            format!("emergency bypasses the window: {why}"),
        ),
        (false, _) => checks.fail(CheckName::ChangeWindow, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use crate::runbook::Runbook;
    use chrono::TimeZone;

    const INVENTORY: &str = include_str!("../../../runbooks/inventory.toml");
    const POLICY: &str = include_str!("../../../runbooks/policy.toml");
    const RUNBOOK: &str = include_str!("../../../runbooks/cert-renewal.runbook.toml");

    /// Tuesday 2026-12-01 10:00 UTC = 11:00 in Berlin: inside the prod window.
    fn tuesday() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
    }

    /// Saturday 2026-12-05 10:00 UTC: outside the prod and staging windows.
    fn saturday() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap()
    }

    fn inventory() -> Inventory {
        Inventory::from_toml_str(INVENTORY).unwrap()
    }

    fn policy() -> Policy {
        Policy::from_toml_str(POLICY).unwrap()
    }

    fn facts() -> Facts {
        Facts {
            current_expiry: None,
            recent_issuances: [("example.com".to_string(), 3)].into(),
            keystore_refs: inventory()
                .certificates
                .iter()
                .filter_map(|c| c.fallback_cert.clone())
                .collect(),
            acme: None,
            target_key_algorithms: BTreeMap::new(),
            renewal_window: None,
        }
    }

    fn scan(ci: &str, expires_in: TimeDelta, now: DateTime<Utc>) -> Trigger {
        Trigger::Scan(ScanFinding {
            ci: ci.into(),
            observed_expiry: now + expires_in,
            observed_fingerprint: None,
        })
    }

    fn ticket(ci: &str, environment: &str) -> Trigger {
        Trigger::Ticket(TicketTrigger {
            number: "INC0012345".into(),
            sys_id: "46d44a23a9fe1981014de1c831fbcf6d".into(),
            ticket_type: TicketType::Incident,
            category: "Certificate".into(),
            ci: ci.into(),
            environment: Some(environment.into()),
            requested_by: "dave@example.com".into(),
            priority: "2 - High".into(),
        })
    }

    fn run(trigger: &Trigger, facts: &Facts, now: DateTime<Utc>) -> ValidationReport {
        validate(&inventory(), &policy(), trigger, facts, now)
    }

    fn status(report: &ValidationReport, name: CheckName) -> CheckStatus {
        report.check(name).unwrap().status
    }

    fn reason(report: &ValidationReport, name: CheckName) -> &str {
        &report.check(name).unwrap().reason
    }

    #[test]
    fn planned_renewal_inside_the_window_is_a_normal_change_with_every_check_passing() {
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Normal);
        assert_eq!(report.cert_id.as_deref(), Some("shop-www-prod"));
        assert_eq!(report.policy_version, "2026.12.1");
        let names: Vec<CheckName> = report.checks.iter().map(|c| c.name).collect();
        assert_eq!(names, CheckName::ALL);
        assert!(
            report.checks.iter().all(|c| c.status == CheckStatus::Pass),
            "{:#?}",
            report.checks
        );
        assert!(!report.use_fallback && !report.rate_limit_risk);
    }

    fn holding(pairs: &[(&str, &str)]) -> Facts {
        let mut f = facts();
        for (id, alg) in pairs {
            f.target_key_algorithms
                .insert((*id).to_string(), (*alg).to_string());
        }
        f
    }

    #[test]
    fn a_renewal_takes_the_key_type_its_reimport_targets_hold() {
        let f = holding(&[("web-01.shop.internal", "RSA_2048")]);
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &f,
            tuesday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Normal);
        assert_eq!(report.key_type, Some(KeyType::Rsa2048));
        assert!(reason(&report, CheckName::RenewalPath).contains("RSA_2048 key"));
        let cert = inventory().get("shop-www-prod").unwrap().clone();
        let plan = crate::Plan::build(
            crate::RunbookRef {
                id: "r".into(),
                version: "1".into(),
                sha256: "00".repeat(32),
            },
            &cert,
            &report,
            None,
            None,
        )
        .unwrap();
        assert_eq!(plan.key_type, Some(KeyType::Rsa2048), "the plan carries it");
        // With no constraint the plan names no key type (its hash is what it was).
        let free = run(
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(free.key_type, None);
    }

    #[test]
    fn a_key_type_a_reimport_cannot_take_is_refused_at_plan_time_with_the_reason() {
        let trigger = scan("shop-web-prod", TimeDelta::days(20), tuesday());
        // The inventory asks for ECDSA P-256, the target holds RSA 2048.
        let mut inv = inventory();
        for c in &mut inv.certificates {
            c.key_type = Some(KeyType::EcdsaP256);
        }
        let f = holding(&[("web-01.shop.internal", "RSA_2048")]);
        let report = validate(&inv, &policy(), &trigger, &f, tuesday());
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
        assert_eq!(status(&report, CheckName::RenewalPath), CheckStatus::Fail);
        let why = reason(&report, CheckName::RenewalPath);
        assert!(
            why.contains("EC_prime256v1") && why.contains("RSA_2048") && why.contains("re-import"),
            "{why}"
        );
        assert!(report.clone().into_result().is_err());
        // Two targets holding different key types.
        let f = holding(&[
            ("web-01.shop.internal", "RSA_2048"),
            ("web-02.shop.internal", "EC_prime256v1"),
        ]);
        let report = run(&trigger, &f, tuesday());
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
        assert!(reason(&report, CheckName::RenewalPath).contains("different key types"));
        // A key type certops cannot generate.
        let f = holding(&[("web-02.shop.internal", "RSA_1024")]);
        let report = run(&trigger, &f, tuesday());
        assert_eq!(status(&report, CheckName::RenewalPath), CheckStatus::Fail);
        assert!(reason(&report, CheckName::RenewalPath).contains("RSA_1024"));
        // The same key type as the inventory's passes.
        let f = holding(&[("web-01.shop.internal", "EC_prime256v1")]);
        let report = validate(&inv, &policy(), &trigger, &f, tuesday());
        assert_eq!(report.approval_path, ApprovalPath::Normal);
        assert_eq!(report.key_type, Some(KeyType::EcdsaP256));
    }

    #[test]
    fn a_renewal_inside_the_cas_window_is_due_beyond_the_threshold() {
        let trigger = scan("shop-web-prod", TimeDelta::days(60), tuesday());
        assert_eq!(
            run(&trigger, &facts(), tuesday()).approval_path,
            ApprovalPath::Blocked
        );
        let window = |start: DateTime<Utc>| crate::ports::RenewalWindow {
            certificate_id: "aki.serial".into(),
            start,
            end: start + TimeDelta::days(2),
            next_check: tuesday() + TimeDelta::hours(6),
            explanation_url: Some("https://ca.example/incident".into()),
        };
        let mut f = facts();
        f.renewal_window = Some(window(tuesday() - TimeDelta::hours(1)));
        let report = run(&trigger, &f, tuesday());
        assert_eq!(
            report.approval_path,
            ApprovalPath::Normal,
            "{:#?}",
            report.checks
        );
        let why = reason(&report, CheckName::RenewalDue);
        assert!(
            why.contains("renewal window (ARI)") && why.contains("ca.example"),
            "{why}"
        );
        // A window that has not opened leaves the threshold in charge.
        f.renewal_window = Some(window(tuesday() + TimeDelta::days(1)));
        assert_eq!(
            run(&trigger, &f, tuesday()).approval_path,
            ApprovalPath::Blocked
        );
    }

    #[test]
    fn unknown_ci_is_blocked_and_nothing_else_is_guessed() {
        let report = run(
            &scan("shop-web", TimeDelta::days(20), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
        assert_eq!(report.cert_id, None);
        assert_eq!(status(&report, CheckName::CiKnown), CheckStatus::Fail);
        assert!(reason(&report, CheckName::CiKnown).contains("\"shop-web\""));
        assert_eq!(report.checks.len(), CheckName::ALL.len());
        assert!(report.checks[1..]
            .iter()
            .all(|c| c.status == CheckStatus::Skipped));
        let err = report.into_result().unwrap_err();
        assert_eq!(err.name(), "Blocked");
        assert!(
            err.to_string().contains("ci-known: CI \"shop-web\""),
            "{err}"
        );
    }

    #[test]
    fn environment_mismatch_is_blocked() {
        let facts = Facts {
            current_expiry: Some(tuesday() + TimeDelta::days(10)),
            ..facts()
        };
        let report = run(&ticket("shop-web-prod", "staging"), &facts, tuesday());
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
        assert_eq!(status(&report, CheckName::Environment), CheckStatus::Fail);
        assert!(reason(&report, CheckName::Environment).contains("mismatch"));

        let report = run(&ticket("shop-web-prod", "Production"), &facts, tuesday());
        assert_eq!(report.approval_path, ApprovalPath::Normal);
    }

    #[test]
    fn unknown_or_missing_ticket_environment_is_blocked() {
        let facts = Facts {
            current_expiry: Some(tuesday() + TimeDelta::days(10)),
            ..facts()
        };
        let report = run(&ticket("shop-web-prod", "prod-eu"), &facts, tuesday());
        assert_eq!(status(&report, CheckName::Environment), CheckStatus::Fail);
        let Trigger::Ticket(mut t) = ticket("shop-web-prod", "prod") else {
            unreachable!()
        };
        t.environment = None;
        let report = run(&Trigger::Ticket(t), &facts, tuesday());
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
    }

    #[test]
    fn ticket_outside_the_certificate_category_is_blocked() {
        let Trigger::Ticket(mut t) = ticket("shop-web-prod", "prod") else {
            unreachable!()
        };
        t.category = "Network".into();
        let facts = Facts {
            current_expiry: Some(tuesday() + TimeDelta::days(10)),
            ..facts()
        };
        let report = run(&Trigger::Ticket(t), &facts, tuesday());
        assert_eq!(
            status(&report, CheckName::TicketCategory),
            CheckStatus::Fail
        );
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
    }

    #[test]
    fn out_of_window_normal_change_is_blocked_naming_the_window() {
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), saturday()),
            &facts(),
            saturday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
        assert_eq!(status(&report, CheckName::ChangeWindow), CheckStatus::Fail);
        let why = reason(&report, CheckName::ChangeWindow);
        assert!(
            why.contains("outside the prod window (Tue,Wed,Thu 09:00-16:00 Europe/Berlin)"),
            "{why}"
        );
        assert!(why.contains("Sat 2026-12-05 11:00 CET"), "{why}");
    }

    #[test]
    fn freeze_blocks_a_normal_change_naming_the_freeze() {
        // Tuesday 2026-12-22 10:00 Berlin: weekday and hour fit, but year-end freeze.
        let now = Utc.with_ymd_and_hms(2026, 12, 22, 9, 0, 0).unwrap();
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), now),
            &facts(),
            now,
        );
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
        assert!(reason(&report, CheckName::ChangeWindow).contains("freeze \"year-end\""));
    }

    #[test]
    fn emergency_when_expiring_within_24_hours_bypasses_the_window_flagged() {
        let report = run(
            &scan("shop-web-prod", TimeDelta::hours(23), saturday()),
            &facts(),
            saturday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Emergency);
        assert_eq!(
            status(&report, CheckName::ChangeWindow),
            CheckStatus::Bypassed
        );
        assert!(reason(&report, CheckName::ChangeWindow).contains("emergency bypasses"));
    }

    #[test]
    fn emergency_when_already_expired() {
        let report = run(
            &scan("shop-web-prod", TimeDelta::hours(-3), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Emergency);
        assert!(reason(&report, CheckName::RenewalDue).contains("already expired"));
    }

    #[test]
    fn twenty_five_hours_left_is_not_an_emergency() {
        let report = run(
            &scan("shop-web-prod", TimeDelta::hours(25), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Normal);
    }

    #[test]
    fn vendor_managed_is_blocked_with_raise_with_vendor() {
        let report = run(
            &scan("payments-gateway-prod", TimeDelta::days(5), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
        assert_eq!(status(&report, CheckName::RenewalPath), CheckStatus::Fail);
        assert_eq!(
            reason(&report, CheckName::RenewalPath),
            "vendor-managed: raise with vendor"
        );
    }

    #[test]
    fn exhausted_acme_budget_is_a_rate_limit_risk_taking_the_fallback_on_emergency_approval() {
        let mut facts = facts();
        facts.recent_issuances.insert("example.com".into(), 40);
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &facts,
            tuesday(),
        );
        assert!(report.rate_limit_risk);
        assert!(report.use_fallback);
        assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Bypassed);
        assert!(reason(&report, CheckName::RateLimit).contains("rate-limit risk: 40"));
        assert_eq!(report.approval_path, ApprovalPath::Emergency);
    }

    #[test]
    fn fallback_stays_pre_approved_when_a_standard_change_covers_it() {
        let mut facts = facts();
        facts.recent_issuances.insert("example.com".into(), 45);
        let report = run(
            &scan("docs-site-dev", TimeDelta::days(20), tuesday()),
            &facts,
            tuesday(),
        );
        assert!(report.use_fallback);
        assert_eq!(report.approval_path, ApprovalPath::PreApproved);
    }

    #[test]
    fn exhausted_acme_budget_without_fallback_is_blocked() {
        let mut facts = facts();
        facts.recent_issuances.insert("example.com".into(), 40);
        facts.keystore_refs.clear();
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &facts,
            tuesday(),
        );
        assert!(report.rate_limit_risk);
        assert!(!report.use_fallback);
        assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Fail);
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
    }

    #[test]
    fn the_ledger_retry_after_duplicates_and_orders_are_each_a_rate_limit_risk() {
        use crate::acme_ledger::AcmeUsage;
        let now = tuesday();
        let cases = [
            (
                AcmeUsage {
                    retry_after: Some(now + TimeDelta::minutes(30)),
                    ..AcmeUsage::default()
                },
                "Retry-After",
            ),
            (
                AcmeUsage {
                    duplicates_this_week: 4,
                    ..AcmeUsage::default()
                },
                "exact name set",
            ),
            (
                AcmeUsage {
                    orders_last_3_hours: 290,
                    ..AcmeUsage::default()
                },
                "new orders",
            ),
        ];
        for (usage, words) in cases {
            let mut facts = facts();
            facts.acme = Some(usage);
            let report = run(
                &scan("shop-web-prod", TimeDelta::days(20), now),
                &facts,
                now,
            );
            assert!(report.rate_limit_risk, "{words}");
            assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Bypassed);
            assert!(
                reason(&report, CheckName::RateLimit).contains(words),
                "{words}"
            );
        }
        // Within every budget, and a Retry-After already passed: no risk.
        let mut facts = facts();
        facts.acme = Some(AcmeUsage {
            certificates_this_week: 3,
            duplicates_this_week: 3,
            orders_last_3_hours: 289,
            retry_after: Some(now - TimeDelta::minutes(1)),
        });
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), now),
            &facts,
            now,
        );
        assert!(!report.rate_limit_risk);
        assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Pass);
    }

    #[test]
    fn the_last_certificate_within_budget_is_no_risk() {
        let mut facts = facts();
        // Budget 50 - 10 = 40: with 39 issued, one more is the 40th.
        facts.recent_issuances.insert("example.com".into(), 39);
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &facts,
            tuesday(),
        );
        assert!(!report.rate_limit_risk);
        assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Pass);
        assert_eq!(report.approval_path, ApprovalPath::Normal);
    }

    #[test]
    fn idempotency_key_is_stable_per_trigger_and_execution_name_safe() {
        let t = ticket("shop-web-prod", "prod");
        assert_eq!(
            t.idempotency_key(),
            "ticket-inc-46d44a23a9fe1981014de1c831fbcf6d"
        );
        let a = scan("shop web/prod", TimeDelta::days(20), tuesday());
        let b = scan("shop web/prod", TimeDelta::days(20), tuesday());
        let later = scan("shop web/prod", TimeDelta::days(21), tuesday());
        assert_eq!(a.idempotency_key(), b.idempotency_key());
        assert_ne!(a.idempotency_key(), later.idempotency_key());
        let key = a.idempotency_key();
        assert!(key.starts_with("scan-shop-web-prod-"), "{key}");
        let long = scan(&"x".repeat(200), TimeDelta::days(1), tuesday()).idempotency_key();
        for key in [key, long] {
            assert!(key.len() <= 80);
            assert!(key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
    }

    #[test]
    fn ticket_keys_are_lossless_over_table_and_sys_id() {
        let with = |number: &str, sys_id: &str, ty: TicketType| {
            let Trigger::Ticket(mut t) = ticket("shop-web-prod", "prod") else {
                unreachable!()
            };
            t.number = number.into();
            t.sys_id = sys_id.into();
            t.ticket_type = ty;
            Trigger::Ticket(t).idempotency_key()
        };
        // Numbers that a character substitution would merge are distinct tickets.
        let keys: BTreeSet<String> = [
            ("INC/0090201", "a1"),
            ("INC.0090201", "a2"),
            ("INC 0090201", "a3"),
            ("INC:0090201", "a4"),
        ]
        .iter()
        .map(|(n, s)| with(n, s, TicketType::Incident))
        .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        // sys_ids that differ only past 72 characters, or only in unsafe characters.
        let long_a = format!("{}a", "x".repeat(100));
        let long_b = format!("{}b", "x".repeat(100));
        let distinct = [
            with("INC1", &long_a, TicketType::Incident),
            with("INC1", &long_b, TicketType::Incident),
            with("INC1", "ab/c", TicketType::Incident),
            with("INC1", "ab.c", TicketType::Incident),
            with("INC1", "abc", TicketType::Incident),
            with("INC1", "abc", TicketType::Change),
        ];
        let set: BTreeSet<&String> = distinct.iter().collect();
        assert_eq!(set.len(), distinct.len(), "{distinct:?}");
        for key in &distinct {
            assert!(key.len() <= 80, "{key}");
            assert!(key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
        // The same ticket always gets the same key, whatever its number says.
        assert_eq!(
            with("INC1", "abc", TicketType::Incident),
            with("INC2", "abc", TicketType::Incident)
        );
    }

    #[test]
    fn unknown_issuance_count_is_blocked_not_assumed_zero() {
        let mut facts = facts();
        facts.recent_issuances.clear();
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &facts,
            tuesday(),
        );
        assert_eq!(status(&report, CheckName::RateLimit), CheckStatus::Fail);
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
    }

    #[test]
    fn missing_fallback_fails_its_check() {
        let mut facts = facts();
        facts
            .keystore_refs
            .remove("keystore:fallback/shop-www-prod");
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &facts,
            tuesday(),
        );
        assert_eq!(status(&report, CheckName::FallbackCert), CheckStatus::Fail);
        assert!(reason(&report, CheckName::FallbackCert).contains("not in the keystore"));
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
    }

    #[test]
    fn missing_owner_or_escalation_is_blocked() {
        let text = INVENTORY.replacen("service_owner = \"team-shop@example.com\"\n", "", 1);
        let inventory = Inventory::from_toml_str(&text).unwrap();
        let report = validate(
            &inventory,
            &policy(),
            &scan("shop-web-prod", TimeDelta::days(20), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(status(&report, CheckName::Ownership), CheckStatus::Fail);
        assert_eq!(reason(&report, CheckName::Ownership), "no service owner");
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
    }

    #[test]
    fn expiry_unknown_is_blocked() {
        let report = run(&ticket("shop-web-prod", "prod"), &facts(), tuesday());
        assert_eq!(status(&report, CheckName::ExpiryKnown), CheckStatus::Fail);
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
    }

    #[test]
    fn scan_finding_not_yet_due_is_blocked_but_a_ticket_may_ask_early() {
        let report = run(
            &scan("shop-web-prod", TimeDelta::days(80), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(status(&report, CheckName::RenewalDue), CheckStatus::Fail);
        assert!(reason(&report, CheckName::RenewalDue).starts_with("not due"));

        let facts = Facts {
            current_expiry: Some(tuesday() + TimeDelta::days(80)),
            ..facts()
        };
        let report = run(&ticket("shop-web-prod", "prod"), &facts, tuesday());
        assert_eq!(status(&report, CheckName::RenewalDue), CheckStatus::Pass);
        assert_eq!(report.approval_path, ApprovalPath::Normal);
    }

    #[test]
    fn served_fingerprint_other_than_expected_is_blocked() {
        let now = tuesday();
        let mk = |fp: &str| {
            Trigger::Scan(ScanFinding {
                ci: "shop-web-prod".into(),
                observed_expiry: now + TimeDelta::days(20),
                observed_fingerprint: Some(fp.into()),
            })
        };
        let report = run(&mk("sha256:00"), &facts(), now);
        assert_eq!(status(&report, CheckName::Fingerprint), CheckStatus::Fail);
        let same = "5F:1C:4B:2B:9A:0E:7D:36:C8:E2:F4:A1:B7:D9:C0:E3:F6:A8:B2:C4:D6:E8:F0:A1:B3:C5:D7:E9:F1:A2:B3:C4";
        let report = run(&mk(same), &facts(), now);
        assert_eq!(status(&report, CheckName::Fingerprint), CheckStatus::Pass);
    }

    #[test]
    fn standard_change_in_window_is_pre_approved() {
        let report = run(
            &scan("api-gateway-staging", TimeDelta::days(20), tuesday()),
            &facts(),
            tuesday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::PreApproved);
        assert_eq!(
            report.standard_change.as_deref(),
            Some("STD-CERT-NONPROD: certificate renewal outside production")
        );
        // Pre-approved is still bound to the window.
        let report = run(
            &scan("api-gateway-staging", TimeDelta::days(20), saturday()),
            &facts(),
            saturday(),
        );
        assert_eq!(report.approval_path, ApprovalPath::Blocked);
    }

    #[test]
    fn blocked_report_yields_no_plan_and_a_passing_one_yields_a_bound_plan() {
        let runbook = Runbook::from_toml_str(RUNBOOK).unwrap();
        let inventory = inventory();
        let cert = inventory.get("shop-www-prod").unwrap();
        let blocked = run(
            &scan("shop-web-prod", TimeDelta::days(20), saturday()),
            &facts(),
            saturday(),
        );
        let err = Plan::build(runbook.reference(), cert, &blocked, None, None).unwrap_err();
        assert_eq!(err.name(), "Blocked");

        let report = run(
            &ticket("shop-web-prod", "prod"),
            &Facts {
                current_expiry: Some(tuesday() + TimeDelta::days(9)),
                ..facts()
            },
            tuesday(),
        );
        let plan =
            Plan::build(runbook.reference(), cert, &report, Some("INC0012345"), None).unwrap();
        assert_eq!(plan.targets, cert.targets);
        assert_eq!(plan.endpoints, cert.endpoints);
        assert_eq!(plan.ticket.as_deref(), Some("INC0012345"));
        assert_eq!(plan.runbook.sha256, runbook.content_sha256);
        assert_eq!(plan.approval_path, ApprovalPath::Normal);

        let other = inventory.get("docs-dev").unwrap();
        assert_eq!(
            Plan::build(runbook.reference(), other, &report, None, None)
                .unwrap_err()
                .name(),
            "InvalidInput"
        );
    }

    #[test]
    fn the_example_files_parse_and_validate() {
        let inventory = inventory();
        assert_eq!(inventory.certificates.len(), 4);
        let policy = policy();
        let facts = facts();
        let now = tuesday();
        let expected = [
            ("shop-web-prod", ApprovalPath::Normal),
            ("api-gateway-staging", ApprovalPath::PreApproved),
            ("payments-gateway-prod", ApprovalPath::Blocked),
            ("docs-site-dev", ApprovalPath::PreApproved),
        ];
        for (ci, path) in expected {
            let report = validate(
                &inventory,
                &policy,
                &scan(ci, TimeDelta::days(20), now),
                &facts,
                now,
            );
            assert_eq!(report.approval_path, path, "{ci}: {:#?}", report.checks);
        }
        Runbook::from_toml_str(RUNBOOK).unwrap();
    }

    #[test]
    fn report_and_trigger_serialise_with_stable_names() {
        let report = run(
            &scan("shop-web-prod", TimeDelta::hours(2), tuesday()),
            &facts(),
            tuesday(),
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["approval_path"], "emergency");
        assert_eq!(json["checks"][0]["name"], "ci-known");
        assert_eq!(json["checks"][0]["status"], "pass");

        let trigger: Trigger = serde_json::from_value(serde_json::json!({
            "source": "ticket", "number": "CHG0034567", "sys_id": "x", "type": "change",
            "category": "Certificate", "ci": "shop-web-prod", "environment": "prod",
            "requested_by": "dave@example.com", "priority": "3 - Moderate"
        }))
        .unwrap();
        assert_eq!(trigger.ticket_number(), Some("CHG0034567"));
        assert_eq!(trigger.requested_by(), "dave@example.com");
        assert_eq!(
            scan("x", TimeDelta::zero(), tuesday()).requested_by(),
            SCANNER_IDENTITY
        );
    }
}
