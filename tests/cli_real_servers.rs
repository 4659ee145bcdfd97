//! The embedded default, for real: the `certops` binary (built with `cargo build -p
//! certops-cli`) renews and deploys to a real nginx and a real HAProxy started by the
//! harness on loopback, the way a team without AWS runs it — a config dir with an inventory
//! whose `[target."<id>"]` tables point at them, the fallback bundle imported with
//! `certops keystore import`, then `certops run --trigger FILE` and `certops approve`, each
//! a separate process. A fresh TLS handshake must see the renewed leaf on both servers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use certops_tests::contract::keystore::TestCa;
use certops_tests::process::certops_bin;
use certops_tests::servers::haproxy::Haproxy;
use certops_tests::servers::nginx::Nginx;
use certops_tests::servers::observe;
use serde_json::{json, Value};

const DNS: &str = "shop.example.com";
const OWNER: &str = "olivia@example.com";

fn certops(data: &Path, args: &[&str]) -> Output {
    Command::new(certops_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run certops")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certops_run_and_approve_renew_and_deploy_to_a_real_nginx_and_haproxy() {
    let legacy = TestCa::new();
    let initial = legacy.issue(DNS, 7);
    let nginx = Nginx::start(&initial);
    let haproxy = Haproxy::start(&initial);
    let before = observe(nginx.port, &legacy.root_pem).await;
    assert_eq!(
        observe(haproxy.port, &legacy.root_pem).await.fingerprint,
        before.fingerprint
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("config dir");
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
  {{ kind = "nginx", id = "edge-nginx", reload = "nginx-reload" }},
  {{ kind = "haproxy", id = "edge-haproxy", reload = "haproxy-runtime-api" }},
]
endpoints = [
  {{ host = "127.0.0.1", port = {np}, sni = "{DNS}" }},
  {{ host = "127.0.0.1", port = {hp}, sni = "{DNS}" }},
]

{nconn}
{hconn}"#,
        np = nginx.port,
        hp = haproxy.port,
        nconn = nginx.connection_toml("edge-nginx"),
        hconn = haproxy.connection_toml("edge-haproxy"),
    );
    std::fs::write(config.join("inventory.toml"), inventory).expect("inventory");
    std::fs::write(
        config.join("policy.toml"),
        certops_tests::world::policy(None),
    )
    .expect("policy");
    std::fs::write(
        config.join("cert-renewal.runbook.toml"),
        certops_tests::world::RUNBOOK,
    )
    .expect("runbook");
    let config_arg = config.display().to_string();

    // The fallback bundle validation requires: a world-readable key is refused.
    let fallback = legacy.issue(DNS, 60);
    let (fcert, fkey) = (dir.path().join("fb.crt"), dir.path().join("fb.key"));
    std::fs::write(&fcert, &fallback.chain_pem).expect("fb cert");
    std::fs::write(&fkey, &fallback.key_pem).expect("fb key");
    std::fs::set_permissions(&fkey, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (c, k) = (fcert.display().to_string(), fkey.display().to_string());
    let import = [
        "keystore",
        "import",
        "fallback/shop-web-prod",
        "--cert",
        &c,
        "--key",
        &k,
    ];
    let refused = certops(&data, &import);
    assert!(!refused.status.success(), "a 0644 key must be refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("0644") && stderr.contains("600"),
        "{stderr}"
    );
    assert!(!stderr.contains(fallback.key_body().as_str()), "{stderr}");
    std::fs::set_permissions(&fkey, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let imported = certops(&data, &import);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&imported.stdout).trim(),
        "keystore:fallback/shop-web-prod"
    );

    // The daily scan's finding, as a file.
    let trigger = dir.path().join("trigger.json");
    std::fs::write(
        &trigger,
        json!({"ci": "shop-web-prod", "observed_expiry": before.not_after,
               "observed_fingerprint": before.fingerprint})
        .to_string(),
    )
    .expect("trigger");
    let t = trigger.display().to_string();
    let run = certops(
        &data,
        &[
            "run",
            "--trigger",
            &t,
            "--config-dir",
            &config_arg,
            "--json",
            "--timeout",
            "60s",
        ],
    );
    let doc = json_of(&run);
    assert_eq!(doc["status"], "RUNNING", "{doc}");
    let card = &doc["waitingForApproval"];
    let approval = card["approval_id"].as_str().expect("waiting for approval");
    assert_eq!(card["approvers"], json!([OWNER]), "{doc}");

    let approve = certops(
        &data,
        &[
            "approve",
            approval,
            "--as",
            OWNER,
            "--comment",
            "approved in the CLI real-server test",
            "--config-dir",
            &config_arg,
            "--json",
        ],
    );
    let done = json_of(&approve);
    assert_eq!(done["status"], "SUCCEEDED", "{done}");

    // A fresh handshake on each real server sees the renewed leaf.
    let root = certops_root(&data).await;
    let after_nginx = observe(nginx.port, &root).await;
    let after_haproxy = observe(haproxy.port, &root).await;
    assert_ne!(after_nginx.fingerprint, before.fingerprint);
    assert_eq!(after_nginx.fingerprint, after_haproxy.fingerprint);
    assert!(after_nginx.chain_valid && after_haproxy.chain_valid);
    assert!(after_nginx.not_after > before.not_after);
    let output = done["output"].to_string();
    assert!(
        output.contains(&after_nginx.fingerprint),
        "the verify step saw the same leaf: {output}"
    );

    // The audit trail the run left is intact.
    let audit = certops(&data, &["audit", "verify", "--json"]);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    assert_eq!(json_of(&audit)["broken"], 0);
}

/// The embedded CA's root, read back through the keystore the CLI used.
async fn certops_root(data: &Path) -> String {
    let clock: std::sync::Arc<dyn certops_core::ports::Clock> =
        std::sync::Arc::new(certops_core::ports::SystemClock);
    let adapters = certops_adapters::Embedded::open(data, clock).expect("open");
    certops_core::ports::Issuer::trust_anchors_pem(adapters.ca.as_ref())
        .await
        .expect("anchors")
        .expect("a root")
}
