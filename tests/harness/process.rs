//! Starting `certops` (and other real components) on free loopback ports for
//! tests, and stopping them when the handle drops.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The `certops` binary of this build: `CERTOPS_BIN` when set, else beside the
/// test executable's `deps/` directory (build it first with `cargo build -p certops-cli`).
pub fn certops_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CERTOPS_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let bin = profile_dir.join("certops");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p certops-cli`",
        bin.display()
    );
    bin
}

/// The SigV4 credentials (access key id, secret) of a principal of the local
/// Step Functions API, as `certops serve` generated them in `data_dir`.
pub fn api_credentials(data_dir: &Path, principal: &str) -> (String, String) {
    let path = data_dir.join("api-credentials.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is unreadable: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("credentials json");
    let p = v["principals"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == principal))
        .unwrap_or_else(|| panic!("no principal {principal} in {}", path.display()));
    (
        p["accessKeyId"].as_str().unwrap_or_default().to_string(),
        p["secretAccessKey"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Operator credentials of each started server, by port, for [`sfn_client`].
static CREDENTIALS: std::sync::Mutex<Vec<(u16, (String, String))>> =
    std::sync::Mutex::new(Vec::new());

/// A child process killed on drop.
pub struct Running {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Running {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the process has exited (for instance aborted at a crash point).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills the process (as a crash would) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `certops serve --port <free> --data-dir <dir>` and waits until it accepts connections.
pub fn start_serve(data_dir: &Path) -> Running {
    start_serve_on(data_dir, free_port())
}

/// Starts `certops serve` on a given port.
pub fn start_serve_on(data_dir: &Path, port: u16) -> Running {
    start_serve_with(data_dir, port, &[])
}

/// Starts `certops serve` with extra environment variables (scheduler off).
pub fn start_serve_with(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Running {
    start_serve_scanning(data_dir, port, env, "0s")
}

/// As [`start_serve_with`], with the expiry scan every `scan_every` (the first one runs at
/// start-up; `0s` never scans).
pub fn start_serve_scanning(
    data_dir: &Path,
    port: u16,
    env: &[(&str, &str)],
    scan_every: &str,
) -> Running {
    let mut running = spawn_serve(data_dir, port, env, scan_every);
    assert!(
        !running.exited(),
        "certops serve on 127.0.0.1:{port} exited during start-up"
    );
    running
}

/// Starts `certops serve` as [`start_serve_scanning`] does and waits until it accepts
/// connections or exits (a crash test's server may abort before the harness connects);
/// check [`Running::exited`].
pub fn spawn_serve(data_dir: &Path, port: u16, env: &[(&str, &str)], scan_every: &str) -> Running {
    let child = Command::new(certops_bin())
        .args([
            "serve",
            "--scan-every",
            scan_every,
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(data_dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", certops_bin().display()));
    let mut running = Running { child, port };
    // Done when it listens, or when it exited (a crash test's abort before listening).
    let listening = crate::eventually::eventually(
        &format!("certops serve listening on 127.0.0.1:{port}"),
        Duration::from_secs(30),
        || {
            if running.exited() {
                Some(false)
            } else {
                crate::eventually::listening(port).then_some(true)
            }
        },
    );
    if listening {
        let creds = api_credentials(data_dir, "operator");
        if let Ok(mut all) = CREDENTIALS.lock() {
            all.retain(|(p, _)| *p != port);
            all.push((port, creds));
        }
    }
    running
}

/// The operator's SigV4 credentials of the `certops serve` this harness started on `port`.
pub fn operator_credentials(port: u16) -> (String, String) {
    CREDENTIALS
        .lock()
        .ok()
        .and_then(|all| all.iter().find(|(p, _)| *p == port).map(|(_, c)| c.clone()))
        .unwrap_or_else(|| ("unknown".into(), "unknown".into()))
}

/// An `aws-sdk-sfn` client for a local endpoint started by this harness, signing
/// (SigV4) with that server's operator credentials, us-east-1.
pub fn sfn_client(url: &str) -> aws_sdk_sfn::Client {
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(0);
    let (akid, secret) = operator_credentials(port);
    sfn_client_as(url, &akid, &secret)
}

/// An `aws-sdk-sfn` client for a local endpoint signing with the given credentials.
pub fn sfn_client_as(url: &str, access_key_id: &str, secret: &str) -> aws_sdk_sfn::Client {
    let conf = aws_sdk_sfn::Config::builder()
        .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
        .region(aws_sdk_sfn::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            access_key_id,
            secret,
            None,
            None,
            "static",
        ))
        .build();
    aws_sdk_sfn::Client::from_conf(conf)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// POSTs `body` to the local Step Functions API at `127.0.0.1:port`, signed with
/// SigV4 (the steps written here from AWS's documentation) as of `at`; returns the
/// status and the whole response. For malformed or stale requests the SDKs will not send.
pub fn sigv4_post(
    port: u16,
    akid: &str,
    secret: &str,
    at: chrono::DateTime<chrono::Utc>,
    target: &str,
    body: &str,
) -> (u16, String) {
    try_sigv4_post(port, akid, secret, at, target, body)
        .unwrap_or_else(|e| panic!("{target} to 127.0.0.1:{port}: {e}"))
}

/// [`sigv4_post`], with a connection that fails or is cut (a server that crashed) as `Err`.
pub fn try_sigv4_post(
    port: u16,
    akid: &str,
    secret: &str,
    at: chrono::DateTime<chrono::Utc>,
    target: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    use sha2::Digest;
    use std::io::{Read, Write};
    let amz_date = at.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let host = format!("127.0.0.1:{port}");
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/x-amz-json-1.0\nhost:{host}\nx-amz-date:{amz_date}\nx-amz-target:{target}\n\ncontent-type;host;x-amz-date;x-amz-target\n{}",
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    );
    let scope = format!("{date}/us-east-1/states/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
    let key = [date.as_bytes(), b"us-east-1", b"states", b"aws4_request"]
        .iter()
        .fold(format!("AWS4{secret}").into_bytes(), |k, part| {
            hmac(&k, part)
        });
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
        hex::encode(hmac(&key, sts.as_bytes()))
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Date: {amz_date}\r\nX-Amz-Target: {target}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, out))
}
