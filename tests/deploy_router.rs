//! The embedded runtime's routers (`certops-servers`): the in-process `local` kinds still
//! pass the deploy and CDN contracts through them, and kinds with no adapter in the embedded
//! runtime (ACM, ELBv2, REST targets; CloudFront) are refused naming the kind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::sync::Arc;
use std::time::Duration;

use certops_adapters::{Embedded, TlsProber};
use certops_core::ports::{CdnPurger, DeployTarget, Keystore, Prober, SystemClock};
use certops_core::{Cdn, CdnKind, Endpoint, Inventory, ReloadMethod, Target, TargetKind};
use certops_servers::Routers;
use certops_tests::contract::cdn::{cdn_contract, RetryPromise};
use certops_tests::contract::deploy::{deploy_contract, DeployCase, ServedCertificate};
use certops_tests::contract::keystore::TestCa;

const DNS: &str = "shop.example.com";

struct Handshake(Endpoint, String);

impl ServedCertificate for Handshake {
    async fn served(&self, _target: &Target) -> (String, i64) {
        let prober = TlsProber::new(Duration::from_secs(5)).expect("prober");
        let seen = prober.probe(&self.0, Some(&self.1)).await.expect("probe");
        (seen[0].fingerprint.clone(), seen[0].not_after.timestamp())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_kinds_pass_the_contracts_through_the_routers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = Embedded::open(dir.path(), Arc::new(SystemClock)).expect("embedded");
    let routers = Routers::embedded(&embedded, &Inventory::from_toml_str("").expect("inventory"))
        .expect("routers");
    let ca = TestCa::new();
    let initial = embedded
        .keystore
        .put_bundle("router/v0", ca.issue(DNS, 5).bundle())
        .await
        .expect("v0");
    let addr = embedded
        .endpoints
        .start("web-local", &initial)
        .await
        .expect("endpoint");
    let served = Handshake(
        Endpoint {
            host: "127.0.0.1".into(),
            port: addr.port(),
            sni: DNS.into(),
        },
        ca.root_pem.clone(),
    );
    deploy_contract(DeployCase {
        targets: routers.targets.as_ref(),
        keystore: embedded.keystore.as_ref(),
        target: Target {
            kind: TargetKind::Local,
            id: "web-local".into(),
            reload: ReloadMethod::HotSwap,
        },
        dns: DNS,
        wrong_kind: Target {
            kind: TargetKind::LoadBalancer,
            id: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/x".into(),
            reload: ReloadMethod::ListenerUpdate,
        },
        unknown_bundle: "keystore:router/never-stored",
        names: "router",
        served: &served,
        ca: &ca,
    })
    .await;

    embedded.cdn.put("shop-cdn", "/index.html", "v1");
    embedded.cdn.set_failing("failing-cdn", true);
    let cdn = |kind, id: &str| Cdn {
        kind,
        distribution_id: id.into(),
        paths: vec!["/*".into()],
    };
    cdn_contract(
        routers.cdn.as_ref(),
        &cdn(CdnKind::Local, "shop-cdn"),
        &cdn(CdnKind::Local, "failing-cdn"),
        &cdn(CdnKind::Cloudfront, "E2QWRUHAPOMQZL"),
        RetryPromise::NewId,
    )
    .await;
    assert_eq!(
        embedded.cdn.get("shop-cdn", "/index.html"),
        None,
        "purged through the router"
    );

    for kind in [TargetKind::Acm, TargetKind::GenericRest] {
        let t = Target {
            kind,
            id: "x".into(),
            reload: ReloadMethod::None,
        };
        let err = routers.targets.deploy(&t, &initial).await.unwrap_err();
        assert_eq!(err.name(), "DeployFailed");
        assert!(err.to_string().contains(&format!("{kind:?}")), "{err}");
    }
    // A real kind without its connection table is refused, naming the table.
    let err = routers
        .cdn
        .purge(&cdn(CdnKind::Varnish, "varnish-unknown"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "PurgeFailed");
    assert!(
        err.to_string().contains("[cdn.\"varnish-unknown\"]"),
        "{err}"
    );
}
