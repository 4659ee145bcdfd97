//! ACME Renewal Information (RFC 9773) and certificate profiles, against the small ACME server
//! of the harness (the Debian pebble 2.4 has neither): the issuer asks for the configured
//! profile, reads the CA's suggested renewal window for a certificate (with the CA's
//! `Retry-After` for the next check), and the renewal's order names the certificate it
//! `replaces`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use certops_core::ports::{IssueRequest, Keystore, Table};
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
        replaces: None,
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

    // The renewal's order says which certificate it replaces (the renew step names it from
    // the scan's record; here, directly).
    let (_, csr) = key_and_csr(KeyType::EcdsaP256, &["www.example.com", "example.com"]);
    let mut renewal = request(csr);
    renewal.replaces = Some(id.clone());
    ca.issue_chain(&renewal).await.expect("renewed");
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

/// ARI on the embedded stack, end to end: the scan fetches the CA's window for the served
/// certificate and keeps it in the Store, asks again only after the CA's `Retry-After`, sends
/// a finding once the window has opened although the certificate is far beyond the planned
/// threshold, validation finds the renewal due inside the window, and the renewal's order
/// says it `replaces` the served certificate (from the stored record, not process memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_renews_inside_the_cas_window_and_the_order_replaces_the_served_one() {
    use certops_core::ports::{Bundle, Clock, SecretPem, SystemClock};
    use certops_core::renewal_info;
    use certops_core::{ScanFinding, Trigger, Verdict};
    use certops_embedded::Stack;

    let dir = tempfile::tempdir().expect("dir");
    let pki = TestPki::generate(dir.path());
    let acme = MiniAcme::start(&pki).await;
    acme.set_validity_days(60);
    let names = ["www.example.com", "example.com"];

    // The certificate served today, issued by this CA (which therefore knows its ARI id).
    let first = issuer(&dir.path().join("first"), &acme, &pki, "shortlived");
    let (key, csr) = key_and_csr(KeyType::EcdsaP256, &names);
    let chain = first.issue_chain(&request(csr)).await.expect("first");
    let served_id = certificate_id(&chain).expect("ARI id").to_string();

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapters =
        certops_adapters::Embedded::open(&dir.path().join("data"), clock.clone()).expect("data");
    let current = adapters
        .keystore
        .put_bundle(
            "current/web",
            Bundle {
                chain_pem: chain,
                key: SecretPem::new(key.serialize_pem()),
            },
        )
        .await
        .expect("current");
    let addr = adapters
        .endpoints
        .start("web-ep", &current)
        .await
        .expect("endpoint");
    let fallback = adapters
        .provision_fallback("fallback/web", "web", &names)
        .await
        .expect("fallback");
    let anchors = dir.path().join("mini-ca.pem");
    std::fs::write(&anchors, acme.ca_pem()).expect("anchors");
    let inventory = format!(
        r#"[[certificate]]
id = "web"
ci = "web-ci"
common_name = "www.example.com"
sans = ["www.example.com", "example.com"]
environment = "prod"
service_owner = "olivia@example.com"
escalation = ["oncall@example.com"]
change_authority = ["olivia@example.com", "cab-alice@example.com"]
fallback_cert = "{fallback}"
issuer = {{ name = "mini", method = "acme", registered_domain = "example.com" }}
acme = {{ solver = {{ type = "http-01", webroot = "{webroot}" }} }}
targets = [{{ kind = "local", id = "web-ep", reload = "hot-swap" }}]
endpoints = [{{ host = "127.0.0.1", port = {port}, sni = "www.example.com" }}]
"#,
        webroot = dir.path().join("webroot").display(),
        port = addr.port(),
    );
    let integrations = format!(
        "[issuers.mini]\nkind = \"acme\"\ndirectory_url = \"{}\"\nserver_roots_file = \"{}\"\ntrust_anchors_file = \"{}\"\norder_timeout_secs = 10\n",
        acme.directory_url(),
        pki.ca_file.display(),
        anchors.display()
    );
    let cfg = certops_tests::issuers::setup::config(&inventory, &integrations);
    let stack = Stack::with_adapters(
        &dir.path().join("data"),
        adapters,
        cfg,
        clock,
        Duration::from_secs(3),
    )
    .await
    .expect("stack");
    let store = stack.deps.store.clone();

    // The window opens in 3 days: stored, nothing sent (60 days left, threshold 30).
    let now = Utc::now();
    acme.set_window(now + TimeDelta::days(3), now + TimeDelta::days(4));
    let scan = certops_fn_scan::run_scan(&stack.deps).await.expect("scan");
    assert_eq!(scan.findings, 0, "{scan:?}");
    let stored = renewal_info::load(store.as_ref(), "web")
        .await
        .expect("record")
        .expect("the scan stored the window");
    assert_eq!(stored.certificate_id, served_id);
    assert_eq!(
        stored.start.timestamp(),
        (now + TimeDelta::days(3)).timestamp()
    );
    assert_eq!(acme.renewal_info_requests(), vec![served_id.clone()]);

    // Before the CA's Retry-After (6 h), the next scan does not ask again.
    acme.set_window(now - TimeDelta::hours(2), now + TimeDelta::hours(20));
    let scan = certops_fn_scan::run_scan(&stack.deps).await.expect("scan");
    assert_eq!(scan.findings, 0);
    assert_eq!(acme.renewal_info_requests().len(), 1, "no tight polling");

    // The Retry-After has passed (the record's next check moved into the past): the scan
    // asks again, the window has opened, and a finding goes to intake.
    let mut elapsed = serde_json::to_value(&stored).expect("json");
    elapsed["nextCheck"] = serde_json::json!((now - TimeDelta::seconds(1)).to_rfc3339());
    let before = store
        .get(Table::RenewalInfo, "web")
        .await
        .expect("get")
        .expect("record");
    assert!(store
        .compare_and_swap(Table::RenewalInfo, "web", Some(&before), &elapsed)
        .await
        .expect("cas"));
    let scan = certops_fn_scan::run_scan(&stack.deps).await.expect("scan");
    assert_eq!(scan.findings, 1, "{scan:?}");
    assert_eq!(acme.renewal_info_requests().len(), 2);
    let messages = stack
        .deps
        .queue
        .receive(certops_fn_scan::INTAKE_QUEUE, 10, Duration::from_secs(60))
        .await
        .expect("receive");
    assert_eq!(messages.len(), 1);
    let finding: ScanFinding = serde_json::from_value(messages[0].body.clone()).expect("finding");
    assert!(finding.observed_expiry > now + TimeDelta::days(59));

    // The renewal: due inside the window, approved, ordered with `replaces`, served.
    let exec = stack
        .trigger(Trigger::Scan(finding))
        .await
        .expect("trigger")
        .execution;
    let approval = stack
        .wait_for_card(&exec, Duration::from_secs(30))
        .await
        .expect("card");
    stack
        .decide(certops_fn_approval_callback::Callback {
            approval_id: approval,
            approver: "olivia@example.com".into(),
            verdict: Verdict::Approve,
            comment: None,
        })
        .await
        .expect("approve");
    let info = stack
        .wait(&exec, Duration::from_secs(120))
        .await
        .expect("ends");
    assert_eq!(
        info.status,
        certops_asl::ExecutionStatus::Succeeded,
        "{info:?}"
    );
    let history = serde_json::to_string(&stack.engine.history(&exec).expect("history"))
        .expect("history json");
    assert!(
        history.contains("renewal window (ARI)"),
        "validation names the window"
    );
    let orders = acme.orders();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert_eq!(orders[1].replaces.as_deref(), Some(served_id.as_str()));
}
