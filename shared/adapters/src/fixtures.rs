//! The policy the demo, the benchmarks and the tests run under: change windows that never
//! close (so a run does not depend on the day or hour it runs), one ECAB member and the
//! ACME budget, each part adjustable. One text instead of a copy per caller. Beside it,
//! [`LocalCertificate`]: the one-certificate inventory the handler tests, the renewal
//! benchmark and the test harness renew on a local endpoint.
//!
//! ```
//! let text = certops_adapters::fixtures::OpenPolicy::new("test-1")
//!     .windows(&["prod", "staging"])
//!     .fast_verify()
//!     .toml();
//! let policy = certops_core::Policy::from_toml_str(&text).unwrap();
//! assert_eq!(policy.version, "test-1");
//! ```

/// A window open every minute of every day.
pub const ALWAYS_OPEN: &str = r#"timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "23:59""#;

/// A policy whose change windows are always open; see the module docs.
#[derive(Debug, Clone)]
pub struct OpenPolicy {
    version: String,
    windows: Vec<String>,
    prod_window: Option<String>,
    ecab: Vec<String>,
    timeouts_minutes: (u32, u32, u32),
    fast_verify: Option<u32>,
    nonprod_standard_change: bool,
}

impl OpenPolicy {
    /// A policy named `version` with an always-open `prod` window, ECAB `erin@example.com`,
    /// approval timeouts of 60 (standard), 1440 (normal) and 30 (emergency) minutes, the
    /// policy's default verification schedule and an ACME budget of 50 a week, 10 kept back.
    pub fn new(version: &str) -> OpenPolicy {
        OpenPolicy {
            version: version.into(),
            windows: vec!["prod".into()],
            prod_window: None,
            ecab: vec!["erin@example.com".into()],
            timeouts_minutes: (60, 1440, 30),
            fast_verify: None,
            nonprod_standard_change: false,
        }
    }

    /// The environments with an always-open window.
    pub fn windows(mut self, environments: &[&str]) -> OpenPolicy {
        self.windows = environments.iter().map(|e| e.to_string()).collect();
        self
    }

    /// The prod window's TOML body instead of always open (tests of closed windows).
    pub fn prod_window(mut self, toml: &str) -> OpenPolicy {
        self.prod_window = Some(toml.into());
        self
    }

    /// The emergency change advisory board.
    pub fn ecab(mut self, members: &[&str]) -> OpenPolicy {
        self.ecab = members.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Approval timeouts in minutes: standard, normal, emergency.
    pub fn timeouts(mut self, standard: u32, normal: u32, emergency: u32) -> OpenPolicy {
        self.timeouts_minutes = (standard, normal, emergency);
        self
    }

    /// Verification every second, three attempts: in-process endpoints switch certificates
    /// at once, so a rollback is found in seconds rather than the production minutes.
    pub fn fast_verify(mut self) -> OpenPolicy {
        self.fast_verify = Some(3);
        self
    }

    /// [`OpenPolicy::fast_verify`] with `attempts` verifications instead of three.
    pub fn fast_verify_attempts(mut self, attempts: u32) -> OpenPolicy {
        self.fast_verify = Some(attempts);
        self
    }

    /// A standard change covering renewals outside production (staging and dev, ACME and
    /// internal PKI, the fallback included).
    pub fn nonprod_standard_change(mut self) -> OpenPolicy {
        self.nonprod_standard_change = true;
        self
    }

    /// The policy's TOML text.
    pub fn toml(&self) -> String {
        let mut out = format!(
            "version = \"{}\"\n\n[renewal]\nplanned_threshold_days = 30\nemergency_threshold_hours = 24\n",
            self.version
        );
        for env in &self.windows {
            let body = match (&self.prod_window, env.as_str()) {
                (Some(w), "prod") => w.as_str(),
                _ => ALWAYS_OPEN,
            };
            out.push_str(&format!("\n[windows.{env}]\n{body}\n"));
        }
        let (standard, normal, emergency) = self.timeouts_minutes;
        let ecab: Vec<String> = self.ecab.iter().map(|m| format!("\"{m}\"")).collect();
        out.push_str(&format!(
            "\n[approval]\necab = [{}]\ntimeouts = {{ standard_minutes = {standard}, normal_minutes = {normal}, emergency_minutes = {emergency} }}\n",
            ecab.join(", ")
        ));
        if let Some(attempts) = self.fast_verify {
            out.push_str(&format!(
                "\n[verify]\ninterval_seconds = 1\nmax_attempts = {attempts}\nbackoff_percent = 100\nmax_interval_seconds = 1\n"
            ));
        }
        if self.nonprod_standard_change {
            out.push_str(
                "\n[[standard_changes]]\nname = \"STD-CERT-NONPROD: certificate renewal outside production\"\nenvironments = [\"staging\", \"dev\"]\nmethods = [\"acme\", \"internal-pki\"]\ncovers_fallback = true\n",
            );
        }
        out.push_str(
            "\n[acme]\ncertificates_per_registered_domain_per_week = 50\nsafety_margin = 10\n",
        );
        out
    }
}

/// One certificate of the internal PKI, deployed to a local target with a hot swap and
/// served on a loopback endpoint: the inventory entry a test or benchmark renews.
///
/// ```
/// let text = certops_adapters::fixtures::LocalCertificate::new("shop-web", "shop.example.com", 8443)
///     .fallback("fallback/shop")
///     .toml();
/// let inventory = certops_core::Inventory::from_toml_str(&text).unwrap();
/// assert_eq!(inventory.certificates.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct LocalCertificate {
    id: String,
    common_name: String,
    port: u16,
    environment: certops_core::Environment,
    owner: String,
    oncall: String,
    target: String,
    fallback: Option<String>,
    cdn: Option<String>,
}

impl LocalCertificate {
    /// Certificate `id` (also its CI) for `common_name`, served on `127.0.0.1:port`: in
    /// `prod`, owned by `olivia@example.com` (who is also a change authority, beside
    /// `cab-alice@example.com`), escalated to `oncall-shop@example.com`, deployed to the
    /// local target `lb-shop`, with no fallback and no CDN.
    pub fn new(id: &str, common_name: &str, port: u16) -> LocalCertificate {
        LocalCertificate {
            id: id.into(),
            common_name: common_name.into(),
            port,
            environment: certops_core::Environment::Prod,
            owner: "olivia@example.com".into(),
            oncall: "oncall-shop@example.com".into(),
            target: "lb-shop".into(),
            fallback: None,
            cdn: None,
        }
    }

    /// The environment the inventory names.
    pub fn environment(mut self, environment: certops_core::Environment) -> LocalCertificate {
        self.environment = environment;
        self
    }

    /// The service owner, who is also the first change authority.
    pub fn owner(mut self, owner: &str) -> LocalCertificate {
        self.owner = owner.into();
        self
    }

    /// The on-call address escalations go to.
    pub fn oncall(mut self, oncall: &str) -> LocalCertificate {
        self.oncall = oncall.into();
        self
    }

    /// The local deploy target's id.
    pub fn target(mut self, target: &str) -> LocalCertificate {
        self.target = target.into();
        self
    }

    /// The keystore reference of the fallback certificate.
    pub fn fallback(mut self, reference: &str) -> LocalCertificate {
        self.fallback = Some(reference.into());
        self
    }

    /// A local CDN distribution purged of `/*` after the deploy.
    pub fn cdn(mut self, distribution: &str) -> LocalCertificate {
        self.cdn = Some(distribution.into());
        self
    }

    /// The inventory's TOML text.
    pub fn toml(&self) -> String {
        let LocalCertificate {
            id,
            common_name: cn,
            port,
            environment,
            owner,
            oncall,
            target,
            fallback,
            cdn,
        } = self;
        let mut out = format!(
            "[[certificate]]\nid = \"{id}\"\nci = \"{id}\"\ncommon_name = \"{cn}\"\nenvironment = \"{environment}\"\nservice_owner = \"{owner}\"\nescalation = [\"{oncall}\"]\nchange_authority = [\"{owner}\", \"cab-alice@example.com\"]\n"
        );
        if let Some(reference) = fallback {
            out.push_str(&format!("fallback_cert = \"{reference}\"\n"));
        }
        out.push_str(&format!(
            "issuer = {{ name = \"corp-pki\", method = \"internal-pki\" }}\ntargets = [{{ kind = \"local\", id = \"{target}\", reload = \"hot-swap\" }}]\nendpoints = [{{ host = \"127.0.0.1\", port = {port}, sni = \"{cn}\" }}]\n"
        ));
        if let Some(distribution) = cdn {
            out.push_str(&format!(
                "cdn = {{ kind = \"local\", distribution_id = \"{distribution}\", paths = [\"/*\"] }}\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_parses_into_the_policy_it_names() {
        let text = OpenPolicy::new("v-9")
            .windows(&["prod", "staging"])
            .ecab(&["a@example.com", "b@example.com"])
            .timeouts(1, 2, 3)
            .fast_verify()
            .nonprod_standard_change()
            .toml();
        let p = certops_core::Policy::from_toml_str(&text).expect("parses");
        assert_eq!(p.version, "v-9");
        assert_eq!(p.windows.len(), 2, "{text}");
        assert_eq!(p.approval.ecab.len(), 2);
        assert_eq!(p.verify.max_attempts, 3);
        assert_eq!(p.standard_changes.len(), 1);
        assert_eq!(p.acme.certificates_per_registered_domain_per_week, 50);
    }

    #[test]
    fn a_prod_window_override_replaces_only_prod() {
        let closed = "timezone = \"UTC\"\ndays = [\"sat\"]\nstart = \"01:00\"\nend = \"02:00\"";
        let text = OpenPolicy::new("v")
            .windows(&["prod", "dev"])
            .prod_window(closed)
            .toml();
        assert!(text.contains("days = [\"sat\"]"), "{text}");
        assert_eq!(text.matches(ALWAYS_OPEN).count(), 1, "{text}");
        certops_core::Policy::from_toml_str(&text).expect("parses");
    }

    #[test]
    fn a_local_certificate_parses_with_every_option() {
        let text = LocalCertificate::new("api", "api.example.com", 9443)
            .environment(certops_core::Environment::Dev)
            .owner("sam@example.com")
            .oncall("oncall-api@example.com")
            .target("lb-api")
            .fallback("fallback/api")
            .cdn("api-cdn")
            .toml();
        let inventory = certops_core::Inventory::from_toml_str(&text).expect("parses");
        let cert = &inventory.certificates[0];
        assert_eq!(cert.id, "api");
        assert_eq!(cert.environment, certops_core::Environment::Dev);
        assert_eq!(cert.service_owner.as_deref(), Some("sam@example.com"));
        assert_eq!(cert.change_authority[0], "sam@example.com");
        assert_eq!(cert.escalation, vec!["oncall-api@example.com".to_string()]);
        assert_eq!(cert.fallback_cert.as_deref(), Some("fallback/api"));
        assert_eq!(cert.targets[0].id, "lb-api");
        assert_eq!(cert.endpoints[0].port, 9443);
        assert!(cert.cdn.is_some(), "{text}");
    }
}
