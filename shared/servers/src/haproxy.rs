//! HAProxy as a deploy target, through its Runtime API on the admin socket (UNIX or TCP):
//! `set ssl cert` + `commit ssl cert` replace the certificate in the running process with
//! no reload and no dropped connection; any refusal (a key that does not match is refused at
//! commit) is followed by `abort ssl cert`, so nothing changes. A path HAProxy does not know
//! yet goes through `new ssl cert` and `add ssl crt-list`; a refusal after `new ssl cert`
//! removes that entry again (`del ssl cert`). The combined PEM is written to the
//! same path on disk too, so a restart keeps it; `show ssl cert` says what is loaded.

use std::path::Path;
use std::time::Duration;

use certops_core::inventory::{AdminSocket, HaproxyConnection};
use certops_core::ports::Keystore;
use certops_core::{Error, Target};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::evidence::Evidence;
use crate::installed_files::{
    current_reference, leaf_sha1, leaf_sha256, load_bundle, split_chain_and_key, write_atomic,
    write_record, InstalledRecord, Ownership,
};

/// Most bytes read back from one Runtime API command.
const MAX_ANSWER: u64 = 1 << 20;

/// Deploys to HAProxy through its Runtime API.
pub struct HaproxyTargets {
    keystore: std::sync::Arc<dyn Keystore>,
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> std::io::Result<String> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Sends one Runtime API command (with an optional `<<` payload) and returns the answer.
/// An unreachable socket is `DeployFailed` naming it.
pub async fn runtime_api(
    socket: &AdminSocket,
    command: &str,
    payload: Option<&str>,
    timeout: Duration,
) -> Result<String, Error> {
    let mut request = command.as_bytes().to_vec();
    if let Some(body) = payload {
        // The payload ends at the first empty line, so it must hold none.
        request.extend_from_slice(b" <<\n");
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            request.extend_from_slice(line.as_bytes());
            request.push(b'\n');
        }
    }
    request.push(b'\n');
    let name = match socket {
        AdminSocket::Unix(p) => format!("unix:{}", p.display()),
        AdminSocket::Tcp(a) => format!("tcp:{a}"),
    };
    let verb = command.split(' ').take(3).collect::<Vec<_>>().join(" ");
    let work = async {
        match socket {
            AdminSocket::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await?;
                exchange(s, &request).await
            }
            AdminSocket::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
                exchange(s, &request).await
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(Error::DeployFailed(format!(
            "HAProxy admin socket {name} ({verb}): {e}"
        ))),
        Err(_) => Err(Error::DeployFailed(format!(
            "HAProxy admin socket {name} ({verb}): no answer within {} s",
            timeout.as_secs()
        ))),
    }
}

/// The first non-empty line of an answer.
fn first_line(answer: &str) -> &str {
    answer
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(empty answer)")
}

/// The SHA-1 fingerprint `show ssl cert <path>` reports, or `None` when HAProxy does not
/// know the path.
fn loaded_sha1(answer: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("SHA1 FingerPrint:"))
        .map(|s| s.trim().to_ascii_uppercase())
}

impl HaproxyTargets {
    /// HAProxy targets loading bundles from `keystore`; each deploy and reload reports
    /// into the [`Evidence`] of its own call.
    pub fn new(keystore: std::sync::Arc<dyn Keystore>) -> HaproxyTargets {
        HaproxyTargets { keystore }
    }

    fn socket(target: &Target, conn: &HaproxyConnection) -> Result<AdminSocket, Error> {
        AdminSocket::parse(&conn.socket)
            .map_err(|e| Error::DeployFailed(format!("{}: {e}", target.id)))
    }

    async fn api(
        &self,
        target: &Target,
        conn: &HaproxyConnection,
        command: &str,
        payload: Option<&str>,
    ) -> Result<String, Error> {
        let socket = Self::socket(target, conn)?;
        runtime_api(
            &socket,
            command,
            payload,
            Duration::from_secs(conn.timeout_seconds),
        )
        .await
        .map_err(|e| match e {
            Error::DeployFailed(m) => Error::DeployFailed(format!("{}: {m}", target.id)),
            other => other,
        })
    }

    /// What `show ssl cert <path>` says is loaded: its SHA-1, or `None` for an unknown path.
    async fn loaded(
        &self,
        target: &Target,
        conn: &HaproxyConnection,
    ) -> Result<Option<String>, Error> {
        let answer = self
            .api(
                target,
                conn,
                &format!("show ssl cert {}", conn.cert_path.display()),
                None,
            )
            .await?;
        match loaded_sha1(&answer) {
            Some(sha1) => Ok(Some(sha1)),
            None if answer.contains("Not found") => Ok(None),
            None => Err(Error::DeployFailed(format!(
                "{}: show ssl cert: {}",
                target.id,
                first_line(&answer)
            ))),
        }
    }

    /// The keystore reference of what HAProxy has loaded for the path, recording it as
    /// last-known-good first (from the file on disk, which must hold the same leaf).
    pub async fn current(
        &self,
        target: &Target,
        conn: &HaproxyConnection,
    ) -> Result<Option<String>, Error> {
        let Some(sha1) = self.loaded(target, conn).await? else {
            return Ok(None);
        };
        let disk = std::fs::read_to_string(&conn.cert_path).map_err(|e| {
            Error::DeployFailed(format!(
                "{}: HAProxy serves {} but the file cannot be read ({e}); cannot record last-known-good",
                target.id,
                conn.cert_path.display()
            ))
        })?;
        let disk = zeroize::Zeroizing::new(disk);
        let (chain, key) = split_chain_and_key(&disk);
        let disk_sha1 =
            leaf_sha1(&chain).map_err(|e| Error::DeployFailed(format!("{}: {e}", target.id)))?;
        if disk_sha1 != sha1 {
            return Err(Error::DeployFailed(format!(
                "{}: HAProxy serves a certificate (SHA-1 {sha1}) that differs from {} on disk; cannot record last-known-good",
                target.id,
                conn.cert_path.display()
            )));
        }
        let fingerprint =
            leaf_sha256(&chain).map_err(|e| Error::DeployFailed(format!("{}: {e}", target.id)))?;
        current_reference(
            self.keystore.as_ref(),
            &target.id,
            &conn.cert_path,
            Some(fingerprint),
            move || {
                let key = key.ok_or_else(|| {
                    Error::DeployFailed(format!(
                        "{}: {} holds no private key",
                        target.id,
                        conn.cert_path.display()
                    ))
                })?;
                Ok((chain, key))
            },
        )
        .await
    }

    /// Replaces the certificate in the running HAProxy (commit or abort), then on disk.
    pub async fn deploy(
        &self,
        target: &Target,
        conn: &HaproxyConnection,
        bundle_ref: &str,
        evidence: &Evidence,
    ) -> Result<(), Error> {
        let (bundle, fingerprint) =
            load_bundle(self.keystore.as_ref(), &target.id, bundle_ref).await?;
        let path = conn.cert_path.display().to_string();
        let mut answers = Vec::new();
        let known = self.loaded(target, conn).await?.is_some();
        if !known {
            if conn.crt_list.is_none() {
                return Err(Error::DeployFailed(format!(
                    "{}: HAProxy does not know {path} and no crt_list is configured to add it to",
                    target.id
                )));
            }
            let answer = self
                .api(target, conn, &format!("new ssl cert {path}"), None)
                .await?;
            answers.push(json!({"command": "new ssl cert", "answer": first_line(&answer)}));
            if !answer.contains("New empty certificate store") {
                return self.refused(evidence, target, &answers, "new ssl cert", &answer);
            }
        }
        let payload = zeroize::Zeroizing::new(format!(
            "{}\n{}",
            bundle.chain_pem.trim_end(),
            bundle.key.expose().trim_end()
        ));
        let answer = self
            .api(
                target,
                conn,
                &format!("set ssl cert {path}"),
                Some(&payload),
            )
            .await?;
        answers.push(json!({"command": "set ssl cert", "answer": first_line(&answer)}));
        if !answer.contains("Transaction created") && !answer.contains("Transaction updated") {
            self.abort(target, conn, &mut answers).await;
            self.forget_new(known, target, conn, &mut answers).await;
            return self.refused(evidence, target, &answers, "set ssl cert", &answer);
        }
        let answer = self
            .api(target, conn, &format!("commit ssl cert {path}"), None)
            .await?;
        answers.push(json!({"command": "commit ssl cert", "answer": answer.trim()}));
        if !answer.contains("Success!") {
            self.abort(target, conn, &mut answers).await;
            self.forget_new(known, target, conn, &mut answers).await;
            return self.refused(evidence, target, &answers, "commit ssl cert", &answer);
        }
        if let (false, Some(list)) = (known, &conn.crt_list) {
            let answer = self
                .api(
                    target,
                    conn,
                    &format!("add ssl crt-list {} {path}", list.display()),
                    None,
                )
                .await?;
            answers.push(json!({"command": "add ssl crt-list", "answer": first_line(&answer)}));
            if !answer.contains("Success!") {
                // Committed but attached to no crt-list: not in use, so it can go.
                self.forget_new(known, target, conn, &mut answers).await;
                return self.refused(evidence, target, &answers, "add ssl crt-list", &answer);
            }
        }
        // The same PEM on disk, so a restart serves it too.
        let (mode, owner) = existing_mode_owner(&conn.cert_path);
        write_atomic(&conn.cert_path, payload.as_bytes(), mode, owner).map_err(|e| {
            Error::DeployFailed(format!("{}: committed in HAProxy, but {e}", target.id))
        })?;
        write_record(
            &conn.cert_path,
            &InstalledRecord {
                reference: bundle_ref.to_string(),
                fingerprint,
            },
        )?;
        evidence.put(
            &target.id,
            json!({"adapter": "haproxy", "bundleRef": bundle_ref, "runtimeApi": answers}),
        );
        tracing::info!(target = %target.id, bundle = %bundle_ref, "HAProxy certificate committed");
        Ok(())
    }

    async fn abort(
        &self,
        target: &Target,
        conn: &HaproxyConnection,
        answers: &mut Vec<serde_json::Value>,
    ) {
        let cmd = format!("abort ssl cert {}", conn.cert_path.display());
        let answer = match self.api(target, conn, &cmd, None).await {
            Ok(a) => first_line(&a).to_string(),
            Err(e) => e.to_string(),
        };
        answers.push(json!({"command": "abort ssl cert", "answer": answer}));
    }

    /// After a refusal on a path HAProxy did not know (`known` false), removes the entry
    /// `new ssl cert` created (`del ssl cert`), so a failed deploy leaves nothing behind.
    async fn forget_new(
        &self,
        known: bool,
        target: &Target,
        conn: &HaproxyConnection,
        answers: &mut Vec<serde_json::Value>,
    ) {
        if known {
            return;
        }
        let cmd = format!("del ssl cert {}", conn.cert_path.display());
        let answer = match self.api(target, conn, &cmd, None).await {
            Ok(a) => first_line(&a).to_string(),
            Err(e) => e.to_string(),
        };
        if !answer.contains("deleted") {
            tracing::warn!(target = %target.id, answer = %answer, "HAProxy kept the new certificate entry");
        }
        answers.push(json!({"command": "del ssl cert", "answer": answer}));
    }

    fn refused(
        &self,
        evidence: &Evidence,
        target: &Target,
        answers: &[serde_json::Value],
        step: &str,
        answer: &str,
    ) -> Result<(), Error> {
        evidence.put(
            &target.id,
            json!({"adapter": "haproxy", "runtimeApi": answers}),
        );
        Err(Error::DeployFailed(format!(
            "{}: HAProxy refused {step}: {}; transaction aborted, nothing changed",
            target.id,
            first_line(answer)
        )))
    }

    /// Nothing to reload — a commit takes effect at once — so this confirms that HAProxy
    /// has loaded what is on disk.
    pub async fn reload(
        &self,
        target: &Target,
        conn: &HaproxyConnection,
        evidence: &Evidence,
    ) -> Result<(), Error> {
        let loaded = self.loaded(target, conn).await?;
        let disk = std::fs::read_to_string(&conn.cert_path)
            .ok()
            .and_then(|t| leaf_sha1(&split_chain_and_key(&t).0).ok());
        if loaded.is_none() || loaded != disk {
            return Err(Error::DeployFailed(format!(
                "{}: HAProxy has loaded {:?} for {} but the file holds {:?}",
                target.id,
                loaded,
                conn.cert_path.display(),
                disk
            )));
        }
        evidence.merge(&target.id, json!({"loadedSha1": loaded}));
        Ok(())
    }
}

fn existing_mode_owner(path: &Path) -> (u32, Ownership) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(m) => (
            m.permissions().mode() & 0o777,
            Ownership {
                uid: Some(m.uid()),
                gid: Some(m.gid()),
            },
        ),
        // The file holds the key: owner-only unless it already existed with another mode.
        Err(_) => (0o600, Ownership::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_ssl_cert_answers_parse() {
        let answer =
            "Filename: /x.pem\nStatus: Used\nSHA1 FingerPrint: 97ff487cb3ef\nSubject: /CN=a\n\n";
        assert_eq!(loaded_sha1(answer), Some("97FF487CB3EF".into()));
        assert_eq!(
            loaded_sha1(
                "Can't display the certificate: Not found or the certificate is a bundle!\n"
            ),
            None
        );
        assert_eq!(first_line("\n  Success!\n"), "Success!");
    }
}
