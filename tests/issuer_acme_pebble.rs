//! The ACME issuer against a real ACME CA: pebble and pebble-challtestsrv (Debian package
//! `pebble`) on loopback, with external account binding required.
//!
//! - HTTP-01 through a webroot served on loopback; the account is created once, kept in the
//!   keystore, and restored (not re-created) by the next process; the token files are removed.
//! - DNS-01 through challtestsrv's DNS update endpoint; pebble resolves through challtestsrv.
//! - RSA keys from the inventory's key type.
//! - Through the fault proxy: `rateLimited` with `Retry-After` → `RateLimited`, no further
//!   order before it (requests counted); `badNonce` retried; a failed challenge →
//!   `IssuanceFailed` with the problem's type and detail; the CA unreachable → `IssuerDown`.
//!
//! One pebble serves every case (it starts in well under a second, but one is enough).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use std::time::Duration;

use certops_core::KeyType;
use certops_tests::issuers::fault_proxy::{FaultProxy, Faults};
use certops_tests::issuers::pebble::Pebble;
use certops_tests::issuers::setup::{
    certificate, config, guardrails, issuer_port, key_and_csr, request, secret_file,
};
use certops_tests::issuers::webroot::Webroot;
use certops_tests::process::free_port;

fn integrations(pebble: &Pebble, directory: &str, roots: &std::path::Path, eab: &str) -> String {
    format!(
        r#"
[issuers.pebble]
kind = "acme"
directory_url = "{directory}"
server_roots_file = "{server_roots}"
trust_anchors_file = "{roots}"
eab_hmac = "{eab}"
dns_update_url = "{dns}"
order_timeout_secs = 30
"#,
        server_roots = pebble.pki.ca_file.display(),
        roots = roots.display(),
        dns = pebble.dns_update_url(),
    )
}

fn acme_issuer(pebble: &Pebble) -> String {
    format!(
        r#"{{ name = "pebble", method = "acme", registered_domain = "example.com" }}
acme = {{ eab_kid = "{kid}", contact = ["mailto:pki@example.com"], solver = SOLVER }}"#,
        kid = pebble.eab_kid
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issuance_against_pebble() {
    let http01 = free_port();
    let webroot = Webroot::start(http01).await;
    let pebble = Pebble::start(http01);
    let proxy = FaultProxy::start(&format!("https://127.0.0.1:{}", pebble.port), &pebble.pki).await;
    let roots = pebble.issued_roots_file().await;
    let work = tempfile::tempdir().expect("work dir");
    let eab = secret_file(work.path(), "eab.secret", &pebble.eab_hmac);
    let unserved = tempfile::tempdir().expect("unserved dir");

    let http_solver = format!(
        "{{ type = \"http-01\", webroot = \"{}\" }}",
        webroot.dir.path().display()
    );
    let issuer = acme_issuer(&pebble);
    let inventory = [
        certificate(
            "web",
            &["www.shop.example.com", "shop.example.com"],
            &issuer.replace("SOLVER", &http_solver),
            "",
        ),
        certificate(
            "rsa",
            &["rsa.example.com"],
            &issuer.replace("SOLVER", &http_solver),
            "key_type = \"rsa-2048\"",
        ),
        certificate(
            "dns",
            &["dns.example.com", "*.dns.example.com"],
            &issuer.replace("SOLVER", "{ type = \"dns-01-update\" }"),
            "",
        ),
        certificate(
            "lost",
            &["lost.example.com"],
            &issuer.replace(
                "SOLVER",
                &format!(
                    "{{ type = \"http-01\", webroot = \"{}\" }}",
                    unserved.path().display()
                ),
            ),
            "",
        ),
    ]
    .concat();
    let cfg = config(
        &inventory,
        &integrations(&pebble, &proxy.directory_url(), &roots, &eab),
    );
    let (port, keystore) = issuer_port(&cfg, work.path(), None).await;

    // HTTP-01 through the webroot: issued for exactly the planned names, guardrails hold.
    let (key, csr) = key_and_csr(
        KeyType::EcdsaP256,
        &["www.shop.example.com", "shop.example.com"],
    );
    let req = request(&cfg, "web", csr);
    let chain = port
        .issue(&req)
        .await
        .unwrap_or_else(|e| panic!("HTTP-01 issuance failed: {e}\n{}", pebble.log()));
    guardrails(port.as_ref(), &req, &key, &chain)
        .await
        .expect("guardrails on pebble's certificate");
    assert!(
        webroot.served() >= 2,
        "pebble fetched {} tokens",
        webroot.served()
    );
    assert!(
        webroot.leftover_tokens().is_empty(),
        "token files left behind: {:?}",
        webroot.leftover_tokens()
    );
    // 201 Created is a new account (RFC 8555 §7.3); a retried badNonce attempt is not one.
    assert_eq!(
        proxy.answered("POST /sign-me-up", 201),
        1,
        "one account created"
    );

    // The account is in the keystore, and a new process restores it instead of creating one.
    let refs = keystore.references().await.expect("references");
    let account_ref = refs
        .iter()
        .find(|r| r.ends_with("acme-account/pebble"))
        .expect("account stored in the keystore");
    let stored = keystore.get_bundle(account_ref).await.expect("account");
    assert!(
        !stored.chain_pem.contains("key_pkcs8"),
        "the secret half stays in the key slot"
    );
    let (port2, _) = issuer_port(&cfg, work.path(), None).await;
    let (key2, csr2) = key_and_csr(KeyType::Rsa2048, &["rsa.example.com"]);
    let req2 = request(&cfg, "rsa", csr2);
    let chain2 = port2.issue(&req2).await.expect("RSA issuance");
    guardrails(port2.as_ref(), &req2, &key2, &chain2)
        .await
        .expect("guardrails on the RSA certificate");
    assert_eq!(
        proxy.answered("POST /sign-me-up", 201),
        1,
        "the account was restored, not re-created"
    );

    // DNS-01 through challtestsrv's update endpoint, a wildcard included.
    let (key3, csr3) = key_and_csr(
        KeyType::EcdsaP256,
        &["dns.example.com", "*.dns.example.com"],
    );
    let req3 = request(&cfg, "dns", csr3);
    let chain3 = port.issue(&req3).await.expect("DNS-01 issuance");
    guardrails(port.as_ref(), &req3, &key3, &chain3)
        .await
        .expect("guardrails on the DNS-01 certificate");
    let queries = pebble.dns_queries("_acme-challenge.dns.example.com.").await;
    assert!(
        !queries.is_empty(),
        "pebble looked the TXT record up through challtestsrv"
    );

    // badNonce: refused once, retried by the client, the order goes through.
    proxy.set(Faults {
        bad_nonces: 1,
        ..Faults::default()
    });
    let (_, csr4) = key_and_csr(
        KeyType::EcdsaP256,
        &["www.shop.example.com", "shop.example.com"],
    );
    port.issue(&request(&cfg, "web", csr4))
        .await
        .expect("issuance after one badNonce");

    // A challenge pebble cannot validate: IssuanceFailed with the problem's type and detail.
    let (_, csr5) = key_and_csr(KeyType::EcdsaP256, &["lost.example.com"]);
    let err = port
        .issue(&request(&cfg, "lost", csr5))
        .await
        .expect_err("the token is not served");
    assert_eq!(err.name(), "IssuanceFailed", "{err}");
    assert!(
        err.to_string().contains("urn:ietf:params:acme:error:"),
        "{err}"
    );
    assert!(err.to_string().contains("lost.example.com"), "{err}");

    // rateLimited with Retry-After: RateLimited carrying the instant; no new order before it.
    proxy.set(Faults {
        rate_limit_new_order: Some(3600),
        ..Faults::default()
    });
    let orders_before = proxy.count("POST /order-plz");
    let (_, csr6) = key_and_csr(
        KeyType::EcdsaP256,
        &["www.shop.example.com", "shop.example.com"],
    );
    let req6 = request(&cfg, "web", csr6);
    let err = port.issue(&req6).await.expect_err("rate limited");
    assert_eq!(err.name(), "RateLimited", "{err}");
    let until = certops_core::acme_ledger::parse_retry_after(&err.to_string())
        .expect("Retry-After kept in the error");
    let ahead = until - chrono::Utc::now();
    assert!(
        ahead > chrono::TimeDelta::minutes(59) && ahead <= chrono::TimeDelta::minutes(60),
        "Retry-After 3600 s became {until}"
    );
    assert_eq!(proxy.count("POST /order-plz"), orders_before + 1);
    for _ in 0..5 {
        let again = port.issue(&req6).await.expect_err("still rate limited");
        assert_eq!(again.name(), "RateLimited");
    }
    assert_eq!(
        proxy.count("POST /order-plz"),
        orders_before + 1,
        "no new order is sent before Retry-After: no tight loop"
    );

    // The CA unreachable: IssuerDown.
    let closed = free_port();
    let down_cfg = config(
        &certificate(
            "web",
            &["www.shop.example.com"],
            &issuer.replace("SOLVER", &http_solver),
            "",
        ),
        &integrations(
            &pebble,
            &format!("https://127.0.0.1:{closed}/dir"),
            &roots,
            &eab,
        ),
    );
    let down_dir = tempfile::tempdir().expect("dir");
    let (down, _) = issuer_port(&down_cfg, down_dir.path(), None).await;
    let (_, csr7) = key_and_csr(KeyType::EcdsaP256, &["www.shop.example.com"]);
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        down.issue(&request(&down_cfg, "web", csr7)),
    )
    .await
    .expect("an unreachable CA fails fast")
    .expect_err("unreachable");
    assert_eq!(err.name(), "IssuerDown", "{err}");
}
