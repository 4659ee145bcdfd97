//! The certificate inventory: every certificate object certops may touch, keyed by CI.
//!
//! Targets, endpoints and CDN properties come only from here — never from a ticket's free
//! text. The file format is documented in `runbooks/README.md`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::audit::find_secret;
use crate::Error;

/// How a certificate is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RenewalMethod {
    /// An ACME CA (e.g. Let's Encrypt); subject to rate limits.
    Acme,
    /// The organisation's internal PKI.
    InternalPki,
    /// Issued and installed by a vendor; certops never renews these itself.
    VendorManaged,
}

impl RenewalMethod {
    /// The name used in files and reports (`acme`, `internal-pki`, `vendor-managed`).
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalMethod::Acme => "acme",
            RenewalMethod::InternalPki => "internal-pki",
            RenewalMethod::VendorManaged => "vendor-managed",
        }
    }
}

impl fmt::Display for RenewalMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment a certificate object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production.
    Prod,
    /// Staging / pre-production.
    Staging,
    /// Development.
    Dev,
}

impl Environment {
    /// The name used in files and reports (`prod`, `staging`, `dev`).
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Prod => "prod",
            Environment::Staging => "staging",
            Environment::Dev => "dev",
        }
    }

    /// Maps an ITSM environment name to an [`Environment`], or `None` if it is not one of the
    /// fixed spellings. Case-insensitive; `production` and `development` are accepted because
    /// ServiceNow spells them that way. Anything else is unknown — never guessed.
    pub fn from_itsm(name: &str) -> Option<Environment> {
        match name.trim().to_ascii_lowercase().as_str() {
            "prod" | "production" => Some(Environment::Prod),
            "staging" => Some(Environment::Staging),
            "dev" | "development" => Some(Environment::Dev),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who issues the certificate and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// The issuer's configured name (e.g. `letsencrypt-prod`, `corp-pki`), resolved by adapters.
    pub name: String,
    /// The renewal method.
    pub method: RenewalMethod,
    /// The registered domain ACME rate limits count against (required for `acme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_domain: Option<String>,
}

/// What kind of termination point a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// A cloud load balancer listener (e.g. ELBv2).
    LoadBalancer,
    /// nginx: certificate files plus `nginx -t` and reload.
    Nginx,
    /// HAProxy through its Runtime API.
    Haproxy,
    /// AWS Certificate Manager (import).
    Acm,
    /// A generic REST endpoint that accepts a certificate.
    GenericRest,
    /// The embedded runtime's in-process TLS endpoint.
    Local,
}

/// How a target picks up a new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReloadMethod {
    /// `nginx -t` then `nginx -s reload`.
    NginxReload,
    /// HAProxy Runtime API `set ssl cert` + `commit ssl cert`.
    HaproxyRuntimeApi,
    /// Point the load balancer listener at the new certificate.
    ListenerUpdate,
    /// A REST call to the target.
    RestCall,
    /// Hot swap inside the process (embedded runtime).
    HotSwap,
    /// Nothing to do: the target picks the certificate up by itself (e.g. ACM re-import).
    None,
}

/// A termination point the certificate is deployed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The kind of termination point.
    pub kind: TargetKind,
    /// The target's identifier for its adapter (ARN, host name, backend name, …).
    pub id: String,
    /// How the target is reloaded after deploy.
    pub reload: ReloadMethod,
}

/// What kind of CDN fronts the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CdnKind {
    /// Amazon CloudFront invalidation.
    Cloudfront,
    /// Varnish PURGE/BAN.
    Varnish,
    /// A generic REST purge endpoint.
    GenericRest,
    /// The embedded runtime's in-process cache.
    Local,
}

/// The CDN in front of the service and what to purge after deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cdn {
    /// The kind of CDN.
    pub kind: CdnKind,
    /// The distribution (or service) identifier.
    pub distribution_id: String,
    /// The paths to purge.
    pub paths: Vec<String>,
}

/// An endpoint that must serve the new certificate for the renewal to count as done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Host name or address to connect to.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The SNI name to send.
    pub sni: String,
}

fn default_port() -> u16 {
    443
}

/// One certificate object: everything needed to renew, deploy and verify one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertObject {
    /// Stable identifier of the certificate object (e.g. `shop-www-prod`).
    pub id: String,
    /// The ServiceNow configuration item name tickets refer to.
    pub ci: String,
    /// The CI's ServiceNow `sys_id`, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_sys_id: Option<String>,
    /// The subject common name.
    pub common_name: String,
    /// Subject alternative names (DNS names).
    #[serde(default)]
    pub sans: BTreeSet<String>,
    /// Issuer and renewal method.
    pub issuer: Issuer,
    /// The environment.
    pub environment: Environment,
    /// The accountable service owner (identity or group); validation fails without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_owner: Option<String>,
    /// Escalation path, first contact first; validation fails when empty.
    #[serde(default)]
    pub escalation: Vec<String>,
    /// Identities allowed to approve normal changes to this certificate.
    #[serde(default)]
    pub change_authority: Vec<String>,
    /// Termination points, in deploy order.
    pub targets: Vec<Target>,
    /// The CDN in front of the service, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn: Option<Cdn>,
    /// Endpoints to verify from outside after deploy.
    pub endpoints: Vec<Endpoint>,
    /// Keystore reference of a pre-provisioned fallback certificate — a reference, never a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_cert: Option<String>,
    /// The SHA-256 fingerprint of the certificate expected to be served now, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_fingerprint: Option<String>,
}

impl CertObject {
    /// Whether `ci` names this object, by CI name or by `sys_id` (exact match).
    pub fn matches_ci(&self, ci: &str) -> bool {
        self.ci == ci || self.ci_sys_id.as_deref() == Some(ci)
    }

    /// Checks the entry's own consistency; errors name the field.
    fn check(&self) -> Result<(), String> {
        let blank = |s: &str| s.trim().is_empty();
        if blank(&self.id) {
            return Err("field `id` is empty".into());
        }
        if blank(&self.ci) {
            return Err("field `ci` is empty".into());
        }
        if blank(&self.common_name) {
            return Err("field `common_name` is empty".into());
        }
        if self.sans.iter().any(|s| blank(s)) {
            return Err("field `sans` contains an empty name".into());
        }
        if blank(&self.issuer.name) {
            return Err("field `issuer.name` is empty".into());
        }
        if self.issuer.method == RenewalMethod::Acme
            && self.issuer.registered_domain.as_deref().is_none_or(blank)
        {
            return Err(
                "field `issuer.registered_domain` is required when `issuer.method` is \"acme\""
                    .into(),
            );
        }
        if self.targets.is_empty() {
            return Err("field `targets` is empty".into());
        }
        for (i, target) in self.targets.iter().enumerate() {
            if blank(&target.id) {
                return Err(format!("field `targets[{i}].id` is empty"));
            }
        }
        if let Some(cdn) = &self.cdn {
            if blank(&cdn.distribution_id) {
                return Err("field `cdn.distribution_id` is empty".into());
            }
            if cdn.paths.is_empty() {
                return Err("field `cdn.paths` is empty".into());
            }
        }
        if self.endpoints.is_empty() {
            return Err("field `endpoints` is empty".into());
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if blank(&endpoint.host) || blank(&endpoint.sni) {
                return Err(format!("field `endpoints[{i}]` needs `host` and `sni`"));
            }
            if endpoint.port == 0 {
                return Err(format!("field `endpoints[{i}].port` is 0"));
            }
        }
        if let Some(reference) = &self.fallback_cert {
            if blank(reference) {
                return Err("field `fallback_cert` is empty".into());
            }
            if find_secret(reference).is_some() {
                return Err(
                    "field `fallback_cert` must be a keystore reference, not key material".into(),
                );
            }
        }
        Ok(())
    }
}

/// The parsed inventory: certificate objects in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The certificate objects.
    pub certificates: Vec<CertObject>,
}

impl Inventory {
    /// Parses an inventory file (`[[certificate]]` tables).
    ///
    /// Rejects unknown fields, missing required fields, inconsistent entries and duplicate
    /// ids, CI names or `sys_id`s; the error names the entry and the field.
    pub fn from_toml_str(text: &str) -> Result<Inventory, Error> {
        let invalid = |msg: String| Error::InvalidInput(format!("inventory: {msg}"));
        let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if let Some(key) = table.keys().find(|k| k.as_str() != "certificate") {
            return Err(invalid(format!(
                "unknown top-level key `{key}` (expected `[[certificate]]`)"
            )));
        }
        let entries = match table.remove("certificate") {
            None => Vec::new(),
            Some(toml::Value::Array(entries)) => entries,
            Some(_) => return Err(invalid("`certificate` must be an array of tables".into())),
        };
        let mut certificates: Vec<CertObject> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let label = match entry.get("id").and_then(toml::Value::as_str) {
                Some(id) => format!("certificate[{index}] (id \"{id}\")"),
                None => format!("certificate[{index}]"),
            };
            let cert: CertObject = entry
                .try_into()
                .map_err(|e: toml::de::Error| invalid(format!("{label}: {}", e.message())))?;
            cert.check()
                .map_err(|msg| invalid(format!("{label}: {msg}")))?;
            for earlier in &certificates {
                let clash = if earlier.id == cert.id {
                    Some(("id", cert.id.as_str()))
                } else if earlier.ci == cert.ci {
                    Some(("ci", cert.ci.as_str()))
                } else if cert.ci_sys_id.is_some() && earlier.ci_sys_id == cert.ci_sys_id {
                    Some(("ci_sys_id", cert.ci_sys_id.as_deref().unwrap_or_default()))
                } else {
                    None
                };
                if let Some((field, value)) = clash {
                    return Err(invalid(format!(
                        "{label}: duplicate `{field}` \"{value}\" (already used by \"{}\")",
                        earlier.id
                    )));
                }
            }
            certificates.push(cert);
        }
        Ok(Inventory { certificates })
    }

    /// The certificate object a CI name or `sys_id` resolves to, if any.
    pub fn find_by_ci(&self, ci: &str) -> Option<&CertObject> {
        self.certificates.iter().find(|c| c.matches_ci(ci))
    }

    /// The certificate object with this id, if any.
    pub fn get(&self, id: &str) -> Option<&CertObject> {
        self.certificates.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
[[certificate]]
id = "shop-www-prod"
ci = "shop-web-prod"
ci_sys_id = "9d385017c611228701d22104cc95c371"
common_name = "www.shop.example.com"
sans = ["shop.example.com", "www.shop.example.com"]
environment = "prod"
service_owner = "team-shop"
escalation = ["oncall-shop"]
change_authority = ["carol@example.com"]
issuer = { name = "letsencrypt", method = "acme", registered_domain = "example.com" }
targets = [{ kind = "nginx", id = "web-01", reload = "nginx-reload" }]
endpoints = [{ host = "www.shop.example.com", sni = "www.shop.example.com" }]
fallback_cert = "keystore:fallback/shop-www"
"#;

    #[test]
    fn a_certificate_object_parses_and_resolves_by_ci_name_or_sys_id() {
        let inv = Inventory::from_toml_str(ONE).unwrap();
        let cert = inv.find_by_ci("shop-web-prod").unwrap();
        assert_eq!(cert.id, "shop-www-prod");
        assert_eq!(cert.endpoints[0].port, 443);
        assert_eq!(
            inv.find_by_ci("9d385017c611228701d22104cc95c371")
                .unwrap()
                .id,
            "shop-www-prod"
        );
        assert!(inv.find_by_ci("shop-web").is_none());
        assert_eq!(inv.get("shop-www-prod").unwrap().ci, "shop-web-prod");
    }

    #[test]
    fn unknown_field_is_rejected_naming_entry_and_field() {
        let text = ONE.replace(
            "environment = \"prod\"",
            "environment = \"prod\"\nowner = \"x\"",
        );
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(
            err.contains("certificate[0] (id \"shop-www-prod\")"),
            "{err}"
        );
        assert!(err.contains("unknown field `owner`"), "{err}");
    }

    #[test]
    fn unknown_renewal_method_is_rejected() {
        let text = ONE.replace("method = \"acme\"", "method = \"manual\"");
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("manual"), "{err}");
    }

    #[test]
    fn missing_required_field_is_rejected() {
        let text = ONE.replace("common_name = \"www.shop.example.com\"\n", "");
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("common_name"), "{err}");
    }

    #[test]
    fn acme_needs_a_registered_domain() {
        let text = ONE.replace(", registered_domain = \"example.com\"", "");
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("issuer.registered_domain"), "{err}");
    }

    #[test]
    fn duplicates_are_rejected() {
        let twice = format!("{ONE}{ONE}");
        let err = Inventory::from_toml_str(&twice).unwrap_err().to_string();
        assert!(err.contains("certificate[1]"), "{err}");
        assert!(err.contains("duplicate `id`"), "{err}");

        let same_ci = format!("{ONE}{}", ONE.replace("shop-www-prod", "shop-www-2"));
        let err = Inventory::from_toml_str(&same_ci).unwrap_err().to_string();
        assert!(err.contains("duplicate `ci`"), "{err}");
    }

    #[test]
    fn fallback_must_be_a_reference_not_a_key() {
        let text = ONE.replace(
            "\"keystore:fallback/shop-www\"",
            &format!(
                "\"-----BEGIN {k}-----\\nMIIE\\n-----END {k}-----\"",
                k = ["PRIVATE", "KEY"].join(" ")
            ),
        );
        let err = Inventory::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("fallback_cert"), "{err}");
        assert!(!err.contains("MIIE"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_and_bad_syntax_are_invalid_input() {
        let err = Inventory::from_toml_str("certs = []").unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains("certs"));
        assert_eq!(
            Inventory::from_toml_str("[[certificate]\n")
                .unwrap_err()
                .name(),
            "InvalidInput"
        );
    }

    #[test]
    fn itsm_environment_names_map_without_guessing() {
        assert_eq!(
            Environment::from_itsm("Production"),
            Some(Environment::Prod)
        );
        assert_eq!(Environment::from_itsm("dev"), Some(Environment::Dev));
        assert_eq!(Environment::from_itsm("prd"), None);
        assert_eq!(Environment::from_itsm(""), None);
    }
}
