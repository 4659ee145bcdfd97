//! The one configuration loader: the inventory, policy, runbook and integrations as TOML
//! texts ([`ConfigTexts`], from a directory, a secret or the example compiled in) parsed
//! into a [`Config`], each error naming the file it came from.
//!
//! `certops serve`/`run`/`plan` read a directory ([`ConfigFiles`]); the Lambda functions
//! read a directory or the configuration secret (`certops-lambda`'s `config_source`), and
//! both end in [`ConfigTexts::parse`].

use certops_core::integrations::Integrations;
use certops_core::ports::Config;
use certops_core::{Error, Inventory, Policy, Runbook};
use std::path::{Path, PathBuf};

/// The example inventory shipped in `runbooks/`.
pub const EXAMPLE_INVENTORY: &str = include_str!("../../../runbooks/inventory.toml");
/// The example policy shipped in `runbooks/`.
pub const EXAMPLE_POLICY: &str = include_str!("../../../runbooks/policy.toml");
/// The runbook the project ships: the default when a configuration names none.
pub const RUNBOOK: &str = include_str!("../../../runbooks/cert-renewal.runbook.toml");

/// The configuration's TOML texts, before parsing. `name` says where each came from, for
/// errors ("reading policy.toml in /etc/certops: …").
#[derive(Debug, Clone)]
pub struct ConfigTexts {
    /// Where the texts came from (a directory, a secret ARN, "the example").
    pub source: String,
    /// `inventory.toml`.
    pub inventory: String,
    /// `policy.toml`.
    pub policy: String,
    /// `cert-renewal.runbook.toml`; [`RUNBOOK`] when absent.
    pub runbook: Option<String>,
    /// `integrations.toml`; none (every port embedded) when absent.
    pub integrations: Option<String>,
}

impl ConfigTexts {
    /// The example files compiled into the binary.
    pub fn example() -> ConfigTexts {
        ConfigTexts {
            source: "the example configuration compiled in (runbooks/)".into(),
            inventory: EXAMPLE_INVENTORY.into(),
            policy: EXAMPLE_POLICY.into(),
            runbook: None,
            integrations: None,
        }
    }

    /// Parses every text; the default on-call address is
    /// [`certops_core::ports::DEFAULT_ONCALL`].
    pub fn parse(&self) -> Result<Config, Error> {
        let ctx =
            |file: &str, e: Error| Error::Misconfigured(format!("{file} in {}: {e}", self.source));
        Ok(Config {
            inventory: Inventory::from_toml_str(&self.inventory)
                .map_err(|e| ctx("inventory.toml", e))?,
            policy: Policy::from_toml_str(&self.policy).map_err(|e| ctx("policy.toml", e))?,
            runbook: Runbook::from_toml_str(self.runbook.as_deref().unwrap_or(RUNBOOK))
                .map_err(|e| ctx("cert-renewal.runbook.toml", e))?,
            default_oncall: certops_core::ports::DEFAULT_ONCALL.into(),
            integrations: match &self.integrations {
                Some(t) => {
                    Integrations::from_toml_str(t).map_err(|e| ctx("integrations.toml", e))?
                }
                None => Integrations::none(),
            },
        })
    }
}

/// The example configuration compiled into the binary, parsed: every command works from
/// any directory.
pub fn example_config() -> Result<Config, Error> {
    ConfigTexts::example().parse()
}

/// The configuration files of a directory.
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    /// Inventory TOML.
    pub inventory: PathBuf,
    /// Policy TOML.
    pub policy: PathBuf,
    /// Runbook TOML.
    pub runbook: PathBuf,
    /// Integrations TOML (optional: absent means every port stays embedded).
    pub integrations: PathBuf,
}

impl ConfigFiles {
    /// `inventory.toml`, `policy.toml`, `cert-renewal.runbook.toml` and
    /// `integrations.toml` in `dir` (normally `runbooks/`).
    pub fn in_dir(dir: &Path) -> ConfigFiles {
        ConfigFiles {
            inventory: dir.join("inventory.toml"),
            policy: dir.join("policy.toml"),
            runbook: dir.join("cert-renewal.runbook.toml"),
            integrations: dir.join("integrations.toml"),
        }
    }

    /// Reads the files' texts: the first three must exist; a missing integrations file
    /// means no integrations.
    pub fn texts(&self) -> Result<ConfigTexts, Error> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| Error::Misconfigured(format!("reading {}: {e}", p.display())))
        };
        let integrations = match std::fs::read_to_string(&self.integrations) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::Misconfigured(format!(
                    "reading {}: {e}",
                    self.integrations.display()
                )))
            }
        };
        Ok(ConfigTexts {
            source: self
                .inventory
                .parent()
                .unwrap_or(Path::new("."))
                .display()
                .to_string(),
            inventory: read(&self.inventory)?,
            policy: read(&self.policy)?,
            runbook: Some(read(&self.runbook)?),
            integrations,
        })
    }

    /// Reads and parses the files.
    pub fn load(&self) -> Result<Config, Error> {
        self.texts()?.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_and_a_directory_of_it_loads_the_same() {
        let example = example_config().expect("example");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("inventory.toml"), EXAMPLE_INVENTORY).expect("write");
        std::fs::write(dir.path().join("policy.toml"), EXAMPLE_POLICY).expect("write");
        std::fs::write(dir.path().join("cert-renewal.runbook.toml"), RUNBOOK).expect("write");
        let loaded = ConfigFiles::in_dir(dir.path()).load().expect("load");
        assert_eq!(loaded.policy.version, example.policy.version);
        assert_eq!(
            loaded.inventory.certificates.len(),
            example.inventory.certificates.len()
        );
        assert_eq!(loaded.runbook.reference(), example.runbook.reference());
    }

    #[test]
    fn errors_name_the_file_and_where_it_came_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Err(e) = ConfigFiles::in_dir(dir.path()).load() else {
            panic!("an empty directory has no configuration")
        };
        assert_eq!(e.name(), "Misconfigured");
        assert!(e.to_string().contains("inventory.toml"), "{e}");

        let mut texts = ConfigTexts::example();
        texts.policy = "version = ".into();
        texts.source = "arn:aws:secretsmanager:eu-west-1:1:secret:cfg".into();
        let Err(e) = texts.parse() else {
            panic!("a truncated policy parsed")
        };
        let text = e.to_string();
        assert!(
            text.contains("policy.toml") && text.contains("arn:aws:secretsmanager"),
            "{text}"
        );
    }
}
