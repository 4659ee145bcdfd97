//! `integrations.toml`: which real adapters back the ports, on both runtimes.
//!
//! The file sits beside the inventory and policy (`<config-dir>/integrations.toml`). It is
//! optional: without it every port keeps its embedded adapter (the local ticket book, the
//! chat inbox, the local CA, …), so `certops demo` needs nothing. Each integration owns one
//! top-level table and deserializes it into its own typed configuration through
//! [`Integrations::section`]:
//!
//! ```toml
//! [servicenow]            # the Itsm port
//! instance_url = "https://example.service-now.com"
//! password = "file:/etc/certops/servicenow.secret"
//!
//! [issuers.letsencrypt]   # an Issuer, named as the inventory names it
//! kind = "acme"
//! ```
//!
//! Secrets are never written here, only referenced ([`SecretRef`]): `env:NAME`,
//! `file:/path` (a file only its owner may read) or a Secrets Manager ARN.
//!
//! ```
//! use certops_core::integrations::{Integrations, SecretRef};
//! #[derive(serde::Deserialize)]
//! struct Example { url: String, token: SecretRef }
//! let i = Integrations::from_toml_str("[example]\nurl = \"https://x\"\ntoken = \"env:TOKEN\"\n")?;
//! let e: Example = i.section("example")?.expect("present");
//! assert_eq!(e.token, SecretRef::Env("TOKEN".into()));
//! assert!(i.section::<Example>("absent")?.is_none());
//! # Ok::<(), certops_core::Error>(())
//! ```

use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The parsed `integrations.toml`: one table per integration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Integrations {
    table: toml::Table,
}

impl Integrations {
    /// No integrations: every port keeps its embedded adapter.
    pub fn none() -> Integrations {
        Integrations::default()
    }

    /// Parses the file's text.
    pub fn from_toml_str(text: &str) -> Result<Integrations, Error> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| Error::Misconfigured(format!("integrations.toml: {e}")))?;
        Ok(Integrations { table })
    }

    /// The names of the tables present, for start-up logs and error messages.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.table.keys().map(String::as_str)
    }

    /// Whether a table is present.
    pub fn has(&self, name: &str) -> bool {
        self.table.contains_key(name)
    }

    /// Deserializes the table `name` into `T`; `Ok(None)` when the table is absent. An
    /// ill-formed table is an error naming it, never ignored.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        match self.table.get(name) {
            None => Ok(None),
            Some(v) => v
                .clone()
                .try_into()
                .map(Some)
                .map_err(|e| Error::Misconfigured(format!("integrations.toml [{name}]: {e}"))),
        }
    }
}

/// Where a secret lives. The reference is configuration; the secret itself is read only
/// by a [`SecretResolver`] at the moment it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// `env:NAME`: the environment variable `NAME`.
    Env(String),
    /// `file:/path`: a file that only its owner may read (mode 0600 or stricter).
    File(PathBuf),
    /// `arn:aws:secretsmanager:…`: a Secrets Manager secret (AWS backend).
    SecretsManager(String),
}

impl SecretRef {
    /// Parses `env:NAME`, `file:/path` or a Secrets Manager ARN.
    pub fn parse(s: &str) -> Result<SecretRef, Error> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() {
                return Err(Error::Misconfigured(
                    "secret reference env: names no variable".into(),
                ));
            }
            return Ok(SecretRef::Env(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(Error::Misconfigured(format!(
                    "secret reference file:{} must be an absolute path",
                    path.display()
                )));
            }
            return Ok(SecretRef::File(path));
        }
        if s.starts_with("arn:") && s.contains(":secretsmanager:") {
            return Ok(SecretRef::SecretsManager(s.to_string()));
        }
        Err(Error::Misconfigured(
            "a secret reference is env:NAME, file:/absolute/path or a Secrets Manager ARN \
             (secrets themselves never go in configuration)"
                .into(),
        ))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::SecretsManager(arn) => f.write_str(arn),
        }
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SecretRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Reads the secret a [`SecretRef`] names. The embedded resolver reads `env:` and `file:`;
/// the AWS one adds Secrets Manager ARNs. Values are wiped when dropped.
#[async_trait]
pub trait SecretResolver: Send + Sync {
    /// The secret's value. A missing or unreadable secret is [`Error::Misconfigured`]
    /// naming the reference, never the value.
    async fn resolve(&self, reference: &SecretRef) -> Result<zeroize::Zeroizing<String>, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_refs_parse_and_print_back() {
        for s in [
            "env:SN_PASSWORD",
            "file:/etc/certops/sn.secret",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:certops/sn-AbCdEf",
        ] {
            assert_eq!(SecretRef::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn secret_refs_refuse_values_and_relative_paths() {
        for s in [
            "hunter2",
            "env:",
            "file:relative/path",
            "arn:aws:s3:::bucket",
        ] {
            assert!(SecretRef::parse(s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn a_bad_section_names_itself() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct S {
            port: u16,
        }
        let i = Integrations::from_toml_str("[x]\nport = \"no\"\n").unwrap();
        let e = i.section::<S>("x").unwrap_err().to_string();
        assert!(e.contains("[x]"), "{e}");
    }
}
