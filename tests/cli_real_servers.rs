//! The embedded default, for real: the `certops` binary (built with `cargo build -p
//! certops-cli`) renews and deploys to a real nginx and a real HAProxy started by the
//! harness on loopback, the way a team without AWS runs it — a config dir with an inventory
//! whose `[target."<id>"]` tables point at them, the fallback bundle imported with
//! `certops keystore import`, then `certops run --trigger FILE` and `certops approve`, each
//! a separate process. A fresh TLS handshake must see the renewed leaf on both servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use certops_tests::contract::keystore::TestCa;
use certops_tests::served::{self, certops, certops_root, json_of, poll, post, sfn, DNS, OWNER};
use certops_tests::servers::haproxy::Haproxy;
use certops_tests::servers::nginx::Nginx;
use certops_tests::servers::observe;
use serde_json::json;

/// A config dir whose inventory's targets are the two servers (one certificate object,
/// both servers its targets and endpoints), the always-open test policy and the runbook.
fn write_config(config: &Path, nginx: &Nginx, haproxy: &Haproxy) {
    served::write_config(
        config,
        &[
            (
                "{ kind = \"nginx\", id = \"edge-nginx\", reload = \"nginx-reload\" }".into(),
                nginx.connection_toml("edge-nginx"),
                nginx.port,
            ),
            (
                "{ kind = \"haproxy\", id = \"edge-haproxy\", reload = \"haproxy-runtime-api\" }"
                    .into(),
                haproxy.connection_toml("edge-haproxy"),
                haproxy.port,
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certops_run_and_approve_renew_and_deploy_to_a_real_nginx_and_haproxy() {
    let legacy = TestCa::new();
    let initial = legacy.issue(DNS, 7);
    let nginx = Nginx::start(&initial);
    let haproxy = Haproxy::start(&initial);
    let before = observe(nginx.port, &legacy.root_pem).await;
    assert_eq!(
        observe(haproxy.port, &legacy.root_pem).await.fingerprint,
        before.fingerprint
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    write_config(&config, &nginx, &haproxy);
    let config_arg = config.display().to_string();

    // The fallback bundle validation requires: a world-readable key is refused.
    let fallback = legacy.issue(DNS, 60);
    let (fcert, fkey) = (dir.path().join("fb.crt"), dir.path().join("fb.key"));
    std::fs::write(&fcert, &fallback.chain_pem).expect("fb cert");
    std::fs::write(&fkey, &fallback.key_pem).expect("fb key");
    std::fs::set_permissions(&fkey, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (c, k) = (fcert.display().to_string(), fkey.display().to_string());
    let import = [
        "keystore",
        "import",
        "fallback/shop-web-prod",
        "--cert",
        &c,
        "--key",
        &k,
    ];
    let refused = certops(&data, &import);
    assert!(!refused.status.success(), "a 0644 key must be refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("0644") && stderr.contains("600"),
        "{stderr}"
    );
    assert!(!stderr.contains(fallback.key_body().as_str()), "{stderr}");
    std::fs::set_permissions(&fkey, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let imported = certops(&data, &import);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&imported.stdout).trim(),
        "keystore:fallback/shop-web-prod"
    );

    // The daily scan's finding, as a file.
    let trigger = dir.path().join("trigger.json");
    std::fs::write(
        &trigger,
        json!({"ci": "shop-web-prod", "observed_expiry": before.not_after,
               "observed_fingerprint": before.fingerprint})
        .to_string(),
    )
    .expect("trigger");
    let t = trigger.display().to_string();
    let run = certops(
        &data,
        &[
            "run",
            "--trigger",
            &t,
            "--config-dir",
            &config_arg,
            "--json",
            "--timeout",
            "60s",
        ],
    );
    let doc = json_of(&run);
    assert_eq!(doc["status"], "RUNNING", "{doc}");
    let card = &doc["waitingForApproval"];
    let approval = card["approval_id"].as_str().expect("waiting for approval");
    assert_eq!(card["approvers"], json!([OWNER]), "{doc}");

    let approve = certops(
        &data,
        &[
            "approve",
            approval,
            "--as",
            OWNER,
            "--comment",
            "approved in the CLI real-server test",
            "--config-dir",
            &config_arg,
            "--json",
        ],
    );
    let done = json_of(&approve);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");

    // A fresh handshake on each real server sees the renewed leaf.
    let root = certops_root(&data).await;
    let after_nginx = observe(nginx.port, &root).await;
    let after_haproxy = observe(haproxy.port, &root).await;
    assert_ne!(after_nginx.fingerprint, before.fingerprint);
    assert_eq!(after_nginx.fingerprint, after_haproxy.fingerprint);
    assert!(after_nginx.chain_valid && after_haproxy.chain_valid);
    assert!(after_nginx.not_after > before.not_after);
    let output = done["output"].to_string();
    assert!(
        output.contains(&after_nginx.fingerprint),
        "the verify step saw the same leaf: {output}"
    );

    // The audit trail the run left is intact.
    let audit = certops(&data, &["audit", "verify", "--json"]);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    assert_eq!(json_of(&audit)["broken"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certops_serve_renews_and_deploys_to_a_real_nginx_and_haproxy() {
    let legacy = TestCa::new();
    let initial = legacy.issue(DNS, 7);
    let nginx = Nginx::start(&initial);
    let haproxy = Haproxy::start(&initial);
    let before = observe(haproxy.port, &legacy.root_pem).await;

    // `certops serve` reads <data-dir>/config by default.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    write_config(&data.join("config"), &nginx, &haproxy);
    served::import_fallback(&data, dir.path(), &legacy);

    let secret = "serve-real-servers-approval-secret";
    let port = certops_tests::process::free_port();
    let server = certops_tests::process::start_serve_scanning(
        &data,
        port,
        &[("CERTOPS_APPROVAL_SECRET", secret)],
        "1h",
    );

    // `serve`'s scheduler scans at start-up: its finding starts the renewal through intake
    // (the governed state machine cannot be started through the API with unsigned input).
    let execution = poll(std::time::Duration::from_secs(60), || {
        let listed = sfn(
            port,
            "ListExecutions",
            json!({"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:cert-renewal"}),
        );
        listed["executions"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(|e| e["executionArn"].as_str())
            .map(str::to_string)
    })
    .expect("the start-up scan starts a renewal");

    // The approval request is in the execution's history (the card's id).
    let approval = poll(std::time::Duration::from_secs(30), || {
        let history = sfn(
            port,
            "GetExecutionHistory",
            json!({"executionArn": execution}),
        )
        .to_string()
        .replace("\\\"", "\"");
        let at = history.find("APR-")?;
        let id: String = history[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        Some(id)
    })
    .unwrap_or_else(|| {
        panic!(
            "no approval request in the history of {execution}: {}",
            sfn(
                port,
                "DescribeExecution",
                json!({"executionArn": execution})
            )
        )
    });

    // The owner approves through the signed callback.
    let decision =
        json!({"approver": OWNER, "verdict": "approve", "comment": "approved over the served API"})
            .to_string();
    let ts = chrono::Utc::now().timestamp();
    let signature = certops_core::signature::sign_approval(
        secret.as_bytes(),
        ts,
        &approval,
        decision.as_bytes(),
    );
    let ts = ts.to_string();
    let (status, text) = post(
        port,
        &format!("/approvals/{approval}"),
        &decision,
        &[
            ("x-certops-timestamp", ts.as_str()),
            ("x-certops-signature", signature.as_str()),
        ],
    );
    assert_eq!(status, 200, "{text}");
    let described = poll(std::time::Duration::from_secs(120), || {
        let d = sfn(
            port,
            "DescribeExecution",
            json!({"executionArn": execution}),
        );
        (d["status"] != "RUNNING").then_some(d)
    })
    .expect("the execution ends");
    assert_eq!(described["status"], "SUCCEEDED", "{described}");
    drop(server);

    let root = certops_root(&data).await;
    let after_nginx = observe(nginx.port, &root).await;
    let after_haproxy = observe(haproxy.port, &root).await;
    assert_ne!(after_haproxy.fingerprint, before.fingerprint);
    assert_eq!(after_nginx.fingerprint, after_haproxy.fingerprint);
    assert!(after_nginx.chain_valid && after_haproxy.chain_valid);
    assert!(described["output"]
        .as_str()
        .unwrap_or_default()
        .contains(&after_haproxy.fingerprint));
}
