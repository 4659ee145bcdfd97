//! The `DeployTarget` contract (shared/core/src/ports.rs): after `deploy` + `reload` the
//! target serves the bundle and `current` names it; a second deploy of a new bundle
//! changes both; a repeated deploy is harmless; a bundle that does not exist, or a target
//! kind the adapter does not handle, is `DeployFailed` and leaves the target as it was;
//! deploying the previous bundle again (a rollback) restores it.
//!
//! What "serves" means is the adapter's: a TLS handshake for a local endpoint, the
//! imported certificate for ACM, the listener's certificate for ELBv2. The caller says how
//! to look through [`ServedCertificate`].

use std::future::Future;

use certops_core::ports::{DeployTarget, Keystore};
use certops_core::{Error, Target};

use super::keystore::{date, TestCa};

/// How a test looks at what a target serves, from outside the adapter.
pub trait ServedCertificate: Sync {
    /// The certificate the target serves now: an identity (fingerprint or ARN) and its
    /// notAfter in epoch seconds.
    fn served(&self, target: &Target) -> impl Future<Output = (String, i64)> + Send;
}

/// One run of the deploy contract.
pub struct DeployCase<'a, S: ServedCertificate> {
    /// The adapter under test.
    pub targets: &'a dyn DeployTarget,
    /// Where it loads bundles from (the suite stores its bundles here).
    pub keystore: &'a dyn Keystore,
    /// A target the adapter handles, already serving some other certificate.
    pub target: Target,
    /// The DNS name the target's certificates are issued for.
    pub dns: &'a str,
    /// A target of a kind the adapter does not handle.
    pub wrong_kind: Target,
    /// A well-formed reference of `keystore` that was never stored.
    pub unknown_bundle: &'a str,
    /// Prefix of the bundle names the suite stores (unique per run).
    pub names: &'a str,
    /// How to see what the target serves.
    pub served: &'a S,
    /// The CA to issue from (its root must be trusted by `served`, if it checks).
    pub ca: &'a TestCa,
}

/// What the suite deployed, for adapter-specific checks afterwards.
pub struct DeployRun {
    /// The first bundle (served again at the end: the suite finishes with a rollback to it).
    pub v1: String,
    /// The second bundle.
    pub v2: String,
    /// What the target served after each: v1, v2, v1 again.
    pub served: Vec<(String, i64)>,
}

fn deploy_failed(what: &str, result: Result<impl std::fmt::Debug, Error>) -> Error {
    let err = result.expect_err(what);
    assert_eq!(err.name(), "DeployFailed", "{what}: {err}");
    err
}

/// Runs the deploy contract.
pub async fn deploy_contract<S: ServedCertificate>(case: DeployCase<'_, S>) -> DeployRun {
    let t = &case.target;

    // Kinds the adapter does not handle: DeployFailed, naming the kind.
    let wrong = &case.wrong_kind;
    for err in [
        deploy_failed("current of a wrong kind", case.targets.current(wrong).await),
        deploy_failed(
            "deploy to a wrong kind",
            case.targets.deploy(wrong, "any").await,
        ),
        deploy_failed("reload of a wrong kind", case.targets.reload(wrong).await),
    ] {
        let kind = format!("{:?}", wrong.kind);
        assert!(err.to_string().contains(&kind), "{err} should name {kind}");
    }

    // Two bundles with different expiry, so what is served can be told apart.
    let v1_cert = case.ca.issue(case.dns, 40);
    let v2_cert = case.ca.issue(case.dns, 80);
    let v1 = case
        .keystore
        .put_bundle(&format!("{}/v1", case.names), v1_cert.bundle())
        .await
        .expect("store v1");
    let v2 = case
        .keystore
        .put_bundle(&format!("{}/v2", case.names), v2_cert.bundle())
        .await
        .expect("store v2");
    let before = case.targets.current(t).await.expect("current before");
    assert_ne!(before.as_deref(), Some(v1.as_str()));
    let mut served = Vec::new();

    // Deploy + reload v1: current names it and the target serves it.
    case.targets.deploy(t, &v1).await.expect("deploy v1");
    case.targets.reload(t).await.expect("reload v1");
    assert_eq!(
        case.targets.current(t).await.expect("current"),
        Some(v1.clone())
    );
    let now = case.served.served(t).await;
    assert_eq!(
        now.1,
        v1_cert.not_after,
        "serves v1 (notAfter {}), saw {}",
        date(v1_cert.not_after),
        date(now.1)
    );
    served.push(now);

    // Repeating it changes nothing.
    case.targets
        .deploy(t, &v1)
        .await
        .expect("repeated deploy v1");
    case.targets.reload(t).await.expect("repeated reload v1");
    assert_eq!(
        case.targets.current(t).await.expect("current"),
        Some(v1.clone())
    );
    assert_eq!(
        case.served.served(t).await,
        served[0],
        "a repeat is harmless"
    );

    // A new bundle replaces it.
    case.targets.deploy(t, &v2).await.expect("deploy v2");
    case.targets.reload(t).await.expect("reload v2");
    assert_eq!(
        case.targets.current(t).await.expect("current"),
        Some(v2.clone())
    );
    let now = case.served.served(t).await;
    assert_eq!(
        now.1,
        v2_cert.not_after,
        "serves v2 (notAfter {}), saw {}",
        date(v2_cert.not_after),
        date(now.1)
    );
    served.push(now);

    // An unknown bundle: DeployFailed, and the target keeps serving v2.
    let err = deploy_failed(
        "deploy of an unknown bundle",
        case.targets.deploy(t, case.unknown_bundle).await,
    );
    assert!(!err.to_string().contains(&v2_cert.key_body()), "{err}");
    assert_eq!(
        case.targets.current(t).await.expect("current"),
        Some(v2.clone())
    );
    assert_eq!(case.served.served(t).await, served[1], "still serves v2");

    // Rollback: the previous bundle again.
    case.targets.deploy(t, &v1).await.expect("roll back to v1");
    case.targets.reload(t).await.expect("reload after rollback");
    assert_eq!(
        case.targets.current(t).await.expect("current"),
        Some(v1.clone())
    );
    let now = case.served.served(t).await;
    assert_eq!(now.1, v1_cert.not_after, "serves v1 again");
    served.push(now);

    DeployRun { v1, v2, served }
}
