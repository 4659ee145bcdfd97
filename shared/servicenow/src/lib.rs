//! certops's ITSM adapter for ServiceNow: incidents and change requests through the Table
//! API, changes opened and moved through the Change Management API (`sn_chg_rest`),
//! evidence through the Attachment API; Basic or OAuth 2 (`/oauth_token.do`) auth.
//!
//! The adapter is configured by the `[servicenow]` table of `integrations.toml`; secrets are
//! referenced, never written there:
//!
//! ```
//! use certops_core::integrations::Integrations;
//! use certops_servicenow::ServiceNowConfig;
//! let i = Integrations::from_toml_str(r#"
//! [servicenow]
//! instance_url = "https://example.service-now.com"
//! auth = "oauth-password"
//! username = "certops.integration"
//! password = "file:/etc/certops/servicenow.password"
//! client_id = "3f1c0f6e0a8c4a3e9d1b2c3d4e5f6a7b"
//! client_secret = "env:SERVICENOW_CLIENT_SECRET"
//! standard_change_template = "e55d0bfec343101035ae3f52c1d3ae49"
//! "#)?;
//! let cfg: ServiceNowConfig = i.section("servicenow")?.expect("present");
//! assert_eq!(cfg.timeout_seconds, 15);
//! # Ok::<(), certops_core::Error>(())
//! ```
//!
//! [`from_integrations`] builds the adapter when the table is present; both runtimes call it
//! (`Stack::with_adapters` on the embedded default, `shared/lambda` on AWS) and keep the
//! local ticket book when it is absent.

pub mod http;
pub mod itsm;
pub mod states;

use std::sync::Arc;
use std::time::Duration;

use certops_core::integrations::{Integrations, SecretRef, SecretResolver};
use certops_core::ports::Itsm;
use certops_core::Error;
use serde::Deserialize;

pub use http::{Credentials, Http, Limits};
pub use itsm::{Behaviour, ServiceNowItsm};
pub use states::StateMap;

/// The name of the integrations table this crate reads.
pub const SECTION: &str = "servicenow";

/// How the adapter authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// HTTP Basic: `username` + `password`.
    #[default]
    Basic,
    /// OAuth 2 password grant: `client_id` + `client_secret` + `username` + `password`.
    OauthPassword,
    /// OAuth 2 client-credentials grant: `client_id` + `client_secret`.
    OauthClientCredentials,
}

fn d_timeout() -> u64 {
    15
}
fn d_attempts() -> u32 {
    4
}
fn d_retry_after() -> u64 {
    60
}
fn d_backoff() -> u64 {
    250
}
fn d_incident_close() -> String {
    "Solution provided".into()
}
fn d_change_close() -> String {
    "successful".into()
}
fn d_close_notes() -> String {
    "Successful".into()
}

/// `[servicenow]` in `integrations.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowConfig {
    /// `https://<instance>.service-now.com` (plain `http` only for a loopback address).
    pub instance_url: String,
    /// Basic (default) or an OAuth 2 grant.
    #[serde(default)]
    pub auth: AuthKind,
    /// The integration user (Basic and the OAuth password grant).
    pub username: Option<String>,
    /// Its password, by reference.
    pub password: Option<SecretRef>,
    /// OAuth application registry client id.
    pub client_id: Option<String>,
    /// Its secret, by reference.
    pub client_secret: Option<SecretRef>,
    /// Per-request timeout, seconds.
    #[serde(default = "d_timeout")]
    pub timeout_seconds: u64,
    /// Attempts per call before a `Transient` error hands over to the state machine's Retry.
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
    /// The longest `Retry-After` waited for in place, seconds.
    #[serde(default = "d_retry_after")]
    pub max_retry_after_seconds: u64,
    /// First back-off step, milliseconds (doubled per attempt, jittered).
    #[serde(default = "d_backoff")]
    pub backoff_millis: u64,
    /// A standard change template's sys_id, used only for a standard change that names no
    /// template: pre-approved renewals name the policy's standard change, and the template
    /// of that name is looked up (see [`ServiceNowItsm::standard_template`]).
    pub standard_change_template: Option<String>,
    /// Incident resolution code.
    #[serde(default = "d_incident_close")]
    pub incident_close_code: String,
    /// Change close code.
    #[serde(default = "d_change_close")]
    pub change_close_code: String,
    /// Close notes.
    #[serde(default = "d_close_notes")]
    pub close_notes: String,
    /// State values where the instance differs from the base system.
    #[serde(default)]
    pub states: StateMap,
}

fn need<'a, T>(v: &'a Option<T>, what: &str) -> Result<&'a T, Error> {
    v.as_ref().ok_or_else(|| {
        Error::InvalidInput(format!(
            "integrations.toml [servicenow]: {what} is required"
        ))
    })
}

impl ServiceNowConfig {
    fn check_url(&self) -> Result<(), Error> {
        let u = self.instance_url.trim_end_matches('/');
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| u == *p || u.starts_with(&format!("{p}:")) || u.starts_with(&format!("{p}/")));
        if u.starts_with("https://") || loopback {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "integrations.toml [servicenow]: instance_url {u} must be https:// (credentials never travel in clear)"
            )))
        }
    }

    /// Resolves the credentials and builds the adapter.
    pub async fn build(&self, secrets: &dyn SecretResolver) -> Result<ServiceNowItsm, Error> {
        self.check_url()?;
        let credentials = match self.auth {
            AuthKind::Basic => Credentials::Basic {
                username: need(&self.username, "username")?.clone(),
                password: secrets.resolve(need(&self.password, "password")?).await?,
            },
            AuthKind::OauthPassword => Credentials::OAuthPassword {
                client_id: need(&self.client_id, "client_id")?.clone(),
                client_secret: secrets
                    .resolve(need(&self.client_secret, "client_secret")?)
                    .await?,
                username: need(&self.username, "username")?.clone(),
                password: secrets.resolve(need(&self.password, "password")?).await?,
            },
            AuthKind::OauthClientCredentials => Credentials::OAuthClientCredentials {
                client_id: need(&self.client_id, "client_id")?.clone(),
                client_secret: secrets
                    .resolve(need(&self.client_secret, "client_secret")?)
                    .await?,
            },
        };
        let limits = Limits {
            timeout: Duration::from_secs(self.timeout_seconds.max(1)),
            max_attempts: self.max_attempts.max(1),
            max_retry_after: Duration::from_secs(self.max_retry_after_seconds),
            backoff: Duration::from_millis(self.backoff_millis.max(1)),
        };
        let http = Http::new(&self.instance_url, credentials, limits)?;
        Ok(ServiceNowItsm::new(
            http,
            Behaviour {
                states: self.states.clone(),
                incident_close_code: self.incident_close_code.clone(),
                change_close_code: self.change_close_code.clone(),
                close_notes: self.close_notes.clone(),
                standard_change_template: self.standard_change_template.clone(),
                write_attempts: self.max_attempts.max(1),
                write_backoff: Duration::from_millis(self.backoff_millis.max(1)),
            },
        ))
    }
}

/// The ServiceNow adapter when `[servicenow]` is configured, else `None` (keep the
/// embedded ticket book).
pub async fn from_integrations(
    integrations: &Integrations,
    secrets: &dyn SecretResolver,
) -> Result<Option<Arc<dyn Itsm>>, Error> {
    match integrations.section::<ServiceNowConfig>(SECTION)? {
        None => Ok(None),
        Some(cfg) => {
            let itsm = cfg.build(secrets).await?;
            tracing::info!(instance = %cfg.instance_url, auth = ?cfg.auth, "ITSM: ServiceNow");
            Ok(Some(Arc::new(itsm)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<ServiceNowConfig, Error> {
        Integrations::from_toml_str(text)?
            .section::<ServiceNowConfig>(SECTION)
            .map(|c| c.expect("present"))
    }

    #[tokio::test]
    async fn credentials_travel_only_over_https_or_loopback() {
        let c = cfg("[servicenow]\ninstance_url = \"http://example.service-now.com\"\nusername = \"u\"\npassword = \"env:CERTOPS_SN_TEST_PW\"\n").unwrap();
        let e = c.build(&NoSecrets).await.unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
    }

    #[tokio::test]
    async fn missing_credentials_are_named() {
        let c = cfg("[servicenow]\ninstance_url = \"https://x.service-now.com\"\nauth = \"oauth-client-credentials\"\n").unwrap();
        let e = c.build(&NoSecrets).await.unwrap_err();
        assert!(e.to_string().contains("client_id"), "{e}");
        assert!(
            cfg("[servicenow]\ninstance_url = \"https://x\"\npassword = \"hunter2\"\n").is_err()
        );
        assert!(cfg("[servicenow]\ninstance_url = \"https://x\"\nsurprise = 1\n").is_err());
    }

    struct NoSecrets;
    #[async_trait::async_trait]
    impl SecretResolver for NoSecrets {
        async fn resolve(
            &self,
            reference: &SecretRef,
        ) -> Result<zeroize::Zeroizing<String>, Error> {
            Err(Error::InvalidInput(format!("secret {reference}: not set")))
        }
    }
}
