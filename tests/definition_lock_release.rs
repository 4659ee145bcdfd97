//! Every terminal path of `statemachines/cert-renewal.asl.json` releases the certificate's
//! lock: when a Record*/CloseTicket step fails for good, the definition goes on to
//! `ReleaseLock` (itsm-update `release-lock`) and ends in `RecordingFailed`, instead of
//! failing with the lock held until its TTL. Run on the embedded engine with scripted
//! step outcomes (the real definition, its function ARNs substituted).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::{Engine, EngineOptions, TokioClock};
use certops_tests::scripted::ScriptedInvoker;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const ROLE: &str = "arn:aws:iam::123456789012:role/certops-local";

fn definition() -> String {
    let text = include_str!("../statemachines/cert-renewal.asl.json");
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("closing brace") + i;
        let name = &rest[i + 2..end];
        out.push_str(&format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{name}:1"
        ));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Runs the definition with `tasks` scripted; returns (status, error, calls per state).
fn run(
    tasks: Value,
) -> (
    String,
    Option<String>,
    std::collections::HashMap<String, usize>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let invoker = ScriptedInvoker::new(Some(&tasks));
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        let engine = Engine::open(
            EngineOptions {
                seed: Some(7),
                ..EngineOptions::default()
            },
            invoker.clone(),
            Arc::new(TokioClock::starting_at(start)),
        )
        .expect("engine");
        invoker.attach(engine.clone());
        let sm = engine
            .create_state_machine("cert-renewal", &definition(), ROLE)
            .expect("the definition loads");
        let started = engine
            .start_execution(&sm.arn, Some("lock"), json!({"trigger": {}}))
            .expect("start");
        let done = tokio::time::timeout(
            Duration::from_secs(7 * 86_400),
            engine.wait_for(&started.meta.execution_arn),
        )
        .await
        .expect("finishes")
        .expect("wait");
        (
            done.status.as_str().to_string(),
            done.error.clone(),
            invoker.calls(),
        )
    })
}

fn itsm_down() -> Value {
    json!({"error": "Transient", "cause": "ITSM unavailable"})
}

#[test]
fn a_failed_close_releases_the_lock() {
    let (status, error, calls) = run(json!({
        "Validate": {"output": {"path": "pre-approved"}},
        "Renew": {"output": {}},
        "Deploy": {"output": {}},
        "PurgeCdn": {"output": {}},
        "Verify": {"output": {"served": true}},
        "CloseTicket": itsm_down(),
        "ReleaseLock": {"output": {"released": true}},
    }));
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("RecordingFailed"))
    );
    assert_eq!(
        calls.get("CloseTicket"),
        Some(&11),
        "ten retries (over 435 s) first: {calls:?}"
    );
    assert_eq!(calls.get("ReleaseLock"), Some(&1), "{calls:?}");
}

#[test]
fn a_failed_blocked_record_releases_the_lock() {
    let (_, error, calls) = run(json!({
        "Validate": {"output": {"path": "blocked"}},
        "RecordBlocked": itsm_down(),
        "ReleaseLock": {"output": {"released": true}},
    }));
    assert_eq!(error.as_deref(), Some("RecordingFailed"));
    assert_eq!(calls.get("ReleaseLock"), Some(&1), "{calls:?}");
}

#[test]
fn a_failed_rollback_record_and_a_failed_failure_record_release_the_lock() {
    let (_, error, calls) = run(json!({
        "Validate": {"output": {"path": "pre-approved"}},
        "Renew": {"output": {}},
        "Deploy": {"error": "DeployFailed", "cause": "listener gone"},
        "Rollback": {"output": {}},
        "RecordRolledBack": {"error": "InvalidInput", "cause": "ticket closed"},
        "ReleaseLock": {"output": {"released": true}},
    }));
    assert_eq!(error.as_deref(), Some("RecordingFailed"));
    assert_eq!(calls.get("ReleaseLock"), Some(&1), "{calls:?}");
    let (_, error, calls) = run(json!({
        "Validate": {"error": "InvalidInput", "cause": "bad time-out"},
        "RecordFailed": itsm_down(),
        "ReleaseLock": {"output": {"released": true}},
    }));
    assert_eq!(error.as_deref(), Some("RecordingFailed"));
    assert_eq!(calls.get("ReleaseLock"), Some(&1), "{calls:?}");
}

#[test]
fn a_verification_still_propagating_waits_and_verifies_again() {
    let (status, _, calls) = run(json!({
        "Validate": {"output": {"path": "pre-approved"}},
        "Renew": {"output": {}},
        "Deploy": {"output": {}},
        "PurgeCdn": {"output": {}},
        "Verify": [
            {"output": {"served": false, "attempt": 1, "waitSeconds": 30}},
            {"output": {"served": false, "attempt": 2, "waitSeconds": 45}},
            {"output": {"served": true, "attempt": 3}}
        ],
        "CloseTicket": {"output": {}},
    }));
    assert_eq!(status, "SUCCEEDED");
    assert_eq!(calls.get("Verify"), Some(&3), "{calls:?}");
}
