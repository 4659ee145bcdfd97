//! History payloads are the real data: every state's Entered input is the
//! JSON of the input it ran with — equal to the previous state's Exited
//! output where one flows into the other, and the Catch output after a
//! caught failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::{Engine, EngineOptions, FunctionRegistry, StatesError, TokioClock};
use serde_json::{json, Value};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entered_inputs_match_the_data_that_flowed() {
    let functions = FunctionRegistry::with_builtins();
    functions.register("boom", |_event| async move {
        Err(StatesError::new("Boom", "exploded"))
    });
    let engine = Engine::open(
        EngineOptions::default(),
        Arc::new(functions),
        Arc::new(TokioClock::system()),
    )
    .expect("engine");
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Parameters": {"n": 1, "tag.$": "$.tag"}, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.a.n", "NumericEquals": 1, "Next": "C"}], "Default": "Z"},
        "C": {"Type": "Wait", "Seconds": 0, "OutputPath": "$.a", "Next": "D"},
        "D": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "boom", "Payload.$": "$"},
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "E"}], "End": true},
        "E": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "echo", "Payload.$": "$"}, "ResultSelector": {"echoed.$": "$.Payload.tag"}, "Next": "F"},
        "F": {"Type": "Pass", "End": true},
        "Z": {"Type": "Fail"}}});
    let sm = engine
        .create_state_machine("payloads", &def.to_string(), certops_asl::DEFAULT_ROLE_ARN)
        .expect("create");
    let e = engine
        .start_execution(&sm.arn, Some("p1"), json!({"tag": "t1"}))
        .expect("start");
    let done = engine.wait_for(&e.meta.execution_arn).await.expect("done");
    assert_eq!(done.output, Some(json!({"echoed": "t1"})));
    let history = engine.history(&e.meta.execution_arn).expect("history");
    let payload = |i: usize, field: &str| -> Option<Value> {
        let d = history[i].details_value()?;
        serde_json::from_str(d.get(field)?.as_str()?).ok()
    };
    let mut checked = 0;
    for i in 1..history.len() {
        let t = history[i].kind.as_str();
        if t.ends_with("StateEntered") && history[i - 1].kind.as_str().ends_with("StateExited") {
            assert_eq!(
                payload(i, "input"),
                payload(i - 1, "output"),
                "event {}",
                history[i].id
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked}");
    let entered = |name: &str| {
        let i = history
            .iter()
            .position(|e| {
                e.kind.as_str().ends_with("StateEntered")
                    && e.details_value().is_some_and(|d| d["name"] == name)
            })
            .expect("entered");
        payload(i, "input").expect("input")
    };
    assert_eq!(
        entered("B"),
        json!({"tag": "t1", "a": {"n": 1, "tag": "t1"}})
    );
    assert_eq!(
        entered("D"),
        json!({"n": 1, "tag": "t1"}),
        "Wait's OutputPath output flows into D"
    );
    let e_input = entered("E");
    assert_eq!(
        e_input["err"]["Error"], "Boom",
        "E entered with the Catch output, not a stale payload"
    );
    assert_eq!(e_input["tag"], "t1");
}
