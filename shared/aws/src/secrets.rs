//! The [`Keystore`] port over AWS Secrets Manager.
//!
//! A bundle is one secret named `<prefix><name>` (prefix from `CERTOPS_KEYSTORE_PREFIX`,
//! default [`DEFAULT_PREFIX`]) whose string is the JSON `{"chain_pem": …, "key_pem": …}`.
//! Its reference is the secret's ARN. Storing under a name that exists puts a new version
//! of the same secret, so the reference (ARN) stays the same.
//!
//! Only secrets under the prefix are bundles: a reference to any other secret (the
//! token-sealing key, the webhook keys) is refused before it is read, so a tampered
//! reference cannot make a deploy load another secret.
//!
//! The private key is held in a [`SecretPem`] and nowhere else; the JSON text that carries
//! it to and from Secrets Manager is overwritten once used, and no error message quotes a
//! secret value (serde's messages, which can quote input, are replaced by their category
//! and position).

use async_trait::async_trait;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use certops_core::ports::{Bundle, Keystore, SecretPem};
use certops_core::Error;
use serde::{Deserialize, Serialize};

use crate::sdk_error::{sdk_failure, SdkFailure};

pub use aws_sdk_secretsmanager;

/// The name prefix used when `CERTOPS_KEYSTORE_PREFIX` is not set.
pub const DEFAULT_PREFIX: &str = "certops/bundles/";

/// Secrets Manager's longest secret name.
const MAX_NAME: usize = 512;

/// The secret's JSON. Deliberately no `Debug`; the key is overwritten on drop.
#[derive(Serialize, Deserialize)]
struct StoredBundle {
    chain_pem: String,
    key_pem: String,
}

impl Drop for StoredBundle {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.key_pem));
    }
}

/// Overwrites a string's bytes before its allocation is released.
fn wipe(mut text: String) {
    zeroize::Zeroize::zeroize(&mut text);
}

/// Certificate bundles in Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsKeystore {
    client: aws_sdk_secretsmanager::Client,
    prefix: String,
}

impl SecretsKeystore {
    /// A keystore keeping bundles under `prefix` (e.g. `certops/bundles/`).
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        prefix: impl Into<String>,
    ) -> SecretsKeystore {
        SecretsKeystore {
            client,
            prefix: prefix.into(),
        }
    }

    /// A keystore over `sdk` with the prefix from `CERTOPS_KEYSTORE_PREFIX` (default
    /// [`DEFAULT_PREFIX`]).
    pub fn from_env(sdk: &aws_config::SdkConfig) -> SecretsKeystore {
        let prefix = std::env::var("CERTOPS_KEYSTORE_PREFIX")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        SecretsKeystore::new(aws_sdk_secretsmanager::Client::new(sdk), prefix)
    }

    /// The Secrets Manager client.
    pub fn client(&self) -> &aws_sdk_secretsmanager::Client {
        &self.client
    }

    /// The name prefix of every bundle.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The secret name a bundle stored under `name` gets, after checking the name.
    pub fn secret_name(&self, name: &str) -> Result<String, Error> {
        let full = format!("{}{name}", self.prefix);
        let bad = |why: &str| {
            Err(Error::InvalidInput(format!(
                "keystore name \"{}\" is invalid: {why}",
                name.escape_default()
            )))
        };
        if name.is_empty() || full.len() > MAX_NAME {
            return bad(&format!(
                "must be 1 to {} characters after the prefix",
                MAX_NAME.saturating_sub(self.prefix.len())
            ));
        }
        if !name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '=' | '.' | '@' | '-')
        }) {
            return bad("only letters, digits and / _ + = . @ - are allowed");
        }
        Ok(full)
    }

    /// Checks that `reference` names a secret under the prefix: a secret ARN
    /// (`arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<6 chars>`).
    fn check_reference(&self, reference: &str) -> Result<(), Error> {
        let parts: Vec<&str> = reference.splitn(7, ':').collect();
        let name = match parts.as_slice() {
            ["arn", _, "secretsmanager", _, _, "secret", name_and_suffix] => {
                // Secrets Manager appends `-` and six random characters to the name.
                name_and_suffix
                    .rsplit_once('-')
                    .map(|(name, _)| name)
                    .unwrap_or(name_and_suffix)
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "keystore reference \"{}\" is not a Secrets Manager secret ARN",
                    reference.escape_default()
                )))
            }
        };
        if !name.starts_with(&self.prefix) {
            return Err(Error::InvalidInput(format!(
                "keystore reference {reference} is not a certops bundle (its name does not start with \"{}\")",
                self.prefix
            )));
        }
        Ok(())
    }
}

/// Reads a secret string as a bundle, overwriting the text afterwards. serde's message may
/// quote the input, so only its category and position are kept.
fn parse_bundle(reference: &str, text: String) -> Result<Bundle, Error> {
    let parsed: Result<StoredBundle, _> = serde_json::from_str(&text);
    wipe(text);
    let mut stored = parsed.map_err(|e| {
        Error::InvalidInput(format!(
            "bundle {reference} is not a certops bundle ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    Ok(Bundle {
        chain_pem: std::mem::take(&mut stored.chain_pem),
        key: SecretPem::new(std::mem::take(&mut stored.key_pem)),
    })
}

/// A Secrets Manager failure as a core error: throttling and network trouble are
/// transient, a missing secret or a refused request is the caller's input.
fn failure(what: &str, f: SdkFailure) -> Error {
    if f.transient {
        Error::Transient(format!("{what}: {}", f.detail))
    } else {
        Error::InvalidInput(format!("{what}: {}", f.detail))
    }
}

#[async_trait]
impl Keystore for SecretsKeystore {
    async fn put_bundle(&self, name: &str, bundle: Bundle) -> Result<String, Error> {
        let secret_name = self.secret_name(name)?;
        let stored = StoredBundle {
            chain_pem: bundle.chain_pem,
            key_pem: bundle.key.expose().to_string(),
        };
        drop(bundle.key);
        // Two strings always serialize; the error (which could quote them) is not kept.
        let text = serde_json::to_string(&stored)
            .map_err(|_| Error::InvalidInput(format!("bundle {name} not serializable")))?;
        drop(stored);
        let created = self
            .client
            .create_secret()
            .name(&secret_name)
            .description("certops certificate bundle (chain and private key)")
            .secret_string(text.as_str())
            .send()
            .await;
        let result = match created {
            Ok(out) => out.arn().map(str::to_string),
            Err(e) => {
                let f = sdk_failure(&e);
                if !f.is("ResourceExistsException") {
                    wipe(text);
                    return Err(failure(&format!("create secret {secret_name}"), f));
                }
                // Already there: a new version of the same secret keeps its ARN.
                let put = self
                    .client
                    .put_secret_value()
                    .secret_id(&secret_name)
                    .secret_string(text.as_str())
                    .send()
                    .await;
                match put {
                    Ok(out) => out.arn().map(str::to_string),
                    Err(e) => {
                        wipe(text);
                        return Err(failure(
                            &format!("put a new version of secret {secret_name}"),
                            sdk_failure(&e),
                        ));
                    }
                }
            }
        };
        wipe(text);
        let arn = result.ok_or_else(|| {
            Error::Transient(format!("Secrets Manager returned no ARN for {secret_name}"))
        })?;
        tracing::info!(bundle = %arn, "bundle stored in Secrets Manager");
        Ok(arn)
    }

    async fn get_bundle(&self, reference: &str) -> Result<Bundle, Error> {
        self.check_reference(reference)?;
        let mut out = match self
            .client
            .get_secret_value()
            .secret_id(reference)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let f = sdk_failure(&e);
                return Err(if f.is("ResourceNotFoundException") {
                    Error::InvalidInput(format!("no bundle stored under {reference}"))
                } else {
                    failure(&format!("read bundle {reference}"), f)
                });
            }
        };
        let Some(text) = out.secret_string.take() else {
            return Err(Error::InvalidInput(format!(
                "bundle {reference} has no secret string"
            )));
        };
        parse_bundle(reference, text)
    }

    async fn exists(&self, reference: &str) -> Result<bool, Error> {
        self.check_reference(reference)?;
        match self
            .client
            .describe_secret()
            .secret_id(reference)
            .send()
            .await
        {
            // A secret scheduled for deletion can no longer be read: not a usable bundle.
            Ok(out) => Ok(out.deleted_date().is_none()),
            Err(e) => {
                let f = sdk_failure(&e);
                if f.is("ResourceNotFoundException") {
                    Ok(false)
                } else {
                    Err(failure(&format!("describe bundle {reference}"), f))
                }
            }
        }
    }

    async fn references(&self) -> Result<Vec<String>, Error> {
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(&self.prefix)
            .build();
        let mut pages = self
            .client
            .list_secrets()
            .filters(filter)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure("list bundles", sdk_failure(&e)))?;
            for entry in page.secret_list() {
                // The service's name filter is a prefix match that ignores case; the
                // prefix itself is case-sensitive here.
                let under_prefix = entry.name().is_some_and(|n| n.starts_with(&self.prefix));
                if let (true, None, Some(arn)) = (under_prefix, entry.deleted_date(), entry.arn()) {
                    out.push(arn.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keystore() -> SecretsKeystore {
        let conf = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .build();
        SecretsKeystore::new(
            aws_sdk_secretsmanager::Client::from_conf(conf),
            DEFAULT_PREFIX,
        )
    }

    #[test]
    fn names_are_checked_and_prefixed() {
        let ks = keystore();
        assert_eq!(
            ks.secret_name("shop-www/2026-12").unwrap(),
            "certops/bundles/shop-www/2026-12"
        );
        for bad in ["", "a b", "ä", "x\"y", &"n".repeat(600)] {
            assert_eq!(ks.secret_name(bad).unwrap_err().name(), "InvalidInput");
        }
    }

    #[test]
    fn only_secret_arns_under_the_prefix_are_bundle_references() {
        let ks = keystore();
        let ok = "arn:aws:secretsmanager:us-east-1:123456789012:secret:certops/bundles/shop-www/v1-AbC123";
        ks.check_reference(ok).unwrap();
        for bad in [
            "keystore:shop-www/v1",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:certops/sealing-key-AbC123",
            "arn:aws:acm:us-east-1:123456789012:certificate/abc",
            "",
        ] {
            assert_eq!(
                ks.check_reference(bad).unwrap_err().name(),
                "InvalidInput",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_malformed_secret_is_reported_without_its_content() {
        let leaked = "c2VjcmV0LWtleS1ieXRlcw";
        let direct: Result<StoredBundle, _> = serde_json::from_str(&format!("\"{leaked}\""));
        assert!(
            direct.err().unwrap().to_string().contains(leaked),
            "serde quotes its input, which is why its message is not kept"
        );
        for text in [
            format!("\"{leaked}\""),
            format!("{{\"chain_pem\": 1, \"key_pem\": \"{leaked}\"}}"),
            format!("{{\"chain_pem\": \"{leaked}\"}}"),
            leaked.to_string(),
        ] {
            let err = parse_bundle("ref", text).err().unwrap();
            assert_eq!(err.name(), "InvalidInput");
            assert!(!err.to_string().contains(leaked), "{err}");
        }
        let ok = parse_bundle(
            "ref",
            format!("{{\"chain_pem\": \"C\", \"key_pem\": \"{leaked}\"}}"),
        )
        .unwrap();
        assert_eq!(ok.key.expose(), leaked);
        assert!(!format!("{:?}", ok.key).contains(leaked));
    }
}
