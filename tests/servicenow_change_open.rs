//! Opening changes in ServiceNow through the adapter, against the instance emulator on
//! 127.0.0.1:
//!
//! - a pre-approved renewal is opened from the standard change template the policy names:
//!   the adapter looks the name up through the Change Management API
//!   (`GET /api/sn_chg_rest/change/standard/template?sysparm_query=active=true^name=…`)
//!   and opens `/change/standard/{that sys_id}`; an unknown or retired name is a clear
//!   `NotFound`, and nothing is opened.

use certops_adapters::LocalSecrets;
use certops_core::integrations::Integrations;
use certops_core::ports::{Itsm, NewTicket, TicketKind};
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
