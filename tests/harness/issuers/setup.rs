//! Building blocks shared by the issuer tests: configuration from inventory and
//! `integrations.toml` text, secret files (0600, referenced as `file:`), a CSR from the renew
//! step's own key code, and the renew step's guardrails over what came back.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use certops_core::integrations::Integrations;
use certops_core::ports::{Config, IssueRequest, Issuer, Keystore};
use certops_core::{Inventory, KeyType, Policy, Runbook};

/// A configuration with the test policy and the shipped runbook.
pub fn config(inventory: &str, integrations: &str) -> Config {
    Config {
        inventory: Inventory::from_toml_str(inventory).expect("inventory"),
        policy: Policy::from_toml_str(&crate::world::policy(None)).expect("policy"),
        runbook: Runbook::from_toml_str(crate::world::RUNBOOK).expect("runbook"),
        default_oncall: "oncall@example.com".into(),
        integrations: Integrations::from_toml_str(integrations).expect("integrations"),
    }
}

/// One `[[certificate]]` entry with the given id, names, issuer table and extra lines.
pub fn certificate(id: &str, names: &[&str], issuer: &str, extra: &str) -> String {
    let sans: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        r#"
[[certificate]]
id = "{id}"
ci = "{id}-ci"
common_name = "{cn}"
sans = [{sans}]
environment = "dev"
service_owner = "team"
escalation = ["oncall"]
change_authority = ["olivia@example.com"]
issuer = {issuer}
targets = [{{ kind = "local", id = "{id}-ep", reload = "hot-swap" }}]
endpoints = [{{ host = "127.0.0.1", port = 1, sni = "{cn}" }}]
{extra}
"#,
        cn = names[0],
        sans = sans.join(", ")
    )
}

/// Writes `value` to a 0600 file in `dir`; returns its `file:` reference.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value).expect("write secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    format!("file:{}", path.display())
}

/// A key of `kind` (the renew step's generator) and a CSR for `names`.
pub fn key_and_csr(kind: KeyType, names: &[&str]) -> (rcgen::KeyPair, String) {
    let key = certops_fn_renew::keys::generate(kind).expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let csr = certops_fn_renew::keys::csr(&key, &names[0], &names).expect("csr");
    (key, csr)
}

/// The issue request for certificate object `cert_id` of `config`.
pub fn request(config: &Config, cert_id: &str, csr: String) -> IssueRequest {
    let cert = config.inventory.get(cert_id).expect("certificate object");
    let names = certops_fn_renew::keys::planned_names(
        &cert.common_name,
        &cert.sans.iter().cloned().collect::<Vec<_>>(),
    );
    IssueRequest {
        cert_id: cert.id.clone(),
        issuer: cert.issuer.clone(),
        csr_pem: csr,
        common_name: cert.common_name.clone(),
        sans: names,
        replaces: None,
    }
}

/// Builds the issuer port for `config` over a file keystore in `dir`, the local CA being
/// the default.
pub async fn issuer_port(
    config: &Config,
    dir: &Path,
    aws: Option<aws_config::SdkConfig>,
) -> (Arc<dyn Issuer>, Arc<dyn Keystore>) {
    let keystore: Arc<dyn Keystore> =
        Arc::new(certops_adapters::FileKeystore::open(&dir.join("keystore")).expect("keystore"));
    let clock: Arc<dyn certops_core::ports::Clock> = Arc::new(certops_core::ports::SystemClock);
    let local_ca: Arc<dyn Issuer> =
        Arc::new(certops_adapters::LocalCa::new(keystore.clone(), clock));
    let port = certops_issuers::build(
        config,
        certops_issuers::RouterParts {
            default: local_ca,
            keystore: keystore.clone(),
            secrets: Arc::new(certops_adapters::LocalSecrets),
            aws,
        },
    )
    .await
    .expect("issuer port");
    (port, keystore)
}

/// Runs the renew step's guardrails on an issued chain.
pub async fn guardrails(
    port: &dyn Issuer,
    request: &IssueRequest,
    key: &rcgen::KeyPair,
    chain: &str,
) -> Result<(), certops_core::Error> {
    let anchors = port.trust_anchors_for(&request.issuer).await?;
    certops_fn_renew::guardrails::check(
        chain,
        key.public_key_raw(),
        &request.sans,
        anchors.as_deref(),
        chrono::Utc::now(),
    )
}
