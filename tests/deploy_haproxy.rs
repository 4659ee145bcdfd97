//! Deploying to a real HAProxy (Debian package, private instance on loopback) through its
//! Runtime API: the deploy contract over the UNIX and the TCP admin socket; a key that does
//! not match is refused at commit, aborted, and nothing changes; a new certificate path goes
//! through `new ssl cert` + `add ssl crt-list`; the admin socket gone is `DeployFailed`; and
//! no connection is dropped by a hot swap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use certops_adapters::Embedded;
use certops_core::ports::{Bundle, DeployTarget, Keystore, SecretPem, SystemClock};
use certops_core::{ReloadMethod, Target, TargetKind};
use certops_servers::Routers;
use certops_tests::contract::deploy::{deploy_contract, DeployCase, ServedCertificate};
use certops_tests::contract::keystore::TestCa;
use certops_tests::servers::haproxy::Haproxy;
use certops_tests::servers::{fingerprint, observe, targets_inventory, DNS};

struct Fixture {
    ca: TestCa,
    haproxy: Haproxy,
    embedded: Embedded,
    routers: Routers,
    _dir: tempfile::TempDir,
}

fn target(id: &str) -> Target {
    Target {
        kind: TargetKind::Haproxy,
        id: id.into(),
        reload: ReloadMethod::HaproxyRuntimeApi,
    }
}

fn fixture() -> Fixture {
    let ca = TestCa::new();
    let haproxy = Haproxy::start(&ca.issue(DNS, 10));
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Embedded::open(dir.path(), Arc::new(SystemClock)).expect("embedded");
    let tcp = format!(
        "[target.\"lb-tcp\"]\nkind = \"haproxy\"\nsocket = \"tcp:127.0.0.1:{}\"\ncert_path = \"{}\"\n",
        haproxy.admin_port,
        haproxy.cert2_path.display()
    );
    let new_path = format!(
        "[target.\"lb-new\"]\nkind = \"haproxy\"\nsocket = \"unix:{}\"\ncert_path = \"{}\"\ncrt_list = \"{}\"\n",
        haproxy.socket.display(),
        haproxy.dir.join("added.pem").display(),
        haproxy.crt_list.display()
    );
    let connections = format!("{}\n{tcp}\n{new_path}", haproxy.connection_toml("lb-01"));
    let routers = Routers::embedded(
        &embedded,
        &targets_inventory(
            "haproxy",
            "haproxy-runtime-api",
            &["lb-01", "lb-tcp", "lb-new"],
            &connections,
        ),
    )
    .expect("routers");
    Fixture {
        ca,
        haproxy,
        embedded,
        routers,
        _dir: dir,
    }
}

/// A handshake on one port (a commit takes effect at once: no polling).
struct Served<'a>(u16, &'a str);

impl ServedCertificate for Served<'_> {
    async fn served(&self, _target: &Target) -> (String, i64) {
        let o = observe(self.0, self.1).await;
        (o.fingerprint, o.not_after.timestamp())
    }
}

fn acm() -> Target {
    Target {
        kind: TargetKind::Acm,
        id: "arn:aws:acm:us-east-1:123456789012:certificate/x".into(),
        reload: ReloadMethod::None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_contract_holds_over_the_unix_and_the_tcp_admin_socket() {
    let f = fixture();
    for (id, port) in [("lb-01", f.haproxy.port), ("lb-tcp", f.haproxy.port2)] {
        let run = deploy_contract(DeployCase {
            targets: f.routers.targets.as_ref(),
            keystore: f.embedded.keystore.as_ref(),
            target: target(id),
            dns: DNS,
            wrong_kind: acm(),
            unknown_bundle: "keystore:never/stored",
            names: &format!("contract-{id}"),
            served: &Served(port, &f.ca.root_pem),
            ca: &f.ca,
        })
        .await;
        let v1 = f.embedded.keystore.get_bundle(&run.v1).await.expect("v1");
        assert_eq!(run.served[2].0, fingerprint(&v1.chain_pem));
    }
    // The file on disk was written too (a restart keeps it), and the evidence shows the commit.
    let on_disk = std::fs::read_to_string(&f.haproxy.cert_path).expect("file");
    assert_eq!(
        fingerprint(&on_disk),
        observe(f.haproxy.port, &f.ca.root_pem).await.fingerprint
    );
    let evidence = f
        .routers
        .targets
        .evidence(&target("lb-01"))
        .await
        .expect("evidence");
    assert!(evidence.to_string().contains("Success!"), "{evidence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_is_refused_at_commit_aborted_and_nothing_changes() {
    let f = fixture();
    let t = target("lb-01");
    let before = observe(f.haproxy.port, &f.ca.root_pem).await;
    let lkg = f.routers.targets.current(&t).await.expect("current");
    let file_before = std::fs::read(&f.haproxy.cert_path).expect("file");
    let good = f.ca.issue(DNS, 60);
    let other = f.ca.issue(DNS, 60);
    let broken = f
        .embedded
        .keystore
        .put_bundle(
            "haproxy-broken/v2",
            Bundle {
                chain_pem: good.chain_pem.clone(),
                key: SecretPem::new(other.key_pem.clone()),
            },
        )
        .await
        .expect("store");
    let err = f.routers.targets.deploy(&t, &broken).await.unwrap_err();
    assert_eq!(err.name(), "DeployFailed");
    let msg = err.to_string();
    assert!(msg.contains("refused commit ssl cert"), "{msg}");
    assert!(msg.contains("aborted"), "{msg}");
    assert!(!msg.contains(&other.key_body()), "{msg}");
    let evidence = f
        .routers
        .targets
        .evidence(&t)
        .await
        .expect("evidence")
        .to_string();
    assert!(
        evidence.contains("abort ssl cert") && evidence.contains("Transaction aborted"),
        "{evidence}"
    );
    // Nothing changed: served, file, current; and no transaction is left open.
    assert_eq!(
        observe(f.haproxy.port, &f.ca.root_pem).await.fingerprint,
        before.fingerprint
    );
    assert_eq!(
        std::fs::read(&f.haproxy.cert_path).expect("file"),
        file_before
    );
    assert_eq!(f.routers.targets.current(&t).await.expect("current"), lkg);
    let fixed = f
        .embedded
        .keystore
        .put_bundle("haproxy-broken/v3", good.bundle())
        .await
        .expect("store");
    f.routers
        .targets
        .deploy(&t, &fixed)
        .await
        .expect("a good bundle still deploys");
    assert_eq!(
        observe(f.haproxy.port, &f.ca.root_pem).await.fingerprint,
        fingerprint(&good.chain_pem)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_path_goes_through_new_ssl_cert_and_the_crt_list() {
    let f = fixture();
    let t = target("lb-new");
    assert_eq!(
        f.routers.targets.current(&t).await.expect("current"),
        None,
        "HAProxy does not know the path yet"
    );
    let issued = f.ca.issue("new.example.com", 30);
    let reference = f
        .embedded
        .keystore
        .put_bundle("haproxy-new/v1", issued.bundle())
        .await
        .expect("store");
    f.routers
        .targets
        .deploy(&t, &reference)
        .await
        .expect("deploy");
    f.routers.targets.reload(&t).await.expect("reload confirms");
    assert_eq!(
        f.routers.targets.current(&t).await.expect("current"),
        Some(reference)
    );
    // The crt-list frontend now serves it for its name.
    let prober = certops_adapters::TlsProber::new(Duration::from_secs(5)).expect("prober");
    let obs = certops_core::ports::Prober::probe(
        &prober,
        &certops_core::Endpoint {
            host: "127.0.0.1".into(),
            port: f.haproxy.port3,
            sni: "new.example.com".into(),
        },
        Some(&f.ca.root_pem),
    )
    .await
    .expect("probe");
    assert_eq!(obs[0].fingerprint, fingerprint(&issued.chain_pem));
    assert!(obs[0].chain_valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_on_a_new_path_removes_the_entry_new_ssl_cert_created() {
    let f = fixture();
    let t = target("lb-new");
    let path = f.haproxy.dir.join("added.pem");
    let show = || async {
        certops_servers::haproxy::runtime_api(
            &certops_core::inventory::AdminSocket::Unix(f.haproxy.socket.clone()),
            &format!("show ssl cert {}", path.display()),
            None,
            Duration::from_secs(5),
        )
        .await
        .expect("show ssl cert")
    };
    assert!(show().await.contains("Not found"), "unknown before");
    let good = f.ca.issue("new.example.com", 30);
    let other = f.ca.issue("new.example.com", 30);
    let broken = f
        .embedded
        .keystore
        .put_bundle(
            "haproxy-new-broken/v1",
            Bundle {
                chain_pem: good.chain_pem.clone(),
                key: SecretPem::new(other.key_pem.clone()),
            },
        )
        .await
        .expect("store");
    let (result, evidence) = f.routers.targets.deploy_and_reload(&t, &broken).await;
    let err = result.unwrap_err();
    assert_eq!(err.name(), "DeployFailed");
    assert!(err.to_string().contains("refused commit ssl cert"), "{err}");
    let evidence = evidence.expect("evidence").to_string();
    assert!(
        evidence.contains("new ssl cert")
            && evidence.contains("abort ssl cert")
            && evidence.contains("del ssl cert"),
        "{evidence}"
    );
    // The entry is gone: HAProxy does not know the path, nothing was written, and the same
    // path can go through `new ssl cert` again.
    let answer = show().await;
    assert!(answer.contains("Not found"), "{answer}");
    assert!(!path.exists(), "nothing written to disk");
    assert_eq!(f.routers.targets.current(&t).await.expect("current"), None);
    let fixed = f
        .embedded
        .keystore
        .put_bundle("haproxy-new-broken/v2", good.bundle())
        .await
        .expect("store");
    let (result, _) = f.routers.targets.deploy_and_reload(&t, &fixed).await;
    result.expect("a good bundle deploys on the same new path");
    assert_eq!(
        f.routers.targets.current(&t).await.expect("current"),
        Some(fixed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_gone_is_deploy_failed_and_nothing_is_touched() {
    let f = fixture();
    let t = target("lb-01");
    let file_before = std::fs::read(&f.haproxy.cert_path).expect("file");
    let v2 = f
        .embedded
        .keystore
        .put_bundle("haproxy-gone/v2", f.ca.issue(DNS, 60).bundle())
        .await
        .expect("store");
    std::fs::remove_file(&f.haproxy.socket).expect("remove socket");
    for err in [
        f.routers.targets.current(&t).await.unwrap_err(),
        f.routers.targets.deploy(&t, &v2).await.unwrap_err(),
        f.routers.targets.reload(&t).await.unwrap_err(),
    ] {
        assert_eq!(err.name(), "DeployFailed");
        assert!(err.to_string().contains("admin socket"), "{err}");
    }
    assert_eq!(
        std::fs::read(&f.haproxy.cert_path).expect("file"),
        file_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_connection_is_dropped_by_a_hot_swap() {
    let f = fixture();
    let t = target("lb-01");
    let root = reqwest::Certificate::from_pem(f.ca.root_pem.as_bytes()).expect("root");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], f.haproxy.port));
    let url = format!("https://{DNS}:{}/", f.haproxy.port);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    // Two clients on kept-alive connections, two opening a new connection per request.
    for keep_alive in [true, true, false, false] {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([root.clone()])
            .resolve(DNS, addr)
            .http1_only()
            .no_proxy()
            .timeout(Duration::from_secs(5));
        if !keep_alive {
            builder = builder.pool_max_idle_per_host(0);
        }
        let client = builder.build().expect("client");
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let outcome = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(body) if body.contains("haproxy main") => Ok(()),
                        other => Err(format!("{other:?}")),
                    },
                    other => Err(format!("{other:?}")),
                };
                match outcome {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        errors.push(e);
                    }
                }
            }
            errors
        }));
    }
    let wait_for = |n: u64| {
        let ok = ok.clone();
        async move {
            let ok = &ok;
            certops_tests::eventually::eventually_async(
                &format!("{n} client handshakes done"),
                Duration::from_secs(30),
                || async move { (ok.load(Ordering::SeqCst) >= n).then_some(()) },
            )
            .await
        }
    };
    wait_for(50).await;
    let mut swaps = Vec::new();
    for i in 0..5 {
        let issued = f.ca.issue(DNS, 30 + i);
        let r = f
            .embedded
            .keystore
            .put_bundle(&format!("haproxy-swap/v{i}"), issued.bundle())
            .await
            .expect("store");
        let before = ok.load(Ordering::SeqCst);
        f.routers.targets.deploy(&t, &r).await.expect("hot swap");
        f.routers.targets.reload(&t).await.expect("confirm");
        swaps.push(fingerprint(&issued.chain_pem));
        wait_for(before + 20).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.expect("client task"));
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("hot swap: {ok} requests succeeded, {failed} failed across 5 swaps");
    assert_eq!(failed, 0, "requests failed across the swaps: {errors:?}");
    assert!(ok >= 150, "{ok}");
    assert_eq!(
        observe(f.haproxy.port, &f.ca.root_pem).await.fingerprint,
        swaps[4]
    );
}
