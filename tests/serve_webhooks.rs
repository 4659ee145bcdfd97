//! `certops serve` accepts a ServiceNow webhook only with a valid signature,
//! turns it into exactly one execution (a redelivery is a duplicate, not a
//! second execution), and refuses unsigned approval callbacks.

use certops_tests::process::{free_port, start_serve_with};
use std::io::{Read, Write};

fn post(port: u16, path: &str, body: &str, signature: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let sig = signature
        .map(|v| format!("x-certops-signature: {v}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{sig}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
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

#[test]
fn webhooks_need_a_valid_signature_and_start_one_execution_per_ticket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "test-secret-for-webhooks";
    let port = free_port();
    let _server = start_serve_with(dir.path(), port, &[("CERTOPS_WEBHOOK_SECRET", secret)]);
    let body = r#"{"record": {"number": "INC0099001", "sys_id": "abc123", "sys_class_name": "incident", "category": "Certificate",
        "cmdb_ci": {"display_value": "shop-web-prod"}, "u_environment": "prod", "opened_by": {"display_value": "sam@example.com"}, "priority": "1"}}"#;

    let (status, _) = post(port, "/webhooks/servicenow", body, None);
    assert_eq!(status, 401, "unsigned webhook must be refused");
    let forged = certops_core::signature::sign(b"wrong-secret", body.as_bytes());
    let (status, _) = post(port, "/webhooks/servicenow", body, Some(&forged));
    assert_eq!(status, 401, "badly signed webhook must be refused");
    let tampered = certops_core::signature::sign(
        secret.as_bytes(),
        body.replace("INC0099001", "INC0099002").as_bytes(),
    );
    let (status, _) = post(port, "/webhooks/servicenow", body, Some(&tampered));
    assert_eq!(status, 401, "a signature over another body must be refused");

    let good = certops_core::signature::sign(secret.as_bytes(), body.as_bytes());
    let (first, b1) = post(port, "/webhooks/servicenow", body, Some(&good));
    assert_eq!(first, 202, "{b1}");
    let (second, b2) = post(port, "/webhooks/servicenow", body, Some(&good));
    assert_eq!(second, 200, "{b2}");
    let v1: serde_json::Value = serde_json::from_str(&b1).expect("json");
    let v2: serde_json::Value = serde_json::from_str(&b2).expect("json");
    assert_eq!(v1["execution"], v2["execution"]);
    assert_eq!(v2["duplicate"], true);

    let decision = r#"{"approver": "cab-alice@example.com", "verdict": "approve"}"#;
    let (status, _) = post(port, "/approvals/APR-000000000000", decision, None);
    assert_eq!(status, 401, "unsigned approval callback must be refused");
    let signed = certops_core::signature::sign(secret.as_bytes(), decision.as_bytes());
    let (status, msg) = post(port, "/approvals/APR-000000000000", decision, Some(&signed));
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("no approval"), "{msg}");
}
