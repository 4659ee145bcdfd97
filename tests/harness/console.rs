//! The web console's real-browser setup: the demo's scenarios in a data
//! directory, console accounts added through `certops user add`, an incident
//! in the local ticket book waiting for approval, `certops serve` on a free
//! loopback port (stopped on drop), and the system chromium driven by
//! `playwright-core` (`tests/node/console_browser.mjs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `certops` binary: `CERTOPS_BIN` when set (a copy built from this tree, when the
/// target directory is shared), else the one beside the test executable.
pub fn certops_bin() -> PathBuf {
    std::env::var_os("CERTOPS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(crate::process::certops_bin)
}

/// The chromium the browser tests drive (Debian package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs `certops --data-dir <dir> demo --json`; returns `<dir>/demo` and the report.
pub fn run_demo(dir: &Path) -> (PathBuf, serde_json::Value) {
    let out = Command::new(certops_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(["demo", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run certops demo");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "certops demo printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "the demo's scenarios did not all pass: {report:#}"
    );
    (dir.join("demo"), report)
}

/// Adds a console account with `certops user add`, the password on stdin.
pub fn add_user(data: &Path, name: &str, password: &str) {
    let mut child = Command::new(certops_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["user", "add", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run certops user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("certops user add");
    assert!(
        out.status.success(),
        "certops user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens an incident for `ci` in the data directory's ticket book (as the
/// ServiceNow side would), requested by `requester`; returns its number.
pub fn open_incident(data: &Path, ci: &str, requester: &str) -> String {
    use certops_core::ports::{Itsm, NewTicket, SystemClock, TicketKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let db = certops_adapters::LocalDb::open(&data.join(certops_adapters::DB_FILE)).expect("db");
    let book = certops_adapters::TicketBook::new(db, std::sync::Arc::new(SystemClock));
    let ticket = rt
        .block_on(book.open(NewTicket {
            kind: TicketKind::Incident,
            short_description: format!("{ci}: certificate renewal requested by {requester}"),
            description: "Opened by the console browser test".into(),
            ci: ci.into(),
            priority: 3,
            correlation_id: format!("console-test-{ci}-{requester}"),
            standard_change: None,
        }))
        .expect("open the incident");
    ticket.number
}

/// Starts the workflow for a ServiceNow-shaped ticket with `certops run --trigger`,
/// which returns once the execution waits for its approval. Returns the execution name.
pub fn start_waiting_for_approval(data: &Path, number: &str, ci: &str, requester: &str) -> String {
    let trigger = data.join(format!("trigger-{number}.json"));
    std::fs::write(
        &trigger,
        serde_json::json!({"number": number, "sys_id": format!("sys-{number}"), "sys_class_name": "incident",
            "category": "Certificate", "cmdb_ci": {"display_value": ci}, "u_environment": "prod",
            "opened_by": {"display_value": requester}, "priority": "3"})
        .to_string(),
    )
    .expect("write trigger");
    let out = Command::new(certops_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["run", "--json", "--timeout", "60s", "--trigger"])
        .arg(&trigger)
        .stdin(Stdio::null())
        .output()
        .expect("run certops run --trigger");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "certops run printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(doc["status"], "RUNNING", "{doc:#}");
    assert!(
        doc["waitingForApproval"].is_object(),
        "not waiting: {doc:#}"
    );
    doc["execution"]
        .as_str()
        .and_then(|arn| arn.rsplit(':').next())
        .expect("execution arn")
        .to_string()
}

/// Serves one of the demo's certificate objects again, on a real nginx: the demo's own
/// in-process endpoints end with the demo process, and `certops serve` (another process)
/// could not deploy to them. The bundle the demo left as `keystore:current/<cert_id>` is
/// served by a private nginx on loopback, and the data directory's `config/inventory.toml`
/// entry is pointed at it: its target becomes that nginx (with its connection table) and its
/// endpoint the nginx's port, so a renewal approved in the console deploys, reloads and
/// verifies for real. Stops on drop.
pub fn revive_on_nginx(data: &Path, cert_id: &str) -> crate::servers::nginx::Nginx {
    use certops_core::ports::Keystore;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keystore = certops_adapters::FileKeystore::open(&data.join(certops_adapters::KEYSTORE_DIR))
        .expect("keystore");
    let bundle = runtime
        .block_on(keystore.get_bundle(&format!("keystore:current/{cert_id}")))
        .expect("the demo's current bundle");
    let nginx = crate::servers::nginx::Nginx::start(&crate::contract::keystore::Issued {
        chain_pem: bundle.chain_pem.clone(),
        leaf_pem: String::new(),
        key_pem: bundle.key.expose().to_string(),
        not_after: 0,
    });
    let target = format!("edge-{cert_id}");
    let inventory = data.join("config/inventory.toml");
    let text = std::fs::read_to_string(&inventory).expect("demo config/inventory.toml");
    let mut out = Vec::new();
    let mut inside = false;
    let mut rewritten = 0;
    for line in text.lines() {
        if line.starts_with("[[certificate]]") || line.starts_with('[') {
            inside = false;
        }
        if line.trim() == format!("id = \"{cert_id}\"") {
            inside = true;
        }
        if inside && line.starts_with("targets = ") {
            out.push(format!(
                "targets = [{{ kind = \"nginx\", id = \"{target}\", reload = \"nginx-reload\" }}]"
            ));
            rewritten += 1;
        } else if inside && line.starts_with("endpoints = ") {
            let sni = line
                .split("sni = \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("the endpoint's SNI");
            out.push(format!(
                "endpoints = [{{ host = \"127.0.0.1\", port = {}, sni = \"{sni}\" }}]",
                nginx.port
            ));
            rewritten += 1;
        } else {
            out.push(line.to_string());
        }
    }
    assert_eq!(
        rewritten,
        2,
        "no targets/endpoints of {cert_id} in {}",
        inventory.display()
    );
    let mut text = out.join("\n");
    text.push_str("\n\n");
    text.push_str(&nginx.connection_toml(&target));
    std::fs::write(&inventory, text).expect("write inventory");
    nginx
}

/// `certops serve` with the console, killed on drop.
pub struct Console {
    child: Child,
    /// The port.
    pub port: u16,
}

impl Console {
    /// `http://127.0.0.1:<port>/console`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/console", self.port)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `certops serve` over `data` with the scheduler running once at start
/// (every hour after), so the Scans and Certificates pages have a scan to show.
pub fn start_console(data: &Path, port: u16) -> Console {
    let child = Command::new(certops_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--scan-every", "1h", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start certops serve");
    let console = Console { child, port };
    crate::eventually::eventually(
        &format!("certops serve listening on 127.0.0.1:{port}"),
        Duration::from_secs(30),
        || crate::eventually::listening(port).then_some(()),
    );
    console
}

/// The node tools directory (`tests/node`), with `playwright-core` installed.
pub fn node_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm install --prefix tests/node` (the README's test command does)"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install the Debian package chromium (scripts/test-all.sh does)"
    );
    dir
}
