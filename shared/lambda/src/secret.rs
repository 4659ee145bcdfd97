//! Secrets a function needs as bytes (webhook signing keys, the token-sealing
//! seed): from a Secrets Manager ARN on AWS, or from a plain environment
//! variable for local runs. A secret fetched from Secrets Manager is fetched
//! once per sandbox, on first use, so it costs nothing at init.

use certops_core::Error;
use std::fmt;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Where a secret comes from.
enum Source {
    /// Given directly (local runs and tests).
    Value(Arc<Vec<u8>>),
    /// A Secrets Manager secret, fetched on first use.
    SecretsManager {
        arn: String,
        cell: OnceCell<Arc<Vec<u8>>>,
    },
    /// Not configured.
    Missing,
}

/// A secret named by an environment variable pair: `<NAME>_ARN` (Secrets Manager) or
/// `<NAME>` (the value itself). Never prints its value.
pub struct EnvSecret {
    name: String,
    source: Source,
}

impl fmt::Debug for EnvSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match &self.source {
            Source::Value(_) => "environment",
            Source::SecretsManager { .. } => "secrets-manager",
            Source::Missing => "missing",
        };
        f.debug_struct("EnvSecret")
            .field("name", &self.name)
            .field("from", &from)
            .finish()
    }
}

impl EnvSecret {
    /// Reads `<name>_ARN`, else `<name>`; neither set means [`EnvSecret::get`] fails.
    pub fn from_env(name: &str) -> EnvSecret {
        let non_empty = |k: String| std::env::var(k).ok().filter(|v| !v.is_empty());
        let source = if let Some(arn) = non_empty(format!("{name}_ARN")) {
            Source::SecretsManager {
                arn,
                cell: OnceCell::new(),
            }
        } else if let Some(v) = non_empty(name.to_string()) {
            Source::Value(Arc::new(v.into_bytes()))
        } else {
            Source::Missing
        };
        EnvSecret {
            name: name.to_string(),
            source,
        }
    }

    /// A secret given directly.
    pub fn value(name: &str, value: &[u8]) -> EnvSecret {
        EnvSecret {
            name: name.to_string(),
            source: Source::Value(Arc::new(value.to_vec())),
        }
    }

    /// Whether either variable is set.
    pub fn is_configured(&self) -> bool {
        !matches!(self.source, Source::Missing)
    }

    /// The secret's bytes: fetched from Secrets Manager once, then cached.
    pub async fn get(&self) -> Result<Arc<Vec<u8>>, Error> {
        match &self.source {
            Source::Value(v) => Ok(v.clone()),
            Source::Missing => Err(Error::Misconfigured(format!(
                "neither {0}_ARN nor {0} is set",
                self.name
            ))),
            Source::SecretsManager { arn, cell } => cell
                .get_or_try_init(|| async {
                    let client = aws_sdk_secretsmanager::Client::new(crate::sdk_config().await);
                    let out = client
                        .get_secret_value()
                        .secret_id(arn)
                        .send()
                        .await
                        // The error names the secret, never its content.
                        .map_err(|e| {
                            Error::Transient(format!(
                                "reading {} from Secrets Manager ({arn}): {}",
                                self.name,
                                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                            ))
                        })?;
                    let bytes = match (out.secret_string(), out.secret_binary()) {
                        (Some(s), _) if !s.is_empty() => s.as_bytes().to_vec(),
                        (_, Some(b)) if !b.as_ref().is_empty() => b.as_ref().to_vec(),
                        _ => {
                            return Err(Error::Misconfigured(format!(
                                "{} ({arn}) is empty; put the key in the secret",
                                self.name
                            )))
                        }
                    };
                    Ok(Arc::new(bytes))
                })
                .await
                .cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_direct_value_is_returned_and_never_printed() {
        let s = EnvSecret::value("CERTOPS_WEBHOOK_SECRET", b"s3cr3t-signing-key");
        assert!(s.is_configured());
        assert_eq!(s.get().await.unwrap().as_slice(), b"s3cr3t-signing-key");
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn a_missing_secret_is_a_clear_error() {
        let s = EnvSecret::from_env("CERTOPS_TEST_SECRET_THAT_IS_NEVER_SET");
        assert!(!s.is_configured());
        let e = s.get().await.unwrap_err();
        assert_eq!(e.name(), "Misconfigured");
        assert!(e
            .to_string()
            .contains("CERTOPS_TEST_SECRET_THAT_IS_NEVER_SET_ARN"));
    }
}
