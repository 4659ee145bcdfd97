//! nginx as a deploy target: the new chain and key are written beside the old files and
//! swapped in atomically, `nginx -t` checks the configuration with them in place (a failure
//! puts the previous files back and reloads nothing), and reload is `SIGHUP` to the master
//! process named in the configured pid file.

use std::path::Path;
use std::time::Duration;

use certops_core::inventory::NginxConnection;
use certops_core::ports::{Keystore, SecretPem};
use certops_core::{Error, Target};
use serde_json::json;

use crate::bounded_command;
use crate::evidence::Evidence;
use crate::installed_files::{
    current_reference, leaf_sha256, load_bundle, split_chain_and_key, write_atomic, write_record,
    InstalledRecord, Ownership, Saved,
};

/// Deploys to nginx servers on this machine.
pub struct NginxTargets {
    keystore: std::sync::Arc<dyn Keystore>,
}

fn mode_and_owner(path: &Path, default_mode: u32) -> (u32, Ownership) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(m) => (
            m.permissions().mode() & 0o777,
            Ownership {
                uid: Some(m.uid()),
                gid: Some(m.gid()),
            },
        ),
        Err(_) => (default_mode, Ownership::default()),
    }
}

/// Reads the pid in a pid file.
pub(crate) fn read_pid(pid_file: &Path) -> Result<rustix::process::Pid, String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("pid file {}: {e}", pid_file.display()))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("pid file {} holds no pid", pid_file.display()))
}

impl NginxTargets {
    /// nginx targets loading bundles from `keystore`; each deploy and reload reports
    /// into the [`Evidence`] of its own call.
    pub fn new(keystore: std::sync::Arc<dyn Keystore>) -> NginxTargets {
        NginxTargets { keystore }
    }

    fn test_argv(conn: &NginxConnection) -> Vec<String> {
        let mut argv = vec![conn.binary.clone(), "-t".into(), "-q".into()];
        if let Some(config) = &conn.config {
            argv.push("-c".into());
            argv.push(config.display().to_string());
        }
        argv
    }

    /// The keystore reference of what nginx serves (its files), recording it as
    /// last-known-good first if certops did not put it there.
    pub async fn current(
        &self,
        target: &Target,
        conn: &NginxConnection,
    ) -> Result<Option<String>, Error> {
        let served = match std::fs::read_to_string(&conn.cert_path) {
            Ok(text) => Some(
                leaf_sha256(&text)
                    .map_err(|e| Error::DeployFailed(format!("{}: {e}", target.id)))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::DeployFailed(format!(
                    "{}: reading {}: {e}",
                    target.id,
                    conn.cert_path.display()
                )))
            }
        };
        current_reference(
            self.keystore.as_ref(),
            &target.id,
            &conn.cert_path,
            served,
            || {
                let read = |p: &Path| {
                    std::fs::read_to_string(p).map_err(|e| {
                        Error::DeployFailed(format!("{}: reading {}: {e}", target.id, p.display()))
                    })
                };
                let chain = read(&conn.cert_path)?;
                let key_text = zeroize::Zeroizing::new(read(&conn.key_path)?);
                let (_, key) = split_chain_and_key(&key_text);
                let key: SecretPem = key.ok_or_else(|| {
                    Error::DeployFailed(format!(
                        "{}: {} holds no private key",
                        target.id,
                        conn.key_path.display()
                    ))
                })?;
                Ok((split_chain_and_key(&chain).0, key))
            },
        )
        .await
    }

    /// Swaps the files in and runs `nginx -t`; on failure the previous files are back.
    pub async fn deploy(
        &self,
        target: &Target,
        conn: &NginxConnection,
        bundle_ref: &str,
        evidence: &Evidence,
    ) -> Result<(), Error> {
        let (bundle, fingerprint) =
            load_bundle(self.keystore.as_ref(), &target.id, bundle_ref).await?;
        let old_cert = Saved::take(&conn.cert_path)?;
        let old_key = Saved::take(&conn.key_path)?;
        let (cert_mode, cert_owner) = mode_and_owner(&conn.cert_path, 0o644);
        let (key_mode, key_owner) = mode_and_owner(&conn.key_path, 0o600);
        let restore = || {
            let a = old_cert.restore(cert_owner);
            let b = old_key.restore(key_owner);
            a.and(b)
        };
        let swapped = write_atomic(
            &conn.key_path,
            bundle.key.expose().as_bytes(),
            key_mode,
            key_owner,
        )
        .and_then(|()| {
            write_atomic(
                &conn.cert_path,
                bundle.chain_pem.as_bytes(),
                cert_mode,
                cert_owner,
            )
        });
        if let Err(e) = swapped {
            let _ = restore();
            return Err(Error::DeployFailed(format!("{}: {e}", target.id)));
        }
        let argv = Self::test_argv(conn);
        let report = bounded_command::run(&argv, Duration::from_secs(conn.timeout_seconds)).await;
        let verdict = match &report {
            Ok(r) if r.succeeded() => Ok(()),
            Ok(r) => Err(format!("configuration test failed, {}", r.summary())),
            Err(e) => Err(e.clone()),
        };
        evidence.put(
            &target.id,
            json!({"adapter": "nginx", "bundleRef": bundle_ref, "test": report.as_ref().ok(),
                   "swapped": verdict.is_ok()}),
        );
        if let Err(why) = verdict {
            let restored = match restore() {
                Ok(()) => "previous files restored, nothing reloaded".to_string(),
                Err(e) => format!("restoring the previous files failed too: {e}"),
            };
            return Err(Error::DeployFailed(format!(
                "{}: {why}; {restored}",
                target.id
            )));
        }
        write_record(
            &conn.cert_path,
            &InstalledRecord {
                reference: bundle_ref.to_string(),
                fingerprint,
            },
        )?;
        tracing::info!(target = %target.id, bundle = %bundle_ref, "nginx files swapped, nginx -t passed");
        Ok(())
    }

    /// `SIGHUP` to the master process: nginx re-reads its configuration and files, starts
    /// new workers and tells the old ones to finish. Returns once the old workers are gone
    /// (new connections then see the new certificate), or at the deadline if they are still
    /// draining long connections; `DeployFailed` if nginx started no new worker at all (it
    /// refused the reload).
    pub async fn reload(
        &self,
        target: &Target,
        conn: &NginxConnection,
        evidence: &Evidence,
    ) -> Result<(), Error> {
        let pid = read_pid(&conn.pid_file)
            .map_err(|e| Error::DeployFailed(format!("{}: {e}", target.id)))?;
        let master = pid.as_raw_nonzero().get();
        let before = workers(master);
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
            Error::DeployFailed(format!(
                "{}: signalling nginx master {master}: {e}",
                target.id
            ))
        })?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(conn.timeout_seconds);
        let outcome = loop {
            let now = workers(master);
            let fresh = now.difference(&before).count();
            if fresh > 0 && now.is_disjoint(&before) {
                break "old workers gone";
            }
            if tokio::time::Instant::now() >= deadline {
                if fresh > 0 {
                    break "new workers started; old workers still draining";
                }
                evidence.merge(
                    &target.id,
                    json!({"reload": {"signal": "HUP", "pid": master, "result": "no new workers"}}),
                );
                return Err(Error::DeployFailed(format!(
                    "{}: nginx master {master} started no new worker within {} s of SIGHUP; the reload was refused (see its error log)",
                    target.id, conn.timeout_seconds
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        evidence.merge(
            &target.id,
            json!({"reload": {"signal": "HUP", "pid": master, "result": outcome}}),
        );
        tracing::info!(target = %target.id, pid = master, outcome, "nginx reloaded");
        Ok(())
    }
}

/// The pids of `master`'s child processes (its workers), from `/proc`.
fn workers(master: i32) -> std::collections::BTreeSet<i32> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the command may hold spaces, so split after `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(master) {
            out.insert(pid);
        }
    }
    out
}
