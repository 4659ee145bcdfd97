//! [`LambdaSecrets`]: the [`SecretResolver`] of the Lambda functions. A Secrets Manager ARN
//! is read through the SDK once per sandbox and kept (wiped on drop); `env:` and `file:`
//! references are read as the embedded runtime reads them.

use std::collections::HashMap;

use async_trait::async_trait;
use certops_core::integrations::{SecretRef, SecretResolver};
use certops_core::Error;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// Resolves secret references on Lambda.
#[derive(Default)]
pub struct LambdaSecrets {
    cache: Mutex<HashMap<String, Zeroizing<String>>>,
}

impl std::fmt::Debug for LambdaSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LambdaSecrets")
    }
}

#[async_trait]
impl SecretResolver for LambdaSecrets {
    async fn resolve(&self, reference: &SecretRef) -> Result<Zeroizing<String>, Error> {
        let SecretRef::SecretsManager(arn) = reference else {
            return certops_adapters::LocalSecrets.resolve(reference).await;
        };
        let mut cache = self.cache.lock().await;
        if let Some(v) = cache.get(arn) {
            return Ok(v.clone());
        }
        let client = aws_sdk_secretsmanager::Client::new(crate::sdk_config().await);
        let out = client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                Error::Transient(format!(
                    "secret {arn}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
        let value = out
            .secret_string()
            .filter(|s| !s.is_empty())
            .map(|s| Zeroizing::new(s.to_string()))
            .ok_or_else(|| Error::InvalidInput(format!("secret {arn} holds no string")))?;
        cache.insert(arn.clone(), value.clone());
        Ok(value)
    }
}
