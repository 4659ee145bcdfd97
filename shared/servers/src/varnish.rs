//! Varnish as a CDN purger, two ways:
//!
//! - **HTTP**: `PURGE <path>` for an exact path and `BAN <prefix>` for a path ending in `*`,
//!   sent to a Varnish listener whose VCL allows certops (an ACL); anything but a 2xx answer
//!   is a refusal (`PurgeFailed`).
//! - **Admin port** (`varnishd -T`): the CLI protocol `varnishadm` speaks — answer the
//!   challenge with SHA-256 over the secret file (`varnishd -S`), then one
//!   `ban req.url == <path>` / `ban req.url ~ ^<prefix>` per path.

use std::path::Path;
use std::time::Duration;

use certops_core::inventory::VarnishConnection;
use certops_core::{Cdn, Error};
use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Purges through Varnish.
pub struct VarnishPurger {
    http: reqwest::Client,
}

fn failed(cdn: &Cdn, msg: impl std::fmt::Display) -> Error {
    Error::PurgeFailed(format!("varnish {}: {msg}", cdn.distribution_id))
}

/// Escapes regular-expression metacharacters of a path prefix.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One CLI answer: (status, body).
async fn read_answer<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<(u16, String)> {
    let mut head = String::new();
    r.read_line(&mut head).await?;
    let mut parts = head.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok());
    let len: Option<usize> = parts.next().and_then(|s| s.parse().ok());
    let (Some(status), Some(len)) = (status, len) else {
        return Err(std::io::Error::other(format!(
            "not a Varnish CLI answer: {:?}",
            head.trim()
        )));
    };
    let mut body = vec![0u8; len.min(1 << 20) + 1];
    r.read_exact(&mut body).await?;
    body.pop();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Runs CLI `commands` on a Varnish admin port, authenticating with `secret_file`.
/// Returns each command's answer; stops at the first that is not 200.
pub async fn varnish_cli(
    admin: &str,
    secret_file: &Path,
    commands: &[String],
) -> Result<Vec<(u16, String)>, String> {
    let secret = zeroize::Zeroizing::new(
        std::fs::read(secret_file)
            .map_err(|e| format!("secret file {}: {e}", secret_file.display()))?,
    );
    let stream = TcpStream::connect(admin)
        .await
        .map_err(|e| format!("admin port {admin}: {e}"))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let io = |e: std::io::Error| format!("admin port {admin}: {e}");
    let (status, body) = read_answer(&mut read).await.map_err(io)?;
    if status == 107 {
        let challenge = body.lines().next().unwrap_or_default();
        let mut h = sha2::Sha256::new();
        h.update(challenge.as_bytes());
        h.update(b"\n");
        h.update(&secret[..]);
        h.update(challenge.as_bytes());
        h.update(b"\n");
        let line = format!("auth {}\n", hex::encode(h.finalize()));
        write.write_all(line.as_bytes()).await.map_err(io)?;
        let (status, body) = read_answer(&mut read).await.map_err(io)?;
        if status != 200 {
            return Err(format!(
                "admin port {admin} refused authentication ({status}): {}",
                body.lines().next().unwrap_or_default()
            ));
        }
    } else if status != 200 {
        return Err(format!("admin port {admin} answered {status}"));
    }
    let mut answers = Vec::new();
    for command in commands {
        write
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(io)?;
        let (status, body) = read_answer(&mut read).await.map_err(io)?;
        answers.push((status, body));
        if status != 200 {
            break;
        }
    }
    Ok(answers)
}

/// The ban expression for one path (and host, if any), quoted for the CLI.
fn ban_command(path: &str, host: Option<&str>) -> String {
    let url = match path.strip_suffix('*') {
        Some(prefix) => format!(
            "req.url ~ \"^{}\"",
            regex_escape(prefix).replace('"', "\\\"")
        ),
        None => format!("req.url == \"{}\"", path.replace('"', "\\\"")),
    };
    match host {
        Some(h) => format!(
            "ban req.http.host == \"{}\" && {url}",
            h.replace('"', "\\\"")
        ),
        None => format!("ban {url}"),
    }
}

impl VarnishPurger {
    /// A purger with its own HTTP client.
    pub fn new() -> Result<VarnishPurger, Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Error::InvalidInput(format!("HTTP client: {e}")))?;
        Ok(VarnishPurger { http })
    }

    /// Purges every path of `cdn`; returns a new invalidation id.
    pub async fn purge(&self, cdn: &Cdn, conn: &VarnishConnection) -> Result<String, Error> {
        if cdn.paths.is_empty() {
            return Err(Error::InvalidInput(format!(
                "purge of {} names no paths",
                cdn.distribution_id
            )));
        }
        let timeout = Duration::from_secs(conn.timeout_seconds);
        if let Some(base) = &conn.http {
            for path in &cdn.paths {
                let (method, url_path) = match path.strip_suffix('*') {
                    Some(prefix) => ("BAN", prefix),
                    None => ("PURGE", path.as_str()),
                };
                let method =
                    reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| failed(cdn, e))?;
                let mut req = self
                    .http
                    .request(
                        method.clone(),
                        format!("{}{url_path}", base.trim_end_matches('/')),
                    )
                    .timeout(timeout);
                if let Some(host) = &conn.host {
                    req = req.header(reqwest::header::HOST, host);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| failed(cdn, format!("{method} {path}: {e}")))?;
                if !resp.status().is_success() {
                    return Err(failed(
                        cdn,
                        format!("{method} {path} refused: {}", resp.status()),
                    ));
                }
            }
        } else if let (Some(admin), Some(secret)) = (&conn.admin, &conn.secret_file) {
            let commands: Vec<String> = cdn
                .paths
                .iter()
                .map(|p| ban_command(p, conn.host.as_deref()))
                .collect();
            let answers = tokio::time::timeout(timeout, varnish_cli(admin, secret, &commands))
                .await
                .map_err(|_| {
                    failed(
                        cdn,
                        format!(
                            "admin port {admin}: no answer within {} s",
                            timeout.as_secs()
                        ),
                    )
                })?
                .map_err(|e| failed(cdn, e))?;
            if let Some((status, body)) = answers.iter().find(|(s, _)| *s != 200) {
                return Err(failed(
                    cdn,
                    format!(
                        "ban refused ({status}): {}",
                        body.lines().next().unwrap_or_default()
                    ),
                ));
            }
            if answers.len() != commands.len() {
                return Err(failed(
                    cdn,
                    "admin port closed before every ban was answered",
                ));
            }
        } else {
            return Err(failed(cdn, "connection names neither `http` nor `admin`"));
        }
        let id = format!("varnish-{}", uuid::Uuid::new_v4());
        tracing::info!(distribution = %cdn.distribution_id, %id, "varnish purged");
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_expressions_escape_paths() {
        assert_eq!(
            ban_command("/index.html", None),
            "ban req.url == \"/index.html\""
        );
        assert_eq!(
            ban_command("/static/*", None),
            "ban req.url ~ \"^/static/\""
        );
        assert_eq!(
            ban_command("/a.b*", Some("shop")),
            "ban req.http.host == \"shop\" && req.url ~ \"^/a\\.b\""
        );
    }
}
