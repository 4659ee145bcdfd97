//! Driving a `certops serve` process from a test: the `certops` CLI on a data directory, a
//! config dir whose targets are real servers, signed Step Functions API calls and approval
//! callbacks over loopback, and polling with a deadline.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::process::certops_bin;

/// The common name of the served certificate object.
pub const DNS: &str = "shop.example.com";
/// Its service owner and change authority.
pub const OWNER: &str = "olivia@example.com";
/// The governed state machine's ARN in `certops serve`.
pub const STATE_MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:cert-renewal";

/// Runs `certops --data-dir <data> <args>`.
pub fn certops(data: &Path, args: &[&str]) -> Output {
    Command::new(certops_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run certops")
}

/// The JSON a command printed (panics with its output otherwise).
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A config dir with one certificate object, `shop-web-prod`, whose targets are the given
/// (`[[targets]]` entry, `[target."<id>"]` table, endpoint port) triples, the always-open
/// test policy and the runbook.
pub fn write_config(config: &Path, targets: &[(String, String, u16)]) {
    std::fs::create_dir_all(config).expect("config dir");
    let entries: Vec<&str> = targets.iter().map(|(e, _, _)| e.as_str()).collect();
    let tables: Vec<&str> = targets.iter().map(|(_, t, _)| t.as_str()).collect();
    let endpoints: Vec<String> = targets
        .iter()
        .map(|(_, _, port)| {
            format!("  {{ host = \"127.0.0.1\", port = {port}, sni = \"{DNS}\" }},")
        })
        .collect();
    let inventory = format!(
        r#"[[certificate]]
id = "shop-web-prod"
ci = "shop-web-prod"
common_name = "{DNS}"
environment = "prod"
service_owner = "{OWNER}"
escalation = ["oncall-shop@example.com"]
change_authority = ["{OWNER}"]
fallback_cert = "keystore:fallback/shop-web-prod"
issuer = {{ name = "corp-pki", method = "internal-pki" }}
targets = [
{entries}
]
endpoints = [
{endpoints}
]

{tables}"#,
        entries = entries
            .iter()
            .map(|e| format!("  {e},"))
            .collect::<Vec<_>>()
            .join("\n"),
        endpoints = endpoints.join("\n"),
        tables = tables.join("\n"),
    );
    std::fs::write(config.join("inventory.toml"), inventory).expect("inventory");
    std::fs::write(config.join("policy.toml"), crate::world::policy(None)).expect("policy");
    std::fs::write(
        config.join("cert-renewal.runbook.toml"),
        crate::world::RUNBOOK,
    )
    .expect("runbook");
}

/// Imports a fallback bundle for `shop-web-prod` (60 days, from `ca`) into `data` with
/// `certops keystore import`, as validation requires; `scratch` holds the files.
pub fn import_fallback(data: &Path, scratch: &Path, ca: &crate::contract::keystore::TestCa) {
    use std::os::unix::fs::PermissionsExt;
    let fallback = ca.issue(DNS, 60);
    let (cert, key) = (scratch.join("fb.crt"), scratch.join("fb.key"));
    std::fs::write(&cert, &fallback.chain_pem).expect("fallback cert");
    std::fs::write(&key, &fallback.key_pem).expect("fallback key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let imported = certops(
        data,
        &[
            "keystore",
            "import",
            "fallback/shop-web-prod",
            "--cert",
            &c,
            "--key",
            &k,
        ],
    );
    assert!(imported.status.success(), "{imported:?}");
}

/// The embedded CA's root, read back through the keystore of `data`.
pub async fn certops_root(data: &Path) -> String {
    let clock: std::sync::Arc<dyn certops_core::ports::Clock> =
        std::sync::Arc::new(certops_core::ports::SystemClock);
    let adapters = certops_adapters::Embedded::open(data, clock).expect("open");
    certops_core::ports::Issuer::trust_anchors_pem(adapters.ca.as_ref())
        .await
        .expect("anchors")
        .expect("a root")
}

/// One HTTP/1.1 POST to `certops serve` on loopback: `(status, body)`, or `None` when the
/// server cannot be reached or hangs up.
pub fn try_post(
    port: u16,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((status, body))
}

/// [`try_post`] that must reach the server.
pub fn post(port: u16, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    try_post(port, path, body, headers).expect("certops serve answers")
}

/// A Step Functions API call (AWS JSON 1.0) to `certops serve`, signed (SigV4) with the
/// operator's credentials of that server; `None` if the server cannot be reached.
pub fn try_sfn(port: u16, action: &str, body: &Value) -> Option<Value> {
    let (akid, secret) = crate::process::operator_credentials(port);
    let (status, text) = crate::process::try_sigv4_post(
        port,
        &akid,
        &secret,
        chrono::Utc::now(),
        &format!("AWSStepFunctions.{action}"),
        &body.to_string(),
    )
    .ok()?;
    let text = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status == 200)
        .then(|| serde_json::from_str(text).ok())
        .flatten()
}

/// [`try_sfn`] that must succeed.
pub fn sfn(port: u16, action: &str, body: Value) -> Value {
    try_sfn(port, action, &body).unwrap_or_else(|| panic!("{action} failed on port {port}"))
}

pub use crate::eventually::poll;

/// The approval id (`APR-…`) in an execution's history, if its approval was requested.
pub fn approval_in_history(history: &Value) -> Option<String> {
    let text = history.to_string().replace("\\\"", "\"");
    let at = text.find("APR-")?;
    Some(
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
    )
}

/// Posts the owner's signed approval of `approval` to `certops serve`: the HTTP status, or
/// `None` if the server cannot be reached.
pub fn approve(port: u16, secret: &str, approval: &str, comment: &str) -> Option<u16> {
    let decision = serde_json::json!({"approver": OWNER, "verdict": "approve", "comment": comment})
        .to_string();
    let ts = chrono::Utc::now().timestamp();
    let signature = certops_core::signature::sign_approval(
        secret.as_bytes(),
        ts,
        approval,
        decision.as_bytes(),
    );
    let ts = ts.to_string();
    try_post(
        port,
        &format!("/approvals/{approval}"),
        &decision,
        &[
            ("x-certops-timestamp", ts.as_str()),
            ("x-certops-signature", signature.as_str()),
        ],
    )
    .map(|(status, _)| status)
}
