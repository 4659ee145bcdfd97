//! [`AwsSecrets`]: the [`SecretResolver`] of the AWS backend. A Secrets Manager ARN is read
//! with `GetSecretValue` (its `SecretString`; `<arn>#<key>` takes one key of a JSON secret);
//! `env:NAME` reads the function's environment.
//! `file:` references are refused here: a Lambda has no operator-managed files.
//! Values are returned in [`Zeroizing`] strings; errors name the reference, never the value.
//! Each secret is read once per resolver (a Lambda sandbox keeps one) and kept, wiped on drop.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use certops_core::integrations::{SecretRef, SecretResolver};
use certops_core::Error;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::sdk_error::sdk_failure;

/// Resolves secret references on AWS.
#[derive(Clone)]
pub struct AwsSecrets {
    client: aws_sdk_secretsmanager::Client,
    read: Arc<Mutex<HashMap<String, Zeroizing<String>>>>,
}

impl std::fmt::Debug for AwsSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsSecrets")
    }
}

impl AwsSecrets {
    /// A resolver over a Secrets Manager client.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> AwsSecrets {
        AwsSecrets {
            client,
            read: Arc::default(),
        }
    }

    /// The `SecretString` of `arn`: read once, then kept.
    async fn secret_string(
        &self,
        arn: &str,
        reference: &SecretRef,
    ) -> Result<Zeroizing<String>, Error> {
        let mut read = self.read.lock().await;
        if let Some(text) = read.get(arn) {
            return Ok(text.clone());
        }
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                let f = sdk_failure(&e);
                let msg = format!("secret {reference}: {}", f.detail);
                if f.transient {
                    Error::Transient(msg)
                } else {
                    Error::InvalidInput(msg)
                }
            })?;
        let text = out
            .secret_string()
            .filter(|s| !s.is_empty())
            .map(|s| Zeroizing::new(s.to_string()))
            .ok_or_else(|| {
                Error::InvalidInput(format!("secret {reference} has no SecretString"))
            })?;
        read.insert(arn.to_string(), text.clone());
        Ok(text)
    }
}

#[async_trait]
impl SecretResolver for AwsSecrets {
    async fn resolve(&self, reference: &SecretRef) -> Result<Zeroizing<String>, Error> {
        match reference {
            SecretRef::SecretsManager(reference_text) => {
                // `<arn>#<key>` names one key of a JSON secret (e.g. the template's ItsmSecret).
                let (arn, key) = match reference_text.split_once('#') {
                    Some((a, k)) => (a, Some(k)),
                    None => (reference_text.as_str(), None),
                };
                let text = self.secret_string(arn, reference).await?;
                let Some(key) = key else {
                    return Ok(text);
                };
                // serde's messages can quote input: report the category only.
                let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                    Error::InvalidInput(format!("secret {reference}: not a JSON object"))
                })?;
                let value = json
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(|v| Zeroizing::new(v.to_string()))
                    .ok_or_else(|| {
                        Error::InvalidInput(format!("secret {reference}: no string key {key:?}"))
                    });
                drop(json);
                value
            }
            SecretRef::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Zeroizing::new)
                .ok_or_else(|| Error::InvalidInput(format!("secret {reference}: variable not set"))),
            SecretRef::File(_) => Err(Error::InvalidInput(format!(
                "secret {reference}: file references are for the embedded default; use a Secrets Manager ARN on AWS"
            ))),
        }
    }
}
