//! A fault proxy in front of pebble: forwards every ACME request with its `Host` header (so
//! pebble's URLs name the proxy; any that still name pebble are rewritten), counts requests per method and path (and pebble's answers per status), and
//! injects what the Debian pebble cannot produce — `newOrder` answered with HTTP 429
//! `urn:ietf:params:acme:error:rateLimited` and a `Retry-After`, as Let's Encrypt does
//! (RFC 8555 §6.6), and `badNonce` refusals (§6.5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::issuers::test_pki::TestPki;
use crate::issuers::tls_listener::TlsListener;
use crate::process::free_port;

/// Faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer `newOrder` with 429 rateLimited and this `Retry-After` (seconds).
    pub rate_limit_new_order: Option<u64>,
    /// Answer the next N POSTs with 400 badNonce.
    pub bad_nonces: u32,
}

struct ProxyState {
    upstream: String,
    own: String,
    client: reqwest::Client,
    faults: Mutex<Faults>,
    counts: Mutex<HashMap<String, usize>>,
}

/// The running proxy.
pub struct FaultProxy {
    /// Its port.
    pub port: u16,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let mut rsp = (
        status,
        serde_json::json!({"type": kind, "detail": detail, "status": status.as_u16()}).to_string(),
    )
        .into_response();
    rsp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/problem+json"),
    );
    rsp
}

async fn forward(State(s): State<Arc<ProxyState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let path = req.uri().path().to_string();
    if let Ok(mut c) = s.counts.lock() {
        *c.entry(format!("{method} {path}")).or_default() += 1;
    }
    let faults = s.faults.lock().map(|f| f.clone()).unwrap_or_default();
    if method == Method::POST && faults.bad_nonces > 0 {
        if let Ok(mut f) = s.faults.lock() {
            f.bad_nonces -= 1;
        }
        return problem(
            StatusCode::BAD_REQUEST,
            "urn:ietf:params:acme:error:badNonce",
            "JWS has an invalid anti-replay nonce",
        );
    }
    if method == Method::POST && path == "/order-plz" {
        if let Some(secs) = faults.rate_limit_new_order {
            let mut rsp = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "urn:ietf:params:acme:error:rateLimited",
                "too many new orders recently: see https://letsencrypt.org/docs/rate-limits/",
            );
            rsp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
            return rsp;
        }
    }
    let headers: HeaderMap = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let method_seen = method.clone();
    let mut call = s
        .client
        .request(method, format!("{}{path_q}", s.upstream))
        .body(body);
    for (k, v) in &headers {
        // The Host header goes through: pebble builds its URLs (and checks each JWS `url`)
        // from it, so the client sees and signs the proxy's URLs.
        if k != "content-length" {
            call = call.header(k, v);
        }
    }
    let Ok(up) = call.send().await else {
        return problem(
            StatusCode::BAD_GATEWAY,
            "urn:ietf:params:acme:error:serverInternal",
            "upstream unreachable",
        );
    };
    let status = up.status();
    if let Ok(mut c) = s.counts.lock() {
        *c.entry(format!("{method_seen} {path} {}", status.as_u16()))
            .or_default() += 1;
    }
    let mut out_headers = HeaderMap::new();
    for (k, v) in up.headers() {
        if k == "content-length" || k == "transfer-encoding" || k == "connection" {
            continue;
        }
        let value = v
            .to_str()
            .map(|t| HeaderValue::from_str(&t.replace(&s.upstream, &s.own)))
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| v.clone());
        out_headers.append(k, value);
    }
    let bytes = up.bytes().await.unwrap_or_default();
    let body = match std::str::from_utf8(&bytes) {
        Ok(text) => Bytes::from(text.replace(&s.upstream, &s.own)),
        Err(_) => bytes,
    };
    let mut rsp = (status, body).into_response();
    rsp.headers_mut().extend(out_headers);
    rsp
}

impl FaultProxy {
    /// Starts a proxy for `upstream` (pebble's `https://127.0.0.1:<port>`), trusting and
    /// presenting `pki`.
    pub async fn start(upstream: &str, pki: &TestPki) -> FaultProxy {
        let port = free_port();
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            own: format!("https://127.0.0.1:{port}"),
            client: pki.client(),
            faults: Mutex::new(Faults::default()),
            counts: Mutex::new(HashMap::new()),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = TlsListener::bind(port, pki.server_config()).await;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { port, state, task }
    }

    /// The ACME directory URL through the proxy.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        if let Ok(mut f) = self.state.faults.lock() {
            *f = faults;
        }
    }

    /// How many `<METHOD> <path>` requests arrived (e.g. `POST /order-plz`).
    pub fn count(&self, key: &str) -> usize {
        self.state
            .counts
            .lock()
            .map(|c| c.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// How many `<METHOD> <path>` requests pebble answered with `status`: the attempts
    /// `count` sees include those pebble refused (it rejects 5 % of nonces on its own).
    pub fn answered(&self, key: &str, status: u16) -> usize {
        self.count(&format!("{key} {status}"))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
