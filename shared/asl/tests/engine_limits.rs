//! One execution cannot freeze the engine: a runaway `Pass → Choice(Default
//! back)` loop yields the engine lock every few hundred transitions, so other
//! executions complete and the API answers while it runs, and it ends as on
//! AWS: `ExecutionFailed` as event 25,000 with `States.Runtime`. State
//! payloads and `StartExecution` input carry AWS's 256 KiB quota.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::{
    api, Engine, EngineOptions, ExecutionStatus, NoTasks, Storage, TokioClock, DEFAULT_ROLE_ARN,
    MAX_HISTORY_EVENTS, MAX_PAYLOAD_BYTES,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNAWAY: &str = r#"{
  "StartAt": "Spin",
  "States": {
    "Spin": {"Type": "Pass", "Next": "Loop"},
    "Loop": {"Type": "Choice",
             "Choices": [{"Variable": "$.stop", "BooleanEquals": true, "Next": "Done"}],
             "Default": "Spin"},
    "Done": {"Type": "Succeed"}
  }
}"#;

const QUICK: &str = r#"{
  "StartAt": "A",
  "States": {
    "A": {"Type": "Pass", "Result": {"ok": true}, "Next": "B"},
    "B": {"Type": "Succeed"}
  }
}"#;

fn open(storage: Storage) -> Engine {
    Engine::open(
        EngineOptions {
            storage,
            ..EngineOptions::default()
        },
        Arc::new(NoTasks),
        Arc::new(TokioClock::system()),
    )
    .expect("engine")
}

fn call(engine: &Engine, op: &str, body: Value) -> Result<Value, api::ApiError> {
    api::handle(
        engine,
        &format!("{}{op}", api::TARGET_PREFIX),
        body.to_string().as_bytes(),
    )
}

/// Starts an execution on a plain thread and waits at most `limit` for the
/// call to return: a start that never returns fails the test instead of hanging it.
fn start_bounded(engine: &Engine, machine: &str, input: Value, limit: Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let e = engine.clone();
    let m = machine.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(e.start_execution(&m, Some("runaway"), input));
    });
    let started = rx
        .recv_timeout(limit)
        .expect("StartExecution of a runaway loop must return instead of holding the engine");
    started.expect("started").meta.execution_arn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_loop_leaves_the_engine_responsive_and_fails_at_25000_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(Storage::Sqlite(dir.path().join("state.db")));
    let runaway = engine
        .create_state_machine("runaway", RUNAWAY, DEFAULT_ROLE_ARN)
        .expect("runaway machine")
        .arn;
    let quick = engine
        .create_state_machine("quick", QUICK, DEFAULT_ROLE_ARN)
        .expect("quick machine")
        .arn;

    // A few KiB of payload per state makes the loop take a while to reach the quota.
    let input = json!({"stop": false, "blob": "x".repeat(4096)});
    let arn = start_bounded(&engine, &runaway, input, Duration::from_secs(10));

    // While it runs: the API answers within a bound, and other executions finish.
    let mut answered_while_running = 0;
    let mut slowest = Duration::ZERO;
    let mut others = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let d = tokio::task::block_in_place(|| {
            call(&engine, "DescribeExecution", json!({"executionArn": arn}))
        })
        .expect("DescribeExecution");
        slowest = slowest.max(t.elapsed());
        if d["status"] == "RUNNING" {
            answered_while_running += 1;
        }
        let t = Instant::now();
        let started = tokio::task::block_in_place(|| {
            call(
                &engine,
                "StartExecution",
                json!({"stateMachineArn": quick, "name": format!("quick-{i}"), "input": "{}"}),
            )
        })
        .expect("StartExecution");
        slowest = slowest.max(t.elapsed());
        let other = started["executionArn"].as_str().expect("arn").to_string();
        let done = tokio::time::timeout(Duration::from_secs(5), engine.wait_for(&other))
            .await
            .expect("a quick execution finishes while the runaway runs")
            .expect("wait");
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        others.push(done);
    }
    eprintln!(
        "during the runaway: {answered_while_running}/20 answers said RUNNING, slowest API call {slowest:?}"
    );
    assert!(
        answered_while_running > 0,
        "the API never answered while the runaway ran"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "an API call took {slowest:?} during the runaway"
    );

    let end = tokio::time::timeout(Duration::from_secs(120), engine.wait_for(&arn))
        .await
        .expect("the runaway ends")
        .expect("wait");
    assert_eq!(end.status, ExecutionStatus::Failed);
    assert_eq!(end.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        end.cause.as_deref(),
        Some("The execution reached the maximum number of history events (25000).")
    );
    let runaway_stop = end.stop_ms.expect("stop time");
    for o in &others {
        assert!(
            o.stop_ms.expect("stop") <= runaway_stop,
            "{} finished after the runaway",
            o.meta.execution_arn
        );
    }
    let history = engine.history(&arn).expect("history");
    assert_eq!(history.len() as u64, MAX_HISTORY_EVENTS);
    let last = history.last().expect("last event");
    assert_eq!(last.kind.as_str(), "ExecutionFailed");
    assert_eq!(last.id, 25_000);
    assert_eq!(last.previous_event_id, 24_999);
    assert!(history[24_998].kind.as_str().ends_with("StateExited"));
    assert!(history
        .iter()
        .enumerate()
        .all(|(i, e)| e.id == i as u64 + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_quota_is_an_engine_option_and_loops_within_it_succeed() {
    let engine = Engine::open(
        EngineOptions {
            max_history_events: 101,
            transitions_per_slice: 7,
            ..EngineOptions::default()
        },
        Arc::new(NoTasks),
        Arc::new(TokioClock::system()),
    )
    .expect("engine");
    let counted = r#"{
      "StartAt": "Inc",
      "States": {
        "Inc": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": "Loop"},
        "Loop": {"Type": "Choice",
                 "Choices": [{"Variable": "$.n", "NumericGreaterThanEquals": 20, "Next": "Done"}],
                 "Default": "Inc"},
        "Done": {"Type": "Succeed"}
      }
    }"#;
    let m = engine
        .create_state_machine("counted", counted, DEFAULT_ROLE_ARN)
        .expect("machine")
        .arn;
    // 20 iterations: 1 + 20 * 4 + 2 + 1 = 84 events, under 101, across many slices.
    let ok = engine
        .start_execution(&m, Some("fits"), json!({"n": 0}))
        .expect("start");
    assert_eq!(ok.status, ExecutionStatus::Running, "the run yielded");
    let ok = engine.wait_for(&ok.meta.execution_arn).await.expect("wait");
    assert_eq!(ok.status, ExecutionStatus::Succeeded);
    assert_eq!(ok.output, Some(json!({"n": 20})));
    // 30 iterations do not fit: the 101st event is the failure.
    let over = engine
        .start_execution(&m, Some("over"), json!({"n": -10}))
        .expect("start");
    let over = engine
        .wait_for(&over.meta.execution_arn)
        .await
        .expect("wait");
    assert_eq!(over.status, ExecutionStatus::Failed);
    assert_eq!(
        over.cause.as_deref(),
        Some("The execution reached the maximum number of history events (101).")
    );
    let h = engine.history(&over.meta.execution_arn).expect("history");
    assert_eq!(h.len(), 101);
    assert_eq!(h[100].kind.as_str(), "ExecutionFailed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_payloads_and_execution_input_carry_the_256_kib_quota() {
    let engine = open(Storage::Memory);
    let doubling = r#"{
      "StartAt": "Double",
      "States": {
        "Double": {"Type": "Pass",
                   "Parameters": {"s.$": "States.Format('{}{}', $.s, $.s)"},
                   "Next": "Done"},
        "Done": {"Type": "Succeed"}
      }
    }"#;
    let m = engine
        .create_state_machine("doubling", doubling, DEFAULT_ROLE_ARN)
        .expect("machine")
        .arn;

    // 100,000 two-byte characters: 200,000 bytes in, 400,000 bytes out.
    let big = "é".repeat(100_000);
    let e = engine
        .start_execution(&m, Some("grows"), json!({"s": big}))
        .expect("start");
    let e = engine.wait_for(&e.meta.execution_arn).await.expect("wait");
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(e.error.as_deref(), Some("States.DataLimitExceeded"));
    assert!(e.cause.as_deref().unwrap_or("").contains("'Double'"));
    let h = engine.history(&e.meta.execution_arn).expect("history");
    assert!(
        h.iter().all(
            |ev| ev.details_value().map(|d| d.to_string().len()).unwrap_or(0) < MAX_PAYLOAD_BYTES
        ),
        "no over-quota payload is recorded"
    );

    // StartExecution input: exactly 262,144 bytes of UTF-8 is accepted, one more byte is not.
    let frame = json!({"s": ""}).to_string().len();
    let fill = MAX_PAYLOAD_BYTES - frame;
    let at_limit =
        json!({"s": format!("{}{}", "é".repeat(fill / 2), "a".repeat(fill % 2))}).to_string();
    assert_eq!(at_limit.len(), MAX_PAYLOAD_BYTES);
    let echo = engine
        .create_state_machine("echo", QUICK, DEFAULT_ROLE_ARN)
        .expect("machine")
        .arn;
    let ok = call(
        &engine,
        "StartExecution",
        json!({"stateMachineArn": echo, "name": "at-limit", "input": at_limit}),
    );
    assert!(ok.is_ok(), "{ok:?}");
    let over = format!("{}a\"}}", &at_limit[..at_limit.len() - 2]);
    assert_eq!(over.len(), MAX_PAYLOAD_BYTES + 1);
    let err = call(
        &engine,
        "StartExecution",
        json!({"stateMachineArn": echo, "name": "over-limit", "input": over}),
    )
    .expect_err("over the quota");
    assert_eq!(err.code, "ValidationException");
    assert!(err.message.contains("262144"), "{}", err.message);
    // Callers of the engine itself get the same refusal.
    let direct = engine.start_execution(
        &echo,
        Some("direct"),
        serde_json::from_str(&over).expect("json"),
    );
    assert_eq!(
        direct.expect_err("over the quota").code(),
        "ValidationException"
    );
}
