//! `chat-approval` against the embedded adapters: HTTP API requests routed to the Teams and
//! Slack endpoints, and decisions through approval-callback's handler to a task waiting on
//! the local engine.

use super::*;
use crate::test_world::{Env, World, APPROVER};
use certops_asl::ExecutionStatus;
use certops_core::Verdict;

fn approvals(w: &World) -> Arc<ChatApprovals> {
    Arc::new(lambda_approvals(w.deps.clone(), Arc::new(certops_adapters::LocalSecrets)).unwrap())
}

/// An HTTP API (payload 2.0) POST of `body` to `path`.
fn post(path: &str, body: &str, base64: bool) -> ApiGatewayV2httpRequest {
    serde_json::from_value(json!({"version": "2.0", "routeKey": format!("POST {path}"),
        "rawPath": path, "headers": {"content-type": "application/json"},
        "body": body, "isBase64Encoded": base64,
        "requestContext": {"http": {"method": "POST", "path": path}}}))
    .unwrap()
}

fn body_of(r: &ApiGatewayV2httpResponse) -> Value {
    match &r.body {
        Some(Body::Text(t)) => serde_json::from_str(t).unwrap(),
        other => panic!("not a text body: {other:?}"),
    }
}

#[tokio::test]
async fn a_chat_decision_goes_through_approval_callback_to_the_waiting_task() {
    let w = World::new(Env::Prod).await;
    let mut event = w.scan_event("exec-1");
    event.state.validation = Some(
        certops_fn_validate::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    let (arn, token) = w.waiting_task("exec-1").await;
    event.task_token = Some(token);
    let id = certops_fn_approval_request::handle(&w.deps, event)
        .await
        .unwrap()
        .approval_id;

    // Someone the change authority does not name: approval-callback's check refuses.
    let decide = decision_path();
    let refused = decide(
        w.deps.clone(),
        ChatDecision {
            approval_id: id.clone(),
            approver: "mallory@example.com".into(),
            verdict: Verdict::Approve,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.name(), "NotInChangeAuthority");
    let status = decide(
        w.deps.clone(),
        ChatDecision {
            approval_id: id,
            approver: APPROVER.into(),
            verdict: Verdict::Approve,
        },
    )
    .await
    .unwrap();
    assert_eq!(status, "approved");
    let done = w.engine.wait_for(&arn).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(done.output.unwrap()["decision"]["approver"], APPROVER);
}

#[tokio::test]
async fn requests_are_routed_by_path_and_unconfigured_platforms_are_404() {
    let w = World::new(Env::Prod).await;
    let a = approvals(&w);
    let teams = handle(&a, post(TEAMS_PATH, "{}", false)).await;
    assert_eq!(teams.status_code, 404);
    assert!(body_of(&teams)
        .to_string()
        .contains("Teams is not configured"));
    let slack = handle(&a, post(SLACK_PATH, "payload=x", false)).await;
    assert_eq!(slack.status_code, 404);
    assert!(body_of(&slack)
        .to_string()
        .contains("Slack is not configured"));
    let other = handle(&a, post("/elsewhere", "{}", false)).await;
    assert_eq!(
        (other.status_code, body_of(&other)),
        (404, json!({"error": "no such route"}))
    );
}

#[tokio::test]
async fn a_body_that_is_not_base64_is_400() {
    let w = World::new(Env::Prod).await;
    let r = handle(&approvals(&w), post(SLACK_PATH, "%%% not base64", true)).await;
    assert_eq!(r.status_code, 400);
    assert_eq!(body_of(&r), json!({"error": "body is not base64"}));
}

#[tokio::test]
async fn events_are_an_http_request_or_the_card_refresh_schedule() {
    let w = World::new(Env::Prod).await;
    let a = approvals(&w);
    let refreshed = handle_event(
        &a,
        json!({"detail-type": "Scheduled Event", "source": "aws.scheduler"}),
    )
    .await
    .unwrap();
    assert_eq!(refreshed, json!({"cardsUpdated": 0}));
    let routed = handle_event(
        &a,
        serde_json::to_value(post("/elsewhere", "{}", false)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(routed["statusCode"], 404);
    let err = handle_event(&a, json!(["neither"])).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(
        err.to_string().contains("neither an HTTP API request"),
        "{err}"
    );
}
