//! A small embedded world for workflow tests: one certificate object served
//! by a real TLS endpoint on 127.0.0.1, its fallback certificate from the
//! local CA, a configurable policy, and a domain clock the test can move.

use certops_adapters::Embedded;
use certops_core::ports::{Bundle, Clock, Config, Keystore, SecretPem};
use certops_core::{Inventory, Policy, Runbook, ScanFinding};
use certops_embedded::Stack;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A clock the test moves by hand.
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    /// Starts at the real current time.
    pub fn now_real() -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(Utc::now())))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: TimeDelta) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|p| *p.into_inner())
    }
}

/// The runbook the project ships.
pub const RUNBOOK: &str = include_str!("../../runbooks/cert-renewal.runbook.toml");

/// Waits up to `timeout` for `execution` on `stack` to end, asserts that it SUCCEEDED
/// (naming its error and cause if not) and returns how it ended.
pub async fn succeeded(
    stack: &Stack,
    execution: &str,
    timeout: Duration,
) -> certops_asl::ExecutionInfo {
    let done = stack.wait(execution, timeout).await.expect("done");
    assert_eq!(
        done.status.as_str(),
        "SUCCEEDED",
        "{execution}: {:?} {:?}",
        done.error,
        done.cause
    );
    done
}

/// A policy whose windows are always open, unless `prod_window` overrides the prod window;
/// quick verification and 5-minute normal and emergency approval timeouts.
pub fn policy(prod_window: Option<&str>) -> String {
    let policy = certops_adapters::fixtures::OpenPolicy::new("test-1")
        .timeouts(60, 5, 5)
        .fast_verify();
    match prod_window {
        Some(w) => policy.prod_window(w),
        None => policy,
    }
    .toml()
}

/// The test world.
pub struct World {
    /// The stack under test.
    pub stack: Stack,
    /// The domain clock.
    pub clock: Arc<TestClock>,
    /// The endpoint's port.
    pub port: u16,
    /// The fingerprint served before any change.
    pub initial_fingerprint: String,
    /// The inventory text (tests edit it to cause drift).
    pub inventory_text: String,
    /// The served certificate's notAfter.
    pub expiry: DateTime<Utc>,
}

/// Builds a world in `dir`: `shop-web-prod` (CN shop.example.com, prod,
/// internal PKI, change authority olivia + cab-alice) expiring in 7 days.
pub async fn world(dir: &Path, prod_window: Option<&str>) -> World {
    world_with(
        dir,
        prod_window,
        "",
        certops_core::integrations::Integrations::none(),
    )
    .await
}

/// [`world`] with `policy_extra` appended to the policy (e.g. an approver directory) and
/// the given `integrations.toml` (e.g. `[teams]`/`[slack]` pointing at emulators).
pub async fn world_with(
    dir: &Path,
    prod_window: Option<&str>,
    policy_extra: &str,
    integrations: certops_core::integrations::Integrations,
) -> World {
    world_on(
        dir,
        prod_window,
        policy_extra,
        integrations,
        Arc::new(certops_asl::TokioClock::system()),
    )
    .await
}

/// [`world_with`] with the engine on `engine_clock` (e.g. a [`certops_asl::ScaledClock`],
/// so the definition's minutes of Retry back-off pass in seconds).
pub async fn world_on(
    dir: &Path,
    prod_window: Option<&str>,
    policy_extra: &str,
    integrations: certops_core::integrations::Integrations,
    engine_clock: Arc<dyn certops_asl::Clock>,
) -> World {
    let clock = TestClock::now_real();
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let adapters = Embedded::open(dir, dyn_clock.clone()).expect("adapters");
    // The certificate served today, from an unrelated CA, expiring in 7 days.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p =
        rcgen::CertificateParams::new(vec!["shop.example.com".to_string()]).expect("params");
    let expiry =
        DateTime::from_timestamp((Utc::now() + TimeDelta::days(7)).timestamp(), 0).expect("expiry");
    p.not_after = time::OffsetDateTime::from_unix_timestamp(expiry.timestamp()).expect("time");
    let cert = p.signed_by(&key, &issuer).expect("sign");
    let initial_fingerprint = certops_core::canonical::sha256_hex(cert.der());
    let current = adapters
        .keystore
        .put_bundle(
            "current/shop",
            Bundle {
                chain_pem: cert.pem(),
                key: SecretPem::new(key.serialize_pem()),
            },
        )
        .await
        .expect("bundle");
    let fallback = adapters
        .provision_fallback("fallback/shop", "shop-web-prod", &["shop.example.com"])
        .await
        .expect("fallback");
    let addr = adapters
        .endpoints
        .start("lb-shop", &current)
        .await
        .expect("endpoint");
    let inventory_text = certops_adapters::fixtures::LocalCertificate::new(
        "shop-web-prod",
        "shop.example.com",
        addr.port(),
    )
    .fallback(&fallback)
    .toml();
    let config = Config {
        inventory: Inventory::from_toml_str(&inventory_text).expect("inventory"),
        policy: Policy::from_toml_str(&format!("{}\n{policy_extra}", policy(prod_window)))
            .expect("policy"),
        runbook: Runbook::from_toml_str(RUNBOOK).expect("runbook"),
        default_oncall: "oncall@example.com".into(),
        integrations,
    };
    let stack = Stack::with_engine_clock(
        dir,
        adapters,
        config,
        dyn_clock,
        Duration::from_secs(3),
        engine_clock,
    )
    .await
    .expect("stack");
    World {
        stack,
        clock,
        port: addr.port(),
        initial_fingerprint,
        inventory_text,
        expiry,
    }
}

impl World {
    /// The scan finding for the endpoint as it is today.
    pub fn finding(&self) -> ScanFinding {
        ScanFinding {
            ci: "shop-web-prod".into(),
            observed_expiry: self.expiry,
            observed_fingerprint: Some(self.initial_fingerprint.clone()),
        }
    }
}
