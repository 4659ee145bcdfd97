//! Real servers from Debian, started by the tests as private instances on free loopback
//! ports, with every pid, temp, log and socket path inside a temporary directory, and
//! stopped (the whole process group) when the handle drops. Certificates are issued at run
//! time by the contract suite's [`crate::contract::keystore::TestCa`]; no key is ever on disk
//! outside the temporary directory.
//!
//! A missing binary fails the test with the package to install (`scripts/test-all.sh`
//! installs them); nothing is skipped.

pub mod haproxy;
pub mod nginx;
pub mod origin;
pub mod scenarios;
pub mod varnish;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The path of a server binary, or a panic naming the Debian package to install.
pub fn require(binary: &str, package: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{binary} is required by this test and is not installed: `apt-get install {package}` \
         (scripts/test-all.sh does it)"
    );
}

/// A server process in its own process group, stopped with its children on drop.
pub struct ProcessGroup {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl ProcessGroup {
    /// Starts `cmd` in a new process group, output to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> ProcessGroup {
        let out = std::fs::File::create(log).expect("server log");
        let err = out.try_clone().expect("server log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ProcessGroup {
            child,
            name,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until `ready` holds, or panics with the log after `timeout`. Fails at once if
    /// the process exited.
    pub fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let ready = crate::eventually::poll(timeout, || {
            if ready() {
                return Some(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.name,
                    self.log()
                );
            }
            None
        });
        assert!(
            ready.is_some(),
            "{} not ready within {timeout:?}:\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SIGTERM to the group, then SIGKILL whatever is left.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        // Whatever has not ended after 5 s is killed below.
        let _ = crate::eventually::poll(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten()
        });
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something accepts TCP connections on `addr`.
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// `127.0.0.1:<port>`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Writes a file with mode 0600 (keys, combined PEMs, secrets).
pub fn write_private(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// What a TLS handshake on `127.0.0.1:<port>` with SNI `shop.example.com` sees, trusting
/// `root_pem` as well as the defaults.
pub async fn observe(port: u16, root_pem: &str) -> certops_core::ports::Observation {
    use certops_core::ports::Prober;
    let prober = certops_adapters::TlsProber::new(Duration::from_secs(5)).expect("prober");
    let endpoint = certops_core::Endpoint {
        host: "127.0.0.1".into(),
        port,
        sni: "shop.example.com".into(),
    };
    let mut obs = prober
        .probe(&endpoint, Some(root_pem))
        .await
        .unwrap_or_else(|e| panic!("handshake with 127.0.0.1:{port}: {e}"));
    obs.pop().expect("one observation")
}

/// Polls the handshake on `port` until it serves `fingerprint` (a reload propagating), or
/// returns what it serves at the deadline.
pub async fn observe_until(
    port: u16,
    root_pem: &str,
    fingerprint: &str,
    timeout: Duration,
) -> certops_core::ports::Observation {
    let served = crate::eventually::poll_async(timeout, || async move {
        let o = observe(port, root_pem).await;
        (o.fingerprint == fingerprint).then_some(o)
    })
    .await;
    match served {
        Some(o) => o,
        // Not within the time: what is served now, for the caller's assertion to show.
        None => observe(port, root_pem).await,
    }
}

/// SHA-256 of the first certificate of a PEM chain, hex (what the prober reports).
pub fn fingerprint(chain_pem: &str) -> String {
    certops_core::workflow::leaf_facts(chain_pem)
        .expect("leaf")
        .fingerprint
}

/// The name the real servers' test certificates are issued for.
pub const DNS: &str = "shop.example.com";

/// One internal-PKI certificate for [`DNS`] in prod, verified on port 443, deployed to
/// `targets` (TOML inline tables), with any `extra` lines after.
fn certificate(id: &str, ci: &str, targets: &str, extra: &str) -> String {
    format!(
        "[[certificate]]\nid = \"{id}\"\nci = \"{ci}\"\ncommon_name = \"{DNS}\"\nenvironment = \"prod\"\n\
         issuer = {{ name = \"corp-pki\", method = \"internal-pki\" }}\ntargets = [{targets}]\n\
         endpoints = [{{ host = \"127.0.0.1\", port = 443, sni = \"{DNS}\" }}]\n{extra}\n"
    )
}

/// An inventory of one certificate (id `shop`) deployed to one target of `kind` per id in
/// `ids`, each reloaded by `reload`, then the `connections` tables that say how to reach
/// them.
pub fn targets_inventory(
    kind: &str,
    reload: &str,
    ids: &[&str],
    connections: &str,
) -> certops_core::Inventory {
    let targets: Vec<String> = ids
        .iter()
        .map(|id| format!("{{ kind = \"{kind}\", id = \"{id}\", reload = \"{reload}\" }}"))
        .collect();
    let text = certificate("shop", "shop-web", &targets.join(", "), "") + connections;
    certops_core::Inventory::from_toml_str(&text).expect("inventory")
}

/// An inventory of one certificate per CDN distribution in `ids`, each of `kind` (an
/// inventory names a CDN from a certificate object), then the `connections` tables.
pub fn cdn_inventory(kind: &str, ids: &[&str], connections: &str) -> certops_core::Inventory {
    let mut text = String::new();
    for (i, id) in ids.iter().enumerate() {
        text.push_str(&certificate(
            &format!("c{i}"),
            &format!("ci-{i}"),
            &format!("{{ kind = \"local\", id = \"t{i}\", reload = \"hot-swap\" }}"),
            &format!(
                "cdn = {{ kind = \"{kind}\", distribution_id = \"{id}\", paths = [\"/*\"] }}\n"
            ),
        ));
    }
    text.push_str(connections);
    certops_core::Inventory::from_toml_str(&text).expect("inventory")
}
