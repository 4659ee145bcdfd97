//! In-process route tests of the console (axum `oneshot`, no server): sign-in,
//! sessions, CSRF, CSP, rate limiting, JSON answers, and a decision going
//! through the approval-callback handler as the signed-in person.

use super::*;
use axum::body::Body;
use axum::http::Request;
use certops_core::ports::{Clock, Config, SystemClock, Table};
use certops_core::{Inventory, Policy, Runbook, ScanFinding, Trigger};
use certops_embedded::StackOptions;
use std::time::Duration;
use tower::ServiceExt as _;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "a long enough test password";

const INVENTORY: &str = r#"
[[certificate]]
id = "shop-web-prod"
ci = "shop-web-prod"
common_name = "shop.example.com"
sans = ["shop.example.com"]
environment = "prod"
service_owner = "olivia@example.com"
escalation = ["oncall@example.com"]
change_authority = ["alice@example.com", "olivia@example.com"]
fallback_cert = "keystore:fallback/shop-web-prod"
issuer = { name = "corp-pki", method = "internal-pki" }
targets = [{ kind = "local", id = "lb-shop", reload = "hot-swap" }]
endpoints = [{ host = "127.0.0.1", port = 9, sni = "shop.example.com" }]
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    stack: Arc<Stack>,
    app: Router,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stack = Stack::open(StackOptions {
        data_dir: dir.path().to_path_buf(),
        config: Config {
            inventory: Inventory::from_toml_str(INVENTORY).unwrap(),
            policy: Policy::from_toml_str(
                &certops_adapters::fixtures::OpenPolicy::new("test-1").toml(),
            )
            .unwrap(),
            runbook: Runbook::from_toml_str(include_str!(
                "../../../runbooks/cert-renewal.runbook.toml"
            ))
            .unwrap(),
            default_oncall: "oncall@example.com".into(),
            integrations: certops_core::integrations::Integrations::none(),
        },
        clock,
        probe_timeout: Duration::from_secs(1),
    })
    .await
    .unwrap();
    // Validation wants the fallback present; its content is never used before approval.
    certops_core::ports::Keystore::put_bundle(
        stack.adapters.keystore.as_ref(),
        "fallback/shop-web-prod",
        certops_core::ports::Bundle {
            chain_pem: "placeholder chain".into(),
            key: certops_core::ports::SecretPem::new("placeholder".into()),
        },
    )
    .await
    .unwrap();
    let stack = Arc::new(stack);
    accounts::add(dir.path(), ALICE, PASSWORD).unwrap();
    accounts::add(dir.path(), BOB, PASSWORD).unwrap();
    let app = Router::new().nest(
        "/console",
        router(
            stack.clone(),
            ConsoleOptions {
                data_dir: dir.path().to_path_buf(),
                tls: false,
            },
        ),
    );
    Fixture {
        _dir: dir,
        stack,
        app,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(path: &str, cookie: Option<&str>, json: bool) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if json {
        b = b.header(header::ACCEPT, "application/json");
    }
    b.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: Option<&str>, form: &str, json: bool) -> Request<Body> {
    let mut b =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if json {
        b = b.header(header::ACCEPT, "application/json");
    }
    b.body(Body::from(form.to_string())).unwrap()
}

fn set_cookie(a: &Answer, name: &str) -> Option<String> {
    a.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[at..at + 64].to_string()
}

/// Signs in; returns the session cookie pair and the session's CSRF token.
async fn sign_in(app: &Router, user: &str, password: &str) -> (String, String) {
    let form = send(app, get("/console/login", None, false)).await;
    let login_cookie = set_cookie(&form, LOGIN_COOKIE).unwrap();
    let pair = login_cookie.split(';').next().unwrap().to_string();
    let token = hidden_csrf(&form.body);
    let body = format!(
        "csrf={token}&username={}&password={}",
        urlencode(user),
        urlencode(password)
    );
    let a = send(app, post("/console/login", Some(&pair), &body, false)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let session = set_cookie(&a, SESSION_COOKIE).unwrap();
    let pair = session.split(';').next().unwrap().to_string();
    let page = send(app, get("/console/approvals", Some(&pair), false)).await;
    (pair, hidden_csrf(&page.body))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Starts a renewal from a scan finding and waits until it asks for approval.
async fn waiting_execution(stack: &Stack) -> (String, String) {
    let started = stack
        .trigger(Trigger::Scan(ScanFinding {
            ci: "shop-web-prod".into(),
            observed_expiry: chrono::Utc::now() + chrono::TimeDelta::days(5),
            observed_fingerprint: Some("ab".repeat(32)),
        }))
        .await
        .unwrap();
    let id = stack
        .wait_for_card(&started.execution, Duration::from_secs(30))
        .await
        .unwrap();
    (started.execution, id)
}

#[tokio::test]
async fn pages_without_a_session_are_refused_and_every_answer_has_the_strict_csp() {
    let f = fixture().await;
    for path in [
        "/console/executions",
        "/console/approvals",
        "/console/certificates",
        "/console/scans",
        "/console/executions/anything",
        "/console/executions/anything/evidence",
    ] {
        let html = send(&f.app, get(path, None, false)).await;
        assert_eq!(html.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(html.body.contains("action=\"/console/login\""), "{path}");
        assert_eq!(html.headers["content-security-policy"], CSP);
        let json = send(&f.app, get(path, None, true)).await;
        assert_eq!(json.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(json.body.contains("Unauthorized"));
    }
    let a = send(
        &f.app,
        post("/console/approvals/APR-X", None, "verdict=approve", true),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // A made-up session id is no session.
    let a = send(
        &f.app,
        get("/console/executions", Some("certops_session=00ff"), true),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    for (asset, ty) in [
        ("console.css", "text/css"),
        ("console.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let a = send(
            &f.app,
            get(&format!("/console/assets/{asset}"), None, false),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(ty));
    }
    let a = send(&f.app, get("/console/assets/other.js", None, false)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sign_in_needs_the_form_token_and_the_password_and_sets_a_strict_cookie() {
    let f = fixture().await;
    let form = send(&f.app, get("/console/login", None, false)).await;
    let login = set_cookie(&form, LOGIN_COOKIE).unwrap();
    let pair = login.split(';').next().unwrap().to_string();
    let token = hidden_csrf(&form.body);
    let creds = format!(
        "username={}&password={}",
        urlencode(ALICE),
        urlencode(PASSWORD)
    );
    let no_token = send(&f.app, post("/console/login", Some(&pair), &creds, false)).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let no_cookie = send(
        &f.app,
        post(
            "/console/login",
            None,
            &format!("csrf={token}&{creds}"),
            false,
        ),
    )
    .await;
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);
    let wrong = send(
        &f.app,
        post(
            "/console/login",
            Some(&pair),
            &format!("csrf={token}&username={}&password=wrong", urlencode(ALICE)),
            false,
        ),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, SESSION_COOKIE).is_none());
    let ok = send(
        &f.app,
        post(
            "/console/login",
            Some(&pair),
            &format!("csrf={token}&{creds}"),
            false,
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let cookie = set_cookie(&ok, SESSION_COOKIE).unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains("Secure"),
        "plain-HTTP loopback: no Secure flag"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let page = send(&f.app, get("/console/executions", Some(&pair), false)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(ALICE));
    // Sign-out needs the CSRF token too, then the session is gone.
    let csrf = hidden_csrf(&page.body);
    let refused = send(&f.app, post("/console/logout", Some(&pair), "", false)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = send(
        &f.app,
        post(
            "/console/logout",
            Some(&pair),
            &format!("csrf={csrf}"),
            false,
        ),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = send(&f.app, get("/console/executions", Some(&pair), true)).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_account_for_a_while() {
    let f = fixture().await;
    let form = send(&f.app, get("/console/login", None, false)).await;
    let pair = set_cookie(&form, LOGIN_COOKIE)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = hidden_csrf(&form.body);
    let attempt = |password: &str| {
        post(
            "/console/login",
            Some(&pair),
            &format!(
                "csrf={token}&username={}&password={}",
                urlencode(BOB),
                urlencode(password)
            ),
            false,
        )
    };
    for _ in 0..session::MAX_FAILURES_PER_ACCOUNT {
        assert_eq!(
            send(&f.app, attempt("wrong")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = send(&f.app, attempt(PASSWORD)).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers.contains_key(header::RETRY_AFTER));
    // Another account is not affected.
    let (_, csrf) = sign_in(&f.app, ALICE, PASSWORD).await;
    assert_eq!(csrf.len(), 64);
}

#[tokio::test]
async fn decisions_go_through_the_callback_checks_as_the_signed_in_person() {
    let f = fixture().await;
    let (execution, approval) = waiting_execution(&f.stack).await;
    let (alice, alice_csrf) = sign_in(&f.app, ALICE, PASSWORD).await;
    let (bob, bob_csrf) = sign_in(&f.app, BOB, PASSWORD).await;

    // The executions list and the approvals page answer JSON with the same data.
    let list = send(&f.app, get("/console/executions", Some(&alice), true)).await;
    let v: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["executions"][0]["waitingForApproval"], true);
    assert_eq!(v["executions"][0]["certificate"], "shop-web-prod");
    let mine = send(&f.app, get("/console/approvals", Some(&alice), true)).await;
    let v: serde_json::Value = serde_json::from_str(&mine.body).unwrap();
    assert_eq!(v["pending"][0]["approvalId"], approval.as_str());
    assert!(v["pending"][0]["plan"]["targets"].is_array());
    let not_bobs = send(&f.app, get("/console/approvals", Some(&bob), true)).await;
    let v: serde_json::Value = serde_json::from_str(&not_bobs.body).unwrap();
    assert_eq!(v["pending"].as_array().unwrap().len(), 0);

    // No task token on any page: the engine's history holds it, the console never shows it.
    let arn_name = execution.rsplit(':').next().unwrap().to_string();
    let raw: String = f
        .stack
        .engine
        .history(&execution)
        .unwrap()
        .iter()
        .map(|e| e.to_aws_json().to_string())
        .collect();
    let detail = send(
        &f.app,
        get(
            &format!("/console/executions/{arn_name}"),
            Some(&alice),
            true,
        ),
    )
    .await;
    assert_eq!(detail.status, StatusCode::OK);
    let token_at = raw
        .find("taskToken")
        .expect("the raw history carries the token");
    let token: String = raw[token_at..]
        .split(['"', '\\'])
        .filter(|s| s.len() > 20)
        .take(1)
        .collect();
    assert!(!token.is_empty());
    assert!(!detail.body.contains(&token), "the task token leaked");
    assert!(detail.body.contains(super::redact::REDACTED));

    let path = format!("/console/approvals/{approval}");
    // Without the CSRF token, or with another session's, nothing is decided.
    for form in [
        "verdict=approve".to_string(),
        format!("verdict=approve&csrf={bob_csrf}"),
    ] {
        let a = send(&f.app, post(&path, Some(&alice), &form, true)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    }
    // Bob is not in the change authority: refused by the callback's own check, and audited.
    let a = send(
        &f.app,
        post(
            &path,
            Some(&bob),
            &format!("verdict=approve&csrf={bob_csrf}"),
            true,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("NotInChangeAuthority"), "{}", a.body);
    let record = f
        .stack
        .deps
        .store
        .get(Table::Approvals, &approval)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record["status"], "pending");
    // Alice approves; the decision names her, whatever the form says.
    let a = send(
        &f.app,
        post(
            &path,
            Some(&alice),
            &format!("verdict=approve&csrf={alice_csrf}&comment=ok&approver=mallory%40example.com"),
            true,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let record = f
        .stack
        .deps
        .store
        .get(Table::Approvals, &approval)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record["status"], "approved");
    assert_eq!(record["decision"]["approver"], ALICE);
    // Single use: a second decision is refused.
    let again = send(
        &f.app,
        post(
            &path,
            Some(&alice),
            &format!("verdict=approve&csrf={alice_csrf}"),
            true,
        ),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let audit = f.stack.deps.store.audit(&execution).await.unwrap();
    assert!(audit
        .iter()
        .any(|r| r.actor == format!("approver:{BOB}")
            && r.summary["refused"] == "NotInChangeAuthority"));
    assert!(audit.iter().any(|r| r.actor == format!("approver:{ALICE}")));
    // The refused forged POSTs are on the record too, and the chain still verifies.
    assert_eq!(
        audit
            .iter()
            .filter(
                |r| r.actor == format!("console:{ALICE}") && r.summary["refused"] == "CsrfRefused"
            )
            .count(),
        2
    );
    assert!(certops_core::verify_chain(&audit).is_ok());
}
