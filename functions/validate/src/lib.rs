//! `validate`: resolve the trigger's CI to a known certificate object, run
//! every deterministic check, open (scan) or enrich (ticket) the ITSM record,
//! build the plan and its hash — plus the fallback plan — and take the
//! one-renewal-per-certificate lock. Nothing is guessed: anything unknown is
//! blocked with reasons.

// The shared test world names this crate by its name, as every other handler crate does.
#[cfg(test)]
extern crate self as certops_fn_validate;

use certops_core::ports::{Deps, NewTicket, Table, TicketKind, TicketState, TicketUpdate};
use certops_core::workflow::{
    fallback_path, record_audit, report_for, StepEvent, ValidationOutput, WorkflowState,
};
use certops_core::{
    validate, ApprovalPath, AuditKind, CertObject, Error, Facts, Plan, TicketType, Trigger,
    ValidationReport,
};
use chrono::{DateTime, Utc};
use serde_json::json;

const ACTOR: &str = "step:validate";

/// The longest approval wait the definition can honour: its `TimeoutSeconds` (48 h).
/// A `TimeoutSecondsPath` value outside 1..=this would raise `States.Runtime`, which no
/// Catch can route, and leave the certificate's lock held until its TTL.
pub const MAX_APPROVAL_SECONDS: u64 = 172_800;

/// The approval task's time-out: the approval's own expiry plus a grace period, so the
/// approval always expires first and a late click meets a waiting task that is failed
/// with `ApprovalExpired` (answered and audited), not a token that is already gone.
fn seconds(path: ApprovalPath, deps: &Deps) -> Result<u64, Error> {
    let s = deps
        .config
        .policy
        .approval_timeout(path)
        .map(|d| d.num_seconds())
        .unwrap_or(60);
    let grace = certops_core::approval::TASK_TIMEOUT_GRACE_SECONDS;
    u64::try_from(s)
        .ok()
        .map(|s| s + grace)
        .filter(|t| (1 + grace..=MAX_APPROVAL_SECONDS).contains(t))
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "the policy's {} approval time-out is {s} s; with the {grace} s grace it must \
                 be between 1 s and the execution's {MAX_APPROVAL_SECONDS} s",
                path.as_str()
            ))
        })
}

/// Runs validation for one execution.
pub async fn handle(deps: &Deps, event: StepEvent) -> Result<ValidationOutput, Error> {
    let now = deps.clock.now();
    let exec = event.execution.as_str();
    let state = &event.state;
    let trigger = &state.trigger;
    record_trigger(deps, exec, state).await?;
    let cert = deps.config.inventory.find_by_ci(trigger.ci());
    let (facts, fingerprint_before) = gather_facts(deps, trigger, cert, now).await?;
    let report = validate(
        &deps.config.inventory,
        &deps.config.policy,
        trigger,
        &facts,
        now,
    );
    let (ticket, change) = itsm_record(deps, state, cert, &report).await?;
    let mut out = ValidationOutput {
        path: report.approval_path,
        approval_timeout_seconds: seconds(report.approval_path, deps)?,
        fallback_approval_timeout_seconds: seconds(ApprovalPath::Emergency, deps)?,
        report,
        ticket,
        change,
        plan: None,
        plan_hash: None,
        fallback_plan: None,
        fallback_plan_hash: None,
        fallback_pre_approved: false,
        expiry_before: facts.current_expiry,
        fingerprint_before,
    };
    if let (Some(cert), false) = (cert, out.report.is_blocked()) {
        plan_renewal(deps, exec, cert, trigger, now, &mut out).await?;
    }
    note_ticket(deps, exec, trigger, cert, &out).await?;
    record_outcome(deps, exec, &out).await?;
    Ok(out)
}

/// Audits the trigger as received: the first record of every execution's trail.
async fn record_trigger(deps: &Deps, exec: &str, state: &WorkflowState) -> Result<(), Error> {
    let trigger = &state.trigger;
    record_audit(
        deps,
        exec,
        AuditKind::Trigger,
        trigger.requested_by(),
        json!({"trigger": trigger, "idempotencyKey": state.idempotency_key, "receivedAt": state.received_at}),
    )
    .await?;
    Ok(())
}

/// Facts gathered through ports for the checks: what the endpoints serve now, the
/// keystore, the CA's renewal window, the targets' key types and ACME budget use. Also
/// returns the fingerprint served before the change (the scan's, else the first probed).
async fn gather_facts(
    deps: &Deps,
    trigger: &Trigger,
    cert: Option<&CertObject>,
    now: DateTime<Utc>,
) -> Result<(Facts, Option<String>), Error> {
    let mut facts = Facts {
        keystore_refs: deps.keystore.references().await?.into_iter().collect(),
        ..Facts::default()
    };
    let mut fingerprint_before = None;
    if let Trigger::Scan(s) = trigger {
        facts.current_expiry = Some(s.observed_expiry);
        fingerprint_before = s.observed_fingerprint.clone();
    }
    let Some(cert) = cert else {
        return Ok((facts, fingerprint_before));
    };
    let roots = deps.issuer.trust_anchors_pem().await.ok().flatten();
    for ep in &cert.endpoints {
        if let Ok(obs) = deps.prober.probe(ep, roots.as_deref()).await {
            for o in obs {
                if facts.current_expiry.is_none_or(|e| o.not_after < e)
                    && matches!(trigger, Trigger::Ticket(_))
                {
                    facts.current_expiry = Some(o.not_after);
                }
                fingerprint_before.get_or_insert(o.fingerprint);
            }
        }
    }
    // The CA's renewal window for the served certificate, as the scan last stored it.
    if cert.issuer.method == certops_core::RenewalMethod::Acme {
        facts.renewal_window =
            certops_core::renewal_info::load(deps.store.as_ref(), &cert.id).await?;
    }
    // Targets that cannot change their key type on re-import (ACM): what they hold.
    for target in &cert.targets {
        if let Some(name) = deps.targets.key_algorithm(target).await? {
            facts.target_key_algorithms.insert(target.id.clone(), name);
        }
    }
    if let Some(domain) = &cert.issuer.registered_domain {
        let used = deps
            .store
            .get(Table::Issuances, domain)
            .await?
            .and_then(|v| v["count"].as_u64())
            .unwrap_or(0);
        let ledger = acme_ledger_usage(deps, cert, domain, now).await?;
        let used = (used as u32).max(ledger.certificates_this_week);
        facts.recent_issuances.insert(domain.clone(), used);
        facts.acme = Some(ledger);
    }
    Ok((facts, fingerprint_before))
}

/// The ITSM record this execution works on, and its change number if it is a change: the
/// triggering ticket (which must exist), or a change opened for a scan finding, of the
/// kind the approval path calls for.
async fn itsm_record(
    deps: &Deps,
    state: &WorkflowState,
    cert: Option<&CertObject>,
    report: &ValidationReport,
) -> Result<(String, Option<String>), Error> {
    let s = match &state.trigger {
        Trigger::Ticket(t) => {
            if deps.itsm.get(&t.number).await?.is_none() {
                return Err(Error::InvalidInput(format!(
                    "ticket {} does not exist in the ITSM",
                    t.number
                )));
            }
            let change = (t.ticket_type == TicketType::Change).then(|| t.number.clone());
            return Ok((t.number.clone(), change));
        }
        Trigger::Scan(s) => s,
    };
    let path = report.approval_path;
    let runbook = deps.config.runbook.reference();
    let kind = match path {
        ApprovalPath::PreApproved => TicketKind::StandardChange,
        ApprovalPath::Emergency => TicketKind::EmergencyChange,
        ApprovalPath::Normal | ApprovalPath::Blocked => TicketKind::NormalChange,
    };
    let cn = cert
        .map(|c| c.common_name.as_str())
        .unwrap_or(s.ci.as_str());
    let t = deps
        .itsm
        .open(NewTicket {
            kind,
            short_description: format!(
                "Renew TLS certificate {cn} (expires {})",
                s.observed_expiry.format("%Y-%m-%d %H:%M UTC")
            ),
            description: format!(
                "The daily expiry scan found the certificate for CI {} expiring at {}. certops will renew it under runbook {} {}.",
                s.ci,
                s.observed_expiry.to_rfc3339(),
                runbook.id,
                runbook.version
            ),
            ci: s.ci.clone(),
            priority: if path == ApprovalPath::Emergency { 1 } else { 3 },
            correlation_id: state.idempotency_key.clone(),
            // The ITSM opens a standard change from the template of this name.
            standard_change: (kind == TicketKind::StandardChange)
                .then(|| report.standard_change.clone())
                .flatten(),
        })
        .await?;
    Ok((t.number.clone(), Some(t.number)))
}

/// For a certificate that may be renewed: takes the one-renewal-per-certificate lease,
/// builds the plan and (when a fallback certificate is provisioned) the fallback plan
/// into `out`, and records the pre-approvals of those a standard change covers.
async fn plan_renewal(
    deps: &Deps,
    exec: &str,
    cert: &CertObject,
    trigger: &Trigger,
    now: DateTime<Utc>,
    out: &mut ValidationOutput,
) -> Result<(), Error> {
    let cfg = &deps.config;
    // One active renewal per certificate: a lease owned by this execution,
    // released when it ends by any path, taken over once expired.
    certops_core::lease::acquire(deps.store.as_ref(), &cert.id, exec, now).await?;
    let trigger_ticket = trigger.ticket_number();
    let plan = Plan::build(
        cfg.runbook.reference(),
        cert,
        &out.report,
        trigger_ticket,
        out.change.as_deref(),
    )?
    .with_connections(&cfg.inventory);
    out.plan_hash = Some(plan.hash());
    if out.path == ApprovalPath::PreApproved {
        record_pre_approval(deps, exec, cert, &plan.hash(), plan.use_fallback).await?;
    }
    out.plan = Some(plan);
    if cert.fallback_cert.is_some() {
        let fb_path = fallback_path(cfg, cert, true);
        out.fallback_pre_approved = fb_path == Some(ApprovalPath::PreApproved);
        let fb = Plan::build(
            cfg.runbook.reference(),
            cert,
            &report_for(&out.report, fb_path),
            trigger_ticket,
            out.change.as_deref(),
        )?
        .with_connections(&cfg.inventory);
        out.fallback_plan_hash = Some(fb.hash());
        if out.fallback_pre_approved {
            record_pre_approval(deps, exec, cert, &fb.hash(), true).await?;
        }
        out.fallback_plan = Some(fb);
    }
    Ok(())
}

/// Writes the validation to the ticket: every check with its reason, the plan hash, and
/// for a ticket trigger the endpoints and remediation; the ticket moves to Assess unless
/// the change is blocked.
async fn note_ticket(
    deps: &Deps,
    exec: &str,
    trigger: &Trigger,
    cert: Option<&CertObject>,
    out: &ValidationOutput,
) -> Result<(), Error> {
    let report = &out.report;
    let checks: Vec<String> = report
        .checks
        .iter()
        .map(|c| format!("[{:?}] {:?}: {}", c.status, c.name, c.reason))
        .collect();
    let mut note = format!(
        "certops validation ({}), policy {}: path {}\n{}",
        exec,
        report.policy_version,
        out.path.as_str(),
        checks.join("\n")
    );
    if let Some(h) = &out.plan_hash {
        note.push_str(&format!("\nPlan hash (what approvers approve): {h}"));
    }
    if let (Trigger::Ticket(_), Some(cert)) = (trigger, cert) {
        let endpoints: Vec<String> = cert
            .endpoints
            .iter()
            .map(|e| format!("{}:{} (SNI {})", e.host, e.port, e.sni))
            .collect();
        note.push_str(&format!(
            "\nEndpoints: {}\nCurrent expiry: {}\nRemediation: renew via {} ({}), deploy to {} target(s), reload, purge CDN, verify from outside; fallback certificate {}.",
            endpoints.join(", "),
            out.expiry_before.map(|e| e.to_rfc3339()).unwrap_or_else(|| "unknown".into()),
            cert.issuer.name,
            cert.issuer.method.as_str(),
            cert.targets.len(),
            if cert.fallback_cert.is_some() { "available" } else { "not provisioned" }
        ));
    }
    let state_now = if report.is_blocked() {
        None
    } else {
        Some(TicketState::Assess)
    };
    deps.itsm
        .update(
            &out.ticket,
            ACTOR,
            TicketUpdate {
                state: state_now,
                work_note: Some(note),
                ..TicketUpdate::default()
            },
        )
        .await?;
    Ok(())
}

/// Audits the validation report and, when there is one, the plan with its hashes.
async fn record_outcome(deps: &Deps, exec: &str, out: &ValidationOutput) -> Result<(), Error> {
    record_audit(
        deps,
        exec,
        AuditKind::Validation,
        ACTOR,
        json!({"report": out.report, "ticket": out.ticket}),
    )
    .await?;
    if let Some(plan) = &out.plan {
        record_audit(
            deps,
            exec,
            AuditKind::Plan,
            ACTOR,
            json!({"planHash": out.plan_hash, "plan": plan, "fallbackPlanHash": out.fallback_plan_hash}),
        )
        .await?;
    }
    Ok(())
}

/// The ACME rate-limit ledger's counts for `cert` (issue 14); the legacy per-domain counter
/// above stays a floor for the certificates-per-domain count.
async fn acme_ledger_usage(
    deps: &Deps,
    cert: &CertObject,
    domain: &str,
    now: DateTime<Utc>,
) -> Result<certops_core::acme_ledger::AcmeUsage, Error> {
    let mut names = vec![cert.common_name.clone()];
    names.extend(cert.sans.iter().cloned());
    certops_core::acme_ledger::usage(deps.store.as_ref(), domain, &cert.issuer.name, &names, now)
        .await
}

/// Records a policy pre-approval (standard change) in the Store, so the
/// executing steps find the same kind of approval record on every path.
async fn record_pre_approval(
    deps: &Deps,
    exec: &str,
    cert: &CertObject,
    plan_hash: &str,
    use_fallback: bool,
) -> Result<(), Error> {
    let Some(rule) = deps.config.policy.standard_change_for(cert, use_fallback) else {
        return Err(Error::InvalidInput(format!(
            "{} was routed as pre-approved but no standard change covers it",
            cert.id
        )));
    };
    let id = certops_core::approval_id(exec, plan_hash);
    let record = certops_core::workflow::pre_approval_record(exec, &cert.id, plan_hash, &rule.name);
    deps.store
        .put_if_absent(Table::Approvals, &id, &record)
        .await?;
    Ok(())
}

#[cfg(test)]
mod test_world;

#[cfg(test)]
mod tests;
