//! `deploy` against the embedded adapters: the in-process TLS endpoint is the target;
//! the plan, approval and bundle come from the real `validate` and `renew` steps.

use super::*;
use crate::test_world::{Env, World, TARGET};
use certops_adapters::TargetFault;
use certops_core::ports::{Table, TicketState};
use certops_core::workflow::ApprovalOutcome;

/// A validated and renewed execution `exec` of the world's certificate.
async fn renewed(w: &World, exec: &str) -> StepEvent {
    let mut event = w.validated(exec).await;
    event.state.renewal = Some(
        certops_fn_renew::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    event
}

#[tokio::test]
async fn the_bundle_is_installed_after_the_last_known_good_is_snapshotted() {
    let w = World::new(Env::Dev).await;
    let event = renewed(&w, "exec-1").await;
    let served_before = w.adapters.endpoints.installed(TARGET).unwrap();
    let renewal = event.state.renewal.clone().unwrap();
    let out = handle(&w.deps, event.clone()).await.unwrap();

    assert_eq!(out.bundle_ref, renewal.bundle_ref);
    assert_eq!(out.targets.len(), 1);
    assert_eq!(out.targets[0].target.id, TARGET);
    assert_eq!(
        out.targets[0].last_known_good.as_ref(),
        Some(&served_before)
    );
    assert!(out.targets[0].deployed);
    assert_eq!(
        w.adapters.endpoints.installed(TARGET),
        Some(renewal.bundle_ref.clone())
    );
    let snapshot = w
        .deps
        .store
        .get(Table::Deployments, &snapshot_key("exec-1", TARGET))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot["lastKnownGood"], json!(served_before));
    // The ticket is in implementation, with what was deployed where.
    let ticket = event.state.validation.as_ref().unwrap().ticket.clone();
    let t = w.deps.itsm.get(&ticket).await.unwrap().unwrap();
    assert_eq!(t.state, TicketState::Implement);
    assert!(t
        .work_notes
        .last()
        .unwrap()
        .text
        .contains(&renewal.bundle_ref));
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["action"], "deploy+reload");
    assert_eq!(last.summary["result"], "ok");
}

#[tokio::test]
async fn a_retry_keeps_the_first_snapshot() {
    let w = World::new(Env::Dev).await;
    let event = renewed(&w, "exec-1").await;
    let served_before = w.adapters.endpoints.installed(TARGET).unwrap();
    handle(&w.deps, event.clone()).await.unwrap();
    // Run again: the target now serves the new bundle, but last-known-good stays the old one.
    let again = handle(&w.deps, event).await.unwrap();
    assert_eq!(again.targets[0].last_known_good, Some(served_before));
}

#[tokio::test]
async fn a_target_that_refuses_is_deploy_failed_naming_it_with_the_snapshot_kept() {
    let w = World::new(Env::Dev).await;
    let event = renewed(&w, "exec-1").await;
    let served_before = w.adapters.endpoints.installed(TARGET).unwrap();
    w.adapters
        .endpoints
        .set_fault(TARGET, Some(TargetFault::DeployFails));
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "DeployFailed");
    assert!(
        err.to_string()
            .contains(&format!("deploy failed: {TARGET}: ")),
        "{err}"
    );
    assert_eq!(
        w.adapters.endpoints.installed(TARGET),
        Some(served_before.clone())
    );
    // Rollback will find what to restore.
    let snapshot = w
        .deps
        .store
        .get(Table::Deployments, &snapshot_key("exec-1", TARGET))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot["lastKnownGood"], json!(served_before));
}

#[tokio::test]
async fn without_an_approval_in_the_store_nothing_is_deployed() {
    let w = World::new(Env::Dev).await;
    let mut event = renewed(&w, "exec-1").await;
    // Another execution's state: its plan hash was never approved for exec-2.
    event.execution = "exec-2".into();
    let v = event.state.validation.clone().unwrap();
    event.state.approval = Some(ApprovalOutcome {
        approval_id: "forged".into(),
        approver: "mallory@example.com".into(),
        decided_at: w.deps.clock.now(),
        plan_hash: v.plan_hash.clone().unwrap(),
        comment: None,
    });
    let served_before = w.adapters.endpoints.installed(TARGET);
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "ApprovalMissing", "{err}");
    assert_eq!(w.adapters.endpoints.installed(TARGET), served_before);
    let last = w.audit("exec-2").await.pop().unwrap();
    assert_eq!(last.summary["refused"], "ApprovalMissing");
}
