//! `certops keystore import`: puts a certificate + key bundle (e.g. the pre-provisioned
//! fallback certificate validation requires) into the data directory's keystore, so an
//! inventory's `fallback_cert = "keystore:<name>"` resolves. The key file must be 0600 (or
//! stricter); the key never appears in output.

use anyhow::{bail, Context, Result};
use certops_core::ports::{Bundle, Keystore, SecretPem};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `certops keystore`.
#[derive(clap::Args, Debug)]
pub struct KeystoreArgs {
    #[command(subcommand)]
    command: KeystoreCommand,
}

#[derive(clap::Subcommand, Debug)]
enum KeystoreCommand {
    /// Import a certificate chain and its private key as one bundle named NAME; prints its
    /// reference (`keystore:NAME`), what the inventory's `fallback_cert` names.
    Import {
        /// The bundle name, e.g. `fallback/shop-www-prod` (letters, digits, `-_./`).
        name: String,
        /// The certificate chain (PEM, leaf first).
        #[arg(long)]
        cert: PathBuf,
        /// The private key (PEM); refused unless the file is mode 0600 or stricter.
        #[arg(long)]
        key: PathBuf,
    },
}

/// Runs a keystore command.
pub async fn run(data: &Path, args: KeystoreArgs) -> Result<u8> {
    match args.command {
        KeystoreCommand::Import { name, cert, key } => import(data, &name, &cert, &key).await,
    }
}

async fn import(data: &Path, name: &str, cert: &Path, key: &Path) -> Result<u8> {
    let meta = std::fs::metadata(key).with_context(|| format!("reading {}", key.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is mode {mode:04o}: a private key file must be readable by its owner only (chmod 600)",
            key.display()
        );
    }
    let chain_pem =
        std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?;
    let facts = certops_core::workflow::leaf_facts(&chain_pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    let key_pem = SecretPem::new(
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
    );
    if !key_pem.expose().contains("PRIVATE KEY-----") {
        bail!("{} holds no PEM private key", key.display());
    }
    let _lock = crate::data_dir::lock(data)?;
    let keystore = certops_adapters::FileKeystore::open(&data.join(certops_adapters::KEYSTORE_DIR))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let reference = keystore
        .put_bundle(
            name,
            Bundle {
                chain_pem,
                key: key_pem,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e} ({})", e.name()))?;
    eprintln!(
        "imported {} (leaf sha256 {}, expires {})",
        facts.subject, facts.fingerprint, facts.not_after
    );
    outln!("{reference}");
    Ok(0)
}
