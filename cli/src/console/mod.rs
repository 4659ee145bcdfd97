//! The web console for SREs and approvers, served by `certops serve` under
//! `/console` on the same loopback port: Executions, One execution (the state
//! machine graph with the path taken, history, audit chain, evidence),
//! Approvals (decided through the approval-callback handler, as the signed-in
//! person), Certificates and Scans. Every page also answers
//! `Accept: application/json` with the same data.
//!
//! Security: local accounts ([`accounts`]), sessions with a CSRF token on
//! every POST and a sign-in rate limit ([`session`]), a strict
//! Content-Security-Policy, assets compiled into the binary (no CDN, no
//! external font, no fetch elsewhere), and no secret on any page ([`redact`]).

pub mod accounts;
pub mod graph;
pub mod pages;
pub mod redact;
pub mod scan_log;
pub mod session;
pub mod views;

#[cfg(test)]
mod tests;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use certops_core::ports::Table;
use certops_embedded::Stack;
use pages::{Tab, Viewer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use session::{Session, Sessions, LOGIN_COOKIE, SESSION_COOKIE};
use std::path::PathBuf;
use std::sync::Arc;

/// The Content-Security-Policy of every console response: nothing but the
/// console's own scripts, styles and images; no framing; forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// Console options.
pub struct ConsoleOptions {
    /// The data directory (accounts file).
    pub data_dir: PathBuf,
    /// Whether the console is served over TLS (adds `Secure` to cookies).
    pub tls: bool,
}

struct Console {
    stack: Arc<Stack>,
    data_dir: PathBuf,
    tls: bool,
    sessions: Sessions,
    definition: graph::Definition,
    layout: graph::Layout,
}

type App = State<Arc<Console>>;

/// The console's router, to be nested under `/console`.
pub fn router(stack: Arc<Stack>, options: ConsoleOptions) -> Router {
    // The definition is compiled in; a parse failure would be a build defect, shown as an empty graph.
    let definition = graph::Definition::parse(certops_embedded::stack::DEFINITION).unwrap_or(
        graph::Definition {
            start: String::new(),
            states: Vec::new(),
            edges: Vec::new(),
        },
    );
    let layout = graph::layout(&definition);
    let console = Arc::new(Console {
        stack,
        data_dir: options.data_dir,
        tls: options.tls,
        sessions: Sessions::default(),
        definition,
        layout,
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/executions") }))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/executions", get(executions))
        .route("/executions/{name}", get(execution))
        .route("/executions/{name}/evidence", get(evidence))
        .route("/approvals", get(approvals))
        .route("/approvals/{id}", post(decide))
        .route("/certificates", get(certificates))
        .route("/scans", get(scans))
        .route("/assets/{file}", get(asset))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn asset(UrlPath(file): UrlPath<String>) -> Response {
    let (body, ty) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn json_body<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => (status, [(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => error(
            false,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            &e.to_string(),
        ),
    }
}

fn error(json: bool, status: StatusCode, name: &str, message: &str) -> Response {
    if json {
        json_body(status, &json!({"error": name, "message": message}))
    } else {
        html(status, pages::refused(name, message))
    }
}

/// The session of a request, if signed in.
fn session(app: &Console, headers: &HeaderMap) -> Option<Session> {
    session::read_cookie(headers, SESSION_COOKIE).and_then(|id| app.sessions.get(id))
}

/// Answers a request without a session: 401, with the sign-in form for browsers.
fn sign_in_required(app: &Console, headers: &HeaderMap) -> Response {
    if wants_json(headers) {
        return error(
            true,
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "sign in first",
        );
    }
    login_page(
        app,
        StatusCode::UNAUTHORIZED,
        Some("Sign in to see this page."),
    )
}

fn login_page(app: &Console, status: StatusCode, message: Option<&str>) -> Response {
    let token = session::random_token();
    let mut resp = html(status, pages::login(&token, message));
    if let Ok(v) = HeaderValue::from_str(&session::cookie(LOGIN_COOKIE, &token, app.tls, Some(600)))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn login_form(State(app): App, headers: HeaderMap) -> Response {
    if session(&app, &headers).is_some() {
        return Redirect::to("/console/executions").into_response();
    }
    login_page(&app, StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(State(app): App, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded_form::<LoginForm>(&body) else {
        return error(
            false,
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            "unreadable form",
        );
    };
    let expected = session::read_cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !session::same_token(expected, &form.csrf) {
        tracing::warn!("console sign-in refused: missing or wrong CSRF token");
        return error(
            false,
            StatusCode::FORBIDDEN,
            "CsrfRefused",
            "the sign-in form expired or did not come from this console; reload it and try again",
        );
    }
    let user = form.username.trim().to_string();
    if let Err(t) = app.sessions.admit_attempt(&user) {
        tracing::warn!(account = %user, ?t, "console sign-in throttled");
        let mut resp = login_page(
            &app,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many sign-in attempts; wait a few minutes and try again."),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("300"));
        return resp;
    }
    let dir = app.data_dir.clone();
    let (name, password) = (user.clone(), form.password);
    let ok = tokio::task::spawn_blocking(move || {
        accounts::load(&dir)
            .ok()
            .and_then(|a| a.users.get(&name).map(|acc| acc.hash.clone()))
            .map(|hash| accounts::verify_password(&hash, &password))
            // Unknown accounts cost the same as a wrong password.
            .unwrap_or_else(|| {
                let _ = accounts::hash_password(&password);
                false
            })
    })
    .await
    .unwrap_or(false);
    if !ok {
        app.sessions.failed(&user);
        tracing::warn!(account = %user, "console sign-in refused: wrong account or password");
        return login_page(
            &app,
            StatusCode::UNAUTHORIZED,
            Some("Wrong account or password."),
        );
    }
    app.sessions.succeeded(&user);
    let id = app.sessions.open(&user);
    tracing::info!(account = %user, "console sign-in");
    let mut resp = Redirect::to("/console/executions").into_response();
    for c in [
        session::cookie(SESSION_COOKIE, &id, app.tls, None),
        session::cookie(LOGIN_COOKIE, "", app.tls, Some(0)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ()> {
    serde_urlencoded::from_bytes(body).map_err(|_| ())
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(app): App, headers: HeaderMap, body: Bytes) -> Response {
    let Some(s) = session(&app, &headers) else {
        return sign_in_required(&app, &headers);
    };
    let form: CsrfForm = serde_urlencoded_form(&body).unwrap_or(CsrfForm {
        csrf: String::new(),
    });
    if !session::same_token(&s.csrf, &form.csrf) {
        return error(
            wants_json(&headers),
            StatusCode::FORBIDDEN,
            "CsrfRefused",
            "missing or wrong CSRF token",
        );
    }
    if let Some(id) = session::read_cookie(&headers, SESSION_COOKIE) {
        app.sessions.close(id);
    }
    let mut resp = Redirect::to("/console/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::cookie(SESSION_COOKIE, "", app.tls, Some(0))) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    page: Option<usize>,
}

async fn executions(State(app): App, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let Some(s) = session(&app, &headers) else {
        return sign_in_required(&app, &headers);
    };
    let list = views::executions(
        &app.stack,
        q.status.as_deref(),
        q.q.as_deref(),
        q.page.unwrap_or(1),
    )
    .await;
    if wants_json(&headers) {
        return json_body(StatusCode::OK, &list);
    }
    let live = list
        .executions
        .iter()
        .any(|r| r.status == "RUNNING")
        .then(|| list_signature(&list));
    let viewer = Viewer {
        user: &s.user,
        csrf: &s.csrf,
    };
    html(
        StatusCode::OK,
        pages::frame(
            "Executions",
            Tab::Executions,
            &viewer,
            live.as_deref(),
            pages::executions(&list),
        ),
    )
}

/// What the live-refresh script compares: it reloads when this changes.
fn list_signature(list: &views::ExecutionList) -> String {
    list.executions
        .iter()
        .map(|r| format!("{}:{}", r.name, r.outcome))
        .collect::<Vec<_>>()
        .join("|")
}

fn detail_signature(d: &views::ExecutionDetail) -> String {
    format!("{}:{}", d.execution.status, d.events.len())
}

async fn execution(
    State(app): App,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let Some(s) = session(&app, &headers) else {
        return sign_in_required(&app, &headers);
    };
    let json = wants_json(&headers);
    let Some(info) = views::find(&app.stack, &name) else {
        return error(
            json,
            StatusCode::NOT_FOUND,
            "ExecutionDoesNotExist",
            &format!("no execution {name}"),
        );
    };
    let url = format!(
        "/console/executions/{}/evidence",
        pages::seg(&info.meta.name)
    );
    let detail = match views::execution(&app.stack, &info, url).await {
        Ok(d) => d,
        Err(e) => {
            return error(
                json,
                StatusCode::INTERNAL_SERVER_ERROR,
                e.name(),
                &e.to_string(),
            )
        }
    };
    if json {
        return json_body(StatusCode::OK, &detail);
    }
    let live = (detail.execution.status == "RUNNING").then(|| detail_signature(&detail));
    let viewer = Viewer {
        user: &s.user,
        csrf: &s.csrf,
    };
    html(
        StatusCode::OK,
        pages::frame(
            &detail.execution.name,
            Tab::Executions,
            &viewer,
            live.as_deref(),
            pages::execution(&detail, &app.definition, &app.layout),
        ),
    )
}

async fn evidence(State(app): App, headers: HeaderMap, UrlPath(name): UrlPath<String>) -> Response {
    if session(&app, &headers).is_none() {
        return sign_in_required(&app, &headers);
    }
    let Some(info) = views::find(&app.stack, &name) else {
        return error(
            true,
            StatusCode::NOT_FOUND,
            "ExecutionDoesNotExist",
            &format!("no execution {name}"),
        );
    };
    match views::evidence(&app.stack, &info).await {
        Ok(bundle) => {
            let text = serde_json::to_string_pretty(&bundle).unwrap_or_default();
            let file: String = info
                .meta
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"evidence-{file}.json\""),
                    ),
                ],
                text,
            )
                .into_response()
        }
        Err(e) => error(
            true,
            StatusCode::INTERNAL_SERVER_ERROR,
            e.name(),
            &e.to_string(),
        ),
    }
}

async fn approvals(State(app): App, headers: HeaderMap) -> Response {
    let Some(s) = session(&app, &headers) else {
        return sign_in_required(&app, &headers);
    };
    approvals_page(&app, &headers, &s, StatusCode::OK, None).await
}

async fn approvals_page(
    app: &Console,
    headers: &HeaderMap,
    s: &Session,
    status: StatusCode,
    notice: Option<(bool, String)>,
) -> Response {
    let json = wants_json(headers);
    let data = match views::approvals(&app.stack, &s.user).await {
        Ok(d) => d,
        Err(e) => {
            return error(
                json,
                StatusCode::INTERNAL_SERVER_ERROR,
                e.name(),
                &e.to_string(),
            )
        }
    };
    if json {
        return json_body(status, &data);
    }
    let viewer = Viewer {
        user: &s.user,
        csrf: &s.csrf,
    };
    html(
        status,
        pages::frame(
            "Approvals",
            Tab::Approvals,
            &viewer,
            None,
            pages::approvals(
                &data,
                &viewer,
                notice.as_ref().map(|(ok, t)| (*ok, t.as_str())),
            ),
        ),
    )
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    comment: String,
}

/// Approve or reject as the signed-in person, through the approval-callback
/// handler: the same checks as a Teams or Slack card.
async fn decide(
    State(app): App,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let Some(s) = session(&app, &headers) else {
        return sign_in_required(&app, &headers);
    };
    let form: DecisionForm = match serde_urlencoded_form(&body) {
        Ok(f) => f,
        Err(()) => {
            return error(
                json,
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "unreadable form",
            )
        }
    };
    if !session::same_token(&s.csrf, &form.csrf) {
        tracing::warn!(account = %s.user, approval = %id, "console decision refused: missing or wrong CSRF token");
        audit_refusal(&app, &id, &s.user, "CsrfRefused").await;
        return error(
            json,
            StatusCode::FORBIDDEN,
            "CsrfRefused",
            "missing or wrong CSRF token; reload the page and decide again",
        );
    }
    let verdict = match form.verdict.as_str() {
        "approve" => certops_core::Verdict::Approve,
        "reject" => certops_core::Verdict::Reject,
        _ => {
            return error(
                json,
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "verdict must be approve or reject",
            )
        }
    };
    let comment = Some(form.comment.trim().to_string()).filter(|c| !c.is_empty());
    let callback = certops_fn_approval_callback::Callback {
        approval_id: id.clone(),
        approver: s.user.clone(),
        verdict,
        comment,
    };
    match certops_fn_approval_callback::handle(&app.stack.deps, callback).await {
        Ok(d) => {
            tracing::info!(account = %s.user, approval = %id, status = %d.status, "console decision");
            if json {
                return json_body(StatusCode::OK, &d);
            }
            let text = format!("{} {} as {}.", d.approval_id, d.status, s.user);
            approvals_page(&app, &headers, &s, StatusCode::OK, Some((true, text))).await
        }
        Err(e) => {
            // The same status the approval callback answers, chosen by variant.
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::warn!(account = %s.user, approval = %id, error = e.name(), "console decision refused");
            if json {
                return json_body(
                    status,
                    &json!({"error": e.name(), "message": e.to_string()}),
                );
            }
            let text = format!("Refused ({}): {e}", e.name());
            approvals_page(&app, &headers, &s, status, Some((false, text))).await
        }
    }
}

/// Records a console-side refusal (before the callback handler runs) in the
/// audit chain of the execution the approval belongs to, if it exists.
async fn audit_refusal(app: &Console, approval_id: &str, user: &str, reason: &str) {
    let deps = &app.stack.deps;
    let Ok(Some(record)) = deps.store.get(Table::Approvals, approval_id).await else {
        return;
    };
    let Some(execution) = record["execution"].as_str() else {
        return;
    };
    let summary =
        json!({"refused": reason, "approvalId": approval_id, "via": "console", "account": user});
    if let Err(e) = certops_core::workflow::record_audit(
        deps,
        execution,
        certops_core::AuditKind::Approval,
        &format!("console:{user}"),
        summary,
    )
    .await
    {
        tracing::warn!(error = %e, "console refusal not audited");
    }
}

/// A read-only page for the signed-in session `s`: `data`, as JSON when asked for, else
/// framed HTML from `render`.
fn read_page<T: Serialize>(
    s: &Session,
    headers: &HeaderMap,
    (title, tab): (&str, Tab),
    data: Result<T, certops_core::Error>,
    render: impl FnOnce(&T) -> maud::Markup,
) -> Response {
    let json = wants_json(headers);
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            return error(
                json,
                StatusCode::INTERNAL_SERVER_ERROR,
                e.name(),
                &e.to_string(),
            )
        }
    };
    if json {
        return json_body(StatusCode::OK, &data);
    }
    let viewer = Viewer {
        user: &s.user,
        csrf: &s.csrf,
    };
    html(
        StatusCode::OK,
        pages::frame(title, tab, &viewer, None, render(&data)),
    )
}

async fn certificates(State(app): App, headers: HeaderMap) -> Response {
    let Some(s) = session(&app, &headers) else {
        return sign_in_required(&app, &headers);
    };
    let data = views::certificates(&app.stack).await;
    read_page(
        &s,
        &headers,
        ("Certificates", Tab::Certificates),
        data,
        pages::certificates,
    )
}

async fn scans(State(app): App, headers: HeaderMap) -> Response {
    let Some(s) = session(&app, &headers) else {
        return sign_in_required(&app, &headers);
    };
    let data = views::scans(&app.stack).await;
    read_page(&s, &headers, ("Scans", Tab::Scans), data, pages::scans)
}
