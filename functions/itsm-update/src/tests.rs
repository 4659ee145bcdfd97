//! `itsm-update` against the embedded adapters: states produced by the real upstream
//! steps (validate, renew, deploy, purge, verify) in the embedded world.

use super::*;
use crate::test_world::{Env, World, APPROVER, CERT_ID, ONCALL};
use certops_core::ports::Table;
use certops_core::workflow::{ApprovalOutcome, CaughtError};

#[path = "../../deploy/src/test_deployed.rs"]
mod test_deployed;
use test_deployed::deployed;

fn with_action(mut event: StepEvent, action: &str) -> StepEvent {
    event.action = Some(action.to_string());
    event
}

async fn lock_holder(w: &World) -> Option<Value> {
    w.deps
        .store
        .get(Table::Locks, CERT_ID)
        .await
        .unwrap()
        .map(|l| l["execution"].clone())
}

#[test]
fn every_action_the_definition_sends_is_an_action() {
    let definition: Value =
        serde_json::from_str(include_str!("../../../statemachines/cert-renewal.asl.json")).unwrap();
    let mut names = std::collections::BTreeSet::new();
    let mut stack = vec![&definition];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(a)) = m.get("action") {
                    names.insert(a.clone());
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    assert_eq!(names.len(), 9, "{names:?}");
    for name in names {
        let event = StepEvent {
            execution: "e".into(),
            action: Some(name.clone()),
            mode: None,
            task_token: None,
            state: serde_json::from_value(json!({"trigger": {"source": "scan", "ci": "c",
                "observed_expiry": "2026-12-24T00:00:00Z"}, "idempotencyKey": "k",
                "receivedAt": "2026-12-07T00:00:00Z"}))
            .unwrap(),
        };
        let action = Action::from_event(&event).unwrap();
        // Recorded under the same name it arrived with.
        assert_eq!(json!(action), json!(name));
    }
}

#[tokio::test]
async fn an_unknown_or_missing_action_is_invalid_input_and_writes_nothing() {
    let w = World::new(Env::Dev).await;
    let event = w.validated("exec-1").await;
    let notes = w
        .work_notes(&event.state.validation.as_ref().unwrap().ticket)
        .await;
    let trail = w.audit("exec-1").await.len();

    let err = handle(&w.deps, with_action(event.clone(), "reopen"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(
        err.to_string()
            .contains("unknown itsm-update action 'reopen'"),
        "{err}"
    );
    let err = handle(&w.deps, event.clone()).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("needs an action"), "{err}");

    let ticket = &event.state.validation.as_ref().unwrap().ticket;
    assert_eq!(w.work_notes(ticket).await, notes);
    assert_eq!(w.audit("exec-1").await.len(), trail);
    assert_eq!(lock_holder(&w).await, Some(json!("exec-1")));
}

#[tokio::test]
async fn blocked_cancels_the_change_with_the_reasons() {
    let w = World::new(Env::Dev).await;
    let mut event = w.scan_event("exec-1");
    if let certops_core::Trigger::Scan(s) = &mut event.state.trigger {
        s.ci = "no-such-ci".into();
    }
    event.state.validation = Some(
        certops_fn_validate::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    let out = handle(&w.deps, with_action(event.clone(), "blocked"))
        .await
        .unwrap();
    let number = event.state.validation.as_ref().unwrap().ticket.clone();
    assert_eq!(out["action"], "blocked");
    assert_eq!(out["ticket"], json!(number));
    let ticket = w.deps.itsm.get(&number).await.unwrap().unwrap();
    assert_eq!(ticket.state, TicketState::Canceled);
    let note = ticket.work_notes.last().unwrap();
    assert!(
        note.text.starts_with("certops blocked this change"),
        "{}",
        note.text
    );
    assert!(note.text.contains("no-such-ci"), "{}", note.text);
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.kind, AuditKind::Outcome);
    assert_eq!(last.summary["outcome"], "blocked");
}

#[tokio::test]
async fn approved_records_who_and_when_and_keeps_the_lock() {
    let w = World::new(Env::Prod).await;
    let mut event = w.validated("exec-1").await;
    let v = event.state.validation.clone().unwrap();
    let decided_at = w.deps.clock.now();
    event.state.approval = Some(ApprovalOutcome {
        approval_id: certops_core::approval_id("exec-1", v.plan_hash.as_deref().unwrap()),
        approver: APPROVER.into(),
        decided_at,
        plan_hash: v.plan_hash.clone().unwrap(),
        comment: Some("go".into()),
    });
    let out = handle(&w.deps, with_action(event, "approved"))
        .await
        .unwrap();
    assert_eq!(out["state"], json!(TicketState::Scheduled));
    let ticket = w.deps.itsm.get(&v.ticket).await.unwrap().unwrap();
    assert_eq!(ticket.approved_by.as_deref(), Some(APPROVER));
    assert_eq!(ticket.approved_at, Some(decided_at));
    assert!(ticket.work_notes.last().unwrap().text.ends_with(": go."));
    // Not the end of the execution: an action, and the lock stays.
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(
        (last.kind, last.summary["outcome"].clone()),
        (AuditKind::Action, json!("approved"))
    );
    assert_eq!(lock_holder(&w).await, Some(json!("exec-1")));
}

#[tokio::test]
async fn approved_with_no_approval_in_the_state_is_invalid_input() {
    let w = World::new(Env::Prod).await;
    let event = w.validated("exec-1").await;
    let err = handle(&w.deps, with_action(event, "approved"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("no approval"), "{err}");
}

#[tokio::test]
async fn mitigating_tells_the_escalation_on_call_and_keeps_the_lock() {
    let w = World::new(Env::Dev).await;
    let mut event = w.validated("exec-1").await;
    event.state.purge_error = Some(CaughtError {
        error: "PurgeFailed".into(),
        cause: "cdn down".into(),
    });
    let out = handle(&w.deps, with_action(event, "mitigating"))
        .await
        .unwrap();
    assert_eq!(out["state"], json!(TicketState::Mitigating));
    let sent = w.adapters.chat.notifications().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, ONCALL);
    assert!(
        sent[0].text.contains("PurgeFailed: cdn down"),
        "{}",
        sent[0].text
    );
    assert_eq!(lock_holder(&w).await, Some(json!("exec-1")));
}

#[tokio::test]
async fn rollback_failed_asks_on_call_for_manual_action_and_ends_the_run() {
    let w = World::new(Env::Dev).await;
    let mut event = w.validated("exec-1").await;
    event.state.rollback_error = Some(CaughtError {
        error: "RollbackFailed".into(),
        cause: "lb-shop: reload refused".into(),
    });
    handle(&w.deps, with_action(event, "rollback-failed"))
        .await
        .unwrap();
    let sent = w.adapters.chat.notifications().unwrap();
    assert!(sent[0]
        .text
        .contains("ROLLBACK FAILED (RollbackFailed: lb-shop: reload refused)"));
    assert_eq!(
        lock_holder(&w).await,
        None,
        "a terminal action releases the lock"
    );
}

#[tokio::test]
async fn close_attaches_the_evidence_closes_the_change_and_releases_the_lock() {
    let w = World::new(Env::Dev).await;
    let mut event = deployed(&w, "exec-1").await;
    event.state.purge = Some(
        certops_fn_purge::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    event.state.verification = Some(
        certops_fn_verify::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    let renewal = event.state.renewal.clone().unwrap();
    let number = event.state.validation.as_ref().unwrap().ticket.clone();

    let out = handle(&w.deps, with_action(event, "close")).await.unwrap();
    assert_eq!(out["state"], json!(TicketState::Closed));
    let ticket = w.deps.itsm.get(&number).await.unwrap().unwrap();
    let evidence = &ticket
        .attachments
        .iter()
        .find(|a| a.name == "evidence.json")
        .unwrap()
        .content;
    assert_eq!(evidence["servedFingerprint"], json!(renewal.fingerprint));
    assert_eq!(evidence["expiryAfter"], json!(renewal.not_after));
    assert_eq!(evidence["expiryBefore"], json!(w.expiry));
    assert_eq!(evidence["fingerprintBefore"], json!(w.initial_fingerprint));
    assert_eq!(evidence["targets"], json!([crate::test_world::TARGET]));
    // The chain head it names is the trail as it stood before the outcome was recorded.
    let trail = w.audit("exec-1").await;
    let head = &trail[trail.len() - 2];
    assert_eq!(evidence["auditChainHead"]["hash"], json!(head.hash));
    assert_eq!(trail.last().unwrap().summary["outcome"], "succeeded");
    assert_eq!(lock_holder(&w).await, None);
}

#[tokio::test]
async fn release_lock_writes_no_ticket_and_audits_the_recording_failure() {
    let w = World::new(Env::Dev).await;
    let mut event = w.validated("exec-1").await;
    event.state.records =
        Some(json!({"recordError": {"Error": "Transient", "Cause": "itsm down"}}));
    let number = event.state.validation.as_ref().unwrap().ticket.clone();
    let notes = w.work_notes(&number).await;
    let out = handle(&w.deps, with_action(event, "release-lock"))
        .await
        .unwrap();
    assert_eq!(out, json!({"action": "release-lock", "released": true}));
    assert_eq!(lock_holder(&w).await, None);
    assert_eq!(w.work_notes(&number).await, notes);
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["outcome"], "recording-failed");
    assert_eq!(last.summary["error"]["Cause"], "itsm down");
}

#[tokio::test]
async fn a_ticket_the_itsm_no_longer_has_is_audited_before_the_error() {
    let w = World::new(Env::Dev).await;
    let mut event = w.validated("exec-1").await;
    if let Some(v) = event.state.validation.as_mut() {
        v.ticket = "CHG0099999".into();
    }
    let err = handle(&w.deps, with_action(event, "failed"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "NotFound");
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["outcome"], "itsm-update-failed");
    assert_eq!(last.summary["error"], "NotFound");
    assert_eq!(
        lock_holder(&w).await,
        Some(json!("exec-1")),
        "the run fails; the engine releases it"
    );
}
