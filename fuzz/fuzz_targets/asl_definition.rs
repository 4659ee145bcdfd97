//! Amazon States Language definitions ([`StateMachine::parse`]), as `CreateStateMachine`,
//! `certops serve` and the deploy checks load them, then a first slice of an
//! execution of each valid one in an in-memory engine.
//!
//! Asserts: the text and its JSON value parse alike (`parse` ⇔ `from_value`); a valid
//! definition re-serialised (compact and pretty) parses again to the same states,
//! start and transitions; every `StartAt` and `Next` indexes a state of its branch and
//! state names are unique; the engine accepts exactly the definitions `parse` accepts,
//! and a valid one starts an execution that can be described and stopped.

#![no_main]

use certops_asl::definition::{Branch, StateKind, Transition};
use certops_asl::{Engine, EngineOptions, NoTasks, StateMachine, TokioClock};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// What a branch says, comparable: its start, state names and transitions, nested branches.
fn shape(b: &Branch) -> Value {
    json!({
        "start": b.start_at,
        "states": b.states.iter().map(|s| json!({
            "name": s.name,
            "next": match s.next { Transition::Next(i) => json!(i), Transition::End => json!("end") },
            "branches": match &s.kind {
                StateKind::Parallel { branches, .. } => branches.iter().map(shape).collect::<Vec<_>>(),
                StateKind::Map(m) => vec![shape(&m.processor)],
                _ => Vec::new(),
            },
        })).collect::<Vec<_>>(),
    })
}

fn check_indexes(b: &Branch) {
    assert!(b.start_at < b.states.len(), "StartAt indexes a state");
    let mut names = HashSet::new();
    for s in &b.states {
        assert!(names.insert(s.name.as_str()), "state names are unique");
        if let Transition::Next(i) = s.next {
            assert!(i < b.states.len(), "Next indexes a state");
        }
        match &s.kind {
            StateKind::Parallel { branches, .. } => branches.iter().for_each(check_indexes),
            StateKind::Map(m) => check_indexes(&m.processor),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = StateMachine::parse(text);
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        let from_value = StateMachine::from_value(&value);
        assert_eq!(
            parsed.is_ok(),
            from_value.is_ok(),
            "parse and from_value disagree"
        );
        if let Ok(sm) = &parsed {
            check_indexes(&sm.root);
            let want = shape(&sm.root);
            for again in [
                value.to_string(),
                serde_json::to_string_pretty(&value).expect("a value serialises"),
            ] {
                let re = StateMachine::parse(&again).expect("a re-serialised definition parses");
                assert_eq!(shape(&re.root), want);
                assert_eq!(re.timeout_seconds, sm.timeout_seconds);
                assert_eq!(re.comment, sm.comment);
            }
        }
    } else {
        assert!(parsed.is_err(), "text that is not JSON is not a definition");
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime");
    rt.block_on(async {
        let opts = EngineOptions {
            seed: Some(7),
            max_history_events: 500,
            transitions_per_slice: 200,
            ..EngineOptions::default()
        };
        let engine = Engine::open(opts, Arc::new(NoTasks), Arc::new(TokioClock::system()))
            .expect("an in-memory engine opens");
        let created = engine.create_state_machine("fuzz", text, certops_asl::DEFAULT_ROLE_ARN);
        assert_eq!(
            created.is_ok(),
            parsed.is_ok(),
            "the engine and parse disagree"
        );
        if let Ok(sm) = created {
            let e = engine
                .start_execution(
                    &sm.arn,
                    Some("fuzz"),
                    json!({"who": "fuzz", "items": [1, 2]}),
                )
                .expect("a valid definition starts");
            let arn = &e.meta.execution_arn;
            engine
                .describe_execution(arn)
                .expect("a started execution is described");
            engine.history(arn).expect("and has a history");
            let _ = engine.stop_execution(arn, None, None);
        }
    });
});
