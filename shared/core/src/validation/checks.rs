//! The checks themselves: [`validate`] runs each one against the facts the caller gathered
//! and decides the approval path from their outcomes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::report::{Check, CheckName, CheckStatus, ValidationReport};
use super::triggers::Trigger;
use crate::fingerprint::Fingerprint;
use crate::inventory::{CertObject, Environment, Inventory, KeyType, RenewalMethod};
use crate::policy::{ApprovalPath, Policy, WindowState};

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
    let (Some(expected), Some(observed)) = (cert.expected_fingerprint.as_deref(), observed) else {
        checks.pass(CheckName::Fingerprint, "no fingerprint to compare");
        return;
    };
    // Both sides go through the one normalisation (case, `:` separators, `sha256:` prefix);
    // a malformed one matches nothing and says why.
    match (Fingerprint::parse(expected), Fingerprint::parse(observed)) {
        (Ok(e), Ok(o)) if e == o => checks.pass(
            CheckName::Fingerprint,
            "served certificate is the expected one",
        ),
        (Ok(_), Ok(_)) => checks.fail(
            CheckName::Fingerprint,
            format!(
                "served certificate {observed} is not the expected {expected}: \
                 the inventory is out of date or something else is served"
            ),
        ),
        (Err(why), _) => checks.fail(
            CheckName::Fingerprint,
            format!("the inventory's expected fingerprint is unusable: {why}"),
        ),
        (Ok(_), Err(why)) => checks.fail(
            CheckName::Fingerprint,
            format!("the served fingerprint is unusable: {why}"),
        ),
    }
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
