//! The engine carries AWS's limits: a runaway execution (Pass → Choice →
//! back, never blocking) fails at 25,000 history events instead of growing
//! without bound, and other executions keep running meanwhile.

use certops_asl::{Engine, EngineOptions, NoTasks, TokioClock};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const ROLE: &str = "arn:aws:iam::123456789012:role/certops-local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_loop_fails_at_the_history_quota_and_others_still_run() {
    let engine = Engine::open(
        EngineOptions::default(),
        Arc::new(NoTasks),
        Arc::new(TokioClock::system()),
    )
    .expect("engine");
    let runaway = json!({"StartAt": "Spin", "States": {
        "Spin": {"Type": "Pass", "Next": "Again"},
        "Again": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": true, "Next": "Done"}], "Default": "Spin"},
        "Done": {"Type": "Succeed"}}})
    .to_string();
    let quick =
        json!({"StartAt": "Hi", "States": {"Hi": {"Type": "Pass", "End": true}}}).to_string();
    let spin = engine
        .create_state_machine("spin", &runaway, ROLE)
        .expect("spin");
    let hi = engine.create_state_machine("hi", &quick, ROLE).expect("hi");
    let started = engine
        .start_execution(&spin.arn, Some("runaway"), json!({}))
        .expect("start runaway");
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        engine.wait_for(&started.meta.execution_arn),
    )
    .await
    .expect("the runaway execution ends")
    .expect("info");
    assert_eq!(done.status.as_str(), "FAILED");
    assert_eq!(done.error.as_deref(), Some("States.Runtime"));
    assert!(
        done.cause.as_deref().unwrap_or_default().contains("25000"),
        "{:?}",
        done.cause
    );
    let history = engine
        .history(&started.meta.execution_arn)
        .expect("history");
    assert!(history.len() <= 25_000, "{}", history.len());
    assert!(history.len() > 24_000, "{}", history.len());
    // The engine is still serving others.
    let other = engine
        .start_execution(&hi.arn, Some("after"), json!({"x": 1}))
        .expect("start other");
    let other = tokio::time::timeout(
        Duration::from_secs(10),
        engine.wait_for(&other.meta.execution_arn),
    )
    .await
    .expect("other ends")
    .expect("info");
    assert_eq!(other.status.as_str(), "SUCCEEDED");
}
