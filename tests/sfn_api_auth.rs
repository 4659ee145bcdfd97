//! The local Step Functions API authenticates callers as AWS does (SigV4, with
//! the credentials `certops serve` keeps in its data directory) and applies a
//! small per-principal policy: the governed state machine cannot be replaced
//! or deleted, its StartExecution needs signed trigger input, and only the
//! approval callback's principal may complete its approval tasks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use aws_sdk_sfn::error::ProvideErrorMetadata;
use certops_core::signature::sign_webhook;
use certops_tests::process::{
    api_credentials, sfn_client, sfn_client_as, sigv4_post, start_serve_with,
};
use serde_json::json;
use std::io::{Read, Write};

const GOVERNED: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:cert-renewal";
const WEBHOOK_SECRET: &str = "auth-test-webhook-secret";

fn raw_post(port: u16, target: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
    (status, out)
}

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_api_authenticates_and_enforces_its_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Windows always open, so the signed ticket below reaches its approval task.
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(
        config.join("policy.toml"),
        certops_tests::world::policy(None),
    )
    .expect("policy");
    std::fs::write(
        config.join("inventory.toml"),
        include_str!("../runbooks/inventory.toml"),
    )
    .expect("inventory");
    std::fs::write(
        config.join("cert-renewal.runbook.toml"),
        certops_tests::world::RUNBOOK,
    )
    .expect("runbook");
    // The change the signed ticket below refers to, in the local ticket book.
    let change = {
        use certops_core::ports::{Itsm, NewTicket, TicketKind};
        let db = certops_adapters::LocalDb::open(&dir.path().join("certops.db")).expect("db");
        let book = certops_adapters::TicketBook::new(
            db,
            std::sync::Arc::new(certops_core::ports::SystemClock),
        );
        book.open(NewTicket {
            kind: TicketKind::NormalChange,
            short_description: "renew shop".into(),
            description: "renew".into(),
            ci: "shop-web-prod".into(),
            priority: 3,
            correlation_id: "sn-auth-1".into(),
            standard_change: None,
        })
        .await
        .expect("ticket")
        .number
    };
    let port = certops_tests::process::free_port();
    let server = start_serve_with(
        dir.path(),
        port,
        &[("CERTOPS_WEBHOOK_SECRET", WEBHOOK_SECRET)],
    );
    let url = server.url();

    // The credentials file is private to the user.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("api-credentials.json"))
        .expect("credentials")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Unsigned: refused before the engine sees it.
    let (status, text) = raw_post(port, "AWSStepFunctions.ListStateMachines", "{}");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("MissingAuthenticationToken"), "{text}");
    let (status, text) = raw_post(
        port,
        "AWSStepFunctions.DeleteStateMachine",
        &json!({"stateMachineArn": GOVERNED}).to_string(),
    );
    assert_eq!(status, 403, "{text}");

    // Wrong secret, unknown key.
    let (akid, secret) = api_credentials(dir.path(), "operator");
    let wrong = sfn_client_as(&url, &akid, "not-the-secret");
    let e = wrong
        .list_state_machines()
        .send()
        .await
        .expect_err("wrong key");
    assert_eq!(code(&e), "InvalidSignatureException", "{e:?}");
    let unknown = sfn_client_as(&url, "CERTOPSUNKNOWNKEY00", &secret);
    let e = unknown
        .list_state_machines()
        .send()
        .await
        .expect_err("unknown key");
    assert_eq!(code(&e), "UnrecognizedClientException", "{e:?}");

    // A correctly signed request with a stale x-amz-date (a replay) is refused; the
    // same request signed now is accepted. (Raw HTTP: the SDK corrects its clock
    // from the server's Date header and re-signs, as it does against AWS.)
    let now = chrono::Utc::now();
    let fresh = sigv4_post(
        port,
        &akid,
        &secret,
        now,
        "AWSStepFunctions.ListStateMachines",
        "{}",
    );
    assert_eq!(fresh.0, 200, "{}", fresh.1);
    let old = now - chrono::Duration::minutes(20);
    let (status, text) = sigv4_post(
        port,
        &akid,
        &secret,
        old,
        "AWSStepFunctions.ListStateMachines",
        "{}",
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("InvalidSignatureException") && text.contains("x-amz-date"),
        "{text}"
    );

    // The operator is authenticated, and the governed machine is still protected.
    let op = sfn_client(&url);
    let machines = op.list_state_machines().send().await.expect("list");
    assert!(machines
        .state_machines()
        .iter()
        .any(|m| m.state_machine_arn() == GOVERNED));
    let bare = json!({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}).to_string();
    let e = op
        .update_state_machine()
        .state_machine_arn(GOVERNED)
        .definition(&bare)
        .send()
        .await
        .expect_err("update governed");
    assert_eq!(code(&e), "AccessDeniedException", "{e:?}");
    let e = op
        .delete_state_machine()
        .state_machine_arn(GOVERNED)
        .send()
        .await
        .expect_err("delete governed");
    assert_eq!(code(&e), "AccessDeniedException", "{e:?}");
    let e = op
        .start_execution()
        .state_machine_arn(GOVERNED)
        .name("ticket-inc-squatted")
        .input(json!({"trigger": {"source": "scan"}}).to_string())
        .send()
        .await
        .expect_err("unsigned governed start");
    assert_eq!(code(&e), "AccessDeniedException", "{e:?}");
    assert!(op
        .describe_state_machine()
        .state_machine_arn(GOVERNED)
        .send()
        .await
        .expect("still there")
        .definition()
        .contains("RequestApproval"));

    // Signed trigger input starts the governed machine through intake; a badly signed one does not.
    let record = json!({"number": change, "sys_id": "auth1", "sys_class_name": "change_request",
        "category": "Certificate", "cmdb_ci": "shop-web-prod", "u_environment": "prod",
        "opened_by": "sam@example.com", "priority": "3"})
    .to_string();
    let ts = chrono::Utc::now().timestamp();
    let signed_input = |sig: String| {
        json!({"servicenow": {"timestamp": ts.to_string(), "signature": sig, "body": record}})
            .to_string()
    };
    let e = op
        .start_execution()
        .state_machine_arn(GOVERNED)
        .input(signed_input(sign_webhook(b"forged", ts, record.as_bytes())))
        .send()
        .await
        .expect_err("forged signed input");
    assert_eq!(code(&e), "AccessDeniedException", "{e:?}");
    let started = op
        .start_execution()
        .state_machine_arn(GOVERNED)
        .input(signed_input(sign_webhook(
            WEBHOOK_SECRET.as_bytes(),
            ts,
            record.as_bytes(),
        )))
        .send()
        .await
        .expect("signed start");
    let exec = started.execution_arn().to_string();
    assert!(exec.ends_with(":ticket-chg-auth1"), "{exec}");

    // A redelivery of the same signed trigger finds the same execution; the
    // name cannot be squatted because intake derives it from the trigger.
    let again = op
        .start_execution()
        .state_machine_arn(GOVERNED)
        .input(signed_input(sign_webhook(
            WEBHOOK_SECRET.as_bytes(),
            ts,
            record.as_bytes(),
        )))
        .send()
        .await
        .expect("signed redelivery");
    assert_eq!(again.execution_arn(), exec);
    // (Approval tasks of the governed machine: only the approval-callback principal
    // may complete them — `cli/src/api_auth.rs` tests that policy on a live token.)

    // Other machines stay fully usable by the operator.
    let m = op
        .create_state_machine()
        .name("scratch")
        .definition(&bare)
        .role_arn("arn:aws:iam::123456789012:role/x")
        .send()
        .await
        .expect("create");
    op.delete_state_machine()
        .state_machine_arn(m.state_machine_arn())
        .send()
        .await
        .expect("delete scratch");
    let e = op
        .create_state_machine()
        .name("cert-renewal")
        .definition(&bare)
        .role_arn("arn:aws:iam::123456789012:role/x")
        .send()
        .await
        .expect_err("create under the governed name");
    assert_eq!(code(&e), "AccessDeniedException", "{e:?}");
}
