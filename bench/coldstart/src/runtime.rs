//! A local stand-in for the AWS Lambda Runtime API (one invocation at a time)
//! and for the few Step Functions calls the functions make
//! (`DescribeExecution`, `StartExecution`, `SendTaskSuccess`, `SendTaskFailure`),
//! on one loopback HTTP port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// The account, region and state machine the stub answers for.
pub const STATE_MACHINE_ARN: &str =
    "arn:aws:states:eu-west-1:123456789012:stateMachine:certops-renewal";

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// `POST /invocation/{id}/response`.
    Response,
    /// `POST /invocation/{id}/error`.
    Error,
    /// `POST /init/error`.
    InitError,
}

/// What the function posted, and when.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which endpoint.
    pub kind: OutcomeKind,
    /// The posted body (JSON if it parses, else a string).
    pub body: Value,
    /// When the post arrived.
    pub at: Instant,
}

/// A Step Functions call the stub answered.
#[derive(Debug, Clone)]
pub struct SfnCall {
    /// The operation (`StartExecution`, ...).
    pub operation: String,
    /// Its JSON request.
    pub request: Value,
}

/// The invocation being measured.
#[derive(Debug)]
struct Invocation {
    request_id: String,
    function_arn: String,
    event: Option<Value>,
    timeout: Duration,
    first_next: Option<Instant>,
    served: Option<Instant>,
    outcome: Option<Outcome>,
    sfn_calls: Vec<SfnCall>,
}

/// Timestamps and results of one invocation.
#[derive(Debug, Clone)]
pub struct Record {
    /// The first `GET /next` arrived.
    pub first_next: Option<Instant>,
    /// The event was handed out.
    pub served: Option<Instant>,
    /// What the function posted.
    pub outcome: Option<Outcome>,
    /// Step Functions calls made during the invocation.
    pub sfn_calls: Vec<SfnCall>,
}

#[derive(Default)]
struct Shared {
    current: Mutex<Option<Invocation>>,
    done: Notify,
}

/// The running server.
#[derive(Clone)]
pub struct RuntimeApi {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl RuntimeApi {
    /// Binds a free loopback port and serves until the process ends.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(|s, p, b| post_result(s, p, b, OutcomeKind::Response)),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(|s, p, b| post_result(s, p, b, OutcomeKind::Error)),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/", post(sfn))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi { shared, addr })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Arms the next invocation: the first `GET /next` gets `event`.
    pub fn arm(&self, request_id: &str, function_arn: &str, event: Value, timeout: Duration) {
        *lock(&self.shared.current) = Some(Invocation {
            request_id: request_id.to_string(),
            function_arn: function_arn.to_string(),
            event: Some(event),
            timeout,
            first_next: None,
            served: None,
            outcome: None,
            sfn_calls: Vec::new(),
        });
    }

    /// Arms an init-only run: the first `GET /next` is recorded and gets no event (the
    /// function stays idle, as a sandbox waiting for its first invocation).
    pub fn arm_idle(&self, request_id: &str, function_arn: &str, timeout: Duration) {
        *lock(&self.shared.current) = Some(Invocation {
            request_id: request_id.to_string(),
            function_arn: function_arn.to_string(),
            event: None,
            timeout,
            first_next: None,
            served: None,
            outcome: None,
            sfn_calls: Vec::new(),
        });
    }

    /// Waits until the function asks for its first event (init done), posts an init error,
    /// or `deadline` passes.
    pub async fn wait_init(&self, deadline: Instant) {
        loop {
            let notified = self.shared.done.notified();
            if self
                .snapshot()
                .is_some_and(|r| r.first_next.is_some() || r.outcome.is_some())
            {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return;
            }
        }
    }

    /// Waits until the function posts a result or `deadline` passes.
    pub async fn wait(&self, deadline: Instant) {
        loop {
            let notified = self.shared.done.notified();
            if self.snapshot().is_some_and(|r| r.outcome.is_some()) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return;
            }
        }
    }

    /// Returns what happened so far.
    pub fn snapshot(&self) -> Option<Record> {
        lock(&self.shared.current).as_ref().map(|i| Record {
            first_next: i.first_next,
            served: i.served,
            outcome: i.outcome.clone(),
            sfn_calls: i.sfn_calls.clone(),
        })
    }

    /// Ends the invocation: later requests find nothing armed.
    pub fn disarm(&self) -> Option<Record> {
        let record = self.snapshot();
        *lock(&self.shared.current) = None;
        record
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `GET /next`: the armed event once, with the headers Lambda sends; later
/// calls wait forever, like a frozen sandbox between invocations.
async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let now = Instant::now();
    let served = {
        let mut guard = lock(&shared.current);
        match guard.as_mut() {
            Some(inv) => {
                if inv.first_next.is_none() {
                    inv.first_next = Some(now);
                    shared.done.notify_waiters();
                }
                inv.event.take().map(|event| {
                    inv.served = Some(Instant::now());
                    (
                        event,
                        inv.request_id.clone(),
                        inv.function_arn.clone(),
                        inv.timeout,
                    )
                })
            }
            None => None,
        }
    };
    let Some((event, id, arn, timeout)) = served else {
        std::future::pending::<()>().await;
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("lambda-runtime-aws-request-id", header(&id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&(epoch_ms() + timeout.as_millis()).to_string()),
    );
    headers.insert("lambda-runtime-invoked-function-arn", header(&arn));
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    let trace = format!(
        "Root=1-{:08x}-{:0>24};Parent={:0>16};Sampled=0",
        epoch_ms() / 1000,
        hex.get(hex.len().saturating_sub(24)..).unwrap_or(""),
        hex.get(hex.len().saturating_sub(16)..).unwrap_or("")
    );
    headers.insert("lambda-runtime-trace-id", header(&trace));
    (StatusCode::OK, headers, event.to_string()).into_response()
}

fn parse(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn record(shared: &Shared, kind: OutcomeKind, body: &Bytes, id: Option<&str>) -> StatusCode {
    let at = Instant::now();
    let mut guard = lock(&shared.current);
    let Some(inv) = guard.as_mut() else {
        return StatusCode::NOT_FOUND;
    };
    if id.is_some_and(|id| id != inv.request_id) {
        return StatusCode::BAD_REQUEST;
    }
    inv.outcome.get_or_insert(Outcome {
        kind,
        body: parse(body),
        at,
    });
    drop(guard);
    shared.done.notify_waiters();
    StatusCode::ACCEPTED
}

async fn post_result(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
    kind: OutcomeKind,
) -> Response {
    let status = record(&shared, kind, &body, Some(&id));
    (status, axum::Json(json!({"status": "OK"}))).into_response()
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let status = record(&shared, OutcomeKind::InitError, &body, None);
    (status, axum::Json(json!({"status": "OK"}))).into_response()
}

/// The Step Functions JSON protocol (`X-Amz-Target: AWSStepFunctions.<Op>`).
async fn sfn(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AWSStepFunctions."))
        .unwrap_or("")
        .to_string();
    let request = parse(&body);
    if let Some(inv) = lock(&shared.current).as_mut() {
        inv.sfn_calls.push(SfnCall {
            operation: operation.clone(),
            request: request.clone(),
        });
    }
    let (status, reply) = match operation.as_str() {
        "DescribeExecution" => (
            StatusCode::BAD_REQUEST,
            json!({"__type": "ExecutionDoesNotExist", "message": "Execution does not exist"}),
        ),
        "StartExecution" => {
            let name = request["name"].as_str().unwrap_or("execution");
            let arn = STATE_MACHINE_ARN.replacen(":stateMachine:", ":execution:", 1) + ":" + name;
            (
                StatusCode::OK,
                json!({"executionArn": arn, "startDate": epoch_ms() as f64 / 1000.0}),
            )
        }
        "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => (StatusCode::OK, json!({})),
        _ => (
            StatusCode::BAD_REQUEST,
            json!({"__type": "UnknownOperationException", "message": operation}),
        ),
    };
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    (status, h, reply.to_string()).into_response()
}
