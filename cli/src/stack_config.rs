//! The configuration the governed-renewal commands open the embedded stack with
//! (`--config-dir`, else `<data-dir>/config`, else `./runbooks`, else the built-in example),
//! and opening that stack over the data directory.

use anyhow::{Context, Result};
use certops_core::ports::{Clock, SystemClock};
use certops_embedded::{ConfigFiles, Stack, StackOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Options shared by the commands that open the stack.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Directory holding inventory.toml, policy.toml and cert-renewal.runbook.toml.
    /// Defaults to <data-dir>/config when present (the demo writes one), else ./runbooks.
    #[arg(long)]
    config_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// The configuration files to use, or `None` for the built-in example files.
    fn files(&self, data: &Path) -> Option<ConfigFiles> {
        match &self.config_dir {
            Some(d) => Some(ConfigFiles::in_dir(d)),
            None if data.join("config").is_dir() => Some(ConfigFiles::in_dir(&data.join("config"))),
            None if Path::new("runbooks/inventory.toml").is_file() => {
                Some(ConfigFiles::in_dir(Path::new("runbooks")))
            }
            None => None,
        }
    }

    /// Loads the configuration (the built-in example files when none are found).
    pub fn load(&self, data: &Path) -> Result<certops_core::ports::Config> {
        match self.files(data) {
            Some(files) => files.load().with_context(|| {
                format!(
                    "loading configuration from {}",
                    files.inventory.parent().unwrap_or(Path::new(".")).display()
                )
            }),
            None => certops_embedded::example_config()
                .map_err(|e| anyhow::anyhow!("built-in example configuration: {e}")),
        }
    }
}

/// Opens the embedded stack over the data directory.
pub async fn open_stack(data: &Path, cfg: &ConfigArgs) -> Result<Stack> {
    let config = cfg.load(data)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Stack::open(StackOptions {
        data_dir: data.to_path_buf(),
        config,
        clock,
        probe_timeout: Duration::from_secs(3),
    })
    .await
    .context("opening the embedded stack")
}
