//! The post-change check: the expected leaf is served on every address, or we say why not
//! and whether waiting may help.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

mod fixtures;

use std::net::SocketAddr;
use std::time::Duration;

use certops_tls::{
    sha256_hex, ProbeRequest, Prober, ProberConfig, ServedError, Target, TrustStore,
};

use fixtures::pki::{Ca, Leaf, VALID};
use fixtures::servers::{self, Endpoint};

const NAME: &str = "pay.example.test";

struct World {
    inter: Ca,
    prober: Prober,
}

impl World {
    fn new() -> World {
        let root = Ca::root("served root", VALID);
        let inter = root.intermediate("served intermediate", VALID);
        let mut trust = TrustStore::empty();
        trust.add_pem(root.pem.as_bytes(), "root").expect("root");
        let prober = Prober::new(ProberConfig {
            timeout: Duration::from_secs(2),
            trust,
            ..ProberConfig::default()
        })
        .expect("prober");
        World { inter, prober }
    }

    fn leaf(&self) -> Leaf {
        self.inter.leaf(&[NAME], VALID)
    }

    async fn serve(&self, leaf: &Leaf) -> Endpoint {
        servers::tls(
            vec![leaf.der.clone(), self.inter.der.clone()],
            leaf.private_key(),
        )
        .await
    }
}

fn nodes(addrs: &[SocketAddr]) -> ProbeRequest {
    ProbeRequest {
        target: Target::new(NAME, 443).expect("target"),
        extra_trust: None,
        addresses: Some(addrs.to_vec()),
    }
}

#[tokio::test]
async fn the_new_leaf_on_every_node_is_served() {
    let w = World::new();
    let new = w.leaf();
    let (a, b) = (w.serve(&new).await, w.serve(&new).await);
    // Upper case with colons, as tools print it, is accepted.
    let fp = sha256_hex(&new.der);
    let pretty: Vec<String> = fp
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect();
    let evidence = w
        .prober
        .verify_served(nodes(&[a.addr, b.addr]), &pretty.join(":"))
        .await
        .expect("served");
    assert_eq!(evidence.fingerprint, fp);
    assert_eq!(evidence.report.endpoints.len(), 2);
    assert!(evidence.report.consistent);
}

#[tokio::test]
async fn an_old_leaf_anywhere_is_not_yet_served_and_retryable() {
    let w = World::new();
    let (old, new) = (w.leaf(), w.leaf());
    let updated = w.serve(&new).await;
    let lagging = w.serve(&old).await;
    let err = w
        .prober
        .verify_served(nodes(&[updated.addr, lagging.addr]), &sha256_hex(&new.der))
        .await
        .expect_err("one node is stale");
    assert!(err.is_retryable());
    match err {
        ServedError::NotYetServed { stale, report } => {
            assert_eq!(stale, vec![(lagging.addr, sha256_hex(&old.der))]);
            assert!(!report.consistent);
        }
        other => panic!("expected NotYetServed, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_node_is_retryable_but_not_served() {
    let w = World::new();
    let new = w.leaf();
    let up = w.serve(&new).await;
    let down = servers::closed_port().await;
    let err = w
        .prober
        .verify_served(nodes(&[up.addr, down]), &sha256_hex(&new.der))
        .await
        .expect_err("down");
    assert!(err.is_retryable());
    assert!(
        matches!(&err, ServedError::Unreachable { failures, .. } if failures.len() == 1 && failures[0].0 == Some(down)),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_new_leaf_with_a_broken_chain_is_invalid_and_final() {
    let w = World::new();
    let new = w.leaf();
    // Deployed without its intermediate.
    let broken = servers::tls(vec![new.der.clone()], new.private_key()).await;
    let err = w
        .prober
        .verify_served(nodes(&[broken.addr]), &sha256_hex(&new.der))
        .await
        .expect_err("broken");
    assert!(!err.is_retryable());
    assert!(
        matches!(&err, ServedError::Invalid { failures, .. } if failures[0].1 == certops_tls::Status::IncompleteChain),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_malformed_fingerprint_is_rejected_before_probing() {
    let w = World::new();
    let err = w
        .prober
        .verify_served(nodes(&[]), "not-a-fingerprint")
        .await
        .expect_err("malformed");
    assert!(matches!(err, ServedError::InvalidFingerprint(_)));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn no_address_is_never_served() {
    let w = World::new();
    let new = w.leaf();
    let err = w
        .prober
        .verify_served(nodes(&[]), &sha256_hex(&new.der))
        .await
        .expect_err("nothing probed");
    assert!(
        matches!(&err, ServedError::Unreachable { failures, .. } if failures == &vec![(None, certops_tls::Status::DnsFailure)]),
        "{err:?}"
    );
}
