//! The web console in a real browser: after the demo's scenarios, `certops
//! serve` on loopback and the system chromium (headless, driven by
//! playwright-core) check that every page loads without a console error or a
//! failed request, that scenario 4's graph shows Verify failed and Rollback
//! taken, that an approval done in the browser completes the waiting execution (renewed,
//! deployed to a real nginx and verified)
//! with the signed-in approver on the ticket, that self-approval is refused
//! with its reason, and that POSTs without the CSRF token and pages without a
//! session are refused. With `SCREENSHOT_DIR` set, a PNG of every page is saved
//! there (`scripts/screenshots.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_tests::console::{
    add_user, node_dir, open_incident, revive_on_nginx, run_demo, start_console,
    start_waiting_for_approval,
};
use certops_tests::process::free_port;
use std::process::Command;

const APPROVER: &str = "cab-alice@example.com";
const REQUESTER: &str = "olivia@example.com";

#[test]
fn the_console_works_in_a_real_browser() {
    let node = node_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, report) = run_demo(tmp.path());
    let executions: Vec<String> = report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .filter_map(|s| s["execution"].as_str())
        .map(|arn| arn.rsplit(':').next().unwrap_or(arn).to_string())
        .collect();
    assert_eq!(executions.len(), 6, "{report:#}");
    let rolled_back = executions[3].clone();

    let approver_password = "alice: a long test password";
    let requester_password = "olivia: another long password";
    add_user(&data, APPROVER, approver_password);
    add_user(&data, REQUESTER, requester_password);
    // The demo's endpoints ended with it; a real nginx serves shop-web-prod's certificate
    // again, so validation and the scan probe it and the approved renewal deploys to it.
    let nginx = revive_on_nginx(&data, "shop-web-prod");
    let served_before = certops_tests::servers::fingerprint(
        &std::fs::read_to_string(&nginx.cert_path).expect("nginx's certificate"),
    );
    // Olivia (service owner, in the change authority) asks for a renewal: she may not approve it.
    let number = open_incident(&data, "shop-web-prod", REQUESTER);
    let waiting = start_waiting_for_approval(&data, &number, "shop-web-prod", REQUESTER);

    let console = start_console(&data, free_port());
    let webhook_secret = std::fs::read_to_string(data.join("webhook.secret")).expect("secret");
    let mut forbidden = vec![webhook_secret.trim().to_string()];
    forbidden.push(approver_password.to_string());
    forbidden.push(requester_password.to_string());
    let out = Command::new("node")
        .arg(node.join("console_browser.mjs"))
        .current_dir(&node)
        .env("CONSOLE_URL", console.url())
        .env("APPROVER", APPROVER)
        .env("APPROVER_PASSWORD", approver_password)
        .env("REQUESTER", REQUESTER)
        .env("REQUESTER_PASSWORD", requester_password)
        .env("WAITING_EXECUTION", &waiting)
        .env("ROLLBACK_EXECUTION", &rolled_back)
        .env("EXECUTIONS", executions.join(","))
        .env("FORBIDDEN", forbidden.join(","))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" checks passed, 0 failed"), "{stdout}");
    // The renewal approved in the browser is what nginx serves now.
    let served = std::fs::read_to_string(&nginx.cert_path).expect("nginx's certificate");
    assert_ne!(
        certops_tests::servers::fingerprint(&served),
        served_before,
        "the renewed certificate was deployed to nginx"
    );
}
