//! Starting `certops` (and other real components) on free loopback ports for
//! tests, and stopping them when the handle drops.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The `certops` binary of this build: beside the test executable's `deps/`
/// directory (build it first with `cargo build -p certops-cli`).
pub fn certops_bin() -> PathBuf {
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
    let child = Command::new(certops_bin())
        .args([
            "serve",
            "--scan-every",
            "0s",
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
    let running = Running { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return running;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("certops serve did not start listening on 127.0.0.1:{port} within 30 s");
}

/// An `aws-sdk-sfn` client for a local endpoint (dummy credentials, us-east-1).
pub fn sfn_client(url: &str) -> aws_sdk_sfn::Client {
    let conf = aws_sdk_sfn::Config::builder()
        .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
        .region(aws_sdk_sfn::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .build();
    aws_sdk_sfn::Client::from_conf(conf)
}
