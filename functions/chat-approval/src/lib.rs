//! `chat-approval`: `POST /teams/messages` (the Teams bot endpoint) and
//! `POST /slack/interactions` (the Slack app's interactivity URL) behind the HTTP API, and
//! the card refresh its EventBridge schedule invokes every minute.
//!
//! The platform's proof of who clicked is checked first (the Bot Connector's JWT, Slack's
//! `v0` signature over the exact body); then the decision goes through approval-callback's
//! own handler, with every one of its checks, under the approval-callback role — the only
//! role that may complete a waiting task.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use certops_chatops::inbound::{ChatApprovals, ChatDecision, DecisionPath, Reply, SlackAck};
use certops_chatops::routes::{SLACK_PATH, TEAMS_PATH};
use certops_chatops::slack_signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use certops_core::integrations::SecretResolver;
use certops_core::ports::Deps;
use certops_core::Error;
use serde_json::{json, Value};

/// approval-callback's handler as the decision path.
pub fn decision_path() -> DecisionPath {
    Arc::new(|deps, d: ChatDecision| {
        Box::pin(async move {
            let cb = certops_fn_approval_callback::Callback {
                approval_id: d.approval_id,
                approver: d.approver,
                verdict: d.verdict,
                comment: None,
            };
            certops_fn_approval_callback::handle(&deps, cb)
                .await
                .map(|decided| decided.status)
        })
    })
}

/// The endpoints as the Lambda function serves them: decisions through
/// [`decision_path`], and Slack interactions acknowledged [`SlackAck::Inline`], because
/// Lambda freezes the sandbox once the response is returned and a task left running
/// after it would be lost (what does not fit in the 3 s budget is left to the card
/// refresh, [`handle_event`]'s scheduled branch).
pub fn lambda_approvals(
    deps: Deps,
    secrets: Arc<dyn SecretResolver>,
) -> Result<ChatApprovals, Error> {
    Ok(ChatApprovals::new(deps, secrets, decision_path())?.with_slack_ack(SlackAck::Inline))
}

/// One invocation: an HTTP API request (payload format 2.0) is answered by [`handle`]; an
/// EventBridge scheduled event (`"detail-type": "Scheduled Event"`, the SAM template's
/// card-refresh schedule) refreshes the open cards whose approval expired or was decided
/// elsewhere ([`ChatApprovals::sync_cards`], what `certops serve` runs every minute) and
/// answers `{"cardsUpdated": n}`.
pub async fn handle_event(approvals: &Arc<ChatApprovals>, event: Value) -> Result<Value, Error> {
    if event["detail-type"] == "Scheduled Event" {
        let updated = approvals.sync_cards().await?;
        tracing::info!(updated, "chat cards refreshed");
        return Ok(json!({"cardsUpdated": updated}));
    }
    let req: ApiGatewayV2httpRequest = serde_json::from_value(event).map_err(|e| {
        Error::InvalidInput(format!(
            "neither an HTTP API request nor a scheduled event: {e}"
        ))
    })?;
    serde_json::to_value(handle(approvals, req).await)
        .map_err(|e| Error::InvalidInput(format!("HTTP API response: {e}")))
}

fn response(r: Reply) -> ApiGatewayV2httpResponse {
    let mut headers = aws_lambda_events::http::HeaderMap::new();
    if let Ok(v) = r.content_type.parse() {
        headers.insert("content-type", v);
    }
    ApiGatewayV2httpResponse {
        status_code: i64::from(r.status),
        headers,
        body: Some(Body::Text(r.body)),
        is_base64_encoded: false,
        ..Default::default()
    }
}

/// Answers one HTTP API request (payload format 2.0).
pub async fn handle(
    approvals: &Arc<ChatApprovals>,
    req: ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    // API Gateway base64-encodes bodies it does not treat as text (Slack's form posts).
    let raw = req.body.clone().unwrap_or_default();
    let body = if req.is_base64_encoded {
        match base64::engine::general_purpose::STANDARD.decode(raw.as_bytes()) {
            Ok(b) => b,
            Err(_) => {
                return response(Reply {
                    status: 400,
                    content_type: "application/json",
                    body: r#"{"error":"body is not base64"}"#.into(),
                })
            }
        }
    } else {
        raw.into_bytes()
    };
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let path = req
        .raw_path
        .clone()
        .or_else(|| req.request_context.http.path.clone())
        .unwrap_or_default();
    let reply = if path.ends_with(TEAMS_PATH) {
        approvals
            .teams_activity(header("authorization"), &body)
            .await
    } else if path.ends_with(SLACK_PATH) {
        approvals
            .slack_interaction(header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER), &body)
            .await
    } else {
        Reply {
            status: 404,
            content_type: "application/json",
            body: r#"{"error":"no such route"}"#.into(),
        }
    };
    response(reply)
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests;
