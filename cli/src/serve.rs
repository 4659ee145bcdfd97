//! `certops serve`: the Step Functions JSON protocol on loopback, over the
//! durable embedded engine.

use crate::data_dir;
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use certops_asl::api::{self, ApiError};
use certops_asl::{Engine, EngineOptions, FunctionRegistry, Storage, TokioClock};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// Options of `certops serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 8083)]
    port: u16,
    /// Address to bind. Loopback by default; the local API has no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
}

const JSON_10: &str = "application/x-amz-json-1.0";

/// The HTTP app: `POST /` with `X-Amz-Target: AWSStepFunctions.<Op>`, and `GET /health`.
pub fn app(engine: Engine) -> Router {
    Router::new()
        .route("/", post(sfn))
        .route("/health", get(|| async { "ok" }))
        .with_state(engine)
}

async fn sfn(State(engine): State<Engine>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
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

/// Runs the server until Ctrl-C.
pub async fn run(dir: &Path, args: ServeArgs) -> Result<u8> {
    let _lock = data_dir::lock(dir)?;
    let opts = EngineOptions {
        storage: Storage::Sqlite(data_dir::state_db(dir)),
        ..EngineOptions::default()
    };
    let functions = FunctionRegistry::with_builtins();
    let engine = Engine::open(
        opts,
        Arc::new(functions.clone()),
        Arc::new(TokioClock::system()),
    )
    .context("opening the engine state")?;
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let resumed = engine.running_count();
    eprintln!(
        "certops serve: Step Functions API on http://{addr} (data in {}; {resumed} running execution(s) resumed; local functions: {})",
        dir.display(),
        functions.names().join(", ")
    );
    axum::serve(listener, app(engine))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(0)
}
