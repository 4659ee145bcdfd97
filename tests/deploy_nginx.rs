//! Deploying to a real nginx (Debian package, private instance on loopback): the deploy
//! contract through the router; last-known-good recorded from files certops never wrote;
//! `nginx -t` failing on a broken key leaves the old files, reloads nothing and names the
//! error; a missing pid file is `DeployFailed`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::sync::Arc;
use std::time::Duration;

use certops_adapters::Embedded;
use certops_core::ports::{Bundle, DeployTarget, Keystore, SecretPem, SystemClock};
use certops_core::{ReloadMethod, Target, TargetKind};
use certops_servers::Routers;
use certops_tests::contract::deploy::{deploy_contract, DeployCase};
use certops_tests::contract::keystore::TestCa;
use certops_tests::servers::nginx::{Nginx, NginxServed};
use certops_tests::servers::{fingerprint, observe, observe_until, targets_inventory, DNS};

struct Fixture {
    ca: TestCa,
    nginx: Nginx,
    embedded: Embedded,
    routers: Routers,
    target: Target,
    _dir: tempfile::TempDir,
}

fn target() -> Target {
    Target {
        kind: TargetKind::Nginx,
        id: "web-01".into(),
        reload: ReloadMethod::NginxReload,
    }
}

fn fixture() -> Fixture {
    let ca = TestCa::new();
    let nginx = Nginx::start(&ca.issue(DNS, 10));
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Embedded::open(dir.path(), Arc::new(SystemClock)).expect("embedded");
    let routers = Routers::embedded(
        &embedded,
        &targets_inventory(
            "nginx",
            "nginx-reload",
            &["web-01"],
            &nginx.connection_toml("web-01"),
        ),
    )
    .expect("routers");
    Fixture {
        ca,
        nginx,
        embedded,
        routers,
        target: target(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_contract_holds_on_a_real_nginx() {
    let f = fixture();
    let run = deploy_contract(DeployCase {
        targets: f.routers.targets.as_ref(),
        keystore: f.embedded.keystore.as_ref(),
        target: f.target.clone(),
        dns: DNS,
        wrong_kind: Target {
            kind: TargetKind::Acm,
            id: "arn:aws:acm:us-east-1:123456789012:certificate/x".into(),
            reload: ReloadMethod::None,
        },
        unknown_bundle: "keystore:never/stored",
        names: "contract-nginx",
        served: &NginxServed(&f.nginx, &f.ca.root_pem),
        ca: &f.ca,
    })
    .await;
    // What the handshake saw is what the keystore holds.
    let v1 = f.embedded.keystore.get_bundle(&run.v1).await.expect("v1");
    assert_eq!(run.served[2].0, fingerprint(&v1.chain_pem));
    // The second listener was never touched.
    let second = observe(f.nginx.port2, &f.ca.root_pem).await;
    assert_ne!(second.fingerprint, run.served[2].0);
    // The audit evidence names the test and the reload.
    let evidence = f
        .routers
        .targets
        .evidence(&f.target)
        .await
        .expect("evidence");
    assert_eq!(evidence["test"]["exitCode"], 0, "{evidence}");
    assert_eq!(evidence["reload"]["signal"], "HUP", "{evidence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_known_good_is_recorded_from_files_certops_never_wrote() {
    let f = fixture();
    let before = observe(f.nginx.port, &f.ca.root_pem).await;
    let lkg = f
        .routers
        .targets
        .current(&f.target)
        .await
        .expect("current")
        .expect("something is served");
    assert!(lkg.starts_with("keystore:lkg/web-01/"), "{lkg}");
    let bundle = f
        .embedded
        .keystore
        .get_bundle(&lkg)
        .await
        .expect("lkg bundle");
    assert_eq!(fingerprint(&bundle.chain_pem), before.fingerprint);
    // Asking again names the same reference.
    assert_eq!(
        f.routers.targets.current(&f.target).await.expect("current"),
        Some(lkg.clone())
    );

    // Deploy something else, then restore the last-known-good: the handshake proves it.
    let v2 = f
        .embedded
        .keystore
        .put_bundle("nginx-lkg/v2", f.ca.issue(DNS, 60).bundle())
        .await
        .expect("v2");
    f.routers
        .targets
        .deploy(&f.target, &v2)
        .await
        .expect("deploy");
    f.routers.targets.reload(&f.target).await.expect("reload");
    f.routers
        .targets
        .deploy(&f.target, &lkg)
        .await
        .expect("restore");
    f.routers.targets.reload(&f.target).await.expect("reload");
    let after = observe_until(
        f.nginx.port,
        &f.ca.root_pem,
        &before.fingerprint,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(after.fingerprint, before.fingerprint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_t_failing_on_a_broken_key_restores_the_files_and_reloads_nothing() {
    let f = fixture();
    let before = observe(f.nginx.port, &f.ca.root_pem).await;
    let cert_before = std::fs::read(&f.nginx.cert_path).expect("cert");
    let key_before = std::fs::read(&f.nginx.key_path).expect("key");
    let workers_before = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        f.nginx.pid(),
        f.nginx.pid()
    ))
    .unwrap_or_default();
    // A certificate with a key that does not belong to it.
    let good = f.ca.issue(DNS, 60);
    let other = f.ca.issue(DNS, 60);
    let broken = f
        .embedded
        .keystore
        .put_bundle(
            "nginx-broken/v2",
            Bundle {
                chain_pem: good.chain_pem.clone(),
                key: SecretPem::new(other.key_pem.clone()),
            },
        )
        .await
        .expect("store");
    let err = f
        .routers
        .targets
        .deploy(&f.target, &broken)
        .await
        .unwrap_err();
    assert_eq!(err.name(), "DeployFailed");
    let msg = err.to_string();
    assert!(
        msg.contains("web-01") && msg.contains("configuration test failed"),
        "{msg}"
    );
    assert!(msg.contains("nothing reloaded"), "{msg}");
    assert!(
        !msg.contains(&other.key_body()),
        "the key is never quoted: {msg}"
    );
    assert_eq!(
        std::fs::read(&f.nginx.cert_path).expect("cert"),
        cert_before
    );
    assert_eq!(std::fs::read(&f.nginx.key_path).expect("key"), key_before);
    let leftovers: Vec<_> = std::fs::read_dir(f.nginx.cert_path.parent().expect("dir"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("certops-new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Nothing was reloaded: the same workers, the same certificate.
    let workers_after = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        f.nginx.pid(),
        f.nginx.pid()
    ))
    .unwrap_or_default();
    assert_eq!(workers_before, workers_after);
    assert_eq!(
        observe(f.nginx.port, &f.ca.root_pem).await.fingerprint,
        before.fingerprint
    );
    // The audit evidence keeps nginx's own words, without the key.
    let evidence = f
        .routers
        .targets
        .evidence(&f.target)
        .await
        .expect("evidence");
    let text = evidence.to_string();
    assert!(text.contains("\"swapped\":false"), "{text}");
    assert!(!text.contains(&other.key_body()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pid_file_or_connection_is_deploy_failed() {
    let f = fixture();
    std::fs::rename(&f.nginx.pid_file, f.nginx.pid_file.with_extension("moved")).expect("move");
    let err = f.routers.targets.reload(&f.target).await.unwrap_err();
    assert_eq!(err.name(), "DeployFailed");
    assert!(err.to_string().contains("pid file"), "{err}");
    std::fs::rename(f.nginx.pid_file.with_extension("moved"), &f.nginx.pid_file)
        .expect("move back");
    let unknown = Target {
        id: "web-99".into(),
        ..target()
    };
    let err = f
        .routers
        .targets
        .deploy(&unknown, "keystore:x")
        .await
        .unwrap_err();
    assert_eq!(err.name(), "DeployFailed");
    assert!(err.to_string().contains("[target.\"web-99\"]"), "{err}");
}
