//! `[issuers.<name>]` in `integrations.toml`: how to reach each real issuer, keyed by the
//! issuer name the inventory uses. Secrets appear only as [`SecretRef`]s; an inventory issuer
//! without a table here keeps the embedded local CA.
//!
//! ```toml
//! [issuers.letsencrypt]
//! kind = "acme"
//! directory_url = "https://acme-v02.api.letsencrypt.org/directory"
//! dns_update_url = "http://127.0.0.1:8055"      # for solver dns-01-update
//!
//! [issuers.corp-pki]
//! kind = "vault"
//! address = "https://vault.internal:8200"
//! mount = "pki"
//! role = "web"
//! token = "file:/etc/certops/vault.token"
//!
//! [issuers.private-ca]
//! kind = "aws-private-ca"
//! certificate_authority_arn = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/…"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use certops_core::integrations::{Integrations, SecretRef};
use certops_core::Error;
use serde::Deserialize;

/// The table name in `integrations.toml`.
pub const SECTION: &str = "issuers";

/// One configured issuer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum IssuerSettings {
    /// An ACME CA (RFC 8555).
    Acme(AcmeSettings),
    /// A Vault- or OpenBao-compatible PKI secrets engine.
    Vault(VaultSettings),
    /// AWS Private CA.
    AwsPrivateCa(PrivateCaSettings),
}

/// `kind = "acme"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSettings {
    /// The directory URL, unless the inventory's `acme.directory_url` names one.
    #[serde(default)]
    pub directory_url: Option<String>,
    /// PEM file of the roots that sign the ACME *server's* TLS certificate, when it is not
    /// publicly trusted (a test CA); without it the platform's roots are used.
    #[serde(default)]
    pub server_roots_file: Option<PathBuf>,
    /// PEM file of the trust anchors the *issued* certificates chain to; without it the
    /// public web roots are assumed.
    #[serde(default)]
    pub trust_anchors_file: Option<PathBuf>,
    /// The external account binding HMAC key (base64url), when the CA requires EAB.
    #[serde(default)]
    pub eab_hmac: Option<SecretRef>,
    /// Base URL of the DNS update endpoint the `dns-01-update` solver uses
    /// (`POST /set-txt`, `POST /clear-txt` with `{"host": "<fqdn>.", "value": "…"}`).
    #[serde(default)]
    pub dns_update_url: Option<String>,
    /// How long to wait for an order to become ready or valid, in seconds (default 90).
    #[serde(default)]
    pub order_timeout_secs: Option<u64>,
}

/// `kind = "vault"` (HashiCorp Vault or OpenBao PKI).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// Base address, e.g. `https://vault.internal:8200`.
    pub address: String,
    /// The PKI mount path (default `pki`).
    #[serde(default = "default_mount")]
    pub mount: String,
    /// The role that signs.
    pub role: String,
    /// The token, by reference.
    pub token: SecretRef,
    /// Vault namespace (Enterprise / OpenBao namespaces), if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM file of the roots that sign the Vault server's TLS certificate, if private.
    #[serde(default)]
    pub server_roots_file: Option<PathBuf>,
    /// Requested TTL (e.g. `2160h`); the role's default otherwise.
    #[serde(default)]
    pub ttl: Option<String>,
}

fn default_mount() -> String {
    "pki".into()
}

/// `kind = "aws-private-ca"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateCaSettings {
    /// The certificate authority's ARN.
    pub certificate_authority_arn: String,
    /// The signing algorithm (default `SHA256WITHECDSA`).
    #[serde(default)]
    pub signing_algorithm: Option<String>,
    /// Validity in days (default 90).
    #[serde(default)]
    pub validity_days: Option<i64>,
    /// An ACM Private CA template ARN, if not the default end-entity template.
    #[serde(default)]
    pub template_arn: Option<String>,
    /// How long to wait for the certificate to be issued, in seconds (default 60).
    #[serde(default)]
    pub issue_timeout_secs: Option<u64>,
}

/// Every `[issuers.<name>]` table, by name; empty when the section is absent.
pub fn issuer_settings(
    integrations: &Integrations,
) -> Result<BTreeMap<String, IssuerSettings>, Error> {
    Ok(integrations
        .section::<BTreeMap<String, IssuerSettings>>(SECTION)?
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_parses_and_secrets_are_references() {
        let i = Integrations::from_toml_str(
            r#"
[issuers.le]
kind = "acme"
directory_url = "https://acme.example/dir"
eab_hmac = "env:EAB_HMAC"

[issuers.corp]
kind = "vault"
address = "https://127.0.0.1:8200"
role = "web"
token = "env:VAULT_TOKEN"

[issuers.pca]
kind = "aws-private-ca"
certificate_authority_arn = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/x"
"#,
        )
        .unwrap();
        let all = issuer_settings(&i).unwrap();
        assert!(
            matches!(&all["le"], IssuerSettings::Acme(a) if a.eab_hmac == Some(SecretRef::Env("EAB_HMAC".into())))
        );
        assert!(matches!(&all["corp"], IssuerSettings::Vault(v) if v.mount == "pki"));
        assert!(matches!(&all["pca"], IssuerSettings::AwsPrivateCa(_)));
    }

    #[test]
    fn a_token_value_instead_of_a_reference_is_refused() {
        let i = Integrations::from_toml_str(
            "[issuers.corp]\nkind = \"vault\"\naddress = \"https://x\"\nrole = \"r\"\ntoken = \"s.abcdef\"\n",
        )
        .unwrap();
        let e = issuer_settings(&i).unwrap_err().to_string();
        assert!(e.contains("[issuers]"), "{e}");
        assert!(!e.contains("s.abcdef"), "{e}");
    }
}
