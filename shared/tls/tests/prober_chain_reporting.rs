//! What a report says about a served chain: leaf facts, expiries, chain shape, negotiated
//! parameters, every address of a target, and per-target trust.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

mod fixtures;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certops_tls::{sha256_hex, ProbeRequest, Prober, ProberConfig, Status, Target, TrustStore};
use chrono::Utc;

use fixtures::pki::{Ca, VALID};
use fixtures::servers;

const NAME: &str = "api.example.test";

fn prober(trust: TrustStore) -> Prober {
    Prober::new(ProberConfig {
        timeout: Duration::from_secs(2),
        trust,
        ..ProberConfig::default()
    })
    .expect("prober")
}

fn trusting(root: &Ca) -> TrustStore {
    let mut trust = TrustStore::empty();
    trust.add_pem(root.pem.as_bytes(), "root").expect("root");
    trust
}

#[tokio::test]
async fn a_healthy_endpoint_reports_leaf_chain_and_session() {
    let root = Ca::root("report root", VALID);
    let inter = root.intermediate("report intermediate", VALID);
    let leaf = inter.leaf(&[NAME, "www.example.test"], (-1, 200));
    let server = servers::tls(
        vec![leaf.der.clone(), inter.der.clone()],
        leaf.private_key(),
    )
    .await;

    let report = prober(trusting(&root))
        .probe(server.target(NAME).parse::<Target>().expect("target"))
        .await;
    assert_eq!(report.status, Status::Ok);
    assert!(report.consistent);
    let e = &report.endpoints[0];
    assert_eq!(e.address, Some(server.addr));
    assert_eq!(e.sni, NAME);
    let l = e.leaf.as_ref().expect("leaf");
    assert_eq!(l.sha256, sha256_hex(&leaf.der));
    assert_eq!(e.leaf_fingerprint(), Some(sha256_hex(&leaf.der).as_str()));
    assert_eq!(
        l.sans,
        vec![NAME.to_string(), "www.example.test".to_string()]
    );
    assert!(l.subject.contains(NAME), "{}", l.subject);
    assert!(l.issuer.contains("report intermediate"), "{}", l.issuer);
    assert_eq!((l.key_type.as_str(), l.key_bits), ("EC", 256));
    assert_eq!(l.signature_algorithm, "ecdsa-with-SHA256");
    assert!(!l.serial.is_empty());
    assert!(matches!(e.days_left, Some(198..=200)), "{:?}", e.days_left);
    let chain = e.chain.as_ref().expect("chain");
    assert_eq!(chain.presented, 2);
    assert!(chain.ordered && chain.complete);
    assert_eq!(chain.verified_path.len(), 3, "{:?}", chain.verified_path);
    assert!(chain.verified_path[2].contains("report root"));
    assert_eq!(e.ocsp_stapled, Some(false));
    assert_eq!(e.protocol.as_deref(), Some("TLSv1_3"));
    assert!(
        e.cipher_suite
            .as_deref()
            .is_some_and(|c| c.starts_with("TLS13_")),
        "{:?}",
        e.cipher_suite
    );
    assert_eq!(e.key_exchange.as_deref(), Some("X25519"));
    assert!(e.elapsed_ms < 2000);
    assert_eq!(e.attempts, 1);

    // The JSON shape the CLI prints.
    let json = serde_json::to_value(e).expect("json");
    assert_eq!(json["status"], "ok");
    assert_eq!(json["target"], server.target(NAME));
    assert_eq!(json["leaf"]["sha256"], sha256_hex(&leaf.der));
}

#[tokio::test]
async fn expiry_alarms_follow_the_verified_path_not_every_presented_certificate() {
    let root = Ca::root("root A", VALID);
    let inter = root.intermediate("intermediate", VALID);
    let root_b = Ca::root("expired root B", (-800, -30));
    let cross = root.cross_signed_by(&root_b, (-700, 20));
    let leaf = inter.leaf(&[NAME], VALID);
    let chain = vec![
        leaf.der.clone(),
        inter.der.clone(),
        cross,
        root_b.der.clone(),
    ];
    let server = servers::tls(chain, leaf.private_key()).await;

    let report = prober(trusting(&root))
        .probe(server.target(NAME).parse::<Target>().expect("target"))
        .await;
    let e = &report.endpoints[0];
    assert_eq!(e.status, Status::Ok, "{:?}", e.detail);
    let now = Utc::now();
    assert!(
        e.earliest_presented_expiry.expect("presented") < now,
        "root B has expired"
    );
    assert!(e.verified_chain_expiry.expect("verified") > now + chrono::Duration::days(300));
    let chain = e.chain.as_ref().expect("chain");
    assert_eq!(chain.presented, 4);
    assert!(
        chain.ordered,
        "leaf, inter, cross, B: each issued by the next"
    );
    assert_eq!(
        chain.verified_path.len(),
        3,
        "leaf -> intermediate -> root A"
    );
}

#[tokio::test]
async fn an_intermediate_expiring_first_makes_the_chain_expiring() {
    let root = Ca::root("root", VALID);
    let inter = root.intermediate("short intermediate", (-300, 7));
    let leaf = inter.leaf(&[NAME], VALID);
    let server = servers::tls(
        vec![leaf.der.clone(), inter.der.clone()],
        leaf.private_key(),
    )
    .await;
    let report = prober(trusting(&root))
        .probe(server.target(NAME).parse::<Target>().expect("target"))
        .await;
    assert_eq!(report.status, Status::Expiring);
    assert!(matches!(report.endpoints[0].days_left, Some(6..=7)));
    assert!(
        report.endpoints[0].leaf.as_ref().expect("leaf").not_after
            > Utc::now() + chrono::Duration::days(300)
    );
}

#[tokio::test]
async fn misordered_chains_are_reported_but_still_verify() {
    let root = Ca::root("root", VALID);
    let a = root.intermediate("inter A", VALID);
    let b = a.intermediate("inter B", VALID);
    let leaf = b.leaf(&[NAME], VALID);
    let server = servers::tls(
        vec![leaf.der.clone(), a.der.clone(), b.der.clone()],
        leaf.private_key(),
    )
    .await;
    let report = prober(trusting(&root))
        .probe(server.target(NAME).parse::<Target>().expect("target"))
        .await;
    let e = &report.endpoints[0];
    assert_eq!(e.status, Status::Ok, "{:?}", e.detail);
    let chain = e.chain.as_ref().expect("chain");
    assert!(!chain.ordered);
    assert!(chain.complete);
}

#[tokio::test]
async fn every_address_of_a_target_is_probed() {
    let root = Ca::root("root", VALID);
    let inter = root.intermediate("inter", VALID);
    let leaf = inter.leaf(&[NAME], VALID);
    let config = servers::server_config(
        vec![leaf.der.clone(), inter.der.clone()],
        leaf.private_key(),
    );
    let v4 = servers::tls_on("127.0.0.1", 0, config.clone()).await;
    let v6 = servers::tls_on("::1", 0, Arc::clone(&config)).await;
    // A third node, down.
    let down = servers::closed_port().await;
    let addresses: Vec<SocketAddr> = vec![v4.addr, v6.addr, down];
    let request = ProbeRequest {
        target: Target::with_sni(NAME, 443, NAME).expect("target"),
        extra_trust: None,
        addresses: Some(addresses.clone()),
    };
    let report = prober(trusting(&root)).probe(request).await;
    assert_eq!(report.endpoints.len(), 3);
    let status_of = |a: SocketAddr| {
        report
            .endpoints
            .iter()
            .find(|e| e.address == Some(a))
            .map(|e| e.status)
    };
    assert_eq!(status_of(v4.addr), Some(Status::Ok));
    assert_eq!(status_of(v6.addr), Some(Status::Ok));
    assert_eq!(status_of(down), Some(Status::Refused));
    assert_eq!(report.status, Status::Refused, "the worst node decides");
    assert!(!report.consistent, "one node served no leaf");
}

#[tokio::test]
async fn per_target_roots_add_to_the_run_roots() {
    let private_root = Ca::root("private root", VALID);
    let leaf = private_root.leaf(&[NAME], VALID);
    let server = servers::tls(vec![leaf.der.clone()], leaf.private_key()).await;
    let target: Target = server.target(NAME).parse().expect("target");

    // The default run trust (Mozilla roots) does not know the private root.
    let public_only = Prober::new(ProberConfig {
        timeout: Duration::from_secs(2),
        ..ProberConfig::default()
    })
    .expect("prober");
    assert!(public_only.config().trust.len() > 100);
    // Seen from outside, the leaf's issuer is neither sent nor trusted: a missing link.
    let report = public_only.probe(target.clone()).await;
    assert_eq!(report.status, Status::IncompleteChain);
    let detail = report.endpoints[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("private root") && detail.contains("not a trusted root"),
        "{detail}"
    );

    // A bundle for this target only.
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("private-ca.pem");
    std::fs::write(&bundle, &private_root.pem).expect("write bundle");
    let mut extra = TrustStore::empty();
    assert_eq!(extra.add_pem_file(&bundle).expect("bundle"), 1);
    let request = ProbeRequest {
        target: target.clone(),
        extra_trust: Some(extra),
        addresses: None,
    };
    let report = public_only.probe(request).await;
    assert_eq!(
        report.status,
        Status::Ok,
        "{:?}",
        report.endpoints[0].detail
    );
    let chain = report.endpoints[0].chain.as_ref().expect("chain");
    assert!(chain.complete, "issued directly by a trusted root");
}

#[test]
fn bad_ca_bundles_are_clear_errors() {
    let mut trust = TrustStore::empty();
    let err = trust
        .add_pem_file(std::path::Path::new("/nonexistent/ca.pem"))
        .expect_err("missing file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    let err = trust
        .add_pem(b"not a pem", "inline")
        .expect_err("no certificate");
    assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    assert!(trust.is_empty());
}

#[test]
fn bad_configs_are_rejected() {
    assert!(Prober::new(ProberConfig {
        concurrency: 0,
        ..ProberConfig::default()
    })
    .is_err());
    assert!(Prober::new(ProberConfig {
        timeout: Duration::ZERO,
        ..ProberConfig::default()
    })
    .is_err());
}

#[tokio::test]
async fn a_look_alike_intermediate_fails_even_after_the_real_one_verified() {
    // The prober remembers successful signature checks; a forgery with the same names but
    // other keys must still be checked, and fail.
    let root = Ca::root("root A", VALID);
    let real = root.intermediate("issuing CA", VALID);
    let impostor_root = Ca::root("root A", VALID);
    let forged = impostor_root.intermediate("issuing CA", VALID);
    let good_leaf = real.leaf(&[NAME], VALID);
    let bad_leaf = forged.leaf(&[NAME], VALID);
    let good = servers::tls(
        vec![good_leaf.der.clone(), real.der.clone()],
        good_leaf.private_key(),
    )
    .await;
    let bad = servers::tls(
        vec![bad_leaf.der.clone(), forged.der.clone()],
        bad_leaf.private_key(),
    )
    .await;

    let prober = prober(trusting(&root));
    for _ in 0..2 {
        let report = prober
            .probe(good.target(NAME).parse::<Target>().expect("target"))
            .await;
        assert_eq!(report.status, Status::Ok);
        let report = prober
            .probe(bad.target(NAME).parse::<Target>().expect("target"))
            .await;
        assert_eq!(
            report.status,
            Status::Untrusted,
            "{:?}",
            report.endpoints[0].detail
        );
    }
}

#[tokio::test]
async fn ocsp_staples_and_tls12_are_reported() {
    let root = Ca::root("root", VALID);
    let inter = root.intermediate("inter", VALID);
    let leaf = inter.leaf(&[NAME], VALID);
    let chain = vec![leaf.der.clone(), inter.der.clone()];
    let stapled = servers::tls_on(
        "127.0.0.1",
        0,
        servers::server_config_with(
            chain.clone(),
            leaf.private_key(),
            Some(vec![0x30, 0x03, 0x0a, 0x01, 0x00]),
            &[&rustls::version::TLS13],
        ),
    )
    .await;
    let tls12 = servers::tls_on(
        "127.0.0.1",
        0,
        servers::server_config_with(chain, leaf.private_key(), None, &[&rustls::version::TLS12]),
    )
    .await;
    let prober = prober(trusting(&root));

    let report = prober
        .probe(stapled.target(NAME).parse::<Target>().expect("target"))
        .await;
    assert_eq!(report.status, Status::Ok);
    assert_eq!(report.endpoints[0].ocsp_stapled, Some(true));

    let report = prober
        .probe(tls12.target(NAME).parse::<Target>().expect("target"))
        .await;
    let e = &report.endpoints[0];
    assert_eq!(e.status, Status::Ok, "{:?}", e.detail);
    assert_eq!(e.protocol.as_deref(), Some("TLSv1_2"));
    assert!(
        e.cipher_suite
            .as_deref()
            .is_some_and(|c| c.starts_with("TLS_ECDHE_ECDSA_")),
        "{:?}",
        e.cipher_suite
    );
    assert_eq!(e.ocsp_stapled, Some(false));
}
