//! The AWS-side issuer pieces against moto server on loopback: DNS-01 through Route 53 (the
//! TXT record is upserted, INSYNC awaited, and removed) and AWS Private CA (`IssueCertificate`
//! then `GetCertificate`, trust anchors from `GetCertificateAuthorityCertificate`, errors by
//! name), through the issuer router as the runtime builds it.
//!
//! These are call shapes: moto emulates Private CA, it is not one. Older moto releases put no
//! subjectAltName in the certificates they issue, which the renew step's SAN guardrail would
//! (rightly) refuse; moto 5.2 copies the CSR's SAN, so the guardrails are run here too, and
//! the test asserts whichever moto does rather than assuming.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_core::KeyType;
use certops_issuers::solvers::{Answer, ChallengeSolver, Route53Solver};
use certops_tests::issuers::setup::{certificate, config, issuer_port, key_and_csr, request};
use certops_tests::moto::Moto;
use std::time::Duration;

async fn txt_records(client: &aws_sdk_route53::Client, zone: &str) -> Vec<(String, Vec<String>)> {
    client
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .expect("list records")
        .resource_record_sets()
        .iter()
        .filter(|r| r.r#type() == &aws_sdk_route53::types::RrType::Txt)
        .map(|r| {
            (
                r.name().to_string(),
                r.resource_records()
                    .iter()
                    .map(|v| v.value().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_dns01_and_private_ca_on_moto() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;

    // Route 53: UPSERT the challenge TXT record, wait for INSYNC, DELETE it afterwards.
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let zone = r53
        .create_hosted_zone()
        .name("example.com.")
        .caller_reference(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .expect("hosted zone")
        .hosted_zone()
        .expect("zone")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string();
    let solver = Route53Solver::new(r53.clone(), &zone, Duration::from_secs(30));
    let answer = Answer {
        name: "*.www.example.com".into(),
        token: "token".into(),
        key_authorization: "token.thumbprint".into(),
        dns_value: "n2Q4nZ6eL8Wl1Yx0Zk2c3e9X0m8Q7Rk9e1o2p3q4r5s".into(),
    };
    solver.present(&answer).await.expect("present");
    let records = txt_records(&r53, &zone).await;
    assert!(
        records
            .iter()
            .any(|(name, values)| name == "_acme-challenge.www.example.com."
                && values == &[format!("\"{}\"", answer.dns_value)]),
        "TXT record not upserted: {records:?}"
    );
    solver.clean_up(&answer).await.expect("clean up");
    let records = txt_records(&r53, &zone).await;
    assert!(
        !records
            .iter()
            .any(|(name, _)| name == "_acme-challenge.www.example.com."),
        "TXT record not removed: {records:?}"
    );

    // AWS Private CA: a root CA made ACTIVE the way the console does it.
    let ca_arn = certops_tests::issuers::private_ca::active_root_ca(&sdk).await;

    // Through the router, as the runtime builds it from [issuers.private-ca].
    let issuer = r#"{ name = "private-ca", method = "internal-pki" }"#;
    let inventory = certificate("svc", &["svc.internal.example.com"], issuer, "");
    let integrations = format!(
        "[issuers.private-ca]\nkind = \"aws-private-ca\"\ncertificate_authority_arn = \"{ca_arn}\"\nvalidity_days = 30\n"
    );
    let cfg = config(&inventory, &integrations);
    let work = tempfile::tempdir().expect("dir");
    let (port, _) = issuer_port(&cfg, work.path(), Some(sdk.clone())).await;
    let (key, csr) = key_and_csr(KeyType::EcdsaP256, &["svc.internal.example.com"]);
    let req = request(&cfg, "svc", csr);
    let chain = port.issue(&req).await.expect("issue through Private CA");
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain.as_bytes()).expect("pem");
    let leaf = pem.parse_x509().expect("x509");
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw(),
        "the CA signed the CSR's key (the key never left)"
    );
    assert!(leaf
        .subject()
        .to_string()
        .contains("svc.internal.example.com"));
    let has_san = matches!(leaf.subject_alternative_name(), Ok(Some(_)));
    let checked =
        certops_tests::issuers::setup::guardrails(port.as_ref(), &req, &key, &chain).await;
    if has_san {
        checked.expect("guardrails on moto's certificate (it carries the CSR's SAN)");
    } else {
        // This moto issues without SAN: the guardrail refuses exactly that.
        let err = checked.expect_err("no SAN");
        assert_eq!(err.name(), "IssuanceFailed");
        assert!(
            err.to_string().contains("svc.internal.example.com"),
            "{err}"
        );
    }
    let anchors = port
        .trust_anchors_for(&req.issuer)
        .await
        .expect("anchors")
        .expect("some");
    assert!(anchors.contains("BEGIN CERTIFICATE"));

    // A CA that does not exist: IssuanceFailed naming the service's error code.
    let missing = format!("{}-missing", &ca_arn);
    let cfg2 = config(
        &inventory,
        &format!(
            "[issuers.private-ca]\nkind = \"aws-private-ca\"\ncertificate_authority_arn = \"{missing}\"\n"
        ),
    );
    let (port2, _) = issuer_port(&cfg2, work.path(), Some(sdk)).await;
    let (_, csr) = key_and_csr(KeyType::EcdsaP256, &["svc.internal.example.com"]);
    let err = port2
        .issue(&request(&cfg2, "svc", csr))
        .await
        .expect_err("no such CA");
    assert!(
        matches!(err.name(), "IssuanceFailed" | "IssuerDown"),
        "{err}"
    );
    assert!(err.to_string().contains("IssueCertificate"), "{err}");
}
