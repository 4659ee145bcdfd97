//! Conformance of the local ASL engine against table-driven fixtures whose
//! expected values were written from the States Language specification and
//! the AWS Step Functions developer guide (`tests/fixtures/asl/*.json`).
//! Each case runs on a paused tokio clock, so Wait states, back-off and
//! time-outs take no real time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::{Engine, EngineOptions, StateMachine, TokioClock};
use certops_tests::scripted::ScriptedInvoker;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ROLE: &str = "arn:aws:iam::123456789012:role/certops-local";

fn load(area: &str) -> Vec<Value> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/asl")
        .join(format!("{area}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()));
    v["cases"].as_array().cloned().unwrap_or_default()
}

/// Runs one case; returns a list of mismatches (empty when it conforms).
fn run_case(case: &Value) -> Vec<String> {
    let expect = &case["expect"];
    let mut problems = Vec::new();
    if expect.get("invalid").and_then(Value::as_bool) == Some(true) {
        match StateMachine::from_value(&case["definition"]) {
            Ok(_) => problems.push("definition was accepted but must be refused".into()),
            Err(e) => {
                let msg = e.to_string();
                for s in expect["message_contains"].as_array().into_iter().flatten() {
                    let s = s.as_str().unwrap_or_default();
                    if !msg.contains(s) {
                        problems.push(format!("error message {msg:?} does not mention {s:?}"));
                    }
                }
            }
        }
        return problems;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let invoker = ScriptedInvoker::new(case.get("tasks"));
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        let opts = EngineOptions {
            seed: Some(7),
            ..EngineOptions::default()
        };
        let engine = match Engine::open(
            opts,
            invoker.clone(),
            Arc::new(TokioClock::starting_at(start)),
        ) {
            Ok(e) => e,
            Err(e) => return vec![format!("engine failed to open: {e}")],
        };
        invoker.attach(engine.clone());
        let def = case["definition"].to_string();
        let sm = match engine.create_state_machine("Conformance", &def, ROLE) {
            Ok(sm) => sm,
            Err(e) => return vec![format!("definition refused: {e}")],
        };
        let name = case
            .get("execution_name")
            .and_then(Value::as_str)
            .unwrap_or("conformance");
        let input = case.get("input").cloned().unwrap_or_else(|| json!({}));
        let started = match engine.start_execution(&sm.arn, Some(name), input) {
            Ok(s) => s,
            Err(e) => return vec![format!("start failed: {e}")],
        };
        let arn = started.meta.execution_arn.clone();
        // Virtual time: ten years is enough for any AWS default time-out.
        let done = match tokio::time::timeout(
            Duration::from_secs(10 * 365 * 86_400),
            engine.wait_for(&arn),
        )
        .await
        {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return vec![format!("wait failed: {e}")],
            Err(_) => return vec!["execution never finished".into()],
        };
        let mut problems = Vec::new();
        let status = done.status.as_str();
        if let Some(want) = expect.get("status").and_then(Value::as_str) {
            if status != want {
                problems.push(format!(
                    "status {status} (error {:?}, cause {:?}), want {want}",
                    done.error, done.cause
                ));
            }
        }
        if let Some(want) = expect.get("output") {
            if done.output.as_ref() != Some(want) {
                problems.push(format!(
                    "output {}, want {want}",
                    done.output.clone().unwrap_or(Value::Null)
                ));
            }
        }
        if let Some(want) = expect.get("error").and_then(Value::as_str) {
            if done.error.as_deref() != Some(want) {
                problems.push(format!(
                    "error {:?} (cause {:?}), want {want:?}",
                    done.error, done.cause
                ));
            }
        }
        if let Some(want) = expect.get("cause_contains").and_then(Value::as_str) {
            if !done.cause.as_deref().unwrap_or_default().contains(want) {
                problems.push(format!("cause {:?} does not contain {want:?}", done.cause));
            }
        }
        let history = engine.history(&arn).unwrap_or_default();
        let types: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
        if let Some(want) = expect.get("events").and_then(Value::as_array) {
            let want: Vec<&str> = want.iter().filter_map(Value::as_str).collect();
            if types != want {
                problems.push(format!("events {types:?}, want {want:?}"));
            }
        }
        if let Some(counts) = expect.get("event_counts").and_then(Value::as_object) {
            for (t, n) in counts {
                let got = types.iter().filter(|x| **x == t.as_str()).count() as u64;
                if Some(got) != n.as_u64() {
                    problems.push(format!("{got} {t} events, want {n}"));
                }
            }
        }
        // Ids are 1..n and each previousEventId points backwards.
        for (i, e) in history.iter().enumerate() {
            if e.id != i as u64 + 1 || e.previous_event_id >= e.id {
                problems.push(format!(
                    "bad event numbering at {i}: id {} prev {}",
                    e.id, e.previous_event_id
                ));
                break;
            }
        }
        if let Some(inv) = expect.get("invocations").and_then(Value::as_object) {
            let calls = invoker.calls();
            for (state, n) in inv {
                let got = calls.get(state).copied().unwrap_or(0) as u64;
                if Some(got) != n.as_u64() {
                    problems.push(format!("{state} invoked {got} times, want {n}"));
                }
            }
        }
        if let Some(want) = expect.get("elapsed_seconds").and_then(Value::as_f64) {
            let got =
                (done.stop_ms.unwrap_or(done.meta.start_ms) - done.meta.start_ms) as f64 / 1000.0;
            if (got - want).abs() > 0.001 {
                problems.push(format!("elapsed {got}s, want {want}s"));
            }
        }
        problems
    })
}

fn check_area(area: &str) {
    let cases = load(area);
    assert!(!cases.is_empty(), "no cases in {area}.json");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("?");
        let problems = run_case(case);
        if !problems.is_empty() {
            failures.push(format!(
                "  {name} ({}):\n    {}",
                case["spec"].as_str().unwrap_or(""),
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {area} cases do not conform:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{area}: {} cases conform", cases.len());
}

#[test]
fn data_flow() {
    check_area("data_flow");
}

#[test]
fn choice() {
    check_area("choice");
}

#[test]
fn retry_catch() {
    check_area("retry_catch");
}

#[test]
fn timeouts_heartbeats() {
    check_area("timeouts_heartbeats");
}

#[test]
fn callbacks() {
    check_area("callbacks");
}

#[test]
fn intrinsics() {
    check_area("intrinsics");
}

#[test]
fn map_parallel() {
    check_area("map_parallel");
}

#[test]
fn context_object() {
    check_area("context_object");
}

#[test]
fn history_shape() {
    check_area("history_shape");
}

#[test]
fn validation() {
    check_area("validation");
}
