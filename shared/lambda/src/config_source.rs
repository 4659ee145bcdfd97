//! Where a function's inventory and policy come from.
//!
//! - `CERTOPS_CONFIG_DIR`: a directory with `inventory.toml`, `policy.toml`,
//!   `cert-renewal.runbook.toml` and optionally `integrations.toml` (local runs).
//! - `CERTOPS_CONFIG_ARN` (the AWS backend; the SAM template sets it to the stack's
//!   configuration secret): a Secrets Manager secret whose text is the JSON
//!   [`ConfigDocument`], read once at init. Its `VersionId` is appended to the policy
//!   version (`<policy version>+config.<VersionId>`), so every validation report, plan and
//!   plan hash names the exact configuration version it was made under.
//! - Neither: the example files compiled into the binary — on the embedded backend only.
//!   The AWS backend refuses to start without a configuration rather than act on the
//!   example inventory.

use certops_adapters::{ConfigFiles, ConfigTexts};
use certops_core::ports::Config;
use certops_core::Error;
use serde::Deserialize;
use std::path::Path;

/// The variable naming the configuration secret (AWS backend).
pub const CONFIG_ARN_ENV: &str = "CERTOPS_CONFIG_ARN";
/// The variable naming a configuration directory.
pub const CONFIG_DIR_ENV: &str = "CERTOPS_CONFIG_DIR";

/// The configuration secret's JSON text: each field holds one file's TOML text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// `inventory.toml`.
    pub inventory: String,
    /// `policy.toml`.
    pub policy: String,
    /// `cert-renewal.runbook.toml`; the runbook compiled into the binary when absent.
    #[serde(default)]
    pub runbook: Option<String>,
    /// `integrations.toml`; none when absent.
    #[serde(default)]
    pub integrations: Option<String>,
}

/// Parses the configuration secret's text (`arn` only names it in errors).
pub fn parse_document(arn: &str, text: &str) -> Result<ConfigDocument, Error> {
    serde_json::from_str(text).map_err(|e| {
        Error::Misconfigured(format!(
            "the configuration secret {arn} does not hold the configuration yet ({e}); put \
             {{\"inventory\": <inventory.toml text>, \"policy\": <policy.toml text>}} into it \
             (README, \"Deploy to AWS\")"
        ))
    })
}

async fn from_secret(arn: &str) -> Result<(ConfigTexts, String), Error> {
    let client = aws_sdk_secretsmanager::Client::new(crate::sdk_config().await);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            Error::Transient(format!(
                "reading the configuration {arn}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))
        })?;
    let text = out.secret_string().unwrap_or_default();
    let doc = parse_document(arn, text)?;
    let version = out
        .version_id()
        .ok_or_else(|| Error::Misconfigured(format!("the configuration {arn} has no version id")))?
        .to_string();
    Ok((
        ConfigTexts {
            source: format!("the configuration secret {arn}"),
            inventory: doc.inventory,
            policy: doc.policy,
            runbook: doc.runbook,
            integrations: doc.integrations,
        },
        version,
    ))
}

/// Loads the configuration for `backend` (see the module docs), parsed by the one loader
/// ([`ConfigTexts::parse`]) whatever its source.
pub async fn load(backend: crate::Backend) -> Result<Config, Error> {
    let non_empty = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let (texts, version) = if let Some(dir) = non_empty(CONFIG_DIR_ENV) {
        (ConfigFiles::in_dir(Path::new(&dir)).texts()?, None)
    } else if let Some(arn) = non_empty(CONFIG_ARN_ENV) {
        let (t, v) = from_secret(&arn).await?;
        (t, Some(v))
    } else if backend == crate::Backend::Aws {
        return Err(Error::Misconfigured(format!(
            "the AWS backend needs its inventory and policy: set {CONFIG_ARN_ENV} (the SAM \
             template does) or {CONFIG_DIR_ENV}; the example inventory compiled into the \
             binary is never used against a real account"
        )));
    } else {
        (ConfigTexts::example(), None)
    };
    let mut config = texts.parse()?;
    if let Some(v) = version {
        config.policy.version = format!("{}+config.{v}", config.policy.version);
    }
    if let Ok(oncall) = std::env::var("CERTOPS_DEFAULT_ONCALL") {
        config.default_oncall = oncall;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_placeholder_is_refused_naming_what_to_put() {
        let e = parse_document("arn:cfg", r#"{"configured": false}"#).unwrap_err();
        assert_eq!(e.name(), "Misconfigured");
        assert!(e.to_string().contains("\"inventory\""), "{e}");
        let doc = parse_document("arn:cfg", r#"{"inventory": "a", "policy": "b"}"#).unwrap();
        assert_eq!((doc.inventory.as_str(), doc.runbook), ("a", None));
    }
}
