//! A small ACME server written for the tests from RFC 8555 (directory, nonces, accounts,
//! orders, finalize, certificate download), RFC 9773 (ACME Renewal Information: the
//! `renewalInfo` resource and the `replaces` field of new orders) and the ACME profiles draft
//! (`meta.profiles` in the directory, `profile` in new orders) — what the Debian pebble 2.4
//! lacks. Served over TLS on loopback with a [`TestPki`] leaf.
//!
//! Faithful where the client depends on it: every response carries a fresh `Replay-Nonce`, a
//! POST with an unknown or reused nonce is refused with `badNonce`, the JWS `url` must equal
//! the request URL, an order that `replaces` a certificate this CA did not issue is refused
//! (RFC 9773 §5), `renewalInfo` answers with a `Retry-After`. It does not verify JWS
//! signatures and skips authorizations (orders are born `ready`): the ACME issuer test against
//! pebble covers those.
//!
//! [`TestPki`]: crate::issuers::test_pki::TestPki

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::issuers::test_pki::TestPki;
use crate::issuers::tls_listener::TlsListener;
use crate::process::free_port;

/// What the server recorded of one new order.
#[derive(Debug, Clone)]
pub struct OrderSeen {
    /// The identifiers asked for.
    pub identifiers: Vec<String>,
    /// The profile asked for, if any.
    pub profile: Option<String>,
    /// The certificate the order replaces (RFC 9773), if any.
    pub replaces: Option<String>,
}

struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

struct Inner {
    base: String,
    nonces: HashSet<String>,
    orders: Vec<(OrderSeen, Option<String>)>,
    issued_ids: HashSet<String>,
    window: (DateTime<Utc>, DateTime<Utc>),
    renewal_info_requests: Vec<String>,
    validity_days: i64,
}

struct Shared {
    ca: Ca,
    inner: Mutex<Inner>,
}

/// The running server.
pub struct MiniAcme {
    /// Its port.
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_default()
}

fn nonce(s: &Shared) -> HeaderValue {
    let n = b64(uuid::Uuid::new_v4().as_bytes());
    if let Ok(mut i) = s.inner.lock() {
        i.nonces.insert(n.clone());
    }
    HeaderValue::from_str(&n).unwrap_or(HeaderValue::from_static("x"))
}

fn respond(s: &Shared, status: StatusCode, body: Value, location: Option<String>) -> Response {
    let mut rsp = (status, body.to_string()).into_response();
    let h = rsp.headers_mut();
    h.insert("replay-nonce", nonce(s));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert("location", l);
    }
    rsp
}

fn problem(s: &Shared, status: StatusCode, kind: &str, detail: &str) -> Response {
    let mut rsp = respond(
        s,
        status,
        json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail, "status": status.as_u16()}),
        None,
    );
    rsp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/problem+json"),
    );
    rsp
}

/// Checks a JWS POST: a nonce this server issued (spent now) and `url` = this request's URL.
/// Returns the decoded payload (`Value::Null` for POST-as-GET).
fn jws(s: &Shared, path: &str, body: &[u8]) -> Result<Value, Box<Response>> {
    let Ok(outer) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new(problem(
            s,
            StatusCode::BAD_REQUEST,
            "malformed",
            "not a JWS",
        )));
    };
    let protected: Value =
        serde_json::from_slice(&unb64(outer["protected"].as_str().unwrap_or_default()))
            .unwrap_or(Value::Null);
    let nonce = protected["nonce"].as_str().unwrap_or_default().to_string();
    let (base, fresh) = match s.inner.lock() {
        Ok(mut i) => (i.base.clone(), i.nonces.remove(&nonce)),
        Err(_) => (String::new(), false),
    };
    if !fresh {
        return Err(Box::new(problem(
            s,
            StatusCode::BAD_REQUEST,
            "badNonce",
            "unknown or used nonce",
        )));
    }
    if protected["url"].as_str() != Some(&format!("{base}{path}")) {
        return Err(Box::new(problem(
            s,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "JWS url mismatch",
        )));
    }
    let payload = outer["payload"].as_str().unwrap_or_default();
    if payload.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&unb64(payload)).unwrap_or(Value::Null))
}

async fn directory(State(s): State<Arc<Shared>>) -> Response {
    let base = s.inner.lock().map(|i| i.base.clone()).unwrap_or_default();
    respond(
        &s,
        StatusCode::OK,
        json!({
            "newNonce": format!("{base}/nonce"),
            "newAccount": format!("{base}/account"),
            "newOrder": format!("{base}/order"),
            "revokeCert": format!("{base}/revoke"),
            "renewalInfo": format!("{base}/renewal-info"),
            "meta": {"profiles": {
                "classic": "the default 90-day profile",
                "shortlived": "6-day certificates"
            }}
        }),
        None,
    )
}

async fn new_nonce(State(s): State<Arc<Shared>>) -> Response {
    let mut rsp = StatusCode::OK.into_response();
    rsp.headers_mut().insert("replay-nonce", nonce(&s));
    rsp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    rsp
}

async fn new_account(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    if let Err(r) = jws(&s, "/account", &body) {
        return *r;
    }
    let base = s.inner.lock().map(|i| i.base.clone()).unwrap_or_default();
    respond(
        &s,
        StatusCode::CREATED,
        json!({"status": "valid"}),
        Some(format!("{base}/acct/1")),
    )
}

fn order_body(base: &str, id: usize, seen: &OrderSeen, cert: Option<&String>) -> Value {
    let mut v = json!({
        "status": if cert.is_some() { "valid" } else { "ready" },
        "identifiers": seen.identifiers.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>(),
        "authorizations": [],
        "finalize": format!("{base}/finalize/{id}"),
    });
    if let Some(p) = &seen.profile {
        v["profile"] = json!(p);
    }
    if let Some(r) = &seen.replaces {
        v["replaces"] = json!(r);
    }
    if cert.is_some() {
        v["certificate"] = json!(format!("{base}/cert/{id}"));
    }
    v
}

async fn new_order(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let payload = match jws(&s, "/order", &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let seen = OrderSeen {
        identifiers: payload["identifiers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        profile: payload["profile"].as_str().map(str::to_string),
        replaces: payload["replaces"].as_str().map(str::to_string),
    };
    let Ok(mut inner) = s.inner.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some(r) = &seen.replaces {
        if !inner.issued_ids.contains(r) {
            drop(inner);
            return problem(
                &s,
                StatusCode::CONFLICT,
                "malformed",
                "replaces names no certificate issued here",
            );
        }
    }
    if let Some(p) = &seen.profile {
        if p != "classic" && p != "shortlived" {
            drop(inner);
            return problem(
                &s,
                StatusCode::BAD_REQUEST,
                "invalidProfile",
                "no such profile",
            );
        }
    }
    inner.orders.push((seen.clone(), None));
    let id = inner.orders.len() - 1;
    let base = inner.base.clone();
    drop(inner);
    respond(
        &s,
        StatusCode::CREATED,
        order_body(&base, id, &seen, None),
        Some(format!("{base}/order/{id}")),
    )
}

async fn order(
    State(s): State<Arc<Shared>>,
    Path(id): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = jws(&s, &format!("/order/{id}"), &body) {
        return *r;
    }
    let Some((base, seen, cert)) = s.inner.lock().ok().and_then(|i| {
        i.orders
            .get(id)
            .map(|(o, c)| (i.base.clone(), o.clone(), c.clone()))
    }) else {
        return problem(&s, StatusCode::NOT_FOUND, "malformed", "no such order");
    };
    respond(
        &s,
        StatusCode::OK,
        order_body(&base, id, &seen, cert.as_ref()),
        None,
    )
}

fn aki_serial_id(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    Some(format!(
        "{}.{}",
        b64(&aki),
        b64(cert.tbs_certificate.raw_serial())
    ))
}

async fn finalize(
    State(s): State<Arc<Shared>>,
    Path(id): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    let payload = match jws(&s, &format!("/finalize/{id}"), &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let csr_der = unb64(payload["csr"].as_str().unwrap_or_default());
    let Ok(mut csr) = rcgen::CertificateSigningRequestParams::from_der(&csr_der.into()) else {
        return problem(&s, StatusCode::BAD_REQUEST, "badCSR", "CSR does not parse");
    };
    csr.params.use_authority_key_identifier_extension = true;
    let now = Utc::now();
    csr.params.not_before = time::OffsetDateTime::from_unix_timestamp(now.timestamp() - 60)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let days = s.inner.lock().map(|i| i.validity_days).unwrap_or(7);
    csr.params.not_after = csr.params.not_before + time::Duration::days(days);
    let Ok(cert) = csr.signed_by(&s.ca.issuer) else {
        return problem(&s, StatusCode::BAD_REQUEST, "badCSR", "cannot sign");
    };
    let chain = format!("{}{}", cert.pem(), s.ca.pem);
    let Ok(mut inner) = s.inner.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some(cid) = aki_serial_id(cert.der()) {
        inner.issued_ids.insert(cid);
    }
    let Some(slot) = inner.orders.get_mut(id) else {
        drop(inner);
        return problem(&s, StatusCode::NOT_FOUND, "malformed", "no such order");
    };
    slot.1 = Some(chain);
    let (seen, cert) = (slot.0.clone(), slot.1.clone());
    let base = inner.base.clone();
    drop(inner);
    respond(
        &s,
        StatusCode::OK,
        order_body(&base, id, &seen, cert.as_ref()),
        Some(format!("{base}/order/{id}")),
    )
}

async fn certificate(
    State(s): State<Arc<Shared>>,
    Path(id): Path<usize>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = jws(&s, &format!("/cert/{id}"), &body) {
        return *r;
    }
    let chain = s
        .inner
        .lock()
        .ok()
        .and_then(|i| i.orders.get(id).and_then(|o| o.1.clone()));
    let Some(chain) = chain else {
        return problem(&s, StatusCode::NOT_FOUND, "malformed", "no certificate");
    };
    let mut rsp = (StatusCode::OK, chain).into_response();
    rsp.headers_mut().insert("replay-nonce", nonce(&s));
    rsp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/pem-certificate-chain"),
    );
    rsp
}

async fn renewal_info(State(s): State<Arc<Shared>>, Path(cert_id): Path<String>) -> Response {
    let Ok(mut inner) = s.inner.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    inner.renewal_info_requests.push(cert_id.clone());
    if !inner.issued_ids.contains(&cert_id) {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    let (start, end) = inner.window;
    drop(inner);
    let mut rsp = (
        StatusCode::OK,
        json!({"suggestedWindow": {"start": start.to_rfc3339(), "end": end.to_rfc3339()},
               "explanationURL": "https://example.com/ari-incident"})
        .to_string(),
    )
        .into_response();
    let h: &mut HeaderMap = rsp.headers_mut();
    h.insert("retry-after", HeaderValue::from_static("21600"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    rsp
}

impl MiniAcme {
    /// Starts the server presenting `pki`'s leaf; issued certificates chain to its own CA.
    pub async fn start(pki: &TestPki) -> MiniAcme {
        let port = free_port();
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mini ACME CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).expect("CA");
        let now = Utc::now();
        let shared = Arc::new(Shared {
            ca: Ca {
                pem: cert.pem(),
                issuer: rcgen::Issuer::new(params, key),
            },
            inner: Mutex::new(Inner {
                base: format!("https://127.0.0.1:{port}"),
                nonces: HashSet::new(),
                orders: Vec::new(),
                issued_ids: HashSet::new(),
                window: (
                    now + chrono::TimeDelta::days(3),
                    now + chrono::TimeDelta::days(4),
                ),
                renewal_info_requests: Vec::new(),
                validity_days: 7,
            }),
        });
        let app = Router::new()
            .route("/dir", get(directory))
            .route("/nonce", get(new_nonce).head(new_nonce))
            .route("/account", post(new_account))
            .route("/order", post(new_order))
            .route("/order/{id}", post(order))
            .route("/finalize/{id}", post(finalize))
            .route("/cert/{id}", post(certificate))
            .route("/renewal-info/{id}", get(renewal_info))
            .with_state(shared.clone());
        let listener = TlsListener::bind(port, pki.server_config()).await;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MiniAcme { port, shared, task }
    }

    /// The directory URL.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The CA certificate everything issued here chains to.
    pub fn ca_pem(&self) -> String {
        self.shared.ca.pem.clone()
    }

    /// Sets how many days the certificates issued from now on are valid (default 7).
    pub fn set_validity_days(&self, days: i64) {
        if let Ok(mut i) = self.shared.inner.lock() {
            i.validity_days = days;
        }
    }

    /// Sets the suggested renewal window `renewalInfo` answers with.
    pub fn set_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) {
        if let Ok(mut i) = self.shared.inner.lock() {
            i.window = (start, end);
        }
    }

    /// Every new order so far.
    pub fn orders(&self) -> Vec<OrderSeen> {
        self.shared
            .inner
            .lock()
            .map(|i| i.orders.iter().map(|(o, _)| o.clone()).collect())
            .unwrap_or_default()
    }

    /// The certificate ids `renewalInfo` was asked about.
    pub fn renewal_info_requests(&self) -> Vec<String> {
        self.shared
            .inner
            .lock()
            .map(|i| i.renewal_info_requests.clone())
            .unwrap_or_default()
    }
}

impl Drop for MiniAcme {
    fn drop(&mut self) {
        self.task.abort();
    }
}
