//! A task whose invocation was in flight when the engine stopped is invoked
//! again after a restart (at-least-once, as on AWS), and Wait timers survive.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::{
    BoxFuture, Engine, EngineOptions, ExecutionStatus, FunctionRegistry, StatesError, Storage,
    TaskInvoker, TaskRequest, TokioClock, DEFAULT_ROLE_ARN,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Never answers: the process "dies" while the task runs.
struct Hangs(Arc<AtomicUsize>);

impl TaskInvoker for Hangs {
    fn invoke(&self, _r: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::pending())
    }
}

/// Answers with the payload.
struct Echo(Arc<AtomicUsize>);

impl TaskInvoker for Echo {
    fn invoke(&self, r: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(r.payload) })
    }
}

fn opts(path: &std::path::Path) -> EngineOptions {
    EngineOptions {
        storage: Storage::Sqlite(path.to_path_buf()),
        ..EngineOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_task_is_invoked_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("state.db");
    let definition = json!({"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:work",
                 "Parameters": {"job.$": "$.job"}, "ResultPath": "$.done", "Next": "Settle"},
        "Settle": {"Type": "Wait", "Seconds": 1, "End": true}}});
    let first_calls = Arc::new(AtomicUsize::new(0));
    let arn = {
        let engine = Engine::open(
            opts(&db),
            Arc::new(Hangs(first_calls.clone())),
            Arc::new(TokioClock::system()),
        )
        .expect("open");
        let sm = engine
            .create_state_machine(
                "durable",
                &definition.to_string(),
                certops_asl::DEFAULT_ROLE_ARN,
            )
            .expect("create");
        let e = engine
            .start_execution(&sm.arn, Some("job-1"), json!({"job": 42}))
            .expect("start");
        // Wait until the task has been invoked (polled, with a deadline), then crash.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while first_calls.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the task was never invoked"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(first_calls.load(Ordering::SeqCst), 1);
        e.meta.execution_arn
        // The engine is dropped here with the task still running.
    };
    let second_calls = Arc::new(AtomicUsize::new(0));
    let engine = Engine::open(
        opts(&db),
        Arc::new(Echo(second_calls.clone())),
        Arc::new(TokioClock::system()),
    )
    .expect("reopen");
    let done = tokio::time::timeout(Duration::from_secs(10), engine.wait_for(&arn))
        .await
        .expect("finishes")
        .expect("info");
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(
        second_calls.load(Ordering::SeqCst),
        1,
        "the pending task is invoked exactly once after restart"
    );
    assert_eq!(done.output.expect("output")["done"], json!({"job": 42}));
    let types: Vec<&str> = engine
        .history(&arn)
        .expect("history")
        .iter()
        .map(|e| e.kind.as_str())
        .collect::<Vec<_>>();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "LambdaFunctionSucceeded")
            .count(),
        1
    );
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
}

/// After a crash, a task that was in flight is invoked again when the engine
/// resumes. A host whose handlers need the engine (the embedded stack) opens
/// it paused, registers them, then resumes: the re-invoked task finds its
/// handler instead of failing the execution with `Lambda.ResourceNotFoundException`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_engine_reinvokes_in_flight_tasks_only_once_their_handlers_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("state.db");
    let definition = json!({"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": "certops-work", "Payload.$": "$"},
                 "OutputPath": "$.Payload", "End": true}}});
    let calls = Arc::new(AtomicUsize::new(0));
    let arn = {
        let engine = Engine::open(
            opts(&db),
            Arc::new(Hangs(calls.clone())),
            Arc::new(TokioClock::system()),
        )
        .expect("open");
        let sm = engine
            .create_state_machine("paused", &definition.to_string(), DEFAULT_ROLE_ARN)
            .expect("create");
        let e = engine
            .start_execution(&sm.arn, Some("in-flight"), json!({"job": 7}))
            .expect("start");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        e.meta.execution_arn
        // Dropped with the task in flight: the crash.
    };
    let registry = FunctionRegistry::new();
    let engine = Engine::open_paused(
        opts(&db),
        Arc::new(registry.clone()),
        Arc::new(TokioClock::system()),
    )
    .expect("reopen");
    // Nothing is re-invoked before the handler is registered and resume is called.
    tokio::task::yield_now().await;
    assert_eq!(
        engine.describe_execution(&arn).expect("describe").status,
        ExecutionStatus::Running
    );
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    registry.register("certops-work", move |payload: Value| {
        h.fetch_add(1, Ordering::SeqCst);
        async move { Ok(json!({"done": payload["job"]})) }
    });
    engine.resume();
    let done = tokio::time::timeout(Duration::from_secs(10), engine.wait_for(&arn))
        .await
        .expect("finishes")
        .expect("info");
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.output, Some(json!({"done": 7})));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    // A second resume does nothing.
    engine.resume();
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}
