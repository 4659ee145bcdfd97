//! All six demo scenarios on the embedded default with `[servicenow]` configured: every
//! record is opened, moved and closed in the ServiceNow emulator on 127.0.0.1 through the
//! real adapter, and each ends in the right state with the expected work notes, the
//! approver, and exactly one evidence attachment — no note written twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_core::integrations::Integrations;
use certops_tests::servicenow::ServiceNowEmulator;
use serde_json::Value;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

const USER: &str = "certops.integration";
const PASSWORD: &str = "integration-password-for-the-demo";

fn integrations(emu: &ServiceNowEmulator, dir: &std::path::Path) -> Integrations {
    let pw = dir.join("servicenow.password");
    std::fs::write(&pw, PASSWORD).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    Integrations::from_toml_str(&format!(
        "[servicenow]\ninstance_url = \"{}\"\nusername = \"{USER}\"\npassword = \"file:{}\"\nstandard_change_template = \"{}\"\nbackoff_millis = 50\n",
        emu.url(),
        pw.display(),
        emu.standard_template()
    ))
    .unwrap()
}

fn notes(emu: &ServiceNowEmulator, rec: &Value) -> Vec<String> {
    emu.work_notes(rec["sys_id"].as_str().unwrap())
}

fn attachment_names(emu: &ServiceNowEmulator, rec: &Value) -> Vec<String> {
    emu.attachments(rec["sys_id"].as_str().unwrap())
        .iter()
        .map(|a| a["file_name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_six_demo_scenarios_run_against_servicenow() {
    let emu = ServiceNowEmulator::start().unwrap();
    emu.add_user(USER, PASSWORD, &["itil", "sn_change_writer"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let report = certops_embedded::demo::run_with(&data, integrations(&emu, dir.path()), &|_| {})
        .await
        .unwrap();
    for s in &report.scenarios {
        if !s.ok {
            eprintln!(
                "{:#?}",
                emu.requests().iter().rev().take(15).collect::<Vec<_>>()
            );
        }
        assert!(s.ok, "{}: {:?} (status {})", s.name, s.problems, s.status);
    }
    let number = |i: usize| report.scenarios[i].ticket.clone().expect("a ticket");
    let change = |i: usize| {
        emu.record("change_request", &number(i))
            .expect("in ServiceNow")
    };
    let incident = |i: usize| emu.record("incident", &number(i)).expect("in ServiceNow");

    // 1. Normal change: approved by the service owner, closed with one evidence.json.
    let c = change(0);
    assert_eq!(
        (c["type"].as_str(), c["state"].as_str()),
        (Some("normal"), Some("3"))
    );
    assert_eq!(c["approval"], "approved");
    assert_eq!(c["close_code"], "successful");
    let n = notes(&emu, &c);
    assert!(n
        .iter()
        .any(|t| t.contains("Approved by olivia@example.com")
            && t.contains("approved_by=olivia@example.com")));
    assert!(n.iter().any(|t| t.contains("certops validation")));
    assert!(n
        .iter()
        .any(|t| t.contains("Renewal verified from outside")));
    assert_eq!(attachment_names(&emu, &c), ["evidence.json"]);
    let ev: Value = serde_json::from_slice(
        &emu.attachment_file(
            emu.attachments(c["sys_id"].as_str().unwrap())[0]["sys_id"]
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    for k in [
        "expiryBefore",
        "expiryAfter",
        "endpoints",
        "planHash",
        "runbook",
        "approval",
        "auditChainHead",
    ] {
        assert!(!ev[k].is_null(), "evidence.json lacks {k}: {ev}");
    }
    assert_eq!(ev["endpoints"][0]["chainValid"], true);

    // 2. P1 incident: ECAB approval, fallback certificate, resolved with one evidence.json.
    let i = incident(1);
    assert_eq!(i["state"], "6");
    assert_eq!(i["close_code"], "Solution provided");
    assert!(notes(&emu, &i)
        .iter()
        .any(|t| t.contains("approved_by=erin@example.com")));
    assert_eq!(attachment_names(&emu, &i), ["evidence.json"]);

    // 3. Standard change from the template: closed without an approval.
    let c = change(2);
    assert_eq!(
        (c["type"].as_str(), c["state"].as_str()),
        (Some("standard"), Some("3"))
    );
    assert_eq!(c["std_change_producer_version"], emu.standard_template());
    assert_eq!(attachment_names(&emu, &c), ["evidence.json"]);

    // 4. Rolled back: canceled, with the rollback evidence.
    let c = change(3);
    assert_eq!(c["state"], "4");
    assert!(notes(&emu, &c).iter().any(|t| t.contains("rolled back")));
    assert_eq!(attachment_names(&emu, &c), ["rollback-evidence.json"]);

    // 5. CDN purge failing: Implement, with the note saying why (Mitigating).
    let c = change(4);
    assert_eq!(c["state"], "-1");
    let n = notes(&emu, &c);
    assert!(n
        .iter()
        .any(|t| t.contains("CDN purge failed") && t.contains("state=mitigating")));
    assert_eq!(attachment_names(&emu, &c), ["evidence.json"]);

    // 6. Unknown CI: the incident waits on hold with the reasons; nothing attached.
    let i = incident(5);
    assert_eq!(i["state"], "3");
    assert!(notes(&emu, &i).iter().any(|t| t.contains("blocked")));
    assert!(attachment_names(&emu, &i).is_empty());

    // No record carries a note twice.
    for table in ["incident", "change_request"] {
        for r in emu.records(table) {
            let n = notes(&emu, &r);
            let unique: HashSet<&String> = n.iter().collect();
            assert_eq!(
                unique.len(),
                n.len(),
                "{} has a duplicate note",
                r["number"]
            );
        }
    }
}

/// The same six scenarios with OAuth while the instance misbehaves on a schedule: 429
/// bursts with `Retry-After`, access tokens revoked under the run, and an outage of the
/// whole instance. Every run completes as expected and no record carries a note or an
/// attachment twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_completes_through_429s_expiring_tokens_and_an_outage() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    let emu = Arc::new(ServiceNowEmulator::start().unwrap());
    emu.add_user(USER, PASSWORD, &["itil", "sn_change_writer"]);
    emu.add_oauth_client("certops-app", "certops-app-secret");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, "certops-app-secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Writes the password file the TOML below names.
    integrations(&emu, dir.path());
    let pw = dir.path().join("servicenow.password");
    let toml = format!(
        "[servicenow]\ninstance_url = \"{}\"\nauth = \"oauth-password\"\nusername = \"{USER}\"\npassword = \"file:{}\"\nclient_id = \"certops-app\"\nclient_secret = \"file:{}\"\nstandard_change_template = \"{}\"\nbackoff_millis = 100\nmax_attempts = 6\n",
        emu.url(),
        pw.display(),
        secret.display(),
        emu.standard_template()
    );
    let stop = Arc::new(AtomicBool::new(false));
    // The fault schedule: its intervals define the faults, they wait for nothing.
    let chaos = {
        let emu = emu.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut tick = 0u32;
            while !stop.load(Ordering::SeqCst) {
                match tick % 16 {
                    0 => emu.throttle(2, 1),
                    5 => emu.expire_tokens(),
                    9 => emu.set_reachable(false),
                    11 => emu.set_reachable(true),
                    _ => {}
                }
                tick += 1;
                // The fault schedule's beat (a fault every few beats), not a wait.
                std::thread::sleep(Duration::from_millis(250));
            }
            emu.set_reachable(true);
            emu.throttle(0, 0);
        })
    };
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let report = certops_embedded::demo::run_with(
        &data,
        Integrations::from_toml_str(&toml).unwrap(),
        &|_| {},
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    chaos.join().unwrap();
    let report = report.unwrap();
    for s in &report.scenarios {
        if !s.ok {
            for r in emu
                .requests()
                .iter()
                .filter(|r| r.contains("-> 4") || r.contains("-> 5"))
            {
                eprintln!("{r}");
            }
        }
        assert!(s.ok, "{}: {:?} (status {})", s.name, s.problems, s.status);
    }
    assert!(emu.tokens_issued() > 1, "tokens were revoked under the run");
    for table in ["incident", "change_request"] {
        for r in emu.records(table) {
            let n = notes(&emu, &r);
            let unique: HashSet<&String> = n.iter().collect();
            assert_eq!(
                unique.len(),
                n.len(),
                "{} has a duplicate note",
                r["number"]
            );
            let a = attachment_names(&emu, &r);
            let unique: HashSet<&String> = a.iter().collect();
            assert_eq!(
                unique.len(),
                a.len(),
                "{} has a duplicate attachment",
                r["number"]
            );
        }
    }
    for i in [0usize, 1, 2, 4] {
        let number = report.scenarios[i].ticket.clone().unwrap();
        let table = if number.starts_with("INC") {
            "incident"
        } else {
            "change_request"
        };
        let r = emu.record(table, &number).unwrap();
        assert_eq!(attachment_names(&emu, &r), ["evidence.json"], "{number}");
    }
}
