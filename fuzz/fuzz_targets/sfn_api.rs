//! The local Step Functions API ([`certops_asl::api::handle`]): `X-Amz-Target` and
//! JSON body as `certops serve` hands them over, against a fresh in-memory engine
//! holding one state machine (`fuzz`) and one finished execution (`first`).
//!
//! Input: up to 8 requests separated by NUL bytes, each `Operation\nbody` (the
//! operation without the `AWSStepFunctions.` prefix), so a run can create a state
//! machine and then start, describe, stop or list it.
//!
//! Asserts: an answer is a JSON object; an error is AWS-shaped (HTTP 400 — the engine
//! is in memory, so no store error — a non-empty code, `__type` ending in it); a
//! target without the prefix is `UnknownOperationException`; a body that is JSON
//! but not an object is a `SerializationException`; after every request the engine
//! still answers (`ListStateMachines`, `DescribeStateMachine` of `fuzz`).

#![no_main]

use certops_asl::api::{handle, TARGET_PREFIX};
use certops_asl::{Engine, EngineOptions, NoTasks, TokioClock};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::Arc;

const DEFINITION: &str = r#"{"StartAt": "Greet", "States": {"Greet": {"Type": "Pass",
    "Parameters": {"greeting.$": "States.Format('Hello, {}!', $.who)"}, "End": true}}}"#;

fn call(engine: &Engine, op: &str, body: &[u8]) -> Result<Value, certops_asl::api::ApiError> {
    handle(engine, &format!("{TARGET_PREFIX}{op}"), body)
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime");
    rt.block_on(async {
        let opts = EngineOptions {
            seed: Some(7),
            ..EngineOptions::default()
        };
        let engine = Engine::open(opts, Arc::new(NoTasks), Arc::new(TokioClock::system()))
            .expect("an in-memory engine opens");
        let sm = engine
            .create_state_machine("fuzz", DEFINITION, certops_asl::DEFAULT_ROLE_ARN)
            .expect("the fixture definition is valid");
        engine
            .start_execution(&sm.arn, Some("first"), json!({"who": "fuzz"}))
            .expect("the fixture execution starts");

        for request in data.split(|b| *b == 0).take(8) {
            let (op, body) = match request.iter().position(|b| *b == b'\n') {
                Some(i) => (&request[..i], &request[i + 1..]),
                None => (request, &b""[..]),
            };
            let op = String::from_utf8_lossy(op);
            let answer = call(&engine, &op, body);
            match &answer {
                Ok(v) => assert!(v.is_object(), "{op}: answer is not an object: {v}"),
                Err(e) => {
                    assert_eq!(e.status, 400, "{op}: {e}");
                    assert!(!e.code.is_empty(), "{op}: an error has a code");
                    let shaped = e.body();
                    assert!(shaped["__type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(&format!("#{}", e.code))));
                    assert!(shaped["message"].is_string());
                }
            }
            if let Ok(v) = serde_json::from_slice::<Value>(body) {
                if !v.is_object() {
                    assert!(
                        matches!(&answer, Err(e) if e.code == "SerializationException"
                            || e.code == "UnknownOperationException"),
                        "{op}: a non-object body must be refused: {answer:?}"
                    );
                }
            }
            // The same request without the protocol prefix is never an operation.
            let bare = handle(&engine, &op, body);
            if !op.starts_with(TARGET_PREFIX) {
                assert!(
                    matches!(&bare, Err(e) if e.code == "UnknownOperationException"),
                    "{op}: accepted without the {TARGET_PREFIX} prefix: {bare:?}"
                );
            }
            // The engine still answers.
            call(&engine, "ListStateMachines", b"{}").expect("ListStateMachines answers");
            let describe = json!({"stateMachineArn": sm.arn}).to_string();
            let _ = call(&engine, "DescribeStateMachine", describe.as_bytes());
        }
    });
});
