//! [`LocalSecrets`]: the embedded [`SecretResolver`]. Reads `env:NAME` from the process
//! environment and `file:/path` from a file that only its owner may read; a Secrets Manager
//! ARN is refused here (the AWS backend resolves those).

use std::os::unix::fs::PermissionsExt;

use async_trait::async_trait;
use certops_core::integrations::{SecretRef, SecretResolver};
use certops_core::Error;
use zeroize::Zeroizing;

/// Reads secrets from the environment and from owner-only files.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalSecrets;

#[async_trait]
impl SecretResolver for LocalSecrets {
    async fn resolve(&self, reference: &SecretRef) -> Result<Zeroizing<String>, Error> {
        match reference {
            SecretRef::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Zeroizing::new)
                .ok_or_else(|| {
                    Error::InvalidInput(format!("secret {reference}: variable not set"))
                }),
            SecretRef::File(path) => {
                let meta = std::fs::metadata(path)
                    .map_err(|e| Error::InvalidInput(format!("secret {reference}: {e}")))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(Error::InvalidInput(format!(
                        "secret {reference}: group or others may read it; chmod 600 it"
                    )));
                }
                let text = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| Error::InvalidInput(format!("secret {reference}: {e}")))?,
                );
                Ok(Zeroizing::new(
                    text.trim_end_matches(['\n', '\r']).to_string(),
                ))
            }
            SecretRef::SecretsManager(_) => Err(Error::InvalidInput(format!(
                "secret {reference}: Secrets Manager references need the AWS backend"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn files_must_be_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"value\n")
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let r = SecretRef::File(path.clone());
        assert!(LocalSecrets.resolve(&r).await.is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(LocalSecrets.resolve(&r).await.unwrap().as_str(), "value");
    }

    #[tokio::test]
    async fn arns_are_refused_and_missing_names_named() {
        let arn = SecretRef::parse("arn:aws:secretsmanager:us-east-1:1:secret:x").unwrap();
        assert!(LocalSecrets.resolve(&arn).await.is_err());
        let missing = SecretRef::Env("CERTOPS_TEST_SURELY_UNSET_VARIABLE".into());
        let e = LocalSecrets
            .resolve(&missing)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("CERTOPS_TEST_SURELY_UNSET_VARIABLE"), "{e}");
    }
}
