//! `certops serve` accepts a ServiceNow webhook only with a valid, fresh,
//! timestamped signature over the exact body, turns it into exactly one
//! execution (a redelivery is a duplicate, not a second execution; a different
//! ticket under the same key is a conflict), refuses non-certificate tickets
//! with a clear answer, and accepts approval callbacks only when signed with the
//! approval-callback secret over the approval id, a timestamp and the body. The whole
//! refusal matrix (±299/±301 s, tampering, size, content type, JSON, UTF-8, replay after
//! the window) is checked to start no execution.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_core::signature::{sign_approval, sign_webhook};
use certops_tests::process::{free_port, start_serve_with};
use std::io::{Read, Write};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn post_raw(port: u16, path: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

fn signed(ts: i64, sig: String) -> Vec<(&'static str, String)> {
    vec![
        ("x-certops-timestamp", ts.to_string()),
        ("x-certops-signature", sig),
    ]
}

const WEBHOOK_SECRET: &str = "test-secret-for-webhooks";
const APPROVAL_SECRET: &str = "test-secret-for-approvals";

fn record(number: &str, sys_id: &str, category: &str) -> String {
    format!(
        r#"{{"record": {{"number": "{number}", "sys_id": "{sys_id}", "sys_class_name": "incident", "category": "{category}",
        "cmdb_ci": {{"display_value": "shop-web-prod"}}, "u_environment": "prod", "opened_by": {{"display_value": "sam@example.com"}}, "priority": "1"}}}}"#
    )
}

#[test]
fn webhooks_and_callbacks_need_fresh_signatures_over_what_they_authorise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = start_serve_with(
        dir.path(),
        port,
        &[
            ("CERTOPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CERTOPS_APPROVAL_SECRET", APPROVAL_SECRET),
        ],
    );
    let body = record("INC0099001", "abc123", "Certificate");
    let post =
        |path: &str, body: &str, h: &[(&str, String)]| post_raw(port, path, body.as_bytes(), h);

    let (status, _) = post("/webhooks/servicenow", &body, &[]);
    assert_eq!(status, 401, "unsigned webhook must be refused");
    let forged = sign_webhook(b"wrong-secret", now(), body.as_bytes());
    let (status, _) = post("/webhooks/servicenow", &body, &signed(now(), forged));
    assert_eq!(status, 401, "badly signed webhook must be refused");
    let other = body.replace("INC0099001", "INC0099002");
    let tampered = sign_webhook(WEBHOOK_SECRET.as_bytes(), now(), other.as_bytes());
    let (status, _) = post("/webhooks/servicenow", &body, &signed(now(), tampered));
    assert_eq!(status, 401, "a signature over another body must be refused");
    let stale_ts = now() - 600;
    let stale = sign_webhook(WEBHOOK_SECRET.as_bytes(), stale_ts, body.as_bytes());
    let (status, msg) = post("/webhooks/servicenow", &body, &signed(stale_ts, stale));
    assert_eq!(
        status, 401,
        "a replay older than 300 s must be refused: {msg}"
    );
    // The old scheme (a MAC over the body alone, no timestamp) no longer verifies.
    let (status, _) = post(
        "/webhooks/servicenow",
        &body,
        &[(
            "x-certops-signature",
            format!(
                "sha256={}",
                hmac_hex(WEBHOOK_SECRET.as_bytes(), body.as_bytes())
            ),
        )],
    );
    assert_eq!(status, 401);
    // The approval secret cannot sign webhooks.
    let wrong_key = sign_webhook(APPROVAL_SECRET.as_bytes(), now(), body.as_bytes());
    let (status, _) = post("/webhooks/servicenow", &body, &signed(now(), wrong_key));
    assert_eq!(status, 401);

    let ts = now();
    let good = sign_webhook(WEBHOOK_SECRET.as_bytes(), ts, body.as_bytes());
    let (first, b1) = post("/webhooks/servicenow", &body, &signed(ts, good.clone()));
    assert_eq!(first, 202, "{b1}");
    let (second, b2) = post("/webhooks/servicenow", &body, &signed(ts, good));
    assert_eq!(second, 200, "{b2}");
    let v1: serde_json::Value = serde_json::from_str(&b1).expect("json");
    let v2: serde_json::Value = serde_json::from_str(&b2).expect("json");
    assert_eq!(v1["execution"], v2["execution"]);
    assert_eq!(v2["duplicate"], true);

    // Numbers that used to collapse into one key are separate tickets now.
    for (i, number) in ["INC/0090201", "INC.0090201", "INC 0090201", "INC:0090201"]
        .iter()
        .enumerate()
    {
        let b = record(number, &format!("sys{i}"), "Certificate");
        let ts = now();
        let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), ts, b.as_bytes());
        let (status, msg) = post("/webhooks/servicenow", &b, &signed(ts, sig));
        assert_eq!(status, 202, "{number}: {msg}");
    }
    // The same sys_id with a materially different payload is a conflict, not a silent drop.
    let changed =
        record("INC0099001", "abc123", "Certificate").replace("shop-web-prod", "shop-api-prod");
    let ts = now();
    let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), ts, changed.as_bytes());
    let (status, msg) = post("/webhooks/servicenow", &changed, &signed(ts, sig));
    assert_eq!(status, 409, "{msg}");
    assert!(msg.contains("different trigger"), "{msg}");

    // A ticket in another category is refused with a clear answer, nothing started.
    let network = record("INC0099009", "net1", "Network");
    let ts = now();
    let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), ts, network.as_bytes());
    let (status, msg) = post("/webhooks/servicenow", &network, &signed(ts, sig));
    assert_eq!(status, 422, "{msg}");
    assert!(
        msg.contains("NotCertificate") && msg.contains("Network"),
        "{msg}"
    );

    // Approval callbacks.
    let id = "APR-000000000000";
    let path = format!("/approvals/{id}");
    let decision = r#"{"approver": "cab-alice@example.com", "verdict": "approve"}"#;
    let (status, _) = post(&path, decision, &[]);
    assert_eq!(status, 401, "unsigned approval callback must be refused");
    let ts = now();
    let by_webhook_key = sign_approval(WEBHOOK_SECRET.as_bytes(), ts, id, decision.as_bytes());
    let (status, _) = post(&path, decision, &signed(ts, by_webhook_key));
    assert_eq!(status, 401, "the ServiceNow secret must not sign approvals");
    let for_other = sign_approval(
        APPROVAL_SECRET.as_bytes(),
        ts,
        "APR-111111111111",
        decision.as_bytes(),
    );
    let (status, _) = post(&path, decision, &signed(ts, for_other));
    assert_eq!(
        status, 401,
        "a callback signed for another approval must be refused"
    );
    let stale_ts = now() - 400;
    let stale = sign_approval(
        APPROVAL_SECRET.as_bytes(),
        stale_ts,
        id,
        decision.as_bytes(),
    );
    let (status, _) = post(&path, decision, &signed(stale_ts, stale));
    assert_eq!(status, 401, "a stale callback must be refused");
    let mismatched = r#"{"approvalId": "APR-111111111111", "approver": "cab-alice@example.com", "verdict": "approve"}"#;
    let ts = now();
    let sig = sign_approval(APPROVAL_SECRET.as_bytes(), ts, id, mismatched.as_bytes());
    let (status, msg) = post(&path, mismatched, &signed(ts, sig));
    assert_eq!(status, 400, "path/body mismatch must be refused: {msg}");
    let ts = now();
    let sig = sign_approval(APPROVAL_SECRET.as_bytes(), ts, id, decision.as_bytes());
    let (status, msg) = post(&path, decision, &signed(ts, sig));
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("no approval"), "{msg}");
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// The executions of the governed state machine, through the served Step Functions API
/// (SigV4 with the operator's credentials).
fn executions(port: u16) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sfn = certops_tests::process::sfn_client(&format!("http://127.0.0.1:{port}"));
        sfn.list_executions()
            .state_machine_arn("arn:aws:states:us-east-1:123456789012:stateMachine:cert-renewal")
            .send()
            .await
            .expect("ListExecutions")
            .executions()
            .len()
    })
}

/// Posts a webhook signed at `now() + offset`; retried when the server's second may have
/// ticked between signing and checking (the only way a ±299/±301 case could land on 300).
fn post_at_offset(port: u16, offset: i64, body: &[u8], content_type: &str) -> (u16, String) {
    loop {
        let ts = now() + offset;
        let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), ts, body);
        let mut headers = signed(ts, sig);
        headers.push(("content-type", content_type.to_string()));
        let answer = post_typed(port, "/webhooks/servicenow", body, &headers);
        if now() + offset == ts {
            return answer;
        }
    }
}

/// [`post_raw`] with the content type given in `headers` (or none) instead of JSON's.
fn post_typed(port: u16, path: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let out = String::from_utf8_lossy(&out).to_string();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// The whole inbound matrix through `certops serve`'s real webhook route (intake's
/// handler): the ±300 s window at its edges, a tampered body, an oversized body, a wrong
/// content type, invalid JSON, invalid UTF-8, and a captured request replayed after its
/// window. Each refusal has its status and error name, and starts no execution.
#[test]
fn the_webhook_refuses_every_malformed_or_stale_message_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = start_serve_with(
        dir.path(),
        port,
        &[
            ("CERTOPS_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CERTOPS_APPROVAL_SECRET", APPROVAL_SECRET),
        ],
    );
    const JSON: &str = "application/json";
    let started = std::cell::Cell::new(executions(port));
    assert_eq!(started.get(), 0);
    // Each case its own ticket, so an accepted one is a new execution.
    let mut n = 0;
    let mut next_record = || {
        n += 1;
        record(
            &format!("INC00777{n:02}"),
            &format!("matrix{n}"),
            "Certificate",
        )
    };

    // Inside the window, both ways: accepted, one execution each.
    for offset in [-299, 299] {
        let body = next_record();
        let (status, msg) = post_at_offset(port, offset, body.as_bytes(), JSON);
        assert_eq!(status, 202, "{offset:+} s: {msg}");
        started.set(started.get() + 1);
        assert_eq!(executions(port), started.get(), "{offset:+} s");
    }
    // The charset parameter is part of a JSON content type.
    let body = next_record();
    let (status, msg) = post_at_offset(port, 0, body.as_bytes(), "application/json; charset=utf-8");
    assert_eq!(status, 202, "{msg}");
    started.set(started.get() + 1);

    let refused = |what: &str, (status, msg): (u16, String), want: u16, name: &str| {
        assert_eq!(status, want, "{what}: {msg}");
        assert!(msg.contains(name), "{what}: {msg}");
        assert_eq!(
            executions(port),
            started.get(),
            "{what} started an execution"
        );
    };
    // Outside the window, both ways.
    for offset in [-301, 301] {
        let body = next_record();
        let answer = post_at_offset(port, offset, body.as_bytes(), JSON);
        refused(&format!("{offset:+} s"), answer, 401, "Unauthorized");
    }
    // A body changed after signing.
    let body = next_record();
    let ts = now();
    let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), ts, body.as_bytes());
    let tampered = body.replace("shop-web-prod", "shop-api-prod");
    let mut h = signed(ts, sig);
    h.push(("content-type", JSON.into()));
    refused(
        "tampered body",
        post_typed(port, "/webhooks/servicenow", tampered.as_bytes(), &h),
        401,
        "signature does not match",
    );
    // Oversized, though validly signed JSON.
    let big = format!(
        r#"{{"record": {{"number": "INC0077799", "sys_id": "big", "category": "Certificate", "cmdb_ci": "shop-web-prod", "description": "{}"}}}}"#,
        "x".repeat(certops_fn_intake::MAX_WEBHOOK_BODY)
    );
    refused(
        "oversized body",
        post_at_offset(port, 0, big.as_bytes(), JSON),
        413,
        "PayloadTooLarge",
    );
    // Signed JSON under another content type, or none.
    let body = next_record();
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        refused(
            ct,
            post_at_offset(port, 0, body.as_bytes(), ct),
            415,
            "UnsupportedMediaType",
        );
    }
    let ts = now();
    let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), ts, body.as_bytes());
    refused(
        "no content type",
        post_typed(
            port,
            "/webhooks/servicenow",
            body.as_bytes(),
            &signed(ts, sig),
        ),
        415,
        "UnsupportedMediaType",
    );
    // Validly signed, but not JSON; validly signed, but not UTF-8.
    refused(
        "invalid JSON",
        post_at_offset(port, 0, br#"{"record": {"number": "INC0077798""#, JSON),
        400,
        "body is not JSON",
    );
    let mut latin1 = next_record().into_bytes();
    latin1.extend_from_slice(b" \xff\xfe");
    refused(
        "invalid UTF-8",
        post_at_offset(port, 0, &latin1, JSON),
        400,
        "not UTF-8",
    );

    // A request captured as it was accepted, replayed once its window has passed: the
    // capture is signed 298 s ago, so the wait below is the 3 s of time the case is about.
    let body = next_record();
    let ts = now() - 298;
    let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), ts, body.as_bytes());
    let mut captured = signed(ts, sig);
    captured.push(("content-type", JSON.into()));
    let (status, msg) = post_typed(port, "/webhooks/servicenow", body.as_bytes(), &captured);
    assert_eq!(status, 202, "the original delivery: {msg}");
    started.set(started.get() + 1);
    assert_eq!(executions(port), started.get());
    let window_closed = std::time::Duration::from_secs((ts + 301 - now()).max(0) as u64);
    std::thread::sleep(window_closed);
    refused(
        "replay after the window",
        post_typed(port, "/webhooks/servicenow", body.as_bytes(), &captured),
        401,
        "replayed",
    );
}
