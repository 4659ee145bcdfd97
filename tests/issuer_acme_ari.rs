//! ACME Renewal Information (RFC 9773) and certificate profiles, against the small ACME server
//! of the harness (the Debian pebble 2.4 has neither): the issuer asks for the configured
//! profile, reads the CA's suggested renewal window for a certificate (with the CA's
//! `Retry-After` for the next check), and its next order for the same certificate object says
//! which certificate it `replaces`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use certops_core::ports::{IssueRequest, Keystore};
use certops_core::{Issuer, KeyType, RenewalMethod};
use certops_issuers::acme::{certificate_id, AcmeCertificate, AcmeConfig, AcmeIssuer};
use certops_issuers::acme_http::AcmeHttp;
use certops_issuers::solvers::WebrootSolver;
use certops_tests::issuers::mini_acme::MiniAcme;
use certops_tests::issuers::setup::key_and_csr;
use certops_tests::issuers::test_pki::TestPki;
use chrono::{TimeDelta, Utc};

fn issuer(dir: &std::path::Path, acme: &MiniAcme, pki: &TestPki, profile: &str) -> AcmeIssuer {
    let keystore: Arc<dyn Keystore> =
        Arc::new(certops_adapters::FileKeystore::open(&dir.join("keystore")).expect("keystore"));
    let solver = Arc::new(WebrootSolver::new(dir.join("webroot")).expect("solver"));
    AcmeIssuer::new(
        AcmeConfig {
            name: "mini".into(),
            directory_url: acme.directory_url(),
            contact: vec!["mailto:pki@example.com".into()],
            eab: None,
            trust_anchors_pem: Some(acme.ca_pem()),
            order_timeout: Duration::from_secs(10),
        },
        AcmeHttp::new(certops_issuers::router::http_client(Some(&pki.ca_file)).expect("client")),
        keystore,
        Arc::new(certops_adapters::LocalSecrets),
        HashMap::from([(
            "web".to_string(),
            AcmeCertificate {
                solver,
                profile: Some(profile.to_string()),
            },
        )]),
        None,
    )
}

fn request(csr: String) -> IssueRequest {
    IssueRequest {
        cert_id: "web".into(),
        issuer: Issuer {
            name: "mini".into(),
            method: RenewalMethod::Acme,
            registered_domain: Some("example.com".into()),
        },
        csr_pem: csr,
        common_name: "www.example.com".into(),
        sans: vec!["www.example.com".into(), "example.com".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_information_profiles_and_replaces() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = TestPki::generate(dir.path());
    let acme = MiniAcme::start(&pki).await;
    let ca = issuer(dir.path(), &acme, &pki, "shortlived");

    // The profile goes into the new order; the first order replaces nothing.
    let (key, csr) = key_and_csr(KeyType::EcdsaP256, &["www.example.com", "example.com"]);
    let req = request(csr);
    let chain = ca.issue_chain(&req).await.expect("issued");
    certops_fn_renew::guardrails::check(
        &chain,
        key.public_key_raw(),
        &req.sans,
        Some(&acme.ca_pem()),
        Utc::now(),
    )
    .expect("guardrails");
    let orders = acme.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].profile.as_deref(), Some("shortlived"));
    assert_eq!(orders[0].replaces, None);

    // ARI: the suggested window and when to ask again.
    let now = Utc::now();
    let start = now + TimeDelta::days(3);
    let end = now + TimeDelta::days(4);
    acme.set_window(start, end);
    let window = ca.renewal_window(&chain).await.expect("renewalInfo");
    assert_eq!(window.start.timestamp(), start.timestamp());
    assert_eq!(window.end.timestamp(), end.timestamp());
    assert!(
        !window.is_due(Utc::now()),
        "not due before the window opens"
    );
    let wait = window.next_check - Utc::now();
    assert!(
        wait > TimeDelta::hours(5) && wait <= TimeDelta::hours(6),
        "Retry-After 21600 s became {wait}"
    );
    assert_eq!(
        window.explanation_url.as_deref(),
        Some("https://example.com/ari-incident")
    );
    let id = certificate_id(&chain).expect("ARI id").to_string();
    assert_eq!(acme.renewal_info_requests(), vec![id.clone()]);

    // The CA moves the window into the past (e.g. a revocation incident): due now.
    acme.set_window(now - TimeDelta::hours(2), now - TimeDelta::hours(1));
    let window = ca.renewal_window(&chain).await.expect("renewalInfo");
    assert!(window.is_due(Utc::now()));

    // The renewal's order says which certificate it replaces.
    let (_, csr) = key_and_csr(KeyType::EcdsaP256, &["www.example.com", "example.com"]);
    ca.issue_chain(&request(csr)).await.expect("renewed");
    let orders = acme.orders();
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[1].replaces.as_deref(), Some(id.as_str()));

    // A profile the CA does not offer: IssuanceFailed with the problem type.
    let odd = issuer(&dir.path().join("odd"), &acme, &pki, "nope");
    let (_, csr) = key_and_csr(KeyType::EcdsaP256, &["www.example.com", "example.com"]);
    let err = odd
        .issue_chain(&request(csr))
        .await
        .expect_err("unknown profile");
    assert_eq!(err.name(), "IssuanceFailed", "{err}");
    assert!(err.to_string().contains("invalidProfile"), "{err}");
}
