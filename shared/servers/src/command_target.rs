//! Any host with a reload command (Apache, Envoy, Postfix, a Java keystore tool…) as a
//! deploy target: the chain and key are written atomically with the modes and owner the
//! inventory names, the validate command runs with them in place (a failure restores the
//! previous files), then the reload command. Each command has a deadline at which it is
//! killed, and its output — redacted — goes into the audit record.

use std::path::Path;
use std::time::Duration;

use certops_core::inventory::{parse_mode, CommandConnection};
use certops_core::ports::Keystore;
use certops_core::{Error, Target};
use serde_json::json;

use crate::bounded_command;
use crate::evidence::Evidence;
use crate::installed_files::{
    current_reference, leaf_sha256, load_bundle, split_chain_and_key, write_atomic, write_record,
    InstalledRecord, Ownership, Saved,
};

/// Deploys files and runs commands on this machine.
pub struct CommandTargets {
    keystore: std::sync::Arc<dyn Keystore>,
}

/// Resolves a user or group (name or number) through a `name:x:id:…` database file.
fn lookup_id(db: &Path, who: &str) -> Result<u32, String> {
    if let Ok(n) = who.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(db).map_err(|e| format!("{}: {e}", db.display()))?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == who)
        .and_then(|(_, id)| id.parse().ok())
        .ok_or_else(|| format!("no {who:?} in {}", db.display()))
}

fn ownership(target: &Target, conn: &CommandConnection) -> Result<Ownership, Error> {
    let fail = |e: String| Error::DeployFailed(format!("{}: {e}", target.id));
    Ok(Ownership {
        uid: conn
            .owner
            .as_deref()
            .map(|o| lookup_id(Path::new("/etc/passwd"), o))
            .transpose()
            .map_err(fail)?,
        gid: conn
            .group
            .as_deref()
            .map(|g| lookup_id(Path::new("/etc/group"), g))
            .transpose()
            .map_err(fail)?,
    })
}

impl CommandTargets {
    /// Command targets loading bundles from `keystore`; each deploy and reload reports
    /// into the [`Evidence`] of its own call.
    pub fn new(keystore: std::sync::Arc<dyn Keystore>) -> CommandTargets {
        CommandTargets { keystore }
    }

    /// The keystore reference of the files in place, recording them as last-known-good
    /// first if certops did not put them there.
    pub async fn current(
        &self,
        target: &Target,
        conn: &CommandConnection,
    ) -> Result<Option<String>, Error> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map(zeroize::Zeroizing::new)
                .map_err(|e| {
                    Error::DeployFailed(format!("{}: reading {}: {e}", target.id, p.display()))
                })
        };
        if !conn.cert_path.exists() {
            return Ok(None);
        }
        let cert_text = read(&conn.cert_path)?;
        let (chain, combined_key) = split_chain_and_key(&cert_text);
        let served =
            leaf_sha256(&chain).map_err(|e| Error::DeployFailed(format!("{}: {e}", target.id)))?;
        current_reference(
            self.keystore.as_ref(),
            &target.id,
            &conn.cert_path,
            Some(served),
            || {
                let key = match &conn.key_path {
                    Some(p) => split_chain_and_key(&read(p)?).1,
                    None => combined_key,
                };
                let key = key.ok_or_else(|| {
                    Error::DeployFailed(format!(
                        "{}: no private key beside the certificate",
                        target.id
                    ))
                })?;
                Ok((chain, key))
            },
        )
        .await
    }

    /// Writes the files, then validates; a failed validation puts the previous files back.
    pub async fn deploy(
        &self,
        target: &Target,
        conn: &CommandConnection,
        bundle_ref: &str,
        evidence: &Evidence,
    ) -> Result<(), Error> {
        let fail = |e: String| Error::DeployFailed(format!("{}: {e}", target.id));
        let (bundle, fingerprint) =
            load_bundle(self.keystore.as_ref(), &target.id, bundle_ref).await?;
        let owner = ownership(target, conn)?;
        let cert_mode = parse_mode(&conn.cert_mode).map_err(fail)?;
        let key_mode = parse_mode(&conn.key_mode).map_err(fail)?;
        let old_cert = Saved::take(&conn.cert_path)?;
        let old_key = conn.key_path.as_deref().map(Saved::take).transpose()?;
        let restore = || {
            let a = old_cert.restore(owner);
            let b = old_key.as_ref().map(|k| k.restore(owner)).unwrap_or(Ok(()));
            a.and(b)
        };
        let written = match &conn.key_path {
            Some(key_path) => {
                write_atomic(key_path, bundle.key.expose().as_bytes(), key_mode, owner).and_then(
                    |()| {
                        write_atomic(
                            &conn.cert_path,
                            bundle.chain_pem.as_bytes(),
                            cert_mode,
                            owner,
                        )
                    },
                )
            }
            None => {
                let combined = zeroize::Zeroizing::new(format!(
                    "{}\n{}",
                    bundle.chain_pem.trim_end(),
                    bundle.key.expose()
                ));
                // The combined file holds the key: it gets the key's mode.
                write_atomic(&conn.cert_path, combined.as_bytes(), key_mode, owner)
            }
        };
        if let Err(e) = written {
            let _ = restore();
            return Err(e);
        }
        let mut record = json!({"adapter": "command", "bundleRef": bundle_ref});
        if !conn.validate.is_empty() {
            let report =
                bounded_command::run(&conn.validate, Duration::from_secs(conn.timeout_seconds))
                    .await;
            record["validate"] = json!(report.as_ref().ok());
            let verdict = match &report {
                Ok(r) if r.succeeded() => Ok(()),
                Ok(r) => Err(format!("validate {}", r.summary())),
                Err(e) => Err(e.clone()),
            };
            if let Err(why) = verdict {
                let restored = match restore() {
                    Ok(()) => "previous files restored, nothing reloaded".to_string(),
                    Err(e) => format!("restoring the previous files failed too: {e}"),
                };
                evidence.put(&target.id, record);
                return Err(fail(format!("{why}; {restored}")));
            }
        }
        evidence.put(&target.id, record);
        write_record(
            &conn.cert_path,
            &InstalledRecord {
                reference: bundle_ref.to_string(),
                fingerprint,
            },
        )
    }

    /// Runs the reload command.
    pub async fn reload(
        &self,
        target: &Target,
        conn: &CommandConnection,
        evidence: &Evidence,
    ) -> Result<(), Error> {
        let report = bounded_command::run(&conn.reload, Duration::from_secs(conn.timeout_seconds))
            .await
            .map_err(|e| Error::DeployFailed(format!("{}: {e}", target.id)))?;
        evidence.merge(&target.id, json!({"reload": report}));
        if !report.succeeded() {
            return Err(Error::DeployFailed(format!(
                "{}: reload {}",
                target.id,
                report.summary()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_resolve_by_name_or_number() {
        assert_eq!(lookup_id(Path::new("/etc/passwd"), "root"), Ok(0));
        assert_eq!(lookup_id(Path::new("/etc/group"), "0"), Ok(0));
        assert!(lookup_id(Path::new("/etc/passwd"), "no-such-user-certops").is_err());
    }
}
