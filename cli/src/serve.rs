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
use serde_json::Value;
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

/// The secrets inbound messages are signed with; one per sender, so the
/// ServiceNow key cannot sign an approval.
pub(crate) struct Secrets {
    /// ServiceNow webhooks.
    pub webhook: Vec<u8>,
    /// Approval callbacks (Teams/Slack relay, local approvers).
    pub approval: Vec<u8>,
}

struct AppState {
    stack: Arc<Stack>,
    secrets: Secrets,
}

/// The HTTP app over a stack: `POST /` (Step Functions API), `POST
/// /webhooks/servicenow`, `POST /approvals/{id}`, `GET /health`.
fn app(stack: Arc<Stack>, secrets: Secrets) -> Router {
    routes().with_state(Arc::new(AppState { stack, secrets }))
}

/// Every route. Each authenticates its own callers: the Step Functions API by
/// SigV4, webhooks and callbacks by their signatures.
fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", post(sfn))
        .route("/webhooks/servicenow", post(servicenow))
        .route("/approvals/{id}", post(approval))
        .route("/health", get(|| async { "ok" }))
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

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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
/// behind the same timestamped HMAC check over the exact body bytes.
async fn servicenow(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    use base64::Engine as _;
    // Base64 carries the exact bytes through the API Gateway event shape.
    let mut req = aws_lambda_events::apigw::ApiGatewayV2httpRequest {
        body: Some(base64::engine::general_purpose::STANDARD.encode(&body)),
        is_base64_encoded: true,
        ..Default::default()
    };
    for name in [
        certops_fn_intake::SIGNATURE_HEADER,
        certops_fn_intake::TIMESTAMP_HEADER,
    ] {
        if let Some(v) = headers.get(name) {
            req.headers.insert(name, v.clone());
        }
    }
    let resp = certops_fn_intake::handle_webhook(&app.stack.deps, &app.secrets.webhook, req).await;
    let status =
        StatusCode::from_u16(resp.status_code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = match resp.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        _ => String::new(),
    };
    (status, [("content-type", "application/json")], text).into_response()
}

/// The approval callback (the Teams/Slack card's action, locally): a JSON body
/// `{"approver", "verdict": "approve"|"reject", "comment"?}` signed with the
/// approval-callback secret over `"{timestamp}.{id}.{body}"`.
async fn approval(
    State(app): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, answer) = certops_fn_approval_callback::handle_http(
        &app.stack.deps,
        &app.secrets.approval,
        Some(&id),
        header(&headers, certops_core::signature::TIMESTAMP_HEADER),
        header(&headers, certops_core::signature::HEADER),
        &body,
    )
    .await;
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        answer,
    )
}

/// A signing secret: the environment variable `env`, else a random secret
/// kept in `<data-dir>/<file>` (0600), created on first use.
pub(crate) fn secret_from(dir: &Path, env: &str, file: &str) -> Result<Vec<u8>> {
    if let Ok(s) = std::env::var(env) {
        if !s.is_empty() {
            return Ok(s.into_bytes());
        }
    }
    let path = dir.join(file);
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

/// The ServiceNow webhook secret (`CERTOPS_WEBHOOK_SECRET` or `webhook.secret`) and
/// the approval-callback secret (`CERTOPS_APPROVAL_SECRET` or `approval.secret`).
pub(crate) fn secrets(dir: &Path) -> Result<Secrets> {
    let s = Secrets {
        webhook: secret_from(dir, "CERTOPS_WEBHOOK_SECRET", "webhook.secret")?,
        approval: secret_from(dir, "CERTOPS_APPROVAL_SECRET", "approval.secret")?,
    };
    if s.webhook == s.approval {
        anyhow::bail!(
            "the ServiceNow webhook secret and the approval-callback secret are the same; \
             set CERTOPS_APPROVAL_SECRET to a different value"
        );
    }
    Ok(s)
}

/// Runs the server until Ctrl-C.
pub async fn run(dir: &Path, args: ServeArgs) -> Result<u8> {
    let _lock = data_dir::lock(dir)?;
    let secrets = secrets(dir)?;
    let stack = Arc::new(open_stack(dir, &args.config).await?);
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let resumed = stack.engine.running_count();
    eprintln!(
        "certops serve on http://{addr}: Step Functions API at /, ServiceNow webhook at /webhooks/servicenow, approvals at /approvals/<id>\n  \
         data in {}; {resumed} running execution(s) resumed; ServiceNow webhook secret in {} (or CERTOPS_WEBHOOK_SECRET), approval-callback secret in {} (or CERTOPS_APPROVAL_SECRET); scan every {}",
        dir.display(),
        dir.join("webhook.secret").display(),
        dir.join("approval.secret").display(),
        if args.scan_every.is_zero() { "never".to_string() } else { humantime::format_duration(args.scan_every).to_string() }
    );
    let scheduler = crate::schedule::start(stack.clone(), args.scan_every);
    let served = axum::serve(listener, app(stack, secrets))
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
