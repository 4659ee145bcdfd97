//! Scenario 1 of the demo on ACME, end to end on the embedded stack: the scan finds the
//! certificate expiring in 7 days, the change authority approves, the renew step's CSR is
//! signed by pebble through HTTP-01 (webroot on loopback), the certificate is deployed to the
//! in-process TLS endpoint, verified from outside against pebble's roots, and the change is
//! closed with evidence. A certificate object whose webroot the termination point does not
//! serve fails validation at the CA: `IssuanceFailed`, nothing deployed, and the ticket carries
//! the ACME problem's type and detail. Then the CA rate-limits (the fault proxy answers newOrder with 429
//! and Retry-After): the fallback path is taken, the ticket says why, and the ledger keeps the
//! CA's Retry-After so the next validation plans for the fallback without sending an order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::sync::Arc;
use std::time::Duration;

use certops_adapters::Embedded;
use certops_core::ports::{Bundle, Clock, Keystore, SecretPem, SystemClock};
use certops_core::workflow::WorkflowState;
use certops_core::{ScanFinding, Trigger, Verdict};
use certops_embedded::Stack;
use certops_fn_approval_callback::Callback;
use certops_tests::issuers::fault_proxy::{FaultProxy, Faults};
use certops_tests::issuers::pebble::Pebble;
use certops_tests::issuers::setup::{config, secret_file};
use certops_tests::issuers::webroot::Webroot;
use certops_tests::process::free_port;
use certops_tests::world::succeeded;
use chrono::{TimeDelta, Utc};

const WAIT: Duration = Duration::from_secs(120);

fn approve(id: &str, who: &str) -> Callback {
    Callback {
        approval_id: id.into(),
        approver: who.into(),
        verdict: Verdict::Approve,
        comment: None,
    }
}

/// A certificate from an unrelated CA for `shop.example.com`, expiring in 7 days.
fn served_today() -> (String, String, chrono::DateTime<Utc>) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(vec!["shop.example.com".to_string()]).expect("p");
    let expiry = chrono::DateTime::from_timestamp((Utc::now() + TimeDelta::days(7)).timestamp(), 0)
        .expect("expiry");
    p.not_after = time::OffsetDateTime::from_unix_timestamp(expiry.timestamp()).expect("time");
    let cert = p.signed_by(&key, &issuer).expect("sign");
    (cert.pem(), key.serialize_pem(), expiry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_on_acme_then_rate_limited_to_the_fallback() {
    let http01 = free_port();
    let webroot = Webroot::start(http01).await;
    let pebble = Pebble::start(http01);
    let proxy = FaultProxy::start(&format!("https://127.0.0.1:{}", pebble.port), &pebble.pki).await;
    let roots = pebble.issued_roots_file().await;
    let dir = tempfile::tempdir().expect("dir");
    let eab = secret_file(dir.path(), "eab.secret", &pebble.eab_hmac);

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapters = Embedded::open(&dir.path().join("data"), clock.clone()).expect("adapters");
    let (cert_pem, key_pem, expiry) = served_today();
    let current = adapters
        .keystore
        .put_bundle(
            "current/shop",
            Bundle {
                chain_pem: cert_pem,
                key: SecretPem::new(key_pem),
            },
        )
        .await
        .expect("current");
    // The fallback: pre-provisioned from the local CA.
    let fallback = adapters
        .provision_fallback(
            "fallback/shop",
            "shop-web-prod",
            &["shop.example.com", "www.shop.example.com"],
        )
        .await
        .expect("fallback");
    let addr = adapters
        .endpoints
        .start("lb-shop", &current)
        .await
        .expect("endpoint");
    let lost_addr = adapters
        .endpoints
        .start("lb-lost", &current)
        .await
        .expect("endpoint");
    let unserved = tempfile::tempdir().expect("unserved webroot");

    let inventory = format!(
        r#"[[certificate]]
id = "shop-web-prod"
ci = "shop-web-prod"
common_name = "shop.example.com"
sans = ["shop.example.com", "www.shop.example.com"]
environment = "prod"
service_owner = "olivia@example.com"
escalation = ["oncall-shop@example.com"]
change_authority = ["olivia@example.com", "cab-alice@example.com"]
fallback_cert = "{fallback}"
issuer = {{ name = "pebble", method = "acme", registered_domain = "example.com" }}
acme = {{ eab_kid = "{kid}", solver = {{ type = "http-01", webroot = "{webroot}" }} }}
targets = [{{ kind = "local", id = "lb-shop", reload = "hot-swap" }}]
endpoints = [{{ host = "127.0.0.1", port = {port}, sni = "shop.example.com" }}]

[[certificate]]
id = "lost-web-prod"
ci = "lost-web-prod"
common_name = "shop.example.com"
sans = ["shop.example.com", "www.shop.example.com"]
environment = "prod"
service_owner = "olivia@example.com"
escalation = ["oncall-shop@example.com"]
change_authority = ["olivia@example.com", "cab-alice@example.com"]
fallback_cert = "{fallback}"
issuer = {{ name = "pebble", method = "acme", registered_domain = "example.com" }}
acme = {{ eab_kid = "{kid}", solver = {{ type = "http-01", webroot = "{unserved}" }} }}
targets = [{{ kind = "local", id = "lb-lost", reload = "hot-swap" }}]
endpoints = [{{ host = "127.0.0.1", port = {lost_port}, sni = "shop.example.com" }}]
"#,
        kid = pebble.eab_kid,
        webroot = webroot.dir.path().display(),
        unserved = unserved.path().display(),
        port = addr.port(),
        lost_port = lost_addr.port()
    );
    let integrations = format!(
        r#"[issuers.pebble]
kind = "acme"
directory_url = "{dir_url}"
server_roots_file = "{server_roots}"
trust_anchors_file = "{roots}"
eab_hmac = "{eab}"
order_timeout_secs = 30
"#,
        dir_url = proxy.directory_url(),
        server_roots = pebble.pki.ca_file.display(),
        roots = roots.display(),
    );
    let cfg = config(&inventory, &integrations);
    let stack = Stack::with_adapters(
        &dir.path().join("data"),
        adapters,
        cfg,
        clock,
        Duration::from_secs(3),
    )
    .await
    .expect("stack");

    // Run 1: scan → normal change → approve → pebble issues → deploy → verify → closed.
    let finding = ScanFinding {
        ci: "shop-web-prod".into(),
        observed_expiry: expiry,
        observed_fingerprint: None,
    };
    let exec = stack
        .trigger(Trigger::Scan(finding))
        .await
        .expect("trigger")
        .execution;
    let id = stack
        .wait_for_card(&exec, Duration::from_secs(30))
        .await
        .expect("card");
    stack
        .decide(approve(&id, "cab-alice@example.com"))
        .await
        .expect("approve");
    let done = stack.wait(&exec, WAIT).await.expect("done");
    assert_eq!(
        done.status.as_str(),
        "SUCCEEDED",
        "{:?} {:?}\n{}",
        done.error,
        done.cause,
        pebble.log()
    );
    let state: WorkflowState =
        serde_json::from_value(done.output.clone().expect("output")).expect("state");
    let renewal = state.renewal.as_ref().expect("renewal");
    assert_eq!(renewal.source, "acme");
    // The endpoint serves pebble's certificate, verified against pebble's roots.
    let bundle = stack
        .deps
        .keystore
        .get_bundle(&renewal.bundle_ref)
        .await
        .expect("bundle");
    assert!(bundle.chain_pem.contains("BEGIN CERTIFICATE"));
    let (_, leaf) = x509_parser::pem::parse_x509_pem(bundle.chain_pem.as_bytes()).expect("pem");
    let leaf = leaf.parse_x509().expect("x509");
    assert!(
        leaf.issuer().to_string().contains("Pebble Intermediate"),
        "issued by {}",
        leaf.issuer()
    );
    drop(bundle);
    let ticket_no = state
        .validation
        .as_ref()
        .expect("validation")
        .ticket
        .clone();
    let ticket = stack
        .deps
        .itsm
        .get(&ticket_no)
        .await
        .expect("get")
        .expect("ticket");
    assert_eq!(format!("{:?}", ticket.state), "Closed");
    assert!(webroot.leftover_tokens().is_empty());

    // Run 3: the webroot is not served, so pebble's validation fails: IssuanceFailed, nothing
    // deployed, the ticket carries the ACME problem.
    let exec3 = stack
        .trigger(Trigger::Scan(ScanFinding {
            ci: "lost-web-prod".into(),
            observed_expiry: expiry,
            observed_fingerprint: None,
        }))
        .await
        .expect("trigger")
        .execution;
    let id = stack
        .wait_for_card(&exec3, Duration::from_secs(30))
        .await
        .expect("card");
    stack
        .decide(approve(&id, "cab-alice@example.com"))
        .await
        .expect("approve");
    let done = stack.wait(&exec3, WAIT).await.expect("done");
    assert_eq!(done.status.as_str(), "FAILED", "{:?}", done.error);
    let tickets = stack.adapters.tickets.list().expect("tickets");
    let lost_ticket = tickets
        .iter()
        .find(|t| t.ci == "lost-web-prod")
        .expect("ticket for lost-web-prod");
    let notes: Vec<&str> = lost_ticket
        .work_notes
        .iter()
        .map(|n| n.text.as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("IssuanceFailed")
            && n.contains("urn:ietf:params:acme:error:")
            && n.contains("stopped before deploying anything")),
        "the ticket does not carry the ACME problem: {notes:#?}"
    );
    assert!(
        !notes.iter().any(|n| n.starts_with("Deployed")),
        "something was deployed: {notes:#?}"
    );
    assert!(webroot.leftover_tokens().is_empty());
    assert!(
        std::fs::read_dir(unserved.path().join(".well-known/acme-challenge"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "challenge files left in the unserved webroot"
    );

    // Run 2: the CA rate-limits newOrder. Fallback path; the ticket says why.
    proxy.set(Faults {
        rate_limit_new_order: Some(1800),
        ..Faults::default()
    });
    let orders_before = proxy.count("POST /order-plz");
    let finding = ScanFinding {
        ci: "shop-web-prod".into(),
        observed_expiry: renewal.not_after,
        observed_fingerprint: Some(renewal.fingerprint.clone()),
    };
    let exec2 = stack
        .trigger(Trigger::Scan(finding))
        .await
        .expect("trigger")
        .execution;
    let id = stack
        .wait_for_card(&exec2, Duration::from_secs(30))
        .await
        .expect("card");
    stack
        .decide(approve(&id, "cab-alice@example.com"))
        .await
        .expect("approve");
    // Rate-limited: the fallback needs an emergency approval (ECAB).
    let id = stack
        .wait_for_card(&exec2, Duration::from_secs(60))
        .await
        .expect("fallback approval card");
    stack
        .decide(approve(&id, "erin@example.com"))
        .await
        .expect("approve fallback");
    let done = succeeded(&stack, &exec2, WAIT).await;
    let state: WorkflowState =
        serde_json::from_value(done.output.clone().expect("output")).expect("state");
    assert_eq!(
        state.renew_error.as_ref().map(|e| e.error.as_str()),
        Some("RateLimited")
    );
    assert_eq!(
        state.renewal.as_ref().map(|r| r.source.as_str()),
        Some("fallback")
    );
    assert_eq!(
        proxy.count("POST /order-plz"),
        orders_before + 1,
        "one newOrder, refused; no retry loop"
    );
    let ticket_no = state
        .validation
        .as_ref()
        .expect("validation")
        .ticket
        .clone();
    let ticket = stack
        .deps
        .itsm
        .get(&ticket_no)
        .await
        .expect("get")
        .expect("ticket");
    let notes: Vec<&str> = ticket.work_notes.iter().map(|n| n.text.as_str()).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("rateLimited") || n.contains("rate limited")),
        "the ticket does not say why: {notes:#?}"
    );

    // The ledger kept the CA's Retry-After: the next validation plans for the fallback.
    let usage = certops_core::acme_ledger::usage(
        stack.deps.store.as_ref(),
        "example.com",
        "pebble",
        &["shop.example.com".into(), "www.shop.example.com".into()],
        Utc::now(),
    )
    .await
    .expect("ledger");
    let until = usage.retry_after.expect("Retry-After recorded");
    assert!(until > Utc::now() + TimeDelta::minutes(29), "{until}");
    assert_eq!(usage.certificates_this_week, 1);
    // Orders: run 1, the failed run 3, the refused run 2.
    assert_eq!(usage.orders_last_3_hours, 3);
}
