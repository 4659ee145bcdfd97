//! Slack's Web API on loopback, as api.slack.com documents `chat.postMessage` and
//! `chat.update`: bearer bot token (`not_authed` without one, `invalid_auth` for a wrong
//! one), HTTP 200 with `{"ok": false, "error": …}` for every failure (`channel_not_found`,
//! `no_text`, `invalid_blocks`, `message_not_found`), at most 50 blocks, and a message
//! `ts` that `chat.update` must name. Every accepted call is recorded.
//!
//! It also plays Slack's side of interactivity: [`SlackApi::interaction`] builds the
//! `application/x-www-form-urlencoded` body with a `block_actions` `payload`, and
//! [`sign`] its `X-Slack-Signature`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::Served;

/// The bot token the tests configure.
pub const BOT_TOKEN: &str = "xoxb-test-1234-bot";
/// The approval channel.
pub const CHANNEL: &str = "C0CERTOPS1";
/// The workspace.
pub const TEAM: &str = "T0CERTOPS";

/// A recorded Web API call.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackCall {
    /// `chat.postMessage` or `chat.update`.
    pub method: String,
    /// The message `ts`.
    pub ts: String,
    /// The request body.
    pub body: Value,
}

#[derive(Default)]
struct Recorded {
    calls: Vec<SlackCall>,
    messages: HashMap<String, Value>,
    next: u64,
    /// How long `chat.update` takes to answer (a slow Web API).
    update_delay: std::time::Duration,
}

/// The running emulator.
pub struct SlackApi {
    rec: Arc<Mutex<Recorded>>,
    served: Served,
}

impl SlackApi {
    /// Starts the Web API emulator.
    pub async fn start() -> SlackApi {
        let rec = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route("/api/{method}", post(call))
            .with_state(rec.clone());
        SlackApi {
            rec,
            served: Served::start(app).await,
        }
    }

    /// The Web API base URL (`…/api`).
    pub fn api_url(&self) -> String {
        format!("{}/api", self.served.base())
    }

    /// Makes `chat.update` take `delay` before it answers (zero: answer at once).
    pub fn slow_updates(&self, delay: std::time::Duration) {
        self.rec.lock().expect("lock").update_delay = delay;
    }

    /// Every accepted call so far.
    pub fn calls(&self) -> Vec<SlackCall> {
        self.rec.lock().expect("lock").calls.clone()
    }

    /// The form body Slack posts when `user` clicks the button `action_id` of the message
    /// `ts` whose value is `value`.
    pub fn interaction(user: &str, action_id: &str, value: &str, ts: &str) -> String {
        let payload = json!({
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "certops-test"},
            "user": {"id": user, "username": "someone", "team_id": TEAM},
            "api_app_id": "A0CERTOPS",
            "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL, "is_ephemeral": false},
            "channel": {"id": CHANNEL, "name": "cab"},
            "trigger_id": "1234.5678.abcdef",
            "response_url": "https://hooks.slack.invalid/actions/T0CERTOPS/1/abc",
            "actions": [{"type": "button", "block_id": "certops-decision", "action_id": action_id,
                         "value": value, "text": {"type": "plain_text", "text": action_id},
                         "action_ts": "1800000000.000100"}],
        });
        serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form")
    }
}

/// `X-Slack-Signature` for `body` at `timestamp`, as Slack computes it.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    certops_chatops::slack_signature::sign(secret.as_bytes(), timestamp, body.as_bytes())
}

fn fail(error: &str) -> Json<Value> {
    Json(json!({"ok": false, "error": error}))
}

async fn call(
    State(rec): State<Arc<Mutex<Recorded>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match auth {
        None => return fail("not_authed"),
        Some(t) if t != BOT_TOKEN => return fail("invalid_auth"),
        Some(_) => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return fail("invalid_json");
    };
    if body["channel"] != CHANNEL {
        return fail("channel_not_found");
    }
    if !body["text"].is_string() && !body["blocks"].is_array() {
        return fail("no_text");
    }
    if let Some(blocks) = body["blocks"].as_array() {
        if blocks.len() > 50 || blocks.iter().any(|b| !b["type"].is_string()) {
            return fail("invalid_blocks");
        }
    }
    if method == "chat.update" {
        let delay = rec.lock().expect("lock").update_delay;
        // The fault's definition: this call is slow.
        tokio::time::sleep(delay).await;
    }
    let mut r = rec.lock().expect("lock");
    match method.as_str() {
        "chat.postMessage" => {
            r.next += 1;
            let ts = format!("1800000000.{:06}", r.next);
            r.messages.insert(ts.clone(), body.clone());
            r.calls.push(SlackCall {
                method,
                ts: ts.clone(),
                body: body.clone(),
            });
            Json(
                json!({"ok": true, "channel": CHANNEL, "ts": ts, "message": {"type": "message", "text": body["text"], "bot_id": "B0CERTOPS", "ts": ts}}),
            )
        }
        "chat.update" => {
            let Some(ts) = body["ts"].as_str().map(str::to_string) else {
                return fail("message_not_found");
            };
            if !r.messages.contains_key(&ts) {
                return fail("message_not_found");
            }
            r.messages.insert(ts.clone(), body.clone());
            r.calls.push(SlackCall {
                method,
                ts: ts.clone(),
                body: body.clone(),
            });
            Json(json!({"ok": true, "channel": CHANNEL, "ts": ts, "text": body["text"]}))
        }
        _ => fail("unknown_method"),
    }
}
