//! The two inbound routes as an axum [`Router`], for `certops serve`:
//! `POST /teams/messages` (the bot's messaging endpoint) and `POST /slack/interactions`
//! (the app's interactivity request URL). Both read the raw body: the Slack signature
//! covers its exact bytes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::inbound::{ChatApprovals, Reply};
use crate::slack_signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// The Teams bot endpoint's path.
pub const TEAMS_PATH: &str = "/teams/messages";
/// The Slack interactivity endpoint's path.
pub const SLACK_PATH: &str = "/slack/interactions";

/// The routes over `approvals`.
pub fn router(approvals: Arc<ChatApprovals>) -> Router {
    Router::new()
        .route(TEAMS_PATH, post(teams))
        .route(SLACK_PATH, post(slack))
        .with_state(approvals)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn respond(r: Reply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", r.content_type)], r.body).into_response()
}

async fn teams(State(a): State<Arc<ChatApprovals>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        a.teams_activity(header(&headers, "authorization"), &body)
            .await,
    )
}

async fn slack(State(a): State<Arc<ChatApprovals>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        a.slack_interaction(
            header(&headers, TIMESTAMP_HEADER),
            header(&headers, SIGNATURE_HEADER),
            &body,
        )
        .await,
    )
}
