//! `certops serve`: the local stack for longer-lived use — the Step Functions
//! JSON protocol over the renewal engine (SigV4-authenticated, see
//! [`crate::api_auth`]), the signed ServiceNow webhook, the signed approval
//! callback, and the expiry-scan scheduler — on loopback, over the durable
//! embedded stack.

use crate::api_auth::{self, ApiCredentials};
use crate::data_dir;
use crate::stack_config::{open_stack, ConfigArgs};
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Extension, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
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
    /// Serve HTTPS with this PEM certificate chain (leaf first); with --tls-key. The
    /// console's cookies are then `Secure`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert (mode 0600).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
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
    credentials: ApiCredentials,
}

/// Every route `certops serve` answers, over a stack (axum's app-in-a-function pattern:
/// [`run`] serves it, the tests drive it in-process with `oneshot`): `POST /` (Step
/// Functions API), `POST /webhooks/servicenow`, `POST /approvals/{id}`, `GET /health`, the
/// Teams and Slack routes, and the web console under `/console`.
pub(crate) fn router(
    stack: Arc<Stack>,
    secrets: Secrets,
    credentials: ApiCredentials,
    console: crate::console::ConsoleOptions,
) -> Router {
    let chat = crate::chat_routes::router(&stack);
    let console = crate::console::router(stack.clone(), console);
    let state = Arc::new(AppState {
        stack,
        secrets,
        credentials,
    });
    routes(state.clone())
        .with_state(state)
        .merge(chat)
        .nest("/console", console)
}

/// Every route. Each authenticates its own callers: the Step Functions API by
/// SigV4 (the [`sigv4_layer`] middleware), webhooks and callbacks by their signatures;
/// the Teams and Slack routes (merged in [`router`]) by the platforms' tokens and signatures.
fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/",
            post(sfn).route_layer(middleware::from_fn_with_state(state, sigv4_layer)),
        )
        .route("/webhooks/servicenow", post(servicenow))
        .route("/approvals/{id}", post(approval))
        .route("/health", get(|| async { "ok" }))
}

/// The largest API request body read (StartExecution input is limited to 256 KiB
/// by the engine; the envelope adds a little).
const MAX_API_BODY: usize = 512 * 1024;

/// The principal a SigV4-verified request was signed by.
#[derive(Clone)]
struct Caller(String);

fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", JSON_10), ("x-amzn-errortype", code)],
        json!({"__type": format!("com.amazonaws.swf.service.v2.model#{code}"), "message": message})
            .to_string(),
    )
        .into_response()
}

/// Verifies the request's AWS SigV4 signature against the API's principals and
/// hands the principal's name to the handler; unsigned, mis-signed or stale
/// requests get AWS's error and never reach the engine.
async fn sigv4_layer(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_API_BODY).await else {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ValidationException",
            "request body too large",
        );
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    let signed = certops_asl::sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers,
        body: &bytes,
    };
    let now = chrono::Utc::now().timestamp();
    let verified = certops_asl::sigv4::verify(&signed, |k| app.credentials.secret_for(k), now);
    let key = match verified {
        Ok(k) => k,
        Err(e) => {
            tracing::info!(code = e.code(), "Step Functions API request refused: {e}");
            let status = if matches!(e, certops_asl::sigv4::AuthError::Missing(_)) {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            };
            return aws_error(status, e.code(), &e.to_string());
        }
    };
    let name = app
        .credentials
        .name_of(&key)
        .unwrap_or_default()
        .to_string();
    parts.extensions.insert(Caller(name));
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

async fn sfn(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let op = target
        .strip_prefix(api::TARGET_PREFIX)
        .unwrap_or_default()
        .to_string();
    let governed = app
        .stack
        .engine
        .state_machine_arn(certops_embedded::stack::STATE_MACHINE);
    match api_auth::authorize(&caller.0, &op, &body, &app.stack.engine, &governed) {
        Ok(api_auth::Decision::Allow) => {}
        Ok(api_auth::Decision::SignedStart {
            timestamp,
            signature,
            body,
        }) => return signed_start(&app, &timestamp, &signature, body).await,
        Err(e) => {
            tracing::info!(operation = %op, principal = %caller.0, "request denied: {}", e.message);
            return aws_error(StatusCode::BAD_REQUEST, &e.code, &e.message);
        }
    }
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

/// StartExecution of the governed machine with signed trigger input: the same
/// intake (signature, category, idempotency key as the name) as the webhook.
async fn signed_start(app: &AppState, timestamp: &str, signature: &str, body: String) -> Response {
    let mut req = aws_lambda_events::apigw::ApiGatewayV2httpRequest {
        body: Some(body),
        ..Default::default()
    };
    // The trigger input carries the signed body as a JSON string.
    for (name, value) in [
        (certops_fn_intake::TIMESTAMP_HEADER, timestamp),
        (certops_fn_intake::SIGNATURE_HEADER, signature),
        ("content-type", "application/json"),
    ] {
        if let Ok(v) = value.parse() {
            req.headers.insert(name, v);
        }
    }
    let resp = certops_fn_intake::handle_webhook(&app.stack.deps, &app.secrets.webhook, req).await;
    let text = match resp.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        _ => String::new(),
    };
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match resp.status_code {
        200 | 202 => {
            let arn = v["execution"].as_str().unwrap_or_default();
            let start = app
                .stack
                .engine
                .describe_execution(arn)
                .map(|i| i.meta.start_ms as f64 / 1000.0)
                .unwrap_or_default();
            (
                [("content-type", JSON_10)],
                json!({"executionArn": arn, "startDate": start}).to_string(),
            )
                .into_response()
        }
        401 => aws_error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            &format!(
                "signed trigger input refused: {}",
                v["message"].as_str().unwrap_or_default()
            ),
        ),
        409 => aws_error(
            StatusCode::BAD_REQUEST,
            "ExecutionAlreadyExists",
            v["message"].as_str().unwrap_or_default(),
        ),
        _ => aws_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            v["message"].as_str().unwrap_or_default(),
        ),
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
        "content-type",
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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let credentials = ApiCredentials::load_or_create(dir)?;
    let stack = Arc::new(open_stack(dir, &args.config).await?);
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let resumed = stack.engine.running_count();
    eprintln!(
        "certops serve on {scheme}://{addr}: Step Functions API at /, ServiceNow webhook at /webhooks/servicenow, approvals at /approvals/<id>\n  \
         data in {}; {resumed} running execution(s) resumed; ServiceNow webhook secret in {} (or CERTOPS_WEBHOOK_SECRET), approval-callback secret in {} (or CERTOPS_APPROVAL_SECRET); Step Functions API credentials (SigV4) in {} (`certops credentials`); scan every {}",
        dir.display(),
        dir.join("webhook.secret").display(),
        dir.join("approval.secret").display(),
        api_auth::credentials_path(dir).display(),
        if args.scan_every.is_zero() { "never".to_string() } else { humantime::format_duration(args.scan_every).to_string() },
        scheme = if tls.is_some() { "https" } else { "http" },
    );
    let scheduler = crate::schedule::start(stack.clone(), args.scan_every);
    let router = router(
        stack,
        secrets,
        credentials,
        crate::console::ConsoleOptions {
            data_dir: dir.to_path_buf(),
            tls: tls.is_some(),
        },
    );
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let served = match tls {
        Some(config) => {
            axum::serve(crate::tls::TlsListener::new(listener, config), router)
                .with_graceful_shutdown(stop)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }
    }
    .context("serving");
    if let Some(s) = scheduler {
        s.abort();
    }
    served?;
    Ok(0)
}

#[cfg(test)]
mod tests;
