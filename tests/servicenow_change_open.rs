//! Opening changes in ServiceNow through the adapter, against the instance emulator on
//! 127.0.0.1:
//!
//! - a pre-approved renewal is opened from the standard change template the policy names:
//!   the adapter looks the name up through the Change Management API
//!   (`GET /api/sn_chg_rest/change/standard/template?sysparm_query=active=true^name=…`)
//!   and opens `/change/standard/{that sys_id}`; an unknown or retired name is a clear
//!   `NotFound`, and nothing is opened;
//! - two opens of one trigger (one correlation id) at the same time, in one process or in
//!   two, leave exactly one change that certops works on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_adapters::LocalSecrets;
use certops_core::integrations::Integrations;
use certops_core::ports::{Itsm, NewTicket, TicketKind, TicketState};
use certops_tests::servicenow::ServiceNowEmulator;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

const USER: &str = "certops.integration";
const PASSWORD: &str = "integration-password-for-tests";
/// The name `runbooks/policy.toml` gives its non-production standard change; the
/// emulator publishes a template of that name.
const NONPROD: &str = "STD-CERT-NONPROD: certificate renewal outside production";

/// An adapter with Basic auth and no `standard_change_template` pinned.
async fn adapter(emu: &ServiceNowEmulator, dir: &std::path::Path) -> Arc<dyn Itsm> {
    let pw = dir.join("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let toml = format!(
        "[servicenow]\ninstance_url = \"{}\"\nusername = \"{USER}\"\npassword = \"file:{}\"\ntimeout_seconds = 5\nbackoff_millis = 50\n",
        emu.url(),
        pw.display()
    );
    certops_servicenow::from_integrations(
        &Integrations::from_toml_str(&toml).unwrap(),
        &LocalSecrets,
    )
    .await
    .unwrap()
    .expect("[servicenow] present")
}

fn emulator() -> ServiceNowEmulator {
    let emu = ServiceNowEmulator::start().unwrap();
    emu.add_user(USER, PASSWORD, &["itil", "sn_change_writer"]);
    emu
}

fn change(kind: TicketKind, cid: &str, standard: Option<&str>) -> NewTicket {
    NewTicket {
        kind,
        short_description: "Renew TLS certificate shop.example.com".into(),
        description: "change open test".into(),
        ci: "shop-web-staging".into(),
        priority: 3,
        correlation_id: cid.into(),
        standard_change: standard.map(str::to_string),
    }
}

async fn get_json(emu: &ServiceNowEmulator, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", emu.url()))
        .basic_auth(USER, Some(PASSWORD))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

fn with_correlation(emu: &ServiceNowEmulator, cid: &str) -> Vec<Value> {
    emu.records("change_request")
        .into_iter()
        .filter(|r| r["correlation_id"] == cid)
        .collect()
}

#[tokio::test]
async fn a_standard_change_is_opened_from_the_template_the_policy_names() {
    let emu = emulator();
    // Another active template and a retired one of a similar name must not be picked.
    emu.add_standard_template("STD-CERT-ACM: ACME renewal re-imported into ACM", true);
    let retired = emu.add_standard_template("STD-CERT-LEGACY: retired renewal", false);
    let dir = tempfile::tempdir().unwrap();
    let itsm = adapter(&emu, dir.path()).await;

    let t = itsm
        .open(change(
            TicketKind::StandardChange,
            "scan:std:1",
            Some(NONPROD),
        ))
        .await
        .unwrap();
    let rec = emu
        .record("change_request", &t.number)
        .expect("in ServiceNow");
    assert_eq!(rec["type"], "standard");
    assert_eq!(
        rec["std_change_producer_version"].as_str(),
        Some(emu.standard_template().as_str()),
        "opened from the NONPROD template's sys_id"
    );
    let reqs = emu.requests();
    let lookup = reqs
        .iter()
        .find(|r| r.starts_with("GET /api/sn_chg_rest/change/standard/template?"))
        .expect("the template was looked up by name");
    assert!(
        lookup.contains("sysparm_query=active%3Dtrue%5Ename%3DSTD-CERT-NONPROD"),
        "{lookup}"
    );
    assert!(reqs.iter().any(|r| r.starts_with(&format!(
        "POST /api/sn_chg_rest/change/standard/{} -> 200",
        emu.standard_template()
    ))));

    // The sys_id is cached: a second standard change looks nothing up again.
    let lookups = |emu: &ServiceNowEmulator| {
        emu.requests()
            .iter()
            .filter(|r| r.starts_with("GET /api/sn_chg_rest/change/standard/template"))
            .count()
    };
    let before = lookups(&emu);
    itsm.open(change(
        TicketKind::StandardChange,
        "scan:std:2",
        Some(NONPROD),
    ))
    .await
    .unwrap();
    assert_eq!(lookups(&emu), before);

    // A name ServiceNow does not have, or only as a retired template: NotFound, nothing opened.
    for name in [
        "STD-CERT-NOPE: no such template",
        "STD-CERT-LEGACY: retired renewal",
    ] {
        let cid = format!("scan:std:{name}");
        let e = itsm
            .open(change(TicketKind::StandardChange, &cid, Some(name)))
            .await
            .unwrap_err();
        assert_eq!(e.name(), "NotFound", "{e}");
        assert!(e.to_string().contains(name), "{e}");
        assert!(with_correlation(&emu, &cid).is_empty());
    }
    // Opening from the retired template's sys_id directly is refused by the instance too.
    assert!(emu
        .records("change_request")
        .iter()
        .all(|r| r["std_change_producer_version"] != retired.as_str()));

    // The Change API's template list speaks ServiceNow's shape: {value, display_value}.
    let listed = get_json(
        &emu,
        "/api/sn_chg_rest/change/standard/template?sysparm_query=active%3Dtrue%5EORDERBYname",
    )
    .await;
    let names: Vec<&str> = listed["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"]["display_value"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["STD-CERT-ACM: ACME renewal re-imported into ACM", NONPROD]
    );
    let one = get_json(
        &emu,
        &format!(
            "/api/sn_chg_rest/change/standard/template/{}",
            emu.standard_template()
        ),
    )
    .await;
    assert_eq!(one["result"]["name"]["value"], NONPROD);
    assert_eq!(one["result"]["sys_id"]["value"], emu.standard_template());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_one_trigger_in_one_process_yield_one_change() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let itsm = adapter(&emu, dir.path()).await;
    let cid = "scan:shop-web-staging:concurrent-1";
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let itsm = itsm.clone();
            tokio::spawn(
                async move { itsm.open(change(TicketKind::NormalChange, cid, None)).await },
            )
        })
        .collect();
    let mut numbers = Vec::new();
    for o in opens {
        numbers.push(o.await.unwrap().unwrap().number);
    }
    numbers.dedup();
    assert_eq!(numbers.len(), 1, "{numbers:?}");
    let records = with_correlation(&emu, cid);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(
        emu.records("change_request").len(),
        1,
        "no second record at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_one_trigger_in_two_processes_leave_one_change_standing() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    // Two adapters share nothing, as two Lambda sandboxes or two `certops` processes.
    let (a, b) = (
        adapter(&emu, dir.path()).await,
        adapter(&emu, dir.path()).await,
    );
    // Both creates are held until both arrived: each process looked for the record and
    // found none, so the race is certain, not left to timing.
    emu.hold_creates(2);
    for round in 0..3 {
        let cid = format!("scan:shop-web-staging:race-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let run = |itsm: Arc<dyn Itsm>| {
            let cid = cid.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                itsm.open(change(TicketKind::NormalChange, &cid, None))
                    .await
            })
        };
        let (ra, rb) = (run(a.clone()), run(b.clone()));
        let (ta, tb) = (ra.await.unwrap().unwrap(), rb.await.unwrap().unwrap());
        assert_eq!(ta.number, tb.number, "both callers work on one change");
        let standing = with_correlation(&emu, &cid);
        assert_eq!(standing.len(), 1, "{standing:#?}");
        assert_eq!(standing[0]["number"], ta.number.as_str());
        // The second record the race created is canceled, says which one stands, and no
        // longer carries the trigger's correlation id.
        let retired: Vec<Value> = emu
            .records("change_request")
            .into_iter()
            .filter(|r| {
                r["correlation_id"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&format!("{cid}#duplicate-of-")))
            })
            .collect();
        assert_eq!(retired.len(), 1, "the race created a second record");
        for dup in retired {
            assert_eq!(dup["state"], "4", "canceled: {dup:#?}");
            let notes = emu.work_notes(dup["sys_id"].as_str().unwrap());
            assert!(notes.iter().any(|n| n.contains(&ta.number)), "{notes:?}");
            assert_ne!(dup["number"], ta.number.as_str());
        }
        // The change certops works on goes on normally.
        let t = itsm_state(&a, &ta.number).await;
        assert_eq!(t, TicketState::New);
    }
}

async fn itsm_state(itsm: &Arc<dyn Itsm>, number: &str) -> TicketState {
    itsm.get(number).await.unwrap().expect("exists").state
}
