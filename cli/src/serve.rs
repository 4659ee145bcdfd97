//! `certops serve`: the local stack for longer-lived use — the Step Functions
//! JSON protocol over the renewal engine, the signed ServiceNow webhook, the
//! signed approval callback, and the expiry-scan scheduler — on loopback,
//! over the durable embedded stack.

use crate::data_dir;
use crate::workflow::{open_stack, ConfigArgs};
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use certops_asl::api::{self, ApiError};
use certops_embedded::Stack;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Options of `certops serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 8083)]
    port: u16,
    /// Address to bind. Loopback by default.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// How often the expiry scan runs (e.g. 24h, 30m); 0 disables the scheduler.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    scan_every: Duration,
    #[command(flatten)]
    config: ConfigArgs,
}

const JSON_10: &str = "application/x-amz-json-1.0";

struct AppState {
    stack: Arc<Stack>,
    secret: Vec<u8>,
}

/// The HTTP app over a stack: `POST /` (Step Functions API), `POST
/// /webhooks/servicenow`, `POST /approvals/{id}`, `GET /health`.
fn app(stack: Arc<Stack>, secret: Vec<u8>) -> Router {
    Router::new()
        .route("/", post(sfn))
        .route("/webhooks/servicenow", post(servicenow))
        .route("/approvals/{id}", post(approval))
        .route("/health", get(|| async { "ok" }))
        .with_state(Arc::new(AppState { stack, secret }))
}

async fn sfn(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let engine = app.stack.engine.clone();
    let op = target.clone();
    let result = tokio::task::spawn_blocking(move || api::handle(&engine, &target, &body))
        .await
        .unwrap_or_else(|e| {
            Err(ApiError {
                status: 500,
                code: "InternalFailure".into(),
                message: format!("request handler failed: {e}"),
            })
        });
    match result {
        Ok(v) => ([("content-type", JSON_10)], v.to_string()).into_response(),
        Err(e) => {
            tracing::info!(operation = %op, code = %e.code, "request refused: {}", e.message);
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                [
                    ("content-type", JSON_10),
                    ("x-amzn-errortype", e.code.as_str()),
                ],
                e.body().to_string(),
            )
                .into_response()
        }
    }
}

fn signature(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(certops_fn_intake::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// ServiceNow business-rule webhook: the same intake handler Lambda runs,
/// behind the same HMAC signature check.
async fn servicenow(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut req = aws_lambda_events::apigw::ApiGatewayV2httpRequest {
        body: Some(String::from_utf8_lossy(&body).into_owned()),
        ..Default::default()
    };
    if let Some(sig) = signature(&headers).and_then(|s| s.parse().ok()) {
        req.headers.insert(certops_fn_intake::SIGNATURE_HEADER, sig);
    }
    let resp = certops_fn_intake::handle_webhook(&app.stack.deps, &app.secret, req).await;
    let status =
        StatusCode::from_u16(resp.status_code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = match resp.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        _ => String::new(),
    };
    (status, [("content-type", "application/json")], text).into_response()
}

/// The approval callback (the Teams/Slack card's action, locally): a signed
/// JSON body `{"approver", "verdict": "approve"|"reject", "comment"?}`.
async fn approval(
    State(app): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = certops_fn_intake::verify_signature(&app.secret, &body, signature(&headers)) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Unauthorized", "message": e.to_string()}),
        );
    }
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let Ok(v) = parsed else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "InvalidInput", "message": "body is not JSON"}),
        );
    };
    let verdict = match v["verdict"].as_str() {
        Some("approve") => certops_core::Verdict::Approve,
        Some("reject") => certops_core::Verdict::Reject,
        _ => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "InvalidInput", "message": "verdict must be \"approve\" or \"reject\""}),
            )
        }
    };
    let Some(approver) = v["approver"].as_str().filter(|a| !a.trim().is_empty()) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "InvalidInput", "message": "approver is required"}),
        );
    };
    let cb = certops_fn_approval_callback::Callback {
        approval_id: id,
        approver: approver.to_string(),
        verdict,
        comment: v["comment"].as_str().map(str::to_string),
    };
    match app.stack.decide(cb).await {
        Ok(d) => json_response(StatusCode::OK, serde_json::to_value(d).unwrap_or_default()),
        Err(e) => {
            let status = match e.name() {
                "SelfApproval" | "NotInChangeAuthority" => StatusCode::FORBIDDEN,
                "Conflict" | "ApprovalExpired" | "PlanDrift" => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            json_response(status, json!({"error": e.name(), "message": e.to_string()}))
        }
    }
}

/// The webhook signing secret: `CERTOPS_WEBHOOK_SECRET`, else a random secret
/// kept in `<data-dir>/webhook.secret` (0600), created on first use.
fn webhook_secret(dir: &Path) -> Result<Vec<u8>> {
    if let Ok(s) = std::env::var("CERTOPS_WEBHOOK_SECRET") {
        if !s.is_empty() {
            return Ok(s.into_bytes());
        }
    }
    let path = dir.join("webhook.secret");
    if let Ok(existing) = std::fs::read(&path) {
        return Ok(existing);
    }
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    Ok(secret.into_bytes())
}

/// Runs the server until Ctrl-C.
pub async fn run(dir: &Path, args: ServeArgs) -> Result<u8> {
    let _lock = data_dir::lock(dir)?;
    let secret = webhook_secret(dir)?;
    let stack = Arc::new(open_stack(dir, &args.config).await?);
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let resumed = stack.engine.running_count();
    eprintln!(
        "certops serve on http://{addr}: Step Functions API at /, ServiceNow webhook at /webhooks/servicenow, approvals at /approvals/<id>\n  \
         data in {}; {resumed} running execution(s) resumed; webhook secret in {} (or CERTOPS_WEBHOOK_SECRET); scan every {}",
        dir.display(),
        dir.join("webhook.secret").display(),
        if args.scan_every.is_zero() { "never".to_string() } else { humantime::format_duration(args.scan_every).to_string() }
    );
    let scheduler = crate::schedule::start(stack.clone(), args.scan_every);
    let console = crate::console::router(
        stack.clone(),
        crate::console::ConsoleOptions {
            data_dir: dir.to_path_buf(),
            tls: false,
        },
    );
    let served = axum::serve(listener, app(stack, secret).nest("/console", console))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving");
    if let Some(s) = scheduler {
        s.abort();
    }
    served?;
    Ok(0)
}
