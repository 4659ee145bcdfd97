//! The ServiceNow emulator's dialect proved with ServiceNow's official Python client,
//! `pysnc` (installed by the README's test command): over HTTPS it creates, queries and
//! updates records, attaches evidence, and meets the refusals an instance gives. A missing
//! python3 or pysnc fails this test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_tests::servicenow::ServiceNowEmulator;
use std::path::Path;
use std::process::Command;

#[test]
fn pysnc_creates_queries_and_updates_records_through_the_emulator() {
    let emu = ServiceNowEmulator::start_tls().expect("emulator starts");
    emu.add_user("pysnc.user", "pysnc-password", &["itil"]);
    emu.add_user("reader", "reader-password", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, emu.ca_pem().expect("TLS emulator")).expect("write CA");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/servicenow_pysnc_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(emu.url())
        .arg(&ca)
        .args(["pysnc.user", "pysnc-password"])
        // requests lets these override a session's `verify`: point them at the test CA.
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("CURL_CA_BUNDLE", &ca)
        .output()
        .expect("python3 must be installed (the README's test command installs pysnc with pip)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pysnc checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("pysnc: all checks passed"), "{stdout}");
    // What pysnc wrote is in the instance.
    let number = stdout
        .lines()
        .find_map(|l| l.strip_prefix("created "))
        .expect("the script names its record");
    let rec = emu
        .record("incident", number)
        .expect("the record pysnc created");
    assert_eq!(rec["state"], "2");
    assert_eq!(rec["correlation_id"], "pysnc:1");
    let sys_id = rec["sys_id"].as_str().unwrap();
    assert_eq!(emu.work_notes(sys_id), ["updated by pysnc"]);
    assert_eq!(emu.attachments(sys_id).len(), 1);
    // pysnc asked for display values and excluded reference links, as it does by default.
    assert!(emu
        .requests()
        .iter()
        .any(|r| r.contains("sysparm_display_value=all")
            && r.contains("sysparm_exclude_reference_link=true")));
}
