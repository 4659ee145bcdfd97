//! "A ServiceNow outage of a few minutes delays a run; it never loses one or duplicates a
//! note."
//!
//! 1. The schedule: every ITSM step of `statemachines/cert-renewal.asl.json` (the file the
//!    SAM template's state machine and the embedded engine both run) retries `Transient`
//!    for at least five minutes, without jitter that could shorten it.
//! 2. The run: a renewal on the embedded default with the ServiceNow adapter against the
//!    emulator on 127.0.0.1, while the instance goes down twice for three minutes of
//!    engine time: right after it created the change (its answer lost) and right after it
//!    stored the evidence attachment (its answer lost). The engine runs on a
//!    [`ScaledClock`] (60× faster than real time), so the definition's real Retry
//!    schedule is what rides the outage out, in seconds of wall clock. The run succeeds,
//!    with one change, no work note twice and one `evidence.json`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::ScaledClock;
use certops_core::integrations::Integrations;
use certops_core::Trigger;
use certops_tests::servicenow::ServiceNowEmulator;
use certops_tests::world::world_on;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEFINITION: &str = include_str!("../statemachines/cert-renewal.asl.json");
const TEMPLATE: &str = include_str!("../infra/template.yaml");
const USER: &str = "certops.integration";
const PASSWORD: &str = "integration-password-for-the-outage";
const NONPROD: &str = "STD-CERT-NONPROD: certificate renewal outside production";
/// Engine time runs this many times faster than real time in the run below.
const SCALE: u32 = 60;

/// The shortest time a retrier keeps retrying, seconds (no jitter: each delay in full).
fn retry_span(r: &Value) -> f64 {
    let interval = r["IntervalSeconds"].as_f64().unwrap_or(1.0);
    let rate = r["BackoffRate"].as_f64().unwrap_or(2.0);
    let attempts = r["MaxAttempts"].as_i64().unwrap_or(3);
    let cap = r["MaxDelaySeconds"].as_f64().unwrap_or(f64::MAX);
    (0..attempts)
        .map(|k| (interval * rate.powi(k as i32)).min(cap))
        .sum()
}

#[test]
fn every_itsm_step_retries_transient_for_at_least_five_minutes() {
    assert!(
        TEMPLATE.contains("DefinitionUri: ../statemachines/cert-renewal.asl.json"),
        "the SAM template deploys the definition checked here"
    );
    let def: Value = serde_json::from_str(DEFINITION).unwrap();
    let mut spans = BTreeMap::new();
    for (name, st) in def["States"].as_object().unwrap() {
        let resource = st["Resource"].as_str().unwrap_or_default();
        if resource != "${ItsmUpdateFunctionArn}" && resource != "${ValidateFunctionArn}" {
            continue;
        }
        // The retrier the engine (and Step Functions) picks for Transient: the first match.
        let retrier = st["Retry"]
            .as_array()
            .and_then(|rs| {
                rs.iter().find(|r| {
                    r["ErrorEquals"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|e| e == "Transient" || e == "States.ALL"))
                })
            })
            .unwrap_or_else(|| panic!("{name} does not retry Transient"));
        assert_ne!(
            retrier["JitterStrategy"], "FULL",
            "{name}: full jitter could shrink the schedule to nothing"
        );
        spans.insert(name.clone(), retry_span(retrier));
    }
    // Validate opens the ticket; the Record* steps, NotifyOnCall, CloseTicket and
    // ReleaseLock write it.
    assert_eq!(spans.len(), 11, "{spans:?}");
    for (name, span) in &spans {
        assert!(*span >= 300.0, "{name} gives up after {span} s");
    }
}

fn integrations(emu: &ServiceNowEmulator, dir: &std::path::Path) -> Integrations {
    let pw = dir.join("servicenow.password");
    std::fs::write(&pw, PASSWORD).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Few, quick attempts inside each step: the outage is left to the state machine.
    Integrations::from_toml_str(&format!(
        "[servicenow]\ninstance_url = \"{}\"\nusername = \"{USER}\"\npassword = \"file:{}\"\ntimeout_seconds = 2\nmax_attempts = 2\nbackoff_millis = 20\n",
        emu.url(),
        pw.display()
    ))
    .unwrap()
}

/// Per Task state: (Transient failures, engine ms from its first failure to its success).
fn retried(history: &[certops_asl::HistoryEvent]) -> BTreeMap<String, (usize, i64)> {
    let mut out: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    let mut first_failure: BTreeMap<String, i64> = BTreeMap::new();
    let mut state = String::new();
    for e in history {
        let v = e.to_aws_json();
        let kind = v["type"].as_str().unwrap_or_default();
        if kind == "TaskStateEntered" {
            state = v["stateEnteredEventDetails"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        let failed = v
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .any(|d| d["error"] == "Transient");
        if failed {
            out.entry(state.clone()).or_default().0 += 1;
            first_failure.entry(state.clone()).or_insert(e.timestamp_ms);
        }
        if kind.ends_with("Succeeded") {
            if let Some(t0) = first_failure.remove(&state) {
                out.entry(state.clone()).or_default().1 = e.timestamp_ms - t0;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_rides_out_servicenow_outages_and_duplicates_nothing() {
    let emu = ServiceNowEmulator::start().unwrap();
    emu.add_user(USER, PASSWORD, &["itil", "sn_change_writer"]);
    // Three minutes of engine time each.
    let outage = Duration::from_secs(180) / SCALE;
    emu.outage_after("POST /api/sn_chg_rest/change/standard/", outage);
    emu.outage_after("POST /api/now/attachment/file", outage);
    let dir = tempfile::tempdir().unwrap();
    // The world's prod certificate, pre-approved under the template the emulator publishes.
    let policy_extra = format!(
        "[[standard_changes]]\nname = \"{NONPROD}\"\nenvironments = [\"prod\"]\nmethods = [\"internal-pki\"]\n"
    );
    let w = world_on(
        dir.path(),
        None,
        &policy_extra,
        integrations(&emu, dir.path()),
        Arc::new(ScaledClock::system(SCALE)),
    )
    .await;
    let wall = Instant::now();
    let started = w.stack.trigger(Trigger::Scan(w.finding())).await.unwrap();
    let done = w
        .stack
        .wait(&started.execution, Duration::from_secs(120))
        .await
        .unwrap();
    let took = wall.elapsed();
    let history = w.stack.engine.history(&started.execution).unwrap();
    assert_eq!(
        done.status.as_str(),
        "SUCCEEDED",
        "{:?}\n{:#?}",
        done.error,
        emu.requests().iter().rev().take(20).collect::<Vec<_>>()
    );
    assert!(emu.outages_done(), "both outages happened");

    // The state machine's Retry carried both steps across three minutes of outage.
    let retried = retried(&history);
    for step in ["Validate", "CloseTicket"] {
        let (failures, span_ms) = retried.get(step).copied().unwrap_or_default();
        assert!(failures >= 3, "{step} failed {failures} times: {retried:?}");
        assert!(
            span_ms >= 150_000,
            "{step} succeeded {span_ms} ms of engine time after its first failure: {retried:?}"
        );
    }
    eprintln!("outage run: {retried:?} (Transient failures, engine ms), {took:?} of wall clock");
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // One change for the trigger, closed, no note twice, one evidence.json.
    let changes: Vec<Value> = emu
        .records("change_request")
        .into_iter()
        .filter(|r| r["correlation_id"] == started.idempotency_key.as_str())
        .collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(emu.records("change_request").len(), 1);
    let c = &changes[0];
    assert_eq!(
        (c["type"].as_str(), c["state"].as_str()),
        (Some("standard"), Some("3"))
    );
    let sys_id = c["sys_id"].as_str().unwrap();
    let notes = emu.work_notes(sys_id);
    let unique: HashSet<&String> = notes.iter().collect();
    assert_eq!(
        unique.len(),
        notes.len(),
        "a note written twice: {notes:#?}"
    );
    let files: Vec<String> = emu
        .attachments(sys_id)
        .iter()
        .map(|a| a["file_name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(files, ["evidence.json"]);
}
