//! The six demo scenarios, one function each: a planned renewal, an expired certificate
//! (P1), ACME rate limiting, a rollback, a failing CDN purge and an unknown CI.

use super::checks::*;
use super::world::*;
use super::ScenarioResult;
use crate::prober::TlsProber;
use crate::stack::Stack;
use certops_adapters::{IssuerFault, TargetFault};
use certops_core::ports::{NewTicket, TicketKind};
use certops_core::workflow::{leaf_facts, WorkflowState};
use certops_core::{Endpoint, Error};
use serde_json::json;
use std::time::Duration;

pub(super) async fn planned_renewal(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
) -> ScenarioResult {
    let mut run = Run::new("1. Cert expires in 7 days", "scan finds it; change opened; service owner approves; renewed via internal PKI; deployed to the load balancer; verified; change closed with evidence");
    let before = served(stack, prober, ep).await;
    let result = scan_and_run(stack, prober, ep, "shop-web-prod", Some(OWNER)).await;
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    run.expect("status", Some(run.r.status.clone()), "SUCCEEDED");
    run.expect("ticket state", run.r.ticket_state.clone(), "Closed");
    run.expect("approver", run.r.approver.clone(), OWNER);
    run.check(
        before.as_ref().map(|b| &b.0) != run.r.served_fingerprint.as_ref(),
        "the endpoint still serves the old certificate",
    );
    run.check(
        run.r.expiry_after > run.r.expiry_before,
        "expiry did not move forward",
    );
    run.finish()
}

pub(super) async fn expired_incident(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
) -> ScenarioResult {
    let mut run = Run::new("2. Cert already expired", "P1 incident enriched; ECAB approves; fallback certificate deployed, reloaded, CDN purged, verified; incident resolved");
    let result = async {
        let inc = stack
            .deps
            .itsm
            .open(NewTicket { kind: TicketKind::Incident, short_description: "pay.example.com: connection not private".into(), description: "Users report certificate errors on pay.example.com".into(), ci: "pay-api-prod".into(), priority: 1, correlation_id: "servicenow-INC-pay".into(), standard_change: None })
            .await?;
        let payload = json!({"number": inc.number, "sys_id": "6f1c2a", "sys_class_name": "incident", "category": "Certificate",
            "cmdb_ci": {"display_value": "pay-api-prod"}, "u_environment": "prod", "opened_by": {"display_value": "sam@example.com"}, "priority": "1"});
        let trigger = certops_fn_intake::trigger_from_servicenow(&payload)?;
        let started = stack.trigger(trigger).await?;
        approve(stack, &started.execution, ECAB).await?;
        stack.wait(&started.execution, Duration::from_secs(120)).await?;
        Ok::<_, Error>(started.execution)
    }
    .await;
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    let fallback_fp = match stack
        .deps
        .keystore
        .get_bundle("keystore:fallback/pay-api-prod")
        .await
    {
        Ok(b) => leaf_facts(&b.chain_pem).ok().map(|f| f.fingerprint),
        Err(_) => None,
    };
    run.expect("status", Some(run.r.status.clone()), "SUCCEEDED");
    run.expect("path", run.r.path.clone(), "emergency");
    run.expect("approver", run.r.approver.clone(), ECAB);
    run.check(
        run.r.served_fingerprint.is_some() && run.r.served_fingerprint == fallback_fp,
        "the fallback certificate is not served",
    );
    run.expect("ticket state", run.r.ticket_state.clone(), "Resolved");
    if let Some(t) = run.r.ticket.clone() {
        let notes = stack
            .deps
            .itsm
            .get(&t)
            .await
            .ok()
            .flatten()
            .map(|t| t.work_notes)
            .unwrap_or_default();
        run.check(
            notes
                .iter()
                .any(|n| n.text.contains("Remediation") && n.text.contains("Current expiry")),
            "incident not enriched with endpoint, expiry and remediation",
        );
    }
    run.finish()
}

pub(super) async fn rate_limited(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
) -> ScenarioResult {
    let mut run = Run::new("3. ACME rate-limited", "pre-approved standard change; issuer rate-limits; fallback certificate (covered by the standard change) deployed and verified; change closed");
    stack
        .adapters
        .ca
        .set_fault("api-staging", Some(IssuerFault::RateLimited));
    let result = scan_and_run(stack, prober, ep, "api-staging", None).await;
    stack.adapters.ca.set_fault("api-staging", None);
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    let state = stack
        .engine
        .describe_execution(&exec)
        .ok()
        .and_then(|i| i.output)
        .and_then(|o| serde_json::from_value::<WorkflowState>(o).ok());
    run.expect("status", Some(run.r.status.clone()), "SUCCEEDED");
    run.expect("path", run.r.path.clone(), "pre-approved");
    run.check(
        state
            .as_ref()
            .and_then(|s| s.renew_error.as_ref())
            .map(|e| e.error.as_str())
            == Some("RateLimited"),
        "renewal was not rate-limited",
    );
    run.check(
        state
            .as_ref()
            .and_then(|s| s.renewal.as_ref())
            .map(|r| r.source.as_str())
            == Some("fallback"),
        "the fallback certificate was not used",
    );
    run.expect("ticket state", run.r.ticket_state.clone(), "Closed");
    run.finish()
}

pub(super) async fn rolled_back(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
) -> ScenarioResult {
    let mut run = Run::new("4. Deploy ok, verification fails", "the load balancer keeps serving the old certificate after reload; verification fails; rollback restores last-known-good; the old certificate is served again");
    let before = served(stack, prober, ep).await;
    stack
        .adapters
        .endpoints
        .set_fault("lb-cart-web-prod", Some(TargetFault::IgnoresReload));
    let result = scan_and_run(stack, prober, ep, "cart-web-prod", Some(CAB)).await;
    stack.adapters.endpoints.set_fault("lb-cart-web-prod", None);
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    run.expect("status", Some(run.r.status.clone()), "FAILED (RolledBack)");
    run.check(
        before.as_ref().map(|b| &b.0) == run.r.served_fingerprint.as_ref(),
        "the old certificate is not served after rollback",
    );
    run.expect("ticket state", run.r.ticket_state.clone(), "Canceled");
    run.finish()
}

pub(super) async fn purge_failing(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
) -> ScenarioResult {
    let mut run = Run::new("5. CDN purge keeps failing", "renewed and deployed; purge retried then given up; on-call notified; ticket Mitigating; verification still runs and passes");
    stack.adapters.cdn.set_failing("cdn-media-web-prod", true);
    let notes_before = stack
        .adapters
        .chat
        .notifications()
        .map(|n| n.len())
        .unwrap_or(0);
    let result = scan_and_run(stack, prober, ep, "media-web-prod", Some(OWNER)).await;
    stack.adapters.cdn.set_failing("cdn-media-web-prod", false);
    let exec = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    collect(stack, &mut run, &exec, prober, ep).await;
    let notes_after = stack
        .adapters
        .chat
        .notifications()
        .map(|n| n.len())
        .unwrap_or(0);
    run.expect("status", Some(run.r.status.clone()), "SUCCEEDED");
    run.expect("ticket state", run.r.ticket_state.clone(), "Mitigating");
    run.check(notes_after > notes_before, "on-call was not notified");
    run.finish()
}

pub(super) async fn unknown_ci(stack: &Stack, endpoints: &[Endpoint]) -> ScenarioResult {
    let mut run = Run::new(
        "6. CI maps to no known certificate",
        "blocked with reasons; nothing renewed, deployed or purged",
    );
    let refs_before = stack
        .deps
        .keystore
        .references()
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    let served_before: Vec<_> = served_fingerprints(stack, endpoints).await;
    let result = async {
        let inc = stack
            .deps
            .itsm
            .open(NewTicket { kind: TicketKind::Incident, short_description: "billing.example.com certificate warning".into(), description: "Browser warning on the legacy billing portal".into(), ci: "legacy-billing-prod".into(), priority: 2, correlation_id: "servicenow-INC-billing".into(), standard_change: None })
            .await?;
        let payload = json!({"number": inc.number, "sys_id": "9a0b77", "sys_class_name": "incident", "category": "Certificate",
            "cmdb_ci": "legacy-billing-prod", "u_environment": "prod", "opened_by": "sam@example.com", "priority": "2"});
        let started = stack.trigger(certops_fn_intake::trigger_from_servicenow(&payload)?).await?;
        stack.wait(&started.execution, Duration::from_secs(60)).await?;
        Ok::<_, Error>((started.execution, inc.number))
    }
    .await;
    let (exec, number) = match result {
        Ok(e) => e,
        Err(e) => return run.fail(e),
    };
    run.r.execution = Some(exec.clone());
    run.r.ticket = Some(number.clone());
    if let Ok(info) = stack.engine.describe_execution(&exec) {
        run.r.status = format!(
            "{} ({})",
            info.status.as_str(),
            info.error.unwrap_or_default()
        );
    }
    run.r.path = Some("blocked".into());
    run.r.ticket_state = ticket_state(stack, Some(&number))
        .await
        .map(|s| format!("{s:?}"));
    let refs_after = stack
        .deps
        .keystore
        .references()
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    let served_after: Vec<_> = served_fingerprints(stack, endpoints).await;
    run.expect("status", Some(run.r.status.clone()), "FAILED (Blocked)");
    run.check(refs_after == refs_before, "a certificate was issued");
    run.check(served_after == served_before, "an endpoint changed");
    let notes = stack
        .deps
        .itsm
        .get(&number)
        .await
        .ok()
        .flatten()
        .map(|t| t.work_notes)
        .unwrap_or_default();
    run.check(
        notes.iter().any(|n| n.text.contains("blocked")),
        "the ticket does not say why it was blocked",
    );
    run.finish()
}
