//! Payload templates build their objects field by field in the order the
//! definition gives, constants and `.$` fields mixed, at any depth; the
//! history records exactly that object.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed setup stops the test

use certops_asl::{Engine, EngineOptions, ExecutionStatus, NoTasks, TokioClock};
use serde_json::{json, Value};
use std::sync::Arc;

/// Runs `def` on `input` and returns the output and the text of the last
/// state's `PassStateExited` output.
async fn run(def: Value, input: Value) -> (Value, String) {
    let engine = Engine::open(
        EngineOptions::default(),
        Arc::new(NoTasks),
        Arc::new(TokioClock::system()),
    )
    .expect("engine");
    let sm = engine
        .create_state_machine("templates", &def.to_string(), certops_asl::DEFAULT_ROLE_ARN)
        .expect("create");
    let e = engine
        .start_execution(&sm.arn, Some("t1"), input)
        .expect("start");
    let done = engine.wait_for(&e.meta.execution_arn).await.expect("done");
    assert_eq!(
        done.status,
        ExecutionStatus::Succeeded,
        "{:?} {:?}",
        done.error,
        done.cause
    );
    let history = engine.history(&e.meta.execution_arn).expect("history");
    let exited = history
        .iter()
        .rev()
        .find(|e| e.kind.as_str() == "PassStateExited")
        .and_then(|e| e.details_value())
        .and_then(|d| d["output"].as_str().map(str::to_string))
        .expect("a PassStateExited event with output");
    (done.output.expect("output"), exited)
}

#[tokio::test]
async fn constant_and_dynamic_fields_keep_their_order_at_every_depth() {
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Parameters": {
        "first": 1,
        "from.$": "$.x",
        "mid": {"k": "v", "deep.$": "$.y.z", "arr": [1, {"n.$": "$.x"}, "c"]},
        "sum.$": "States.MathAdd($.y.z, 1)",
        "last": [true, null],
    }}}});
    let (out, text) = run(def, json!({"x": "ex", "y": {"z": 41}})).await;
    let want = r#"{"first":1,"from":"ex","mid":{"k":"v","deep":41,"arr":[1,{"n":"ex"},"c"]},"sum":42,"last":[true,null]}"#;
    assert_eq!(text, want);
    assert_eq!(out.to_string(), want);
}

#[tokio::test]
async fn each_evaluation_starts_from_a_fresh_object() {
    // The same template runs three times in a chain; every result holds
    // only what that run computed.
    let pass = |next: Option<&str>| {
        let mut s = json!({"Type": "Pass", "Parameters": {"c": 0, "v.$": "$.v", "w.$": "$.v"}, "ResultPath": "$.r"});
        match next {
            Some(n) => s["Next"] = json!(n),
            None => s["End"] = json!(true),
        }
        s
    };
    let def = json!({"StartAt": "A", "States": {
        "A": pass(Some("B")),
        "B": {"Type": "Pass", "Parameters": {"v.$": "$.r.c"}, "Next": "C"},
        "C": pass(None),
    }});
    let (out, _) = run(def, json!({"v": "one"})).await;
    assert_eq!(out, json!({"v": 0, "r": {"c": 0, "v": 0, "w": 0}}));
}

#[tokio::test]
async fn a_field_given_twice_takes_the_later_value_in_the_first_place() {
    // `"a"` and `"a.$"` name the same output field; as when JSON with a
    // repeated key is read, the later one wins and keeps the first position.
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Parameters": {
        "a": 1,
        "b": 2,
        "a.$": "$.x",
    }}}});
    let (out, text) = run(def, json!({"x": "later"})).await;
    assert_eq!(text, r#"{"a":"later","b":2}"#);
    assert_eq!(out, json!({"a": "later", "b": 2}));
}
