//! `validate` against the embedded adapters: the world's certificate object served on
//! 127.0.0.1, scan findings and tickets as the intake step hands them over.

use super::*;
use crate::test_world::{Env, World, CERT_ID, CN};
use certops_core::ports::Table;

#[tokio::test]
async fn a_finding_a_standard_change_covers_is_planned_pre_approved_and_locked() {
    let w = World::new(Env::Dev).await;
    let out = handle(&w.deps, w.scan_event("exec-1")).await.unwrap();

    assert_eq!(out.path, ApprovalPath::PreApproved);
    assert_eq!(out.report.cert_id.as_deref(), Some(CERT_ID));
    assert_eq!(out.expiry_before, Some(w.expiry));
    assert_eq!(
        out.fingerprint_before.as_deref(),
        Some(w.initial_fingerprint.as_str())
    );
    // The plan and its hash, and the fallback plan, each with a pre-approval in the Store.
    let plan = out.plan.as_ref().unwrap();
    let hash = out.plan_hash.as_deref().unwrap();
    assert_eq!(plan.hash(), hash);
    assert_eq!(plan.common_name, CN);
    assert!(out.fallback_pre_approved);
    let fb_hash = out.fallback_plan_hash.as_deref().unwrap();
    assert_ne!(fb_hash, hash);
    for h in [hash, fb_hash] {
        let id = certops_core::approval_id("exec-1", h);
        let record = w
            .deps
            .store
            .get(Table::Approvals, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record["status"], "approved", "{record}");
        assert_eq!(record["preApproved"], true, "{record}");
    }
    // A scan opens a standard change, noted with the checks and the plan hash.
    let ticket = w.deps.itsm.get(&out.ticket).await.unwrap().unwrap();
    assert_eq!(ticket.kind, TicketKind::StandardChange);
    assert_eq!(ticket.state, TicketState::Assess);
    assert_eq!(out.change.as_deref(), Some(out.ticket.as_str()));
    let notes = w.work_notes(&out.ticket).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("path pre-approved") && n.contains(hash)),
        "{notes:?}"
    );
    // The trail: trigger, validation, plan.
    let kinds: Vec<AuditKind> = w.audit("exec-1").await.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [AuditKind::Trigger, AuditKind::Validation, AuditKind::Plan]
    );
    // Approval timeouts: the policy's standard and emergency minutes plus the grace.
    let grace = certops_core::approval::TASK_TIMEOUT_GRACE_SECONDS;
    assert_eq!(out.approval_timeout_seconds, 3600 + grace);
    assert_eq!(out.fallback_approval_timeout_seconds, 300 + grace);
}

#[tokio::test]
async fn one_renewal_per_certificate_a_second_execution_meets_the_lock() {
    let w = World::new(Env::Dev).await;
    handle(&w.deps, w.scan_event("exec-1")).await.unwrap();
    let err = handle(&w.deps, w.scan_event("exec-2")).await.unwrap_err();
    assert_eq!(err.name(), "Conflict", "{err}");
    assert!(err.to_string().contains(CERT_ID), "{err}");
}

#[tokio::test]
async fn a_production_finding_needs_a_normal_change_and_records_no_approval() {
    let w = World::new(Env::Prod).await;
    let out = handle(&w.deps, w.scan_event("exec-1")).await.unwrap();
    assert_eq!(out.path, ApprovalPath::Normal);
    assert!(!out.fallback_pre_approved);
    let hash = out.plan_hash.as_deref().unwrap();
    let id = certops_core::approval_id("exec-1", hash);
    assert_eq!(w.deps.store.get(Table::Approvals, &id).await.unwrap(), None);
    let ticket = w.deps.itsm.get(&out.ticket).await.unwrap().unwrap();
    assert_eq!(ticket.kind, TicketKind::NormalChange);
    assert_eq!(
        out.approval_timeout_seconds,
        300 + certops_core::approval::TASK_TIMEOUT_GRACE_SECONDS
    );
}

#[tokio::test]
async fn an_unknown_ci_is_blocked_with_reasons_and_plans_nothing() {
    let w = World::new(Env::Dev).await;
    let mut event = w.scan_event("exec-1");
    if let Trigger::Scan(s) = &mut event.state.trigger {
        s.ci = "no-such-ci".into();
    }
    let out = handle(&w.deps, event).await.unwrap();
    assert_eq!(out.path, ApprovalPath::Blocked);
    assert!(out.report.is_blocked());
    assert!(out.report.failures().next().is_some());
    assert!(out.plan.is_none() && out.plan_hash.is_none() && out.fallback_plan.is_none());
    // Still a change to say so, left where it was (not Assess).
    let ticket = w.deps.itsm.get(&out.ticket).await.unwrap().unwrap();
    assert_ne!(ticket.state, TicketState::Assess);
    assert!(w
        .work_notes(&out.ticket)
        .await
        .iter()
        .any(|n| n.contains("path blocked")));
    // No lock was taken: the known certificate can still be validated.
    handle(&w.deps, w.scan_event("exec-2")).await.unwrap();
    let kinds: Vec<AuditKind> = w.audit("exec-1").await.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [AuditKind::Trigger, AuditKind::Validation]);
}

#[tokio::test]
async fn a_ticket_is_enriched_with_the_probed_endpoint_and_expiry() {
    let w = World::new(Env::Prod).await;
    let trigger = w.incident(CERT_ID, "sam@example.com").await;
    let number = trigger.ticket_number().unwrap().to_string();
    let out = handle(&w.deps, w.event_for("exec-1", trigger))
        .await
        .unwrap();
    assert_eq!(out.ticket, number);
    assert_eq!(out.change, None, "an incident is no change");
    // What the endpoint serves, probed from outside.
    assert_eq!(out.expiry_before, Some(w.expiry));
    assert_eq!(
        out.fingerprint_before.as_deref(),
        Some(w.initial_fingerprint.as_str())
    );
    let notes = w.work_notes(&number).await;
    let note = notes.last().unwrap();
    assert!(note.contains(&format!("(SNI {CN})")), "{note}");
    assert!(note.contains(&w.expiry.to_rfc3339()), "{note}");
    assert!(note.contains("fallback certificate available"), "{note}");
    assert_eq!(
        out.path,
        ApprovalPath::Normal,
        "{:?}",
        out.report.failures().collect::<Vec<_>>()
    );
    let ticket = w.deps.itsm.get(&number).await.unwrap().unwrap();
    assert_eq!(ticket.state, TicketState::Assess);
}

#[tokio::test]
async fn a_ticket_the_itsm_does_not_know_is_invalid_input() {
    let w = World::new(Env::Prod).await;
    let trigger = w.incident(CERT_ID, "sam@example.com").await;
    let mut event = w.event_for("exec-1", trigger);
    if let Trigger::Ticket(t) = &mut event.state.trigger {
        t.number = "INC0999999".into();
    }
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("INC0999999"), "{err}");
    // Nothing was planned or locked: only the trigger is on the trail.
    let kinds: Vec<AuditKind> = w.audit("exec-1").await.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [AuditKind::Trigger]);
    assert_eq!(w.deps.store.get(Table::Locks, CERT_ID).await.unwrap(), None);
}

#[tokio::test]
async fn a_ticket_stating_another_environment_is_blocked_not_guessed() {
    let w = World::new(Env::Prod).await;
    let mut trigger = w.incident(CERT_ID, "sam@example.com").await;
    if let Trigger::Ticket(t) = &mut trigger {
        t.environment = Some("dev".into());
    }
    let number = trigger.ticket_number().unwrap().to_string();
    let out = handle(&w.deps, w.event_for("exec-1", trigger))
        .await
        .unwrap();
    assert_eq!(out.path, ApprovalPath::Blocked);
    let reasons: Vec<String> = out.report.failures().map(|c| c.reason.clone()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("environment mismatch")),
        "{reasons:?}"
    );
    assert!(out.plan.is_none());
    assert_eq!(w.deps.store.get(Table::Locks, CERT_ID).await.unwrap(), None);
    let ticket = w.deps.itsm.get(&number).await.unwrap().unwrap();
    assert_ne!(ticket.state, TicketState::Assess);
}
