//! The `Issuer` contract suite (`tests/harness/contract/issuer.rs`) on every issuer: the
//! embedded local CA, ACME on pebble (HTTP-01 webroot), the Vault PKI adapter on OpenBao,
//! and AWS Private CA on moto — each built by the issuer router exactly as the runtime
//! builds it from `integrations.toml`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_tests::contract;
use certops_tests::issuers::openbao::OpenBao;
use certops_tests::issuers::pebble::Pebble;
use certops_tests::issuers::setup::{certificate, config, issuer_port, secret_file};
use certops_tests::issuers::webroot::Webroot;
use certops_tests::moto::Moto;
use certops_tests::process::free_port;

fn issuer_of(cfg: &certops_core::ports::Config, id: &str) -> certops_core::Issuer {
    cfg.inventory.get(id).expect("object").issuer.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_issuer_keeps_the_issuer_contract() {
    let work = tempfile::tempdir().expect("dir");

    // The embedded default: no [issuers] table at all.
    let names = ["local.example.com", "www.local.example.com"];
    let cfg = config(
        &certificate(
            "local",
            &names,
            r#"{ name = "corp-pki", method = "internal-pki" }"#,
            "",
        ),
        "",
    );
    let (port, _) = issuer_port(&cfg, &work.path().join("local"), None).await;
    contract::issuer::issuer(port.as_ref(), "local", &issuer_of(&cfg, "local"), &names).await;

    // ACME on pebble, HTTP-01 through a webroot.
    let http01 = free_port();
    let webroot = Webroot::start(http01).await;
    let pebble = Pebble::start(http01);
    let roots = pebble.issued_roots_file().await;
    let eab = secret_file(work.path(), "eab", &pebble.eab_hmac);
    let names = ["acme.example.com", "www.acme.example.com"];
    let cfg = config(
        &certificate(
            "acme",
            &names,
            &format!(
                "{{ name = \"pebble\", method = \"acme\", registered_domain = \"example.com\" }}\nacme = {{ eab_kid = \"{}\", solver = {{ type = \"http-01\", webroot = \"{}\" }} }}",
                pebble.eab_kid,
                webroot.dir.path().display()
            ),
            "",
        ),
        &format!(
            "[issuers.pebble]\nkind = \"acme\"\ndirectory_url = \"{}\"\nserver_roots_file = \"{}\"\ntrust_anchors_file = \"{}\"\neab_hmac = \"{eab}\"\n",
            pebble.directory_url(),
            pebble.pki.ca_file.display(),
            roots.display()
        ),
    );
    let (port, _) = issuer_port(&cfg, &work.path().join("acme"), None).await;
    contract::issuer::issuer(port.as_ref(), "acme", &issuer_of(&cfg, "acme"), &names).await;
    drop(pebble);

    // The Vault PKI adapter on OpenBao.
    let bao = OpenBao::start().await;
    let token = secret_file(work.path(), "bao.token", &bao.signing_token().await);
    let names = ["pki.example.com", "www.pki.example.com"];
    let cfg = config(
        &certificate("pki", &names, r#"{ name = "corp-pki", method = "internal-pki" }"#, ""),
        &format!(
            "[issuers.corp-pki]\nkind = \"vault\"\naddress = \"{}\"\nrole = \"web\"\ntoken = \"{token}\"\nserver_roots_file = \"{}\"\n",
            bao.address(),
            bao.server_roots_file().display()
        ),
    );
    let (port, _) = issuer_port(&cfg, &work.path().join("pki"), None).await;
    contract::issuer::issuer(port.as_ref(), "pki", &issuer_of(&cfg, "pki"), &names).await;
    drop(bao);

    // AWS Private CA on moto (a root CA made ACTIVE first).
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let ca_arn = certops_tests::issuers::private_ca::active_root_ca(&sdk).await;
    let names = ["pca.example.com", "www.pca.example.com"];
    let cfg = config(
        &certificate("pca", &names, r#"{ name = "private-ca", method = "internal-pki" }"#, ""),
        &format!(
            "[issuers.private-ca]\nkind = \"aws-private-ca\"\ncertificate_authority_arn = \"{ca_arn}\"\n"
        ),
    );
    let (port, _) = issuer_port(&cfg, &work.path().join("pca"), Some(sdk)).await;
    contract::issuer::issuer(port.as_ref(), "pca", &issuer_of(&cfg, "pca"), &names).await;
}
