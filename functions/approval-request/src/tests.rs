//! `approval-request` against the embedded adapters: a real waiting task on the local
//! engine, the local chat inbox, the sealed token in the Store.

use super::*;
use crate::test_world::{Env, World, APPROVER};

#[tokio::test]
async fn a_normal_change_gets_a_card_bound_to_the_plan_hash_and_the_token_sealed() {
    let w = World::new(Env::Prod).await;
    let mut event = w.validated("exec-1").await;
    let (_, token) = w.waiting_task("exec-1").await;
    event.task_token = Some(token.clone());
    let v = event.state.validation.clone().unwrap();
    let hash = v.plan_hash.clone().unwrap();

    let out = handle(&w.deps, event).await.unwrap();
    assert_eq!(out.approval_id, approval_id("exec-1", &hash));
    // The card: the plan hash, the change authority, never the token.
    let card = w.adapters.chat.card(&out.approval_id).unwrap().unwrap();
    assert_eq!(card.plan_hash, hash);
    assert_eq!(card.ticket, v.ticket);
    assert_eq!(card.path, "normal");
    assert!(
        card.approvers.iter().any(|a| a == APPROVER),
        "{:?}",
        card.approvers
    );
    assert_eq!(
        card.requested_by,
        certops_core::validation::SCANNER_IDENTITY
    );
    assert!(!serde_json::to_string(&card).unwrap().contains(&token));
    // The record: pending, the token sealed (not in clear), every part delivered.
    let record = w.approval(&out.approval_id).await;
    assert_eq!(record["status"], "pending");
    assert!(!record.to_string().contains(&token));
    let sealed = record["sealedToken"].as_str().unwrap();
    assert_eq!(w.deps.sealer.open(sealed).unwrap(), token);
    assert_eq!(record["delivered"], json!({"note": true, "audit": true}));
    let notes = w.work_notes(&v.ticket).await;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with(&format!("Approval {} requested", out.approval_id))),
        "{notes:?}"
    );
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(
        (last.kind, last.summary["requested"].clone()),
        (AuditKind::Approval, json!(out.approval_id))
    );
}

#[tokio::test]
async fn a_retried_request_takes_the_new_token_without_repeating_note_or_audit() {
    let w = World::new(Env::Prod).await;
    let mut event = w.validated("exec-1").await;
    let (_, first) = w.waiting_task("exec-1").await;
    let (_, second) = w.waiting_task("exec-1-retry").await;
    event.task_token = Some(first);
    let a = handle(&w.deps, event.clone()).await.unwrap();
    event.task_token = Some(second.clone());
    let b = handle(&w.deps, event.clone()).await.unwrap();
    assert_eq!(a, b);
    let record = w.approval(&a.approval_id).await;
    assert_eq!(
        w.deps
            .sealer
            .open(record["sealedToken"].as_str().unwrap())
            .unwrap(),
        second
    );
    let ticket = &event.state.validation.as_ref().unwrap().ticket;
    let requested = |n: &&String| n.starts_with("Approval ");
    assert_eq!(
        w.work_notes(ticket).await.iter().filter(requested).count(),
        1
    );
    let audited = w
        .audit("exec-1")
        .await
        .into_iter()
        .filter(|r| r.summary.get("requested").is_some())
        .count();
    assert_eq!(audited, 1);
    assert_eq!(w.adapters.chat.pending_cards().unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_task_token_is_invalid_input() {
    let w = World::new(Env::Prod).await;
    let event = w.validated("exec-1").await;
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("task token"), "{err}");
    assert!(w.adapters.chat.pending_cards().unwrap().is_empty());
}

#[tokio::test]
async fn a_blocked_execution_has_no_plan_to_approve() {
    let w = World::new(Env::Prod).await;
    let mut event = w.scan_event("exec-1");
    if let certops_core::Trigger::Scan(s) = &mut event.state.trigger {
        s.ci = "no-such-ci".into();
    }
    event.state.validation = Some(
        certops_fn_validate::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    event.task_token = Some("token".into());
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("no plan to approve"), "{err}");
    assert!(w.adapters.chat.pending_cards().unwrap().is_empty());
}
