//! `approval-callback` against the embedded adapters: approval requests made by the real
//! `approval-request` step for a task waiting on the local engine, whose execution the
//! decision completes (or fails).

use super::*;
use crate::test_world::{Env, World, APPROVER};
use certops_asl::ExecutionStatus;
use certops_core::workflow::StepEvent;

/// Requests approval of execution `exec`'s plan (triggered by `trigger`, if given) with
/// a task waiting on the engine. Returns the waiting execution's ARN and the approval id.
async fn requested(
    w: &World,
    exec: &str,
    trigger: Option<certops_core::Trigger>,
) -> (String, String) {
    let mut event: StepEvent = match trigger {
        Some(t) => w.event_for(exec, t),
        None => w.scan_event(exec),
    };
    event.state.validation = Some(
        certops_fn_validate::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    let (arn, token) = w.waiting_task(exec).await;
    event.task_token = Some(token);
    let id = certops_fn_approval_request::handle(&w.deps, event)
        .await
        .unwrap()
        .approval_id;
    (arn, id)
}

fn decision(id: &str, approver: &str, verdict: Verdict) -> Callback {
    Callback {
        approval_id: id.into(),
        approver: approver.into(),
        verdict,
        comment: None,
    }
}

#[tokio::test]
async fn an_authorised_approval_is_spent_and_completes_the_waiting_task() {
    let w = World::new(Env::Prod).await;
    let (arn, id) = requested(&w, "exec-1", None).await;
    let mut cb = decision(&id, APPROVER, Verdict::Approve);
    cb.comment = Some("ship it".into());
    let decided = handle(&w.deps, cb).await.unwrap();
    assert_eq!(decided.status, "approved");
    assert_eq!(decided.execution, "exec-1");

    let done = w.engine.wait_for(&arn).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    let outcome = &done.output.unwrap()["decision"];
    assert_eq!(outcome["approver"], APPROVER);
    assert_eq!(outcome["approvalId"], json!(id));
    let record = w.approval(&id).await;
    let request: ApprovalRequest = serde_json::from_value(record["request"].clone()).unwrap();
    assert_eq!(outcome["planHash"], json!(request.plan_hash));
    assert_eq!(
        (record["status"].clone(), record["delivery"].clone()),
        (json!("approved"), json!("delivered"))
    );
    // The executing steps' gate now lets this plan through, and only in this execution.
    certops_core::workflow::require_approval(&w.deps, "exec-1", &request.plan_hash)
        .await
        .unwrap();
    let elsewhere = certops_core::workflow::require_approval(&w.deps, "exec-2", &request.plan_hash)
        .await
        .unwrap_err();
    assert_eq!(elsewhere.name(), "ApprovalMissing");
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["decision"], "approved");
    assert_eq!(last.summary["detail"]["comment"], "ship it");
}

#[tokio::test]
async fn an_approval_is_single_use() {
    let w = World::new(Env::Prod).await;
    let (_, id) = requested(&w, "exec-1", None).await;
    handle(&w.deps, decision(&id, APPROVER, Verdict::Approve))
        .await
        .unwrap();
    let err = handle(
        &w.deps,
        decision(&id, "cab-alice@example.com", Verdict::Approve),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "Conflict");
    assert!(err.to_string().contains("single-use"), "{err}");
    assert_eq!(err.http_status(), 409);
}

#[tokio::test]
async fn the_requester_may_not_approve_and_the_request_stays_open() {
    let w = World::new(Env::Prod).await;
    let trigger = w.incident(crate::test_world::CERT_ID, APPROVER).await;
    let (arn, id) = requested(&w, "exec-1", Some(trigger)).await;
    let err = handle(&w.deps, decision(&id, APPROVER, Verdict::Approve))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "SelfApproval");
    assert_eq!(err.http_status(), 403);
    let record = w.approval(&id).await;
    assert_eq!(record["status"], "pending");
    // Another member of the change authority still can.
    let decided = handle(
        &w.deps,
        decision(&id, "cab-alice@example.com", Verdict::Approve),
    )
    .await
    .unwrap();
    assert_eq!(decided.status, "approved");
    assert_eq!(
        w.engine.wait_for(&arn).await.unwrap().status,
        ExecutionStatus::Succeeded
    );
}

#[tokio::test]
async fn someone_outside_the_change_authority_is_refused() {
    let w = World::new(Env::Prod).await;
    let (_, id) = requested(&w, "exec-1", None).await;
    let err = handle(
        &w.deps,
        decision(&id, "mallory@example.com", Verdict::Approve),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "NotInChangeAuthority");
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["refused"], "NotInChangeAuthority");
    let record = w.approval(&id).await;
    assert_eq!(record["status"], "pending");
}

#[tokio::test]
async fn a_rejection_fails_the_waiting_task_with_approval_rejected() {
    let w = World::new(Env::Prod).await;
    let (arn, id) = requested(&w, "exec-1", None).await;
    let decided = handle(&w.deps, decision(&id, APPROVER, Verdict::Reject))
        .await
        .unwrap();
    assert_eq!(decided.status, "rejected");
    let done = w.engine.wait_for(&arn).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("ApprovalRejected"));
}

#[tokio::test]
async fn a_decision_after_the_approval_expired_is_approval_expired() {
    let w = World::new(Env::Prod).await;
    let (arn, id) = requested(&w, "exec-1", None).await;
    // The policy gives normal changes 5 minutes.
    w.clock.advance(chrono::Duration::minutes(6));
    let err = handle(&w.deps, decision(&id, APPROVER, Verdict::Approve))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "ApprovalExpired");
    let done = w.engine.wait_for(&arn).await.unwrap();
    assert_eq!(done.error.as_deref(), Some("ApprovalExpired"));
    let record = w.approval(&id).await;
    assert_eq!(record["status"], "expired");
}

#[tokio::test]
async fn an_unknown_approval_is_invalid_input() {
    let w = World::new(Env::Prod).await;
    let err = handle(
        &w.deps,
        decision("no-such-approval", APPROVER, Verdict::Approve),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert_eq!(err.http_status(), 400);
}

/// The HTTP edge's signing secret in these tests.
const SECRET: &[u8] = b"unit-test-callback-secret";

/// One callback over HTTP to approval `path_id`, signed `signature` at `ts`.
async fn post(w: &World, path_id: &str, ts: &str, signature: &str, body: &str) -> HttpAnswer {
    handle_http(
        &w.deps,
        SECRET,
        Some(path_id),
        Some(ts),
        Some(signature),
        body.as_bytes(),
    )
    .await
}

#[tokio::test]
async fn over_http_only_a_callback_signed_for_its_approval_decides() {
    let w = World::new(Env::Prod).await;
    let (arn, id) = requested(&w, "exec-1", None).await;
    let body = json!({"approvalId": id, "approver": APPROVER, "verdict": "approve"}).to_string();
    let now = w.deps.clock.now().timestamp();
    let ts = now.to_string();
    let sign = |approval: &str| {
        certops_core::signature::sign_approval(SECRET, now, approval, body.as_bytes())
    };

    let (status, answer) = post(&w, &id, &ts, "v1=forged", &body).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (401, json!("Unauthorized"))
    );
    let other = sign("another-approval");
    let (status, _) = post(&w, &id, &ts, &other, &body).await;
    assert_eq!(status, 401, "signed for another approval");
    let (status, answer) = post(&w, "another-approval", &ts, &other, &body).await;
    assert_eq!(
        (status, answer["error"].clone()),
        (400, json!("InvalidInput")),
        "path and body disagree"
    );
    assert_eq!(w.approval(&id).await["status"], "pending");

    let (status, answer) = post(&w, &id, &ts, &sign(&id), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "approved");
    assert_eq!(
        w.engine.wait_for(&arn).await.unwrap().status,
        ExecutionStatus::Succeeded
    );
}
