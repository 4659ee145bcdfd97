//! A ServiceNow instance emulator on 127.0.0.1, built from ServiceNow's API reference
//! (ServiceNowDocs `api-reference`): the Table API (`/api/now/[v1|v2/]table/{table}` with
//! `sysparm_query`, `sysparm_fields`, `sysparm_display_value` = `false`/`true`/`all`,
//! `sysparm_limit`/`sysparm_offset`, `X-Total-Count`), the Change Management API
//! (`/api/sn_chg_rest/change/normal|emergency`, `/change/standard/{template}`, the template
//! list `/change/standard/template[/{sys_id}]`,
//! `/change/{sys_id}`, `/change/{sys_id}/nextstates`, `/change/{sys_id}/approvals`) with the
//! default state models, the Attachment API (`/api/now/[v1/]attachment[...]`), work-note and
//! comment journals (`sys_journal_field`), `/oauth_token.do` (password, client-credentials
//! and refresh-token grants), Basic auth, role-based ACLs answering 403, inbound rate limits
//! (429 with `Retry-After` and `X-RateLimit-Limit`/`-Reset`/`-Rule`), and ServiceNow's error
//! body `{"error":{"message","detail"},"status":"failure"}`.
//!
//! Faults for tests: a 429 storm ([`ServiceNowEmulator::throttle`]), 5xx answers
//! ([`ServiceNowEmulator::fail_next`]), expiring or revoked tokens, the instance becoming
//! unreachable (listener closed and every open connection dropped) and coming back on the
//! same port ([`ServiceNowEmulator::set_reachable`]), and records deleted under a run.
//!
//! The server runs on its own thread and runtime so it keeps answering while a test's
//! runtime is busy, and stops when the handle is dropped.

pub mod query;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use query::Query;

type Record = Map<String, Value>;

/// A refusal already rendered as ServiceNow's answer (boxed: a response is large).
type Refusal = Box<Response<Body>>;

/// A user of the instance.
#[derive(Debug, Clone)]
struct User {
    sys_id: String,
    password: String,
    roles: Vec<String>,
}

#[derive(Debug, Clone)]
struct Token {
    user: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Faults {
    /// Requests still to refuse with 429.
    throttle: u32,
    /// The Retry-After those refusals carry, seconds.
    retry_after: u64,
    /// Requests still to answer with this 5xx status.
    fail: u32,
    fail_status: u16,
    /// Writes still to refuse with `fail_status` before applying them.
    fail_writes: u32,
    /// Writes still to apply and then answer 502 (the answer lost on the way back).
    lose_writes: u32,
    /// An hourly limit per user, as a rate limit rule sets it.
    hourly_limit: Option<u64>,
    /// Requests counted per user in the current hour.
    used: HashMap<String, u64>,
    window_start: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct Db {
    tables: BTreeMap<String, Vec<Record>>,
    files: HashMap<String, Vec<u8>>,
    users: HashMap<String, User>,
    clients: HashMap<String, String>,
    tokens: HashMap<String, Token>,
    refresh: HashMap<String, String>,
    counters: HashMap<&'static str, u64>,
    token_ttl: u64,
    template: String,
    rule: String,
}

/// What the test can see and change.
#[derive(Debug, Default)]
struct Shared {
    db: Mutex<Db>,
    faults: Mutex<Faults>,
    requests: Mutex<Vec<String>>,
    base: Mutex<String>,
    /// When set, every record-creating request waits here until as many have arrived as
    /// the barrier counts (a race between concurrent opens, made certain).
    hold_creates: Mutex<Option<Arc<tokio::sync::Barrier>>>,
    /// Armed outages: the first request whose line starts with the prefix is applied, then
    /// the instance goes down (its answer lost) for the duration.
    outages: Mutex<Vec<(String, Duration)>>,
    /// The server's control channel, for an outage a request sets off.
    ctl: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Ctl>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Ctl {
    Down(std::sync::mpsc::Sender<()>),
    Up(std::sync::mpsc::Sender<()>),
    Stop,
}

/// A running emulated instance. Dropping it stops the server.
pub struct ServiceNowEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ctl: tokio::sync::mpsc::UnboundedSender<Ctl>,
    thread: Option<std::thread::JoinHandle<()>>,
    ca_pem: Option<String>,
}

impl std::fmt::Debug for ServiceNowEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceNowEmulator")
            .field("addr", &self.addr)
            .finish()
    }
}

fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn now_text() -> String {
    Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

impl ServiceNowEmulator {
    /// Starts an instance on a free loopback port (plain HTTP) with an `admin` user and the
    /// change template `STD-CERT-NONPROD`.
    pub fn start() -> std::io::Result<ServiceNowEmulator> {
        Self::start_with(None)
    }

    /// Like [`ServiceNowEmulator::start`], serving HTTPS with a certificate for `127.0.0.1`
    /// and `localhost` made at run time; the CA certificate (PEM) a client must trust is
    /// [`ServiceNowEmulator::ca_pem`].
    pub fn start_tls() -> std::io::Result<ServiceNowEmulator> {
        let other = |e: rcgen::Error| std::io::Error::other(e.to_string());
        let ca_key = rcgen::KeyPair::generate().map_err(other)?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "ServiceNow emulator test CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).map_err(other)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().map_err(other)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .map_err(other)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).map_err(other)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(std::io::Error::other)?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), ca_cert.der().clone()], der)
            .map_err(std::io::Error::other)?;
        let mut emu = Self::start_with(Some(Arc::new(config)))?;
        emu.ca_pem = Some(ca_cert.pem());
        Ok(emu)
    }

    /// The PEM certificate to trust for an HTTPS emulator.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> std::io::Result<ServiceNowEmulator> {
        let shared = Arc::new(Shared::default());
        {
            let mut db = lock(&shared.db);
            db.token_ttl = 1800;
            db.rule = new_sys_id();
            let template = new_sys_id();
            db.template = template.clone();
            db.tables
                .entry("std_change_record_producer".into())
                .or_default()
                .push(obj(json!({
                    "sys_id": template,
                    "name": "STD-CERT-NONPROD: certificate renewal outside production",
                    "short_description": "Renew a TLS certificate outside production",
                    "template": new_sys_id(),
                    "active": "true",
                })));
        }
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        *lock(&shared.base) = format!("{scheme}://{addr}");
        let (ctl, rx) = tokio::sync::mpsc::unbounded_channel();
        *lock(&shared.ctl) = Some(ctl.clone());
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("servicenow-emulator".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(_) => return,
                };
                rt.block_on(serve(std_listener, addr, s2, rx, tls));
            })?;
        let emu = ServiceNowEmulator {
            addr,
            shared,
            ctl,
            thread: Some(thread),
            ca_pem: None,
        };
        emu.add_user("admin", "admin-password", &["admin"]);
        Ok(emu)
    }

    /// The instance URL (`http://127.0.0.1:<port>`, or `https://localhost:<port>` with TLS).
    pub fn url(&self) -> String {
        match self.ca_pem {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// Adds a user with roles (`itil`, `sn_change_writer`, `admin`, …).
    pub fn add_user(&self, name: &str, password: &str, roles: &[&str]) -> String {
        let mut db = lock(&self.shared.db);
        let sys_id = new_sys_id();
        db.users.insert(
            name.into(),
            User {
                sys_id: sys_id.clone(),
                password: password.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            },
        );
        db.tables
            .entry("sys_user".into())
            .or_default()
            .push(obj(json!({
                "sys_id": sys_id, "user_name": name, "name": name,
                "email": if name.contains('@') { name.to_string() } else { format!("{name}@example.com") },
                "active": "true",
            })));
        sys_id
    }

    /// Registers an OAuth application registry entry.
    pub fn add_oauth_client(&self, client_id: &str, client_secret: &str) {
        lock(&self.shared.db)
            .clients
            .insert(client_id.into(), client_secret.into());
    }

    /// Sets the lifetime of tokens issued from now on.
    pub fn set_token_ttl(&self, seconds: u64) {
        lock(&self.shared.db).token_ttl = seconds;
    }

    /// Expires every issued access token now (refresh tokens stay valid).
    pub fn expire_tokens(&self) {
        let mut db = lock(&self.shared.db);
        let past = Instant::now();
        for t in db.tokens.values_mut() {
            t.expires = past;
        }
    }

    /// How many access tokens were issued.
    pub fn tokens_issued(&self) -> u64 {
        lock(&self.shared.db)
            .counters
            .get("tokens")
            .copied()
            .unwrap_or(0)
    }

    /// The sys_id of the `STD-CERT-NONPROD` standard change template.
    pub fn standard_template(&self) -> String {
        lock(&self.shared.db).template.clone()
    }

    /// Publishes a standard change template (a `std_change_record_producer` record) named
    /// `name`; an inactive one stands for a retired template. Returns its sys_id.
    pub fn add_standard_template(&self, name: &str, active: bool) -> String {
        let sys_id = new_sys_id();
        lock(&self.shared.db)
            .tables
            .entry("std_change_record_producer".into())
            .or_default()
            .push(obj(json!({
                "sys_id": sys_id,
                "name": name,
                "short_description": name,
                "template": new_sys_id(),
                "active": active.to_string(),
            })));
        sys_id
    }

    /// Holds every record-creating request (a Table API or Change API `POST`) until
    /// `together` of them have arrived, then lets them through at once: concurrent opens
    /// are then certain to have all looked for the record before any of them created it.
    /// `0` ends the hold.
    pub fn hold_creates(&self, together: usize) {
        *lock(&self.shared.hold_creates) =
            (together > 0).then(|| Arc::new(tokio::sync::Barrier::new(together)));
    }

    /// Arms an outage: the first request whose line (`METHOD /path?query`) starts with
    /// `prefix` is applied, then the instance goes unreachable before answering it (the
    /// answer is lost, every connection dropped) and comes back on the same port after
    /// `length`.
    pub fn outage_after(&self, prefix: &str, length: Duration) {
        lock(&self.shared.outages).push((prefix.to_string(), length));
    }

    /// Whether every armed outage has happened.
    pub fn outages_done(&self) -> bool {
        lock(&self.shared.outages).is_empty()
    }

    /// Refuses the next `requests` API calls with 429 and `Retry-After: retry_after`.
    pub fn throttle(&self, requests: u32, retry_after: u64) {
        let mut f = lock(&self.shared.faults);
        f.throttle = requests;
        f.retry_after = retry_after;
    }

    /// Answers the next `requests` API calls with `status` (a 5xx).
    pub fn fail_next(&self, requests: u32, status: u16) {
        let mut f = lock(&self.shared.faults);
        f.fail = requests;
        f.fail_status = status;
    }

    /// Answers the next `requests` writes (POST/PATCH/PUT/DELETE) with `status` without
    /// applying them.
    pub fn fail_next_writes(&self, requests: u32, status: u16) {
        let mut f = lock(&self.shared.faults);
        f.fail_writes = requests;
        f.fail_status = status;
    }

    /// Applies the next `requests` writes and then answers 502, as when a proxy loses the
    /// instance's answer: the client cannot tell whether the write landed.
    pub fn lose_next_write_answers(&self, requests: u32) {
        lock(&self.shared.faults).lose_writes = requests;
    }

    /// Installs an hourly rate limit rule per user (None removes it).
    pub fn set_hourly_limit(&self, limit: Option<u64>) {
        let mut f = lock(&self.shared.faults);
        f.hourly_limit = limit;
        f.used.clear();
        f.window_start = Some(Utc::now());
    }

    /// Makes the instance unreachable (connections refused, open ones dropped) or
    /// reachable again on the same port. Returns once the change is in effect.
    pub fn set_reachable(&self, reachable: bool) {
        let (tx, rx) = std::sync::mpsc::channel();
        let msg = if reachable {
            Ctl::Up(tx)
        } else {
            Ctl::Down(tx)
        };
        if self.ctl.send(msg).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Every request served so far (`METHOD /path?query -> status`), oldest first.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests).clone()
    }

    /// Every record of a table (raw stored values).
    pub fn records(&self, table: &str) -> Vec<Value> {
        lock(&self.shared.db)
            .tables
            .get(table)
            .map(|rs| rs.iter().cloned().map(Value::Object).collect())
            .unwrap_or_default()
    }

    /// The record with this number.
    pub fn record(&self, table: &str, number: &str) -> Option<Value> {
        self.records(table)
            .into_iter()
            .find(|r| r["number"] == number)
    }

    /// Inserts a record as a person working in the instance would (numbers and defaults
    /// filled in; references given by name are resolved). Returns it.
    pub fn insert(&self, table: &str, fields: Value, as_user: &str) -> Value {
        let mut db = lock(&self.shared.db);
        let rec = insert_record(&mut db, table, obj(fields), as_user);
        Value::Object(rec)
    }

    /// Deletes the record with this number (as an administrator would, mid-run).
    pub fn delete(&self, table: &str, number: &str) -> bool {
        let mut db = lock(&self.shared.db);
        let Some(rs) = db.tables.get_mut(table) else {
            return false;
        };
        let before = rs.len();
        rs.retain(|r| r.get("number").and_then(Value::as_str) != Some(number));
        rs.len() != before
    }

    /// The work notes of a record, oldest first.
    pub fn work_notes(&self, sys_id: &str) -> Vec<String> {
        self.records("sys_journal_field")
            .into_iter()
            .filter(|j| j["element_id"] == sys_id && j["element"] == "work_notes")
            .filter_map(|j| j["value"].as_str().map(str::to_string))
            .collect()
    }

    /// The attachments' metadata of a record.
    pub fn attachments(&self, sys_id: &str) -> Vec<Value> {
        self.records("sys_attachment")
            .into_iter()
            .filter(|a| a["table_sys_id"] == sys_id)
            .collect()
    }

    /// An attachment's bytes.
    pub fn attachment_file(&self, sys_id: &str) -> Option<Vec<u8>> {
        lock(&self.shared.db).files.get(sys_id).cloned()
    }
}

impl Drop for ServiceNowEmulator {
    fn drop(&mut self) {
        let _ = self.ctl.send(Ctl::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn obj(v: Value) -> Record {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

async fn serve(
    std_listener: std::net::TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut ctl: tokio::sync::mpsc::UnboundedReceiver<Ctl>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let router = axum::Router::new().fallback({
        let shared = shared.clone();
        move |req: Request<Body>| {
            let shared = shared.clone();
            async move { handle(shared, req).await }
        }
    });
    let (kill, _) = tokio::sync::broadcast::channel::<()>(1);
    let spawn_accept = |listener: tokio::net::TcpListener| {
        let router = router.clone();
        let kill = kill.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let mut killed = kill.subscribe();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            let Ok(tls) = a.accept(stream).await else {
                                return;
                            };
                            let conn =
                                http.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                            tokio::select! {
                                _ = conn => {}
                                _ = killed.recv() => {}
                            }
                        }
                        None => {
                            let conn = http
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                            tokio::select! {
                                _ = conn => {}
                                _ = killed.recv() => {}
                            }
                        }
                    }
                });
            }
        })
    };
    let mut accept = match tokio::net::TcpListener::from_std(std_listener) {
        Ok(l) => Some(spawn_accept(l)),
        Err(_) => None,
    };
    while let Some(msg) = ctl.recv().await {
        match msg {
            Ctl::Down(done) => {
                if let Some(a) = accept.take() {
                    a.abort();
                    let _ = a.await;
                }
                let _ = kill.send(());
                let _ = done.send(());
            }
            Ctl::Up(done) => {
                if accept.is_none() {
                    // The port was ours a moment ago; rebinding it is immediate on loopback.
                    if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
                        accept = Some(spawn_accept(l));
                    }
                }
                let _ = done.send(());
            }
            Ctl::Stop => break,
        }
    }
    if let Some(a) = accept.take() {
        a.abort();
    }
    let _ = kill.send(());
}

/// ServiceNow's error body.
fn error(status: StatusCode, message: &str, detail: Option<&str>) -> Response<Body> {
    json_response(
        status,
        json!({"error": {"message": message, "detail": detail}, "status": "failure"}),
    )
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

fn params(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Who is calling, from `Authorization`.
fn authenticate(db: &mut Db, headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    if let Some(b) = auth.strip_prefix("Basic ") {
        let text = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
        let text = String::from_utf8(text).ok()?;
        let (user, pass) = text.split_once(':')?;
        let u = db.users.get(user)?;
        return (u.password == pass).then(|| user.to_string());
    }
    if let Some(t) = auth.strip_prefix("Bearer ") {
        let tok = db.tokens.get(t)?;
        return (tok.expires > Instant::now()).then(|| tok.user.clone());
    }
    None
}

fn has_role(db: &Db, user: &str, roles: &[&str]) -> bool {
    db.users
        .get(user)
        .map(|u| {
            u.roles
                .iter()
                .any(|r| r == "admin" || roles.contains(&r.as_str()))
        })
        .unwrap_or(false)
}

const TASK_TABLES: &[&str] = &["incident", "change_request"];

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Read,
    Write,
    Delete,
}

/// The ACL: task tables need itil (changes also sn_change_writer); journals are readable
/// by itil and written only through their record; users and CIs are readable by anyone
/// signed in; everything else needs admin.
fn allowed(db: &Db, user: &str, table: &str, op: Op) -> bool {
    if op == Op::Delete {
        return has_role(db, user, &[]);
    }
    match (table, op) {
        ("incident", _) => has_role(db, user, &["itil"]),
        ("change_request", _) => has_role(db, user, &["itil", "sn_change_writer"]),
        ("sys_journal_field", Op::Read) => has_role(db, user, &["itil", "sn_change_writer"]),
        ("sys_user" | "cmdb_ci" | "std_change_record_producer", Op::Read) => true,
        _ => has_role(db, user, &[]),
    }
}

fn acl_denied(op: Op) -> Response<Body> {
    let what = match op {
        Op::Read => "Read",
        Op::Write => "Insert/Update",
        Op::Delete => "Delete",
    };
    error(
        StatusCode::FORBIDDEN,
        "Operation Failed",
        Some(&format!(
            "ACL Exception {what} Failed due to security constraints"
        )),
    )
}

async fn handle(shared: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let line = format!(
        "{} {}{}",
        req.method(),
        req.uri().path(),
        req.uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    let creates = req.method() == Method::POST
        && (req.uri().path().starts_with("/api/sn_chg_rest/change/")
            || req.uri().path().starts_with("/api/now/table/"));
    let hold = lock(&shared.hold_creates).clone();
    if let (true, Some(barrier)) = (creates, hold) {
        // Bounded: a test that sends fewer creates than it announced is not hung by it.
        let _ = tokio::time::timeout(Duration::from_secs(5), barrier.wait()).await;
    }
    let resp = answer(shared.clone(), req).await;
    lock(&shared.requests).push(format!("{line} -> {}", resp.status().as_u16()));
    let outage = {
        let mut armed = lock(&shared.outages);
        armed
            .iter()
            .position(|(prefix, _)| line.starts_with(prefix.as_str()))
            .map(|i| armed.remove(i).1)
    };
    let ctl = lock(&shared.ctl).clone();
    if let (Some(length), Some(ctl)) = (outage, ctl) {
        // The request took effect; its answer is lost with every open connection, and the
        // instance stays unreachable for `length` (the fault's definition, not a wait).
        let (done, _) = std::sync::mpsc::channel();
        let _ = ctl.send(Ctl::Down(done));
        tokio::spawn(async move {
            tokio::time::sleep(length).await;
            let (done, _) = std::sync::mpsc::channel();
            let _ = ctl.send(Ctl::Up(done));
        });
        std::future::pending::<()>().await;
    }
    resp
}

async fn answer(shared: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return error(StatusCode::BAD_REQUEST, "Request body too large", None);
    };
    let p = params(query.as_deref());
    if path == "/oauth_token.do" && parts.method == Method::POST {
        return oauth(&shared, &bytes);
    }
    if !path.starts_with("/api/") {
        return error(
            StatusCode::BAD_REQUEST,
            "Requested URI does not represent any resource",
            Some(&path),
        );
    }
    let user = {
        let mut db = lock(&shared.db);
        authenticate(&mut db, &parts.headers)
    };
    let Some(user) = user else {
        return error(
            StatusCode::UNAUTHORIZED,
            "User Not Authenticated",
            Some("Required to provide Auth information"),
        );
    };
    // Rate limiting and injected faults apply to authenticated API calls.
    let mut limit_headers: Vec<(&'static str, String)> = Vec::new();
    {
        let mut f = lock(&shared.faults);
        let rule = lock(&shared.db).rule.clone();
        let reset = (Utc::now() + chrono::Duration::hours(1)).timestamp();
        if f.throttle > 0 {
            f.throttle -= 1;
            let retry = f.retry_after;
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit exceeded",
                Some("Rate limit of 100 requests per hour for Table API exceeded"),
            );
            let h = r.headers_mut();
            for (k, v) in [
                ("retry-after", retry.to_string()),
                ("x-ratelimit-limit", "100".to_string()),
                ("x-ratelimit-reset", reset.to_string()),
                ("x-ratelimit-rule", rule),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
            return r;
        }
        let write = parts.method != Method::GET;
        if write && f.fail_writes > 0 {
            f.fail_writes -= 1;
            let status =
                StatusCode::from_u16(f.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return error(status, "Service Unavailable", Some("The instance is busy"));
        }
        if f.fail > 0 {
            f.fail -= 1;
            let status =
                StatusCode::from_u16(f.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return error(status, "Service Unavailable", Some("The instance is busy"));
        }
        if let Some(limit) = f.hourly_limit {
            let start = *f.window_start.get_or_insert_with(Utc::now);
            let reset_at = start + chrono::Duration::hours(1);
            let used = f.used.entry(user.clone()).or_insert(0);
            *used += 1;
            limit_headers.push(("x-ratelimit-limit", limit.to_string()));
            limit_headers.push(("x-ratelimit-reset", reset_at.timestamp().to_string()));
            limit_headers.push(("x-ratelimit-rule", rule.clone()));
            if *used > limit {
                let retry = (reset_at - Utc::now()).num_seconds().max(1);
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit exceeded",
                    Some(&format!(
                        "Rate limit of {limit} requests per hour for Table API exceeded"
                    )),
                );
                limit_headers.push(("retry-after", retry.to_string()));
                for (k, v) in &limit_headers {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        r.headers_mut().insert(*k, v);
                    }
                }
                return r;
            }
        }
    }
    let base = lock(&shared.base).clone();
    let mut resp = {
        let mut db = lock(&shared.db);
        route(
            &mut db,
            &base,
            &user,
            &parts.method,
            &path,
            &p,
            &parts.headers,
            &bytes,
        )
    };
    for (k, v) in &limit_headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp.headers_mut().insert(*k, v);
        }
    }
    if parts.method != Method::GET && resp.status().is_success() {
        let mut f = lock(&shared.faults);
        if f.lose_writes > 0 {
            f.lose_writes -= 1;
            return error(
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                Some("the answer was lost"),
            );
        }
    }
    resp
}

fn oauth(shared: &Shared, body: &[u8]) -> Response<Body> {
    let f: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let mut db = lock(&shared.db);
    let denied = || {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error_description": "access_denied", "error": "server_error"}),
        )
    };
    let client_ok = match (f.get("client_id"), f.get("client_secret")) {
        (Some(id), Some(secret)) => db.clients.get(id) == Some(secret),
        _ => false,
    };
    if !client_ok {
        return denied();
    }
    let user = match f.get("grant_type").map(String::as_str) {
        Some("password") => match (f.get("username"), f.get("password")) {
            (Some(u), Some(p)) if db.users.get(u).map(|x| &x.password) == Some(p) => u.clone(),
            _ => return denied(),
        },
        // Client credentials act as the application's configured OAuth user.
        Some("client_credentials") => match f.get("client_id") {
            Some(id) if db.users.contains_key(id) => id.clone(),
            _ => return denied(),
        },
        Some("refresh_token") => match f.get("refresh_token").and_then(|r| db.refresh.get(r)) {
            Some(u) => u.clone(),
            None => return denied(),
        },
        _ => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error_description": "unsupported_grant_type", "error": "invalid_request"}),
            )
        }
    };
    let access = format!("{}{}", new_sys_id(), new_sys_id());
    let refresh = format!("{}{}", new_sys_id(), new_sys_id());
    let ttl = db.token_ttl;
    db.tokens.insert(
        access.clone(),
        Token {
            user: user.clone(),
            expires: Instant::now() + Duration::from_secs(ttl),
        },
    );
    db.refresh.insert(refresh.clone(), user);
    *db.counters.entry("tokens").or_insert(0) += 1;
    json_response(
        StatusCode::OK,
        json!({"access_token": access, "refresh_token": refresh, "scope": "useraccount",
               "token_type": "Bearer", "expires_in": ttl}),
    )
}

#[allow(clippy::too_many_arguments)]
fn route(
    db: &mut Db,
    base: &str,
    user: &str,
    method: &Method,
    path: &str,
    p: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Drop an API version segment: /api/now/v2/table/x == /api/now/table/x.
    let segs: Vec<&str> = match segs.as_slice() {
        ["api", ns, v, rest @ ..] if v.len() == 2 && v.starts_with('v') => {
            [&["api", ns][..], rest].concat()
        }
        _ => segs,
    };
    let json_body = || -> Result<Record, Refusal> {
        if body.is_empty() {
            return Ok(Map::new());
        }
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .ok_or_else(|| {
                Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "Exception while reading request",
                    Some("The payload is not valid JSON."),
                ))
            })
    };
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["api", "now", "table", table]) => table_list(db, base, user, table, p),
        (Method::POST, ["api", "now", "table", table]) => match json_body() {
            Ok(b) => table_insert(db, base, user, table, b, p),
            Err(r) => *r,
        },
        (Method::GET, ["api", "now", "table", table, id]) => {
            table_get(db, base, user, table, id, p)
        }
        (Method::PATCH | Method::PUT, ["api", "now", "table", table, id]) => match json_body() {
            Ok(b) => table_update(db, base, user, table, id, b, p),
            Err(r) => *r,
        },
        (Method::DELETE, ["api", "now", "table", table, id]) => {
            if !known_table(db, table) {
                return invalid_table(table);
            }
            if !allowed(db, user, table, Op::Delete) {
                return acl_denied(Op::Delete);
            }
            let rs = db.tables.entry(table.to_string()).or_default();
            let before = rs.len();
            rs.retain(|r| r.get("sys_id").and_then(Value::as_str) != Some(*id));
            if rs.len() == before {
                return no_record();
            }
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        (Method::POST, ["api", "sn_chg_rest", "change", kind])
            if ["normal", "emergency"].contains(kind) =>
        {
            match json_body() {
                Ok(mut b) => {
                    for (k, v) in p {
                        b.insert(k.clone(), Value::String(v.clone()));
                    }
                    change_create(db, base, user, kind, b)
                }
                Err(r) => *r,
            }
        }
        // Standard change templates, as the Change Management API lists them: every field
        // as {value, display_value}, filtered by sysparm_query, paged by sysparm_limit/offset.
        (Method::GET, ["api", "sn_chg_rest", "change", "standard", "template"]) => {
            let mut q = p.clone();
            q.insert("sysparm_display_value".into(), "all".into());
            q.insert("sysparm_exclude_reference_link".into(), "true".into());
            q.remove("sysparm_fields");
            table_list(db, base, user, "std_change_record_producer", &q)
        }
        (Method::GET, ["api", "sn_chg_rest", "change", "standard", "template", id]) => {
            if !allowed(db, user, "std_change_record_producer", Op::Read) {
                return acl_denied(Op::Read);
            }
            match find(db, "std_change_record_producer", id) {
                Some(rec) => json_response(
                    StatusCode::OK,
                    json!({"result": render(db, base, "std_change_record_producer", &rec, "all", true, None)}),
                ),
                None => no_record(),
            }
        }
        (Method::POST, ["api", "sn_chg_rest", "change", "standard", template]) => {
            let exists = db
                .tables
                .get("std_change_record_producer")
                .map(|rs| {
                    rs.iter()
                        .any(|r| r["sys_id"] == *template && r["active"] == "true")
                })
                .unwrap_or(false);
            if !exists {
                return error(
                    StatusCode::NOT_FOUND,
                    "No Record found",
                    Some(&format!(
                        "Standard change template {template} does not exist"
                    )),
                );
            }
            match json_body() {
                Ok(mut b) => {
                    b.insert("std_change_producer_version".into(), json!(template));
                    change_create(db, base, user, "standard", b)
                }
                Err(r) => *r,
            }
        }
        (Method::GET, ["api", "sn_chg_rest", "change", id, "nextstates"]) => {
            if !allowed(db, user, "change_request", Op::Read) {
                return acl_denied(Op::Read);
            }
            let Some(rec) = find(db, "change_request", id) else {
                return no_record();
            };
            let state = text(&rec, "state");
            let available = next_states(&rec);
            let transitions: Vec<Value> = available
                .iter()
                .map(|to| {
                    json!([{"sys_id": new_sys_id(),
                        "display_value": format!("{} to {}", change_label(&state), change_label(to)),
                        "from_state": state, "to_state": to, "transition_available": true,
                        "automatic_transition": false, "conditions": []}])
                })
                .collect();
            let labels: Map<String, Value> = available
                .iter()
                .map(|s| (s.clone(), json!(change_label(s))))
                .collect();
            json_response(
                StatusCode::OK,
                json!({"result": {"available_states": available, "state_transitions": transitions, "state_label": labels}}),
            )
        }
        (Method::GET, ["api", "sn_chg_rest", "change", id]) => {
            if !allowed(db, user, "change_request", Op::Read) {
                return acl_denied(Op::Read);
            }
            match find(db, "change_request", id) {
                Some(rec) => json_response(
                    StatusCode::OK,
                    json!({"result": render(db, base, "change_request", &rec, "all", true, None)}),
                ),
                None => no_record(),
            }
        }
        (Method::PATCH, ["api", "sn_chg_rest", "change", id]) => match json_body() {
            Ok(b) => {
                let r = table_update(db, base, user, "change_request", id, b, &HashMap::new());
                if r.status() != StatusCode::OK {
                    return r;
                }
                match find(db, "change_request", id) {
                    Some(rec) => json_response(
                        StatusCode::OK,
                        json!({"result": render(db, base, "change_request", &rec, "all", true, None)}),
                    ),
                    None => no_record(),
                }
            }
            Err(r) => *r,
        },
        (Method::PATCH, ["api", "sn_chg_rest", "change", id, "approvals"]) => match json_body() {
            Ok(b) => change_approve(db, base, user, id, b),
            Err(r) => *r,
        },
        (Method::GET, ["api", "now", "attachment"]) => {
            let q = match Query::parse(p.get("sysparm_query").map(String::as_str).unwrap_or("")) {
                Ok(q) => q,
                Err(e) => return error(StatusCode::BAD_REQUEST, "Invalid query", Some(&e)),
            };
            let list: Vec<Value> = db
                .tables
                .get("sys_attachment")
                .map(|rs| {
                    rs.iter()
                        .filter(|r| q.matches(r))
                        .filter(|r| allowed(db, user, &text(r, "table_name"), Op::Read))
                        .map(|r| attachment_meta(base, r))
                        .collect()
                })
                .unwrap_or_default();
            let mut r = json_response(StatusCode::OK, json!({"result": list}));
            if let Ok(v) = HeaderValue::from_str(&list.len().to_string()) {
                r.headers_mut().insert("x-total-count", v);
            }
            r
        }
        (Method::POST, ["api", "now", "attachment", "file"]) => {
            let (Some(table), Some(tsys), Some(name)) = (
                p.get("table_name"),
                p.get("table_sys_id"),
                p.get("file_name"),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Missing parameter",
                    Some("table_name, table_sys_id and file_name are required"),
                );
            };
            let Some(ctype) = headers.get("content-type").and_then(|v| v.to_str().ok()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Content-Type header is required",
                    None,
                );
            };
            if ctype.starts_with("multipart/") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Use /attachment/upload for multipart",
                    None,
                );
            }
            if !allowed(db, user, table, Op::Write) {
                return acl_denied(Op::Write);
            }
            if find(db, table, tsys).is_none() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Invalid table or record",
                    Some(&format!("{table} record {tsys} does not exist")),
                );
            }
            let id = new_sys_id();
            let meta = obj(json!({
                "sys_id": id, "file_name": name, "table_name": table, "table_sys_id": tsys,
                "content_type": ctype, "size_bytes": body.len().to_string(),
                "sys_created_on": now_text(), "sys_created_by": user,
                "hash": hex_sha256(body),
            }));
            db.files.insert(id.clone(), body.to_vec());
            db.tables
                .entry("sys_attachment".into())
                .or_default()
                .push(meta.clone());
            let mut r = json_response(
                StatusCode::CREATED,
                json!({"result": attachment_meta(base, &meta)}),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{base}/api/now/attachment/{id}")) {
                r.headers_mut().insert("location", v);
            }
            r
        }
        (Method::GET, ["api", "now", "attachment", id]) => match attachment(db, user, id) {
            Ok(meta) => json_response(
                StatusCode::OK,
                json!({"result": attachment_meta(base, &meta)}),
            ),
            Err(r) => *r,
        },
        (Method::GET, ["api", "now", "attachment", id, "file"]) => match attachment(db, user, id) {
            Ok(meta) => {
                let bytes = db.files.get(*id).cloned().unwrap_or_default();
                let mut r = Response::new(Body::from(bytes));
                if let Ok(v) = HeaderValue::from_str(&text(&meta, "content_type")) {
                    r.headers_mut().insert("content-type", v);
                }
                r
            }
            Err(r) => *r,
        },
        (Method::DELETE, ["api", "now", "attachment", id]) => match attachment(db, user, id) {
            Ok(meta) => {
                if !allowed(db, user, &text(&meta, "table_name"), Op::Write) {
                    return acl_denied(Op::Delete);
                }
                db.files.remove(*id);
                if let Some(rs) = db.tables.get_mut("sys_attachment") {
                    rs.retain(|r| r["sys_id"] != *id);
                }
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Err(r) => *r,
        },
        _ => error(
            StatusCode::BAD_REQUEST,
            "Requested URI does not represent any resource",
            Some(&format!("{method} {path}")),
        ),
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn attachment(db: &Db, user: &str, id: &str) -> Result<Record, Refusal> {
    let meta = db
        .tables
        .get("sys_attachment")
        .and_then(|rs| rs.iter().find(|r| r["sys_id"] == id).cloned())
        .ok_or_else(|| Box::new(no_record()))?;
    if !allowed(db, user, &text(&meta, "table_name"), Op::Read) {
        return Err(Box::new(acl_denied(Op::Read)));
    }
    Ok(meta)
}

fn attachment_meta(base: &str, r: &Record) -> Value {
    let mut m = r.clone();
    let id = text(r, "sys_id");
    m.insert(
        "download_link".into(),
        json!(format!("{base}/api/now/attachment/{id}/file")),
    );
    Value::Object(m)
}

fn no_record() -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "No Record found",
        Some("Record doesn't exist or ACL restricts the record retrieval"),
    )
}

fn invalid_table(table: &str) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        &format!("Invalid table {table}"),
        None,
    )
}

const KNOWN: &[&str] = &[
    "incident",
    "change_request",
    "sys_journal_field",
    "sys_user",
    "cmdb_ci",
    "sys_attachment",
    "sysapproval_approver",
    "std_change_record_producer",
    "problem",
];

fn known_table(_db: &Db, table: &str) -> bool {
    KNOWN.contains(&table)
}

fn text(r: &Record, k: &str) -> String {
    match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn find(db: &Db, table: &str, sys_id: &str) -> Option<Record> {
    db.tables
        .get(table)?
        .iter()
        .find(|r| r.get("sys_id").and_then(Value::as_str) == Some(sys_id))
        .cloned()
}

/// Reference fields and the table/display field they point at.
fn reference(table: &str, field: &str) -> Option<(&'static str, &'static str)> {
    match field {
        "cmdb_ci" => Some(("cmdb_ci", "name")),
        "opened_by" | "caller_id" | "requested_by" | "assigned_to" | "sys_user" | "approver" => {
            Some(("sys_user", "name"))
        }
        "sysapproval" | "document_id" if table == "sysapproval_approver" => {
            Some(("change_request", "number"))
        }
        _ => None,
    }
}

fn choice_label(table: &str, field: &str, value: &str) -> Option<&'static str> {
    Some(match (table, field, value) {
        ("incident", "state", "1") => "New",
        ("incident", "state", "2") => "In Progress",
        ("incident", "state", "3") => "On Hold",
        ("incident", "state", "6") => "Resolved",
        ("incident", "state", "7") => "Closed",
        ("incident", "state", "8") => "Canceled",
        ("change_request", "state", s) => return Some(change_label(s)).filter(|l| *l != "?"),
        (_, "priority", "1") => "1 - Critical",
        (_, "priority", "2") => "2 - High",
        (_, "priority", "3") => "3 - Moderate",
        (_, "priority", "4") => "4 - Low",
        (_, "priority", "5") => "5 - Planning",
        (_, "impact" | "urgency", "1") => "1 - High",
        (_, "impact" | "urgency", "2") => "2 - Medium",
        (_, "impact" | "urgency", "3") => "3 - Low",
        (_, "approval", "approved") => "Approved",
        (_, "approval", "requested") => "Requested",
        (_, "approval", "rejected") => "Rejected",
        (_, "approval", "not requested") => "Not Yet Requested",
        (_, "type", "normal") => "Normal",
        (_, "type", "emergency") => "Emergency",
        (_, "type", "standard") => "Standard",
        _ => return None,
    })
}

fn change_label(state: &str) -> &'static str {
    match state {
        "-5" => "New",
        "-4" => "Assess",
        "-3" => "Authorize",
        "-2" => "Scheduled",
        "-1" => "Implement",
        "0" => "Review",
        "3" => "Closed",
        "4" => "Canceled",
        _ => "?",
    }
}

/// The default change state models (normal, emergency, standard): where a change may go next.
fn next_states(rec: &Record) -> Vec<String> {
    let state = text(rec, "state");
    let kind = text(rec, "type");
    let approved = text(rec, "approval") == "approved";
    let v: &[&str] = match (kind.as_str(), state.as_str()) {
        (_, "3" | "4") => &[],
        ("normal", "-5") => &["-4", "4"],
        ("normal", "-4") => &["-5", "-3", "4"],
        ("emergency", "-5") => &["-3", "4"],
        ("standard", "-5") => &["-2", "4"],
        (_, "-3") if approved => &["-2", "4"],
        (_, "-3") => &["4"],
        (_, "-2") => &["-1", "4"],
        (_, "-1") => &["0", "4"],
        (_, "0") => &["3", "4"],
        _ => &["4"],
    };
    v.iter().map(|s| s.to_string()).collect()
}

fn priority_of(impact: &str, urgency: &str) -> String {
    let i: u8 = impact.parse().unwrap_or(3);
    let u: u8 = urgency.parse().unwrap_or(3);
    // ServiceNow's default priority lookup (impact × urgency).
    match i + u {
        2 => "1",
        3 => "2",
        4 => "3",
        5 => "4",
        _ => "5",
    }
    .to_string()
}

fn resolve_reference(db: &Db, table: &str, field: &str, value: &str) -> String {
    let Some((rt, display)) = reference(table, field) else {
        return value.to_string();
    };
    let Some(rs) = db.tables.get(rt) else {
        return value.to_string();
    };
    if rs.iter().any(|r| r["sys_id"] == value) {
        return value.to_string();
    }
    // Like the instance, a reference given by display value (or user name) is resolved.
    rs.iter()
        .find(|r| r[display] == value || r["user_name"] == value || r["email"] == value)
        .map(|r| text(r, "sys_id"))
        .unwrap_or_else(|| value.to_string())
}

/// Applies fields to a record: references resolved, journals written, priority computed.
fn apply(db: &mut Db, table: &str, rec: &mut Record, fields: Record, user: &str) {
    let sys_id = text(rec, "sys_id");
    for (k, v) in fields {
        let val = match &v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Object(o) => o
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            other => other.to_string(),
        };
        if k == "sys_id" || k == "number" || k.starts_with("sys_") && k != "sys_class_name" {
            continue;
        }
        if (k == "work_notes" || k == "comments") && TASK_TABLES.contains(&table) {
            if !val.is_empty() {
                let j = obj(json!({
                    "sys_id": new_sys_id(), "element_id": sys_id, "element": k, "name": table,
                    "value": val, "sys_created_on": now_text(), "sys_created_by": user,
                }));
                db.tables
                    .entry("sys_journal_field".into())
                    .or_default()
                    .push(j);
            }
            continue;
        }
        let val = resolve_reference(db, table, &k, &val);
        rec.insert(k, Value::String(val));
    }
    if TASK_TABLES.contains(&table) && (rec.contains_key("impact") || rec.contains_key("urgency")) {
        let p = priority_of(&text(rec, "impact"), &text(rec, "urgency"));
        rec.insert("priority".into(), json!(p));
    }
    rec.insert("sys_updated_on".into(), json!(now_text()));
    rec.insert("sys_updated_by".into(), json!(user));
}

fn insert_record(db: &mut Db, table: &str, fields: Record, user: &str) -> Record {
    let sys_id = new_sys_id();
    let mut rec =
        obj(json!({"sys_id": sys_id, "sys_created_on": now_text(), "sys_created_by": user}));
    if TASK_TABLES.contains(&table) {
        let (prefix, first, counter) = if table == "incident" {
            ("INC", 10_000, "INC")
        } else {
            ("CHG", 30_000, "CHG")
        };
        let n = db.counters.entry(counter).or_insert(first);
        *n += 1;
        let number = format!("{prefix}{:07}", *n);
        let opened_by = db
            .users
            .get(user)
            .map(|u| u.sys_id.clone())
            .unwrap_or_default();
        for (k, v) in [
            ("number", number),
            ("sys_class_name", table.to_string()),
            (
                "state",
                if table == "incident" { "1" } else { "-5" }.to_string(),
            ),
            ("active", "true".into()),
            ("impact", "3".into()),
            ("urgency", "3".into()),
            ("approval", "not requested".into()),
            ("opened_by", opened_by),
            ("opened_at", now_text()),
            ("correlation_id", String::new()),
            ("category", String::new()),
            ("cmdb_ci", String::new()),
            ("close_code", String::new()),
            ("close_notes", String::new()),
            ("short_description", String::new()),
            ("description", String::new()),
            // Journal fields read as empty on the record; their entries live in sys_journal_field.
            ("work_notes", String::new()),
            ("comments", String::new()),
        ] {
            rec.insert(k.into(), json!(v));
        }
        if table == "change_request" {
            rec.insert("type".into(), json!("normal"));
        }
    }
    let explicit_priority = fields.get("priority").cloned();
    let sets_impact = fields.contains_key("impact") || fields.contains_key("urgency");
    apply(db, table, &mut rec, fields, user);
    if let (Some(p), false) = (explicit_priority, sets_impact) {
        if let Some(p) = p.as_str() {
            rec.insert("priority".into(), json!(p));
        }
    }
    db.tables
        .entry(table.to_string())
        .or_default()
        .push(rec.clone());
    rec
}

/// Validates a state change the way the instance's business rules and data policies do.
fn check_transition(table: &str, old: &Record, new: &Record) -> Result<(), Refusal> {
    let (from, to) = (text(old, "state"), text(new, "state"));
    if from == to {
        return Ok(());
    }
    if table == "change_request" {
        if !next_states(old).contains(&to) {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "Invalid state transition",
                Some(&format!(
                    "{} {} cannot move from {} to {}",
                    text(old, "type"),
                    text(old, "number"),
                    change_label(&from),
                    change_label(&to)
                )),
            )));
        }
        if to == "3" && (text(new, "close_code").is_empty() || text(new, "close_notes").is_empty())
        {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "Operation Failed",
                Some("Data Policy Exception: The following fields are mandatory: Close code, Close notes"),
            )));
        }
    }
    if table == "incident"
        && ["6", "7"].contains(&to.as_str())
        && (text(new, "close_code").is_empty() || text(new, "close_notes").is_empty())
    {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "Operation Failed",
            Some("Data Policy Exception: The following fields are mandatory: Resolution code, Resolution notes"),
        )));
    }
    if table == "incident" && ["7", "8"].contains(&from.as_str()) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "Operation Failed",
            Some("A closed incident cannot be reopened"),
        )));
    }
    Ok(())
}

/// Renders one record as the Table API does for `sysparm_display_value`.
fn render(
    db: &Db,
    base: &str,
    table: &str,
    rec: &Record,
    display: &str,
    exclude_links: bool,
    fields: Option<&[String]>,
) -> Value {
    let mut out = Map::new();
    for (k, v) in rec {
        if let Some(f) = fields {
            if !f.iter().any(|x| x == k) {
                continue;
            }
        }
        let value = v.as_str().unwrap_or_default().to_string();
        let (disp, link) = match reference(table, k) {
            Some((rt, field)) => {
                let target = db
                    .tables
                    .get(rt)
                    .and_then(|rs| rs.iter().find(|r| r["sys_id"] == value.as_str()));
                (
                    target
                        .map(|t| text(t, field))
                        .unwrap_or_else(|| value.clone()),
                    (!value.is_empty() && target.is_some())
                        .then(|| format!("{base}/api/now/table/{rt}/{value}")),
                )
            }
            None => (
                choice_label(table, k, &value)
                    .map(str::to_string)
                    .unwrap_or_else(|| value.clone()),
                None,
            ),
        };
        let rendered = match display {
            "true" => json!(disp),
            "all" => match (&link, exclude_links) {
                (Some(l), false) => json!({"display_value": disp, "value": value, "link": l}),
                _ => json!({"display_value": disp, "value": value}),
            },
            _ => match (&link, exclude_links) {
                (Some(l), false) => json!({"link": l, "value": value}),
                _ => json!(value),
            },
        };
        out.insert(k.clone(), rendered);
    }
    if let Some(f) = fields {
        for k in f {
            if !out.contains_key(k) && !k.is_empty() {
                out.insert(k.clone(), json!(""));
            }
        }
    }
    Value::Object(out)
}

fn display_params(p: &HashMap<String, String>) -> (String, bool, Option<Vec<String>>) {
    let display = p
        .get("sysparm_display_value")
        .cloned()
        .unwrap_or_else(|| "false".into());
    let exclude = p.get("sysparm_exclude_reference_link").map(String::as_str) == Some("true");
    let fields = p
        .get("sysparm_fields")
        .filter(|f| !f.is_empty())
        .map(|f| f.split(',').map(|s| s.trim().to_string()).collect());
    (display, exclude, fields)
}

fn table_list(
    db: &Db,
    base: &str,
    user: &str,
    table: &str,
    p: &HashMap<String, String>,
) -> Response<Body> {
    if !known_table(db, table) {
        return invalid_table(table);
    }
    if !allowed(db, user, table, Op::Read) {
        return acl_denied(Op::Read);
    }
    let q = match Query::parse(p.get("sysparm_query").map(String::as_str).unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "Invalid query", Some(&e)),
    };
    let mut rows: Vec<&Record> = db
        .tables
        .get(table)
        .map(|rs| rs.iter().filter(|r| q.matches(r)).collect())
        .unwrap_or_default();
    for (field, desc) in q.order.iter().rev() {
        rows.sort_by(|a, b| {
            let o = text(a, field).cmp(&text(b, field));
            if *desc {
                o.reverse()
            } else {
                o
            }
        });
    }
    let total = rows.len();
    let offset: usize = p
        .get("sysparm_offset")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let limit: usize = p
        .get("sysparm_limit")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let (display, exclude, fields) = display_params(p);
    let list: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| render(db, base, table, r, &display, exclude, fields.as_deref()))
        .collect();
    let mut r = json_response(StatusCode::OK, json!({"result": list}));
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        r.headers_mut().insert("x-total-count", v);
    }
    r
}

fn table_get(
    db: &Db,
    base: &str,
    user: &str,
    table: &str,
    id: &str,
    p: &HashMap<String, String>,
) -> Response<Body> {
    if !known_table(db, table) {
        return invalid_table(table);
    }
    if !allowed(db, user, table, Op::Read) {
        return acl_denied(Op::Read);
    }
    let (display, exclude, fields) = display_params(p);
    match find(db, table, id) {
        Some(rec) => json_response(
            StatusCode::OK,
            json!({"result": render(db, base, table, &rec, &display, exclude, fields.as_deref())}),
        ),
        None => no_record(),
    }
}

fn table_insert(
    db: &mut Db,
    base: &str,
    user: &str,
    table: &str,
    body: Record,
    p: &HashMap<String, String>,
) -> Response<Body> {
    if !known_table(db, table) {
        return invalid_table(table);
    }
    if !allowed(db, user, table, Op::Write) {
        return acl_denied(Op::Write);
    }
    let rec = insert_record(db, table, body, user);
    let (display, exclude, fields) = display_params(p);
    json_response(
        StatusCode::CREATED,
        json!({"result": render(db, base, table, &rec, &display, exclude, fields.as_deref())}),
    )
}

fn table_update(
    db: &mut Db,
    base: &str,
    user: &str,
    table: &str,
    id: &str,
    body: Record,
    p: &HashMap<String, String>,
) -> Response<Body> {
    if !known_table(db, table) {
        return invalid_table(table);
    }
    if !allowed(db, user, table, Op::Write) {
        return acl_denied(Op::Write);
    }
    let Some(old) = find(db, table, id) else {
        return no_record();
    };
    let mut new = old.clone();
    // Journals are written only once the whole update is accepted.
    let mut fields = body;
    let journals: Vec<(String, Value)> = ["work_notes", "comments"]
        .iter()
        .filter_map(|k| fields.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    apply(db, table, &mut new, fields, user);
    if let Err(r) = check_transition(table, &old, &new) {
        return *r;
    }
    let to = text(&new, "state");
    if table == "incident" && ["6", "7", "8"].contains(&to.as_str())
        || table == "change_request" && ["3", "4"].contains(&to.as_str())
    {
        new.insert("active".into(), json!("false"));
    }
    if table == "change_request"
        && to == "-3"
        && text(&old, "state") != "-3"
        && text(&new, "approval") != "approved"
    {
        new.insert("approval".into(), json!("requested"));
    }
    apply(db, table, &mut new, Map::from_iter(journals), user);
    if let Some(rs) = db.tables.get_mut(table) {
        if let Some(slot) = rs.iter_mut().find(|r| r["sys_id"] == id) {
            *slot = new.clone();
        }
    }
    let (display, exclude, fields) = display_params(p);
    json_response(
        StatusCode::OK,
        json!({"result": render(db, base, table, &new, &display, exclude, fields.as_deref())}),
    )
}

fn change_create(
    db: &mut Db,
    base: &str,
    user: &str,
    kind: &str,
    mut body: Record,
) -> Response<Body> {
    if !allowed(db, user, "change_request", Op::Write) {
        return acl_denied(Op::Write);
    }
    body.insert("type".into(), json!(kind));
    body.remove("state");
    let rec = insert_record(db, "change_request", body, user);
    json_response(
        StatusCode::OK,
        json!({"result": render(db, base, "change_request", &rec, "all", true, None)}),
    )
}

fn change_approve(db: &mut Db, base: &str, user: &str, id: &str, body: Record) -> Response<Body> {
    if !allowed(db, user, "change_request", Op::Write) {
        return acl_denied(Op::Write);
    }
    let Some(mut rec) = find(db, "change_request", id) else {
        return no_record();
    };
    let state = body.get("state").and_then(Value::as_str).unwrap_or("");
    if !["approved", "rejected"].contains(&state) {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid approval state",
            Some("state must be approved or rejected"),
        );
    }
    if state == "rejected"
        && body
            .get("comments")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "Comments are required to reject",
            None,
        );
    }
    if text(&rec, "state") != "-3" || text(&rec, "approval") != "requested" {
        return error(
            StatusCode::BAD_REQUEST,
            "No pending approval",
            Some(&format!(
                "{} has no approval requested from the current user",
                text(&rec, "number")
            )),
        );
    }
    let comments = body
        .get("comments")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let approver = db
        .users
        .get(user)
        .map(|u| u.sys_id.clone())
        .unwrap_or_default();
    let row = obj(
        json!({"sysapproval": id, "document_id": id, "source_table": "change_request",
        "approver": approver, "state": state, "comments": comments}),
    );
    insert_record(db, "sysapproval_approver", row, user);
    rec.insert("approval".into(), json!(state));
    if state == "approved" {
        // The Authorize → Scheduled transition is automatic once approved.
        rec.insert("state".into(), json!("-2"));
    }
    let mut j = Map::new();
    if !comments.is_empty() {
        j.insert("comments".into(), json!(comments));
    }
    apply(db, "change_request", &mut rec, j, user);
    if let Some(rs) = db.tables.get_mut("change_request") {
        if let Some(slot) = rs.iter_mut().find(|r| r["sys_id"] == id) {
            *slot = rec.clone();
        }
    }
    json_response(
        StatusCode::OK,
        json!({"result": [render(db, base, "change_request", &rec, "all", true, None)]}),
    )
}
