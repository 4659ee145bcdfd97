//! The execution plan: exactly what will run, serialised canonically and hashed.
//!
//! The hash of the plan is what an approver approves. Every executing step rebuilds or
//! receives the plan, recomputes the hash and refuses to act on drift.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::canonical::{sha256_hex, to_canonical_string};
use crate::inventory::{Cdn, CertObject, Endpoint, Environment, Inventory, Issuer, Target};
use crate::policy::ApprovalPath;
use crate::runbook::RunbookRef;
use crate::validation::ValidationReport;
use crate::Error;

/// Everything an execution will do, bound to one runbook version and one certificate object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The runbook that will run (id, version, content hash).
    pub runbook: RunbookRef,
    /// The policy version that validated it.
    pub policy_version: String,
    /// The certificate object id.
    pub cert_id: String,
    /// The CI the trigger named.
    pub ci: String,
    /// The environment.
    pub environment: Environment,
    /// Subject common name.
    pub common_name: String,
    /// Subject alternative names, sorted.
    pub sans: BTreeSet<String>,
    /// Issuer path (name, method, registered domain).
    pub issuer: Issuer,
    /// Termination points, in deploy order.
    pub targets: Vec<Target>,
    /// CDN to purge, if any.
    pub cdn: Option<Cdn>,
    /// Endpoints to verify.
    pub endpoints: Vec<Endpoint>,
    /// The triggering ticket number, if any.
    pub ticket: Option<String>,
    /// The change request number, once raised.
    pub change: Option<String>,
    /// The approval path validation decided.
    pub approval_path: ApprovalPath,
    /// Whether the fallback certificate is installed instead of a renewed one.
    pub use_fallback: bool,
    /// The fallback certificate's keystore reference (a reference, never a key).
    pub fallback_cert: Option<String>,
    /// SHA-256 of the canonical JSON of each real target's / CDN's connection table
    /// (`target:<id>` / `cdn:<distribution_id>` → hex), so a changed socket, path, pid file,
    /// command or purge endpoint after approval is drift. Absent when no target or CDN of the
    /// plan has a connection table (the hash of such plans is unchanged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connections: BTreeMap<String, String>,
    /// The key type the renewal must have, when validation fixed one (the inventory's, or the
    /// one a re-import target holds). Absent: the renew step's default, and the hash of such
    /// plans is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<crate::KeyType>,
}

impl Plan {
    /// Builds the plan for `cert` from a validation report that is not blocked. Every target,
    /// endpoint and CDN property comes from the inventory entry.
    ///
    /// Fails with [`Error::Blocked`] if the report is blocked and [`Error::InvalidInput`] if
    /// the report is about another certificate object.
    pub fn build(
        runbook: RunbookRef,
        cert: &CertObject,
        report: &ValidationReport,
        ticket: Option<&str>,
        change: Option<&str>,
    ) -> Result<Plan, Error> {
        let report = report.clone().into_result()?;
        if report.cert_id.as_deref() != Some(cert.id.as_str()) {
            return Err(Error::InvalidInput(format!(
                "validation report is for {:?}, not \"{}\"",
                report.cert_id, cert.id
            )));
        }
        Ok(Plan {
            runbook,
            policy_version: report.policy_version,
            cert_id: cert.id.clone(),
            ci: cert.ci.clone(),
            environment: cert.environment,
            common_name: cert.common_name.clone(),
            sans: cert.sans.clone(),
            issuer: cert.issuer.clone(),
            targets: cert.targets.clone(),
            cdn: cert.cdn.clone(),
            endpoints: cert.endpoints.clone(),
            ticket: ticket.map(str::to_string),
            change: change.map(str::to_string),
            approval_path: report.approval_path,
            use_fallback: report.use_fallback,
            fallback_cert: cert.fallback_cert.clone(),
            connections: BTreeMap::new(),
            key_type: report.key_type,
        })
    }

    /// Binds the plan to how certops reaches its targets and CDN: the digest of each
    /// connection table `inventory` holds for them ([`Plan::connections`]). Every place that
    /// builds a plan from an inventory calls this, so approval covers the connections too.
    pub fn with_connections(mut self, inventory: &Inventory) -> Plan {
        let digest = |value: serde_json::Result<serde_json::Value>| {
            let value = value.unwrap_or(serde_json::Value::Null);
            sha256_hex(to_canonical_string(&value).as_bytes())
        };
        let mut connections = BTreeMap::new();
        for target in &self.targets {
            if let Some(c) = inventory.connections.get(&target.id) {
                connections.insert(
                    format!("target:{}", target.id),
                    digest(serde_json::to_value(c)),
                );
            }
        }
        if let Some(cdn) = &self.cdn {
            if let Some(c) = inventory.cdn_connections.get(&cdn.distribution_id) {
                connections.insert(
                    format!("cdn:{}", cdn.distribution_id),
                    digest(serde_json::to_value(c)),
                );
            }
        }
        self.connections = connections;
        self
    }

    /// The canonical JSON text of the plan (sorted keys, compact).
    pub fn canonical_json(&self) -> String {
        // A `Plan` has only string map keys and no floats, so it always converts to JSON;
        // the `Null` arm exists only to avoid a panic path.
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        to_canonical_string(&value)
    }

    /// Lowercase hex SHA-256 of [`Plan::canonical_json`]: the value an approver approves.
    pub fn hash(&self) -> String {
        sha256_hex(self.canonical_json().as_bytes())
    }
}

/// `Ok` if `plan` hashes to `approved_hash`, else [`Error::PlanDrift`].
pub fn verify_plan_hash(plan: &Plan, approved_hash: &str) -> Result<(), Error> {
    let actual = plan.hash();
    if actual == approved_hash.trim().to_ascii_lowercase() {
        Ok(())
    } else {
        Err(Error::PlanDrift {
            expected: approved_hash.to_string(),
            actual,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inventory::{CdnKind, ReloadMethod, RenewalMethod, TargetKind};
    use serde_json::{Map, Value};

    pub(crate) fn sample_plan() -> Plan {
        Plan {
            runbook: RunbookRef {
                id: "cert-renewal".into(),
                version: "1.0.0".into(),
                sha256: "ab".repeat(32),
            },
            policy_version: "2026.12.1".into(),
            cert_id: "shop-www-prod".into(),
            ci: "shop-web-prod".into(),
            environment: Environment::Prod,
            common_name: "www.shop.example.com".into(),
            sans: ["www.shop.example.com", "shop.example.com"]
                .into_iter()
                .map(String::from)
                .collect(),
            issuer: Issuer {
                name: "letsencrypt".into(),
                method: RenewalMethod::Acme,
                registered_domain: Some("example.com".into()),
            },
            targets: vec![Target {
                kind: TargetKind::Nginx,
                id: "web-01".into(),
                reload: ReloadMethod::NginxReload,
            }],
            cdn: Some(Cdn {
                kind: CdnKind::Cloudfront,
                distribution_id: "E2QWRUHAPOMQZL".into(),
                paths: vec!["/*".into()],
            }),
            endpoints: vec![Endpoint {
                host: "www.shop.example.com".into(),
                port: 443,
                sni: "www.shop.example.com".into(),
            }],
            ticket: Some("INC0012345".into()),
            change: Some("CHG0034567".into()),
            approval_path: ApprovalPath::Normal,
            use_fallback: false,
            fallback_cert: Some("keystore:fallback/shop-www".into()),
            connections: BTreeMap::new(),
            key_type: None,
        }
    }

    fn reverse_keys(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map.iter().rev() {
                    out.insert(k.clone(), reverse_keys(v));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(reverse_keys).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn plan_hash_is_stable_across_key_order() {
        let plan = sample_plan();
        let reordered_json = reverse_keys(&serde_json::to_value(&plan).unwrap()).to_string();
        assert_ne!(reordered_json, serde_json::to_string(&plan).unwrap());
        let reparsed: Plan = serde_json::from_str(&reordered_json).unwrap();
        assert_eq!(reparsed.hash(), plan.hash());
        assert_eq!(plan.hash().len(), 64);
        assert!(plan
            .hash()
            .chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    }

    #[test]
    fn canonical_json_has_sorted_keys_and_no_whitespace() {
        let json = sample_plan().canonical_json();
        assert!(
            json.starts_with(r#"{"approval_path":"normal","cdn":{"distribution_id""#),
            "{json}"
        );
        assert!(!json.contains(": ") && !json.contains('\n'));
    }

    #[test]
    fn san_order_does_not_matter_but_a_san_change_does() {
        let plan = sample_plan();
        let mut same = plan.clone();
        same.sans = ["shop.example.com", "www.shop.example.com"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(same.hash(), plan.hash());

        let mut changed = plan.clone();
        changed.sans.insert("api.shop.example.com".into());
        assert_ne!(changed.hash(), plan.hash());
    }

    #[test]
    fn any_bound_field_changes_the_hash() {
        let plan = sample_plan();
        let mut other = plan.clone();
        other.targets[0].id = "web-02".into();
        assert_ne!(other.hash(), plan.hash());
        let mut other = plan.clone();
        other.runbook.version = "1.0.1".into();
        assert_ne!(other.hash(), plan.hash());
        let mut other = plan.clone();
        other.change = Some("CHG0000001".into());
        assert_ne!(other.hash(), plan.hash());
    }

    #[test]
    fn verify_plan_hash_refuses_drift_naming_both_hashes() {
        let plan = sample_plan();
        assert_eq!(verify_plan_hash(&plan, &plan.hash()), Ok(()));
        assert_eq!(verify_plan_hash(&plan, &plan.hash().to_uppercase()), Ok(()));
        let mut drifted = plan.clone();
        drifted.use_fallback = true;
        match verify_plan_hash(&drifted, &plan.hash()) {
            Err(Error::PlanDrift { expected, actual }) => {
                assert_eq!(expected, plan.hash());
                assert_eq!(actual, drifted.hash());
            }
            other => panic!("expected PlanDrift, got {other:?}"),
        }
    }

    #[test]
    fn plan_json_refuses_unknown_fields() {
        let mut value = serde_json::to_value(sample_plan()).unwrap();
        value["extra_target"] = Value::String("evil.example.com".into());
        assert!(serde_json::from_value::<Plan>(value).is_err());
    }

    fn inventory_with(socket: &str, pid_file: &str, varnish: &str) -> Inventory {
        Inventory::from_toml_str(&format!(
            r#"
[[certificate]]
id = "shop-www-prod"
ci = "shop-web-prod"
common_name = "www.shop.example.com"
environment = "prod"
issuer = {{ name = "corp-pki", method = "internal-pki" }}
targets = [
  {{ kind = "nginx", id = "web-01", reload = "nginx-reload" }},
  {{ kind = "haproxy", id = "lb-01", reload = "haproxy-runtime-api" }},
]
cdn = {{ kind = "varnish", distribution_id = "varnish-1", paths = ["/*"] }}
endpoints = [{{ host = "www.shop.example.com", sni = "www.shop.example.com" }}]

[target."web-01"]
kind = "nginx"
cert_path = "/etc/nginx/tls/shop.crt"
key_path = "/etc/nginx/tls/shop.key"
pid_file = "{pid_file}"

[target."lb-01"]
kind = "haproxy"
socket = "{socket}"
cert_path = "/etc/haproxy/certs/shop.pem"

[cdn."varnish-1"]
kind = "varnish"
http = "{varnish}"
"#
        ))
        .unwrap()
    }

    fn bound_plan(inventory: &Inventory) -> Plan {
        let mut plan = sample_plan();
        plan.targets.push(Target {
            kind: TargetKind::Haproxy,
            id: "lb-01".into(),
            reload: ReloadMethod::HaproxyRuntimeApi,
        });
        plan.cdn = Some(Cdn {
            kind: CdnKind::Varnish,
            distribution_id: "varnish-1".into(),
            paths: vec!["/*".into()],
        });
        plan.with_connections(inventory)
    }

    #[test]
    fn a_changed_connection_table_after_approval_is_drift() {
        let approved = bound_plan(&inventory_with(
            "unix:/run/haproxy/admin.sock",
            "/run/nginx.pid",
            "http://127.0.0.1:6081",
        ));
        assert_eq!(approved.connections.len(), 3, "{:?}", approved.connections);
        assert!(approved.connections.contains_key("target:web-01"));
        assert!(approved.connections.contains_key("target:lb-01"));
        assert!(approved.connections.contains_key("cdn:varnish-1"));
        let approved_hash = approved.hash();
        // The same inventory rebuilds the same plan.
        let same = bound_plan(&inventory_with(
            "unix:/run/haproxy/admin.sock",
            "/run/nginx.pid",
            "http://127.0.0.1:6081",
        ));
        assert_eq!(verify_plan_hash(&same, &approved_hash), Ok(()));
        // Another socket, pid file or purge listener after approval: drift.
        for inventory in [
            inventory_with(
                "unix:/tmp/evil.sock",
                "/run/nginx.pid",
                "http://127.0.0.1:6081",
            ),
            inventory_with(
                "unix:/run/haproxy/admin.sock",
                "/tmp/other.pid",
                "http://127.0.0.1:6081",
            ),
            inventory_with(
                "unix:/run/haproxy/admin.sock",
                "/run/nginx.pid",
                "http://127.0.0.1:7081",
            ),
        ] {
            let drifted = bound_plan(&inventory);
            assert!(
                matches!(
                    verify_plan_hash(&drifted, &approved_hash),
                    Err(Error::PlanDrift { .. })
                ),
                "{:?}",
                drifted.connections
            );
        }
    }

    #[test]
    fn plans_without_connection_tables_hash_as_before() {
        let plan = sample_plan();
        let bound = plan
            .clone()
            .with_connections(&Inventory::from_toml_str("").unwrap());
        assert!(bound.connections.is_empty());
        assert_eq!(bound.hash(), plan.hash());
        assert!(!plan.canonical_json().contains("connections"));
    }
}
