//! Deploying to "any host with a reload command": the deploy contract with a real nginx as
//! the host, driven only through its own commands (`nginx -t`, `nginx -s reload`); files
//! written with the inventory's modes and owner; a failing validate command restores the
//! previous files; a reload command that hangs is killed at its deadline; command output in
//! the audit evidence is redacted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certops_adapters::Embedded;
use certops_core::ports::{DeployTarget, Keystore, SystemClock};
use certops_core::{ReloadMethod, Target, TargetKind};
use certops_servers::Routers;
use certops_tests::contract::deploy::{deploy_contract, DeployCase};
use certops_tests::contract::keystore::TestCa;
use certops_tests::servers::nginx::{Nginx, NginxServed};
use certops_tests::servers::{targets_inventory, DNS};

fn target(id: &str) -> Target {
    Target {
        kind: TargetKind::Command,
        id: id.into(),
        reload: ReloadMethod::Command,
    }
}

struct Fixture {
    ca: TestCa,
    nginx: Nginx,
    embedded: Embedded,
    routers: Routers,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let ca = TestCa::new();
    let nginx = Nginx::start(&ca.issue(DNS, 10));
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded =
        Embedded::open(&dir.path().join("state"), Arc::new(SystemClock)).expect("embedded");
    let (bin, conf) = (
        nginx.binary.display().to_string(),
        nginx.config.display().to_string(),
    );
    let files = dir.path();
    let barrier = files.join("barrier");
    std::fs::create_dir(&barrier).expect("barrier dir");
    let connections = format!(
        r#"[target."web-cmd"]
kind = "command"
cert_path = "{cert}"
key_path = "{key}"
cert_mode = "0640"
key_mode = "0600"
owner = "root"
group = "0"
validate = ["{bin}", "-t", "-q", "-c", "{conf}"]
reload = ["{bin}", "-c", "{conf}", "-s", "reload"]
timeout_seconds = 20

[target."hangs"]
kind = "command"
cert_path = "{hang_cert}"
reload = ["sh", "-c", "sleep 30"]
timeout_seconds = 1

[target."both"]
kind = "command"
cert_path = "{both_cert}"
reload = ["sh", "-c", "touch \"$0/$$\"; while [ $(ls \"$0\" | wc -l) -lt 2 ]; do sleep 0.05; done; echo reloaded", "{barrier}"]
timeout_seconds = 20

[target."refuses"]
kind = "command"
cert_path = "{refuse_cert}"
key_path = "{refuse_key}"
validate = ["sh", "-c", "echo 'upstream said Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123'; echo 'config invalid' >&2; exit 2"]
reload = ["true"]
"#,
        cert = nginx.cert_path.display(),
        key = nginx.key_path.display(),
        hang_cert = files.join("hang.pem").display(),
        both_cert = files.join("both.pem").display(),
        barrier = barrier.display(),
        refuse_cert = files.join("refuse.crt").display(),
        refuse_key = files.join("refuse.key").display(),
    );
    let routers = Routers::embedded(
        &embedded,
        &targets_inventory(
            "command",
            "command",
            &["web-cmd", "hangs", "both", "refuses"],
            &connections,
        ),
    )
    .expect("routers");
    Fixture {
        ca,
        nginx,
        embedded,
        routers,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_contract_holds_with_a_hosts_own_validate_and_reload_commands() {
    let f = fixture();
    deploy_contract(DeployCase {
        targets: f.routers.targets.as_ref(),
        keystore: f.embedded.keystore.as_ref(),
        target: target("web-cmd"),
        dns: DNS,
        wrong_kind: Target {
            kind: TargetKind::GenericRest,
            id: "api-01".into(),
            reload: ReloadMethod::RestCall,
        },
        unknown_bundle: "keystore:never/stored",
        names: "contract-command",
        served: &NginxServed(&f.nginx, &f.ca.root_pem),
        ca: &f.ca,
    })
    .await;
    // Modes and owner from the inventory.
    let cert = std::fs::metadata(&f.nginx.cert_path).expect("cert");
    let key = std::fs::metadata(&f.nginx.key_path).expect("key");
    assert_eq!(cert.permissions().mode() & 0o777, 0o640);
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    assert_eq!((cert.uid(), cert.gid(), key.uid(), key.gid()), (0, 0, 0, 0));
    // Both commands' reports are in the evidence.
    let evidence = f
        .routers
        .targets
        .evidence(&target("web-cmd"))
        .await
        .expect("evidence");
    assert_eq!(evidence["validate"]["exitCode"], 0, "{evidence}");
    assert_eq!(evidence["reload"]["exitCode"], 0, "{evidence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_command_that_hangs_is_killed_at_its_deadline() {
    let f = fixture();
    let t = target("hangs");
    let v1 = f
        .embedded
        .keystore
        .put_bundle("hang/v1", f.ca.issue(DNS, 30).bundle())
        .await
        .expect("store");
    f.routers
        .targets
        .deploy(&t, &v1)
        .await
        .expect("files written");
    // No key_path: one combined file with the key's mode.
    let combined = f.dir.path().join("hang.pem");
    assert_eq!(
        std::fs::metadata(&combined)
            .expect("file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        f.routers.targets.current(&t).await.expect("current"),
        Some(v1)
    );
    let started = Instant::now();
    let err = f.routers.targets.reload(&t).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.name(), "DeployFailed");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(took < Duration::from_secs(5), "killed after {took:?}");
    let evidence = f.routers.targets.evidence(&t).await.expect("evidence");
    assert_eq!(evidence["reload"]["timedOut"], true, "{evidence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_validate_restores_the_files_and_redacts_the_output() {
    let f = fixture();
    let t = target("refuses");
    let cert = f.dir.path().join("refuse.crt");
    let key = f.dir.path().join("refuse.key");
    std::fs::write(&cert, "previous chain\n").expect("cert");
    std::fs::write(&key, "previous key\n").expect("key");
    let v1 = f
        .embedded
        .keystore
        .put_bundle("refuse/v1", f.ca.issue(DNS, 30).bundle())
        .await
        .expect("store");
    let err = f.routers.targets.deploy(&t, &v1).await.unwrap_err();
    assert_eq!(err.name(), "DeployFailed");
    let msg = err.to_string();
    assert!(
        msg.contains("exited with 2") && msg.contains("config invalid"),
        "{msg}"
    );
    assert!(msg.contains("previous files restored"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(&cert).expect("cert"),
        "previous chain\n"
    );
    assert_eq!(
        std::fs::read_to_string(&key).expect("key"),
        "previous key\n"
    );
    let evidence = f
        .routers
        .targets
        .evidence(&t)
        .await
        .expect("evidence")
        .to_string();
    assert!(evidence.contains("[REDACTED]"), "{evidence}");
    assert!(
        !evidence.contains("abcdefghijklmnopqrstuvwxyz0123"),
        "{evidence}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_executions_on_one_target_each_get_their_own_evidence() {
    let f = fixture();
    let t = target("both");
    let a = f
        .embedded
        .keystore
        .put_bundle("both/a", f.ca.issue(DNS, 30).bundle())
        .await
        .expect("store");
    let b = f
        .embedded
        .keystore
        .put_bundle("both/b", f.ca.issue(DNS, 31).bundle())
        .await
        .expect("store");
    // The reload command returns only once both calls are reloading, so both deploys have
    // reported before either call's evidence is read.
    let ((ra, ea), (rb, eb)) = tokio::join!(
        f.routers.targets.deploy_and_reload(&t, &a),
        f.routers.targets.deploy_and_reload(&t, &b)
    );
    ra.expect("deploy a");
    rb.expect("deploy b");
    let (ea, eb) = (ea.expect("evidence a"), eb.expect("evidence b"));
    assert_eq!(ea["bundleRef"], serde_json::json!(a), "{ea}");
    assert_eq!(eb["bundleRef"], serde_json::json!(b), "{eb}");
    for e in [&ea, &eb] {
        assert_eq!(e["reload"]["exitCode"], 0, "{e}");
        assert!(e["reload"].to_string().contains("reloaded"), "{e}");
    }
    let barrier = std::fs::read_dir(f.dir.path().join("barrier"))
        .expect("barrier")
        .count();
    assert_eq!(barrier, 2, "both reload commands ran");
}
