//! The ServiceNow adapter against the instance emulator on 127.0.0.1, and the emulator's
//! dialect itself: the `Itsm` contract on the local ticket book and on ServiceNow (Basic
//! and OAuth), the exact error bodies, ACL 403s, rate-limit headers, change transitions,
//! and the faults: a 429 storm, a token expiring mid-run, the instance unreachable for a
//! while, a 5xx on a write, a record deleted under a run. And intake reading back the
//! record a webhook names (the `webhook_record_is_the_truth` module).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_adapters::{LocalDb, LocalSecrets, TicketBook};
use certops_core::integrations::Integrations;
use certops_core::ports::{
    Attachment, Clock, Itsm, NewTicket, SystemClock, TicketKind, TicketState, TicketUpdate,
};
use certops_tests::contract;
use certops_tests::servicenow::ServiceNowEmulator;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const USER: &str = "certops.integration";
const PASSWORD: &str = "integration-password-for-tests";
const CLIENT_ID: &str = "3f1c0f6e0a8c4a3e9d1b2c3d4e5f6a7b";
const CLIENT_SECRET: &str = "client-secret-for-tests";

/// One emulator shared by the cases that inject no faults.
fn shared() -> &'static ServiceNowEmulator {
    static EMU: OnceLock<ServiceNowEmulator> = OnceLock::new();
    EMU.get_or_init(|| setup(ServiceNowEmulator::start().expect("emulator starts")))
}

fn setup(emu: ServiceNowEmulator) -> ServiceNowEmulator {
    emu.add_user(USER, PASSWORD, &["itil", "sn_change_writer"]);
    emu.add_user("reader", "reader-password", &[]);
    emu.add_oauth_client(CLIENT_ID, CLIENT_SECRET);
    emu
}

struct Secrets {
    _dir: tempfile::TempDir,
    password: String,
    client_secret: String,
}

fn secrets() -> Secrets {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, value).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.display().to_string()
    };
    let password = write("password", PASSWORD);
    let client_secret = write("client-secret", CLIENT_SECRET);
    Secrets {
        _dir: dir,
        password,
        client_secret,
    }
}

async fn adapter(emu: &ServiceNowEmulator, auth: &str, extra: &str) -> (Arc<dyn Itsm>, Secrets) {
    let s = secrets();
    let toml = format!(
        "[servicenow]\ninstance_url = \"{url}\"\nauth = \"{auth}\"\nusername = \"{USER}\"\npassword = \"file:{pw}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"file:{cs}\"\nstandard_change_template = \"{tpl}\"\ntimeout_seconds = 3\nbackoff_millis = 50\nmax_retry_after_seconds = 3\n{extra}",
        url = emu.url(),
        pw = s.password,
        cs = s.client_secret,
        tpl = emu.standard_template(),
    );
    let integrations = Integrations::from_toml_str(&toml).unwrap();
    let itsm = certops_servicenow::from_integrations(&integrations, &LocalSecrets)
        .await
        .unwrap()
        .expect("[servicenow] present");
    (itsm, s)
}

#[tokio::test]
async fn the_ticket_book_passes_the_itsm_contract() {
    contract::itsm::run_all(|_| async {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Arc::new(TicketBook::new(LocalDb::open_in_memory().unwrap(), clock)) as Arc<dyn Itsm>
    })
    .await;
}

#[tokio::test]
async fn the_servicenow_adapter_passes_the_itsm_contract_with_basic_auth() {
    let emu = shared();
    let (itsm, _s) = adapter(emu, "basic", "").await;
    contract::itsm::run_all(|_| {
        let itsm = itsm.clone();
        async move { itsm }
    })
    .await;
    // Changes moved only along offered transitions: a normal change visited Assess and
    // Authorize on its way to Scheduled, and its approval went through the Change API.
    let reqs = emu.requests();
    assert!(reqs.iter().any(|r| r.contains("/nextstates")));
    assert!(reqs.iter().any(
        |r| r.starts_with("PATCH /api/sn_chg_rest/change/") && r.ends_with("/approvals -> 200")
    ));
}

#[tokio::test]
async fn the_servicenow_adapter_passes_the_itsm_contract_with_oauth() {
    let emu = setup(ServiceNowEmulator::start().unwrap());
    let (itsm, _s) = adapter(&emu, "oauth-password", "").await;
    contract::itsm::run_all(|_| {
        let itsm = itsm.clone();
        async move { itsm }
    })
    .await;
    // One token, cached for every call of the suite.
    assert_eq!(emu.tokens_issued(), 1);
    let (cc, _s2) = adapter(&emu, "oauth-client-credentials", "").await;
    let e = cc.get("INC0000001").await.unwrap_err();
    // Client credentials act as the OAuth app's own user, which this instance lacks.
    assert_eq!(e.name(), "AccessDenied", "{e}");
}

fn ticket(kind: TicketKind, cid: &str) -> NewTicket {
    NewTicket {
        kind,
        short_description: "Renew TLS certificate".into(),
        description: "fault test".into(),
        ci: "shop-web-prod".into(),
        priority: 2,
        correlation_id: cid.into(),
        standard_change: None,
    }
}

fn note(text: &str) -> TicketUpdate {
    TicketUpdate {
        work_note: Some(text.into()),
        ..TicketUpdate::default()
    }
}

fn sys_id(emu: &ServiceNowEmulator, table: &str, number: &str) -> String {
    emu.record(table, number).unwrap()["sys_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_429_storm_is_waited_out_then_surfaces_as_transient() {
    let emu = setup(ServiceNowEmulator::start().unwrap());
    let (itsm, _s) = adapter(&emu, "basic", "max_attempts = 4").await;
    let t = itsm
        .open(ticket(TicketKind::Incident, "storm:1"))
        .await
        .unwrap();
    // Three refusals with Retry-After: 1 — waited out inside the call.
    emu.throttle(3, 1);
    let started = Instant::now();
    let u = itsm
        .update(&t.number, "step:test", note("after the storm"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After not honoured"
    );
    assert_eq!(u.work_notes.len(), 1);
    // A storm longer than the attempts: Transient, so the state machine's Retry takes over.
    emu.throttle(100, 1);
    let e = itsm.get(&t.number).await.unwrap_err();
    assert_eq!(e.name(), "Transient");
    assert!(e.to_string().contains("Rate limit exceeded"), "{e}");
    // A Retry-After beyond the configured ceiling is not slept through.
    emu.throttle(1, 3600);
    let started = Instant::now();
    let e = itsm.get(&t.number).await.unwrap_err();
    assert_eq!(e.name(), "Transient");
    assert!(started.elapsed() < Duration::from_secs(5));
    emu.throttle(0, 0);
    // After the storm the record has exactly the one note.
    assert_eq!(
        emu.work_notes(&sys_id(&emu, "incident", &t.number)).len(),
        1
    );
}

#[tokio::test]
async fn a_token_that_expires_mid_run_is_refreshed_once() {
    let emu = setup(ServiceNowEmulator::start().unwrap());
    let (itsm, _s) = adapter(&emu, "oauth-password", "").await;
    let t = itsm
        .open(ticket(TicketKind::NormalChange, "token:1"))
        .await
        .unwrap();
    assert_eq!(emu.tokens_issued(), 1);
    emu.expire_tokens();
    let u = itsm
        .update(
            &t.number,
            "step:test",
            TicketUpdate {
                state: Some(TicketState::Assess),
                work_note: Some("validated".into()),
                ..TicketUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u.state, TicketState::Assess);
    assert_eq!(emu.tokens_issued(), 2, "one refresh after the 401");
    // Short-lived tokens are renewed before they expire, not after a 401.
    emu.set_token_ttl(2);
    emu.expire_tokens();
    itsm.get(&t.number).await.unwrap();
    let issued = emu.tokens_issued();
    let deadline = Instant::now() + Duration::from_secs(10);
    while emu.tokens_issued() == issued && Instant::now() < deadline {
        itsm.get(&t.number).await.unwrap();
    }
    assert!(emu.tokens_issued() > issued);
    let unauthorized = emu
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST /oauth_token.do"))
        .count();
    assert_eq!(unauthorized as u64, emu.tokens_issued());
}

#[tokio::test]
async fn an_unreachable_instance_delays_the_write_and_duplicates_nothing() {
    let emu = setup(ServiceNowEmulator::start().unwrap());
    let (itsm, _s) = adapter(&emu, "basic", "max_attempts = 7").await;
    let (impatient, _s2) = adapter(&emu, "basic", "max_attempts = 2").await;
    let t = itsm
        .open(ticket(TicketKind::Incident, "outage:1"))
        .await
        .unwrap();
    emu.set_reachable(false);
    let e = impatient.get(&t.number).await;
    assert_eq!(e.unwrap_err().name(), "Transient", "down means Transient");
    // An outage of 1.5 s (the fault's length, not a wait for a result) under a running write.
    let writer = {
        let itsm = itsm.clone();
        let number = t.number.clone();
        tokio::spawn(async move {
            itsm.update(&number, "step:test", note("written through the outage"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    emu.set_reachable(true);
    let u = writer.await.unwrap().unwrap();
    assert_eq!(u.work_notes.len(), 1);
    // The same step retried by the state machine adds nothing.
    itsm.update(&t.number, "step:test", note("written through the outage"))
        .await
        .unwrap();
    assert_eq!(
        emu.work_notes(&sys_id(&emu, "incident", &t.number)).len(),
        1
    );
}

#[tokio::test]
async fn a_write_that_failed_or_lost_its_answer_is_checked_before_it_is_retried() {
    let emu = setup(ServiceNowEmulator::start().unwrap());
    let (itsm, _s) = adapter(&emu, "basic", "").await;
    let t = itsm
        .open(ticket(TicketKind::Incident, "5xx:1"))
        .await
        .unwrap();
    let sys = sys_id(&emu, "incident", &t.number);
    // The attachment's POST refused with 503 (not applied): tried again.
    emu.fail_next_writes(1, 503);
    let u = itsm
        .update(
            &t.number,
            "step:test",
            TicketUpdate {
                work_note: Some("note one".into()),
                attachment: Some(Attachment {
                    name: "evidence.json".into(),
                    content: json!({"a": 1}),
                }),
                ..TicketUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((u.work_notes.len(), u.attachments.len()), (1, 1));
    // Attachment and note applied but their answers lost (502): found, not written twice.
    emu.lose_next_write_answers(2);
    let u = itsm
        .update(
            &t.number,
            "step:test",
            TicketUpdate {
                work_note: Some("note two".into()),
                attachment: Some(Attachment {
                    name: "rollback-evidence.json".into(),
                    content: json!({"b": 2}),
                }),
                ..TicketUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((u.work_notes.len(), u.attachments.len()), (2, 2));
    assert_eq!(emu.work_notes(&sys).len(), 2);
    assert_eq!(emu.attachments(&sys).len(), 2);
    // Opening whose create answer is lost: the correlation-id lookup finds the record.
    emu.lose_next_write_answers(1);
    let other = itsm
        .open(ticket(TicketKind::NormalChange, "5xx:2"))
        .await
        .unwrap();
    assert_eq!(
        emu.records("change_request")
            .iter()
            .filter(|r| r["correlation_id"] == "5xx:2")
            .count(),
        1
    );
    let again = itsm
        .open(ticket(TicketKind::NormalChange, "5xx:2"))
        .await
        .unwrap();
    assert_eq!(again.number, other.number);
}

#[tokio::test]
async fn a_record_deleted_mid_run_is_a_clear_not_found() {
    let emu = shared();
    let (itsm, _s) = adapter(emu, "basic", "").await;
    let t = itsm
        .open(ticket(TicketKind::NormalChange, "deleted:1"))
        .await
        .unwrap();
    assert!(emu.delete("change_request", &t.number));
    let e = itsm
        .update(&t.number, "step:itsm-update", note("closing"))
        .await
        .unwrap_err();
    assert_eq!(e.name(), "NotFound");
    assert!(e.to_string().contains(&t.number), "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn wrong_credentials_and_missing_roles_are_distinct_non_retryable_errors() {
    let emu = shared();
    let integrations = |user: &str, file: &str| {
        Integrations::from_toml_str(&format!(
            "[servicenow]\ninstance_url = \"{}\"\nusername = \"{user}\"\npassword = \"file:{file}\"\n",
            emu.url()
        ))
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bad = certops_servicenow::from_integrations(
        &integrations(USER, &wrong.display().to_string()),
        &LocalSecrets,
    )
    .await
    .unwrap()
    .unwrap();
    let e = bad.get("INC0000001").await.unwrap_err();
    assert_eq!(e.name(), "AccessDenied");
    assert!(
        e.to_string()
            .contains("User Not Authenticated: Required to provide Auth information"),
        "{e}"
    );
    assert!(!e.to_string().contains("not-the-password"));
    let reader_pw = dir.path().join("reader");
    std::fs::write(&reader_pw, "reader-password").unwrap();
    std::fs::set_permissions(&reader_pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let reader = certops_servicenow::from_integrations(
        &integrations("reader", &reader_pw.display().to_string()),
        &LocalSecrets,
    )
    .await
    .unwrap()
    .unwrap();
    let e = reader
        .open(ticket(TicketKind::Incident, "acl:1"))
        .await
        .unwrap_err();
    assert_eq!(e.name(), "AccessDenied");
    assert!(e.to_string().contains("ACL Exception"), "{e}");
    // A world-readable secret file is refused before any call.
    let open = dir.path().join("open");
    std::fs::write(&open, PASSWORD).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = match certops_servicenow::from_integrations(
        &integrations(USER, &open.display().to_string()),
        &LocalSecrets,
    )
    .await
    {
        Ok(_) => panic!("a world-readable secret file was accepted"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("chmod 600"), "{e}");
}

// ---- The emulator's dialect, as ServiceNow's API reference describes it. ----

async fn call(
    method: reqwest::Method,
    url: String,
    auth: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::new();
    let mut r = client
        .request(method, url)
        .header("accept", "application/json");
    if let Some((u, p)) = auth {
        r = r.basic_auth(u, Some(p));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn the_emulator_speaks_servicenows_error_bodies_limits_and_transitions() {
    let emu = setup(ServiceNowEmulator::start().unwrap());
    let base = emu.url();
    let me = Some((USER, PASSWORD));
    let (s, _, b) = call(
        reqwest::Method::GET,
        format!("{base}/api/now/table/incident"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        b,
        json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})
    );
    let (s, _, b) = call(
        reqwest::Method::GET,
        format!("{base}/api/now/table/incident/0123456789abcdef0123456789abcdef"),
        me,
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["message"], "No Record found");
    assert_eq!(b["status"], "failure");
    let (s, _, b) = call(
        reqwest::Method::GET,
        format!("{base}/api/now/table/incident"),
        Some(("reader", "reader-password")),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(b["error"]["message"], "Operation Failed");
    let (s, _, b) = call(
        reqwest::Method::GET,
        format!("{base}/api/now/table/no_such_table"),
        me,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"]["message"].clone()),
        (400, json!("Invalid table no_such_table"))
    );

    // Table API: create, query with fields and display values, X-Total-Count.
    let (s, _, b) = call(reqwest::Method::POST, format!("{base}/api/now/table/incident"), me,
        Some(json!({"short_description": "cert warning", "impact": "1", "urgency": "2", "category": "Certificate"}))).await;
    assert_eq!(s, 201);
    let number = b["result"]["number"].as_str().unwrap().to_string();
    assert_eq!(b["result"]["priority"], "2");
    let (s, h, b) = call(reqwest::Method::GET,
        format!("{base}/api/now/table/incident?sysparm_query=category=Certificate^ORDERBYDESCnumber&sysparm_fields=number,state,priority&sysparm_display_value=all"), me, None).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-total-count"], "1");
    assert_eq!(b["result"][0]["number"]["value"], number.as_str());
    assert_eq!(
        b["result"][0]["state"],
        json!({"display_value": "New", "value": "1"})
    );
    assert_eq!(b["result"][0]["priority"]["display_value"], "2 - High");
    assert!(
        b["result"][0].get("short_description").is_none(),
        "sysparm_fields limits the fields"
    );

    // Change API: a normal change cannot jump from New to Implement; nextstates says where it may go.
    let (_, _, b) = call(
        reqwest::Method::POST,
        format!("{base}/api/sn_chg_rest/change/normal"),
        me,
        Some(json!({"short_description": "renew"})),
    )
    .await;
    assert_eq!(b["result"]["state"]["value"], "-5");
    assert_eq!(b["result"]["type"]["value"], "normal");
    let id = b["result"]["sys_id"]["value"].as_str().unwrap().to_string();
    let (s, _, b) = call(
        reqwest::Method::PATCH,
        format!("{base}/api/sn_chg_rest/change/{id}"),
        me,
        Some(json!({"state": "-1"})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["message"], "Invalid state transition");
    let (_, _, b) = call(
        reqwest::Method::GET,
        format!("{base}/api/sn_chg_rest/change/{id}/nextstates"),
        me,
        None,
    )
    .await;
    assert_eq!(b["result"]["available_states"], json!(["-4", "4"]));
    assert_eq!(b["result"]["state_label"]["-4"], "Assess");

    // Rate limiting: 429 with Retry-After and the X-RateLimit headers, ServiceNow's body.
    emu.set_hourly_limit(Some(2));
    for _ in 0..2 {
        let (s, h, _) = call(
            reqwest::Method::GET,
            format!("{base}/api/now/table/incident"),
            me,
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(h["x-ratelimit-limit"], "2");
    }
    let (s, h, b) = call(
        reqwest::Method::GET,
        format!("{base}/api/now/table/incident"),
        me,
        None,
    )
    .await;
    assert_eq!(s, 429);
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    assert!(h.contains_key("x-ratelimit-reset") && h.contains_key("x-ratelimit-rule"));
    assert_eq!(
        b,
        json!({"error": {"message": "Rate limit exceeded", "detail": "Rate limit of 2 requests per hour for Table API exceeded"}, "status": "failure"})
    );
    emu.set_hourly_limit(None);
}

/// The webhook is a notification, the record is the truth: with `[servicenow]` configured,
/// intake reads the record a webhook names back through the Table API and builds the
/// trigger from what ServiceNow holds (CI, environment, priority, opener, category), not
/// from the posted body. A record that does not exist, or a sys_id that does not match,
/// starts nothing.
mod webhook_record_is_the_truth {
    use certops_core::integrations::Integrations;
    use certops_core::ports::SystemClock;
    use certops_core::Trigger;
    use certops_embedded::{example_config, Stack, StackOptions};
    use certops_tests::servicenow::ServiceNowEmulator;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::time::Duration;

    async fn stack(dir: &std::path::Path, integrations: Integrations) -> Stack {
        let mut config = example_config().unwrap();
        config.integrations = integrations;
        Stack::open(StackOptions {
            data_dir: dir.join("data"),
            config,
            clock: Arc::new(SystemClock),
            probe_timeout: Duration::from_secs(2),
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn intake_validates_the_record_servicenow_holds_not_the_posted_body() {
        let emu = ServiceNowEmulator::start().unwrap();
        emu.add_user(
            "certops.integration",
            "integration-pw",
            &["itil", "sn_change_writer"],
        );
        emu.add_user("sam@example.com", "sam-pw", &["itil"]);
        emu.insert("cmdb_ci", json!({"name": "shop-web-prod"}), "admin");
        let inc = emu.insert(
            "incident",
            json!({"short_description": "shop.example.com certificate warning", "cmdb_ci": "shop-web-prod",
                   "u_environment": "prod", "impact": "1", "urgency": "1", "category": "Certificate"}),
            "sam@example.com",
        );
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "integration-pw").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let integrations = Integrations::from_toml_str(&format!(
            "[servicenow]\ninstance_url = \"{}\"\nusername = \"certops.integration\"\npassword = \"file:{}\"\n",
            emu.url(),
            pw.display()
        ))
        .unwrap();
        let stack = stack(dir.path(), integrations).await;
        let number = inc["number"].as_str().unwrap();
        let sys_id = inc["sys_id"].as_str().unwrap();

        // A body that lies about everything but the number and sys_id.
        let posted = json!({"number": number, "sys_id": sys_id, "sys_class_name": "incident",
            "cmdb_ci": "legacy-billing-prod", "u_environment": "dev", "priority": "4",
            "opened_by": "mallory@example.com", "category": "Other"});
        let record = certops_fn_intake::record_of_truth(&stack.deps, &posted)
            .await
            .unwrap()
            .expect("ServiceNow is configured");
        let Trigger::Ticket(t) = certops_fn_intake::trigger_from_servicenow(&record).unwrap()
        else {
            panic!("a ticket trigger");
        };
        assert_eq!(t.number, number);
        assert_eq!(t.sys_id, sys_id);
        assert_eq!(t.ci, "shop-web-prod");
        assert_eq!(t.environment.as_deref(), Some("prod"));
        assert_eq!(t.priority, "1");
        assert_eq!(t.requested_by, "sam@example.com");
        assert_eq!(t.category, "Certificate");

        // A number ServiceNow does not have: NotFound, nothing to start.
        let e = certops_fn_intake::record_of_truth(
            &stack.deps,
            &json!({"number": "INC0099999", "sys_id": sys_id}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.name(), "NotFound");
        // The right number with another record's sys_id: refused.
        let e = certops_fn_intake::record_of_truth(
            &stack.deps,
            &json!({"number": number, "sys_id": "0123456789abcdef0123456789abcdef"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.name(), "InvalidInput");
        assert!(e.to_string().contains("sys_id"), "{e}");
        // The record read back went through the Table API, with display values for the references.
        assert!(emu.requests().iter().any(|r| r.starts_with(&format!(
            "GET /api/now/table/incident?sysparm_query=number%3D{number}"
        )) && r.contains("sysparm_display_value=all")));
    }

    #[tokio::test]
    async fn without_servicenow_the_posted_record_stands() {
        let dir = tempfile::tempdir().unwrap();
        let stack = stack(dir.path(), Integrations::none()).await;
        let posted = json!({"number": "INC0010001", "sys_id": "abc", "cmdb_ci": "shop-web-prod"});
        assert_eq!(
            certops_fn_intake::record_of_truth(&stack.deps, &posted)
                .await
                .unwrap(),
            None
        );
    }
}

/// The ServiceNow-side script in `runbooks/servicenow/` signs to certops's scheme: run under
/// node with ServiceNow's two APIs it uses (`GlideStringUtil.base64Encode`,
/// `GlideCertificateEncryption.generateMac`) given their documented behaviour, its headers
/// equal `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` computed here.
mod runbook_script_signs_to_the_scheme {
    use hmac::{Hmac, Mac};
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn the_script_include_signs_timestamp_and_exact_body() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let script = std::fs::read_to_string(
            root.join("runbooks/servicenow/CertopsWebhook.script-include.js"),
        )
        .unwrap();
        let harness = format!(
            r#"
var crypto = require('crypto');
var Class = {{ create: function() {{ return function() {{ this.initialize.apply(this, arguments); }}; }} }};
var GlideStringUtil = {{ base64Encode: function(s) {{ return Buffer.from(s, 'utf8').toString('base64'); }} }};
function GlideCertificateEncryption() {{}}
GlideCertificateEncryption.prototype.generateMac = function(key, alg, data) {{
  if (alg !== 'HmacSHA256') throw new Error('unexpected algorithm ' + alg);
  return crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(data, 'utf8').digest('base64');
}};
{script}
var current = {{
  getValue: function(k) {{ return k === 'number' ? 'INC0010042' : ''; }},
  getUniqueValue: function() {{ return '9d385017c611228701d22104cc95c371'; }},
  getRecordClassName: function() {{ return 'incident'; }}
}};
var w = new CertopsWebhook();
var body = w.body(current);
process.stdout.write(JSON.stringify({{ body: body, headers: w.sign(process.argv[1], Number(process.argv[2]), body) }}));
"#
        );
        for (secret, ts) in [
            ("webhook-secret-Ω-1", 1_765_000_000u64),
            ("another secret", 1_700_000_123),
        ] {
            let out = Command::new("node")
                .arg("-e")
                .arg(&harness)
                .arg(secret)
                .arg(ts.to_string())
                .output()
                .expect("node must be installed (the README's test command uses npm)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let body = v["body"].as_str().unwrap();
            assert_eq!(
                body,
                r#"{"record":{"number":"INC0010042","sys_id":"9d385017c611228701d22104cc95c371","sys_class_name":"incident"}}"#
            );
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{ts}.{body}").as_bytes());
            let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(v["headers"]["x-certops-signature"], want.as_str());
            assert_eq!(v["headers"]["x-certops-timestamp"], ts.to_string().as_str());
        }
    }
}
