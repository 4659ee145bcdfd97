//! Issue 10, finding 8: a crash at any state boundary of a renewal loses nothing and
//! duplicates nothing. `certops serve` renews a certificate served by a real nginx on
//! loopback; for every state boundary `k` of that renewal (each `…StateEntered` and
//! `…StateExited` event), a fresh run makes the server abort right after persisting its
//! k-th boundary (`CERTOPS_CRASH_AFTER_BOUNDARY`, no unwinding: as `kill -9` there would),
//! starts it again on the same data directory, approves when asked, and lets the renewal
//! finish. Every run must end as the run without a crash did: SUCCEEDED, nginx serving the
//! renewed leaf, one certificate issued, one deploy per target, the ticket closed once, the
//! audit chain intact. `CRASH_ONLY=<k>` runs the baseline and boundary k alone (to debug
//! one boundary).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::path::Path;
use std::time::Duration;

use certops_tests::contract::keystore::TestCa;
use certops_tests::eventually::eventually;
use certops_tests::process::{free_port, spawn_serve, Running};
use certops_tests::served::{
    approval_in_history, approve, certops, import_fallback, json_of, try_sfn, write_config, DNS,
    STATE_MACHINE,
};
use certops_tests::servers::nginx::Nginx;
use certops_tests::servers::{fingerprint, observe};
use serde_json::{json, Value};

const SECRET: &str = "crash-test-approval-secret";

/// What one run ended as.
#[derive(Debug)]
struct Ended {
    status: String,
    boundaries: usize,
    crashes: usize,
    issued: usize,
    deploys: usize,
    closes: usize,
    served: String,
    output_fingerprint: bool,
    audit_ok: bool,
}

fn start(data: &Path, port: u16, crash_after: Option<usize>) -> Running {
    let k = crash_after.map(|k| k.to_string());
    let mut env = vec![("CERTOPS_APPROVAL_SECRET", SECRET)];
    if let Some(k) = &k {
        env.push(("CERTOPS_CRASH_AFTER_BOUNDARY", k.as_str()));
    }
    spawn_serve(data, port, &env, "1h")
}

fn boundaries(history: &Value) -> usize {
    history["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| {
                    let t = e["type"].as_str().unwrap_or_default();
                    t.ends_with("StateEntered") || t.ends_with("StateExited")
                })
                .count()
        })
        .unwrap_or(0)
}

async fn run(crash_after: Option<usize>) -> Ended {
    let legacy = TestCa::new();
    let initial = legacy.issue(DNS, 7);
    let nginx = Nginx::start(&initial);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    write_config(
        &data.join("config"),
        &[(
            "{ kind = \"nginx\", id = \"edge-nginx\", reload = \"nginx-reload\" }".to_string(),
            nginx.connection_toml("edge-nginx"),
            nginx.port,
        )],
    );
    import_fallback(&data, dir.path(), &legacy);

    let port = free_port();
    let mut server = start(&data, port, crash_after);
    let mut crashes = 0;
    let mut approved = false;
    let (execution, described) = eventually(
        &format!("crash after boundary {crash_after:?}: the renewal ending"),
        Duration::from_secs(120),
        || {
            if server.exited() {
                crashes += 1;
                assert!(crashes <= 1, "crashed again after the restart");
                server = start(&data, port, None);
                return None;
            }
            let listed = try_sfn(
                port,
                "ListExecutions",
                &json!({"stateMachineArn": STATE_MACHINE}),
            );
            let execution = listed.as_ref().and_then(|l| {
                l["executions"]
                    .as_array()
                    .and_then(|e| e.first())
                    .and_then(|e| e["executionArn"].as_str())
                    .map(str::to_string)
            })?;
            let described = try_sfn(
                port,
                "DescribeExecution",
                &json!({"executionArn": execution}),
            )?;
            if described["status"] != "RUNNING" {
                return Some((execution, described));
            }
            if !approved {
                let approval = try_sfn(
                    port,
                    "GetExecutionHistory",
                    &json!({"executionArn": execution}),
                )
                .as_ref()
                .and_then(approval_in_history);
                if let Some(approval) = approval {
                    // 200 decided; 409 decided before a crash (the retry is told so).
                    match approve(port, SECRET, &approval, "approved in the crash test") {
                        Some(200) | Some(409) => approved = true,
                        _ => {}
                    }
                }
            }
            None
        },
    );
    let history = try_sfn(
        port,
        "GetExecutionHistory",
        &json!({"executionArn": execution}),
    )
    .expect("history");
    drop(server);

    let audit = json_of(&certops(&data, &["audit", "show", &execution]));
    let actions: Vec<&Value> = audit
        .as_array()
        .expect("records")
        .iter()
        .map(|r| &r["summary"])
        .collect();
    let count = |pred: &dyn Fn(&Value) -> bool| actions.iter().filter(|s| pred(s)).count();
    let issued = count(&|s| {
        s["action"] == "renew"
            || s.get("serial").is_some()
                && s.get("bundleRef").is_some()
                && s["action"] != "deploy+reload"
    });
    let deploys = count(&|s| s["action"] == "deploy+reload" && s["result"] == "ok");
    let closes = count(&|s| s.to_string().contains("\"closed\"") || s["action"] == "close");
    let verify = json_of(&certops(&data, &["audit", "verify", "--json"]));
    let root = certops_tests::served::certops_root(&data).await;
    let served = observe(nginx.port, &root).await;
    let file = std::fs::read_to_string(&nginx.cert_path).expect("nginx cert");
    Ended {
        status: described["status"].as_str().unwrap_or_default().to_string(),
        boundaries: boundaries(&history),
        crashes,
        issued,
        deploys,
        closes,
        output_fingerprint: described["output"]
            .as_str()
            .unwrap_or_default()
            .contains(&served.fingerprint)
            && fingerprint(&file) == served.fingerprint
            && served.chain_valid,
        served: served.fingerprint,
        audit_ok: verify["broken"] == 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_state_boundary_ends_as_the_run_without_one() {
    let baseline = run(None).await;
    eprintln!("without a crash: {baseline:?}");
    assert_eq!(baseline.status, "SUCCEEDED", "{baseline:?}");
    assert!(
        baseline.output_fingerprint && baseline.audit_ok,
        "{baseline:?}"
    );
    assert!(baseline.boundaries >= 10, "{baseline:?}");
    let only: Option<usize> = std::env::var("CRASH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    for k in (1..=baseline.boundaries).filter(|k| only.is_none_or(|o| o == *k)) {
        let ended = run(Some(k)).await;
        eprintln!("crash after boundary {k}: {ended:?}");
        assert_eq!(ended.crashes, 1, "boundary {k} was reached: {ended:?}");
        assert_eq!(ended.status, baseline.status, "boundary {k}: {ended:?}");
        assert!(
            ended.output_fingerprint,
            "boundary {k}: nginx serves the renewal: {ended:?}"
        );
        assert!(
            ended.audit_ok,
            "boundary {k}: the audit chain verifies: {ended:?}"
        );
        assert_eq!(
            (ended.issued, ended.deploys, ended.closes),
            (baseline.issued, baseline.deploys, baseline.closes),
            "boundary {k}: no side effect duplicated: {ended:?}"
        );
        assert_ne!(
            ended.served, baseline.served,
            "each run renews its own certificate"
        );
    }
}
