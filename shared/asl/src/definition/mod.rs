//! The parsed, validated form of a state machine definition.
//!
//! Parsing resolves every `Next` to an index, compiles every path and payload
//! template, and refuses anything malformed with a [`DefinitionError`] that
//! names the state and the field. Nothing here runs; see [`crate::machine`].
//!
//! `types.rs` holds the parsed form, `parse.rs` builds and validates it,
//! `substitute.rs` applies `DefinitionSubstitutions` to the text first, and
//! payload templates come from the crate's `template.rs` (re-exported here).

mod parse;
mod substitute;
mod types;

pub use crate::template::{compile_template, dynamic, Dynamic, Template};
pub use substitute::substitute;
pub use types::{
    Branch, BranchAddr, Catcher, Integration, IoPath, MapSpec, NumberSource, ResultPath, Retrier,
    State, StateKind, StateMachine, StringSource, TaskSpec, Transition, WaitSpec,
};

use std::fmt;

/// A definition was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DefinitionError {
    /// JSON-pointer-like location of the problem, e.g. `/States/Renew/Next`.
    pub location: String,
    /// What is wrong, naming the state and the field.
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at {})", self.message, self.location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::HashMap;

    fn parse(v: Value) -> Result<StateMachine, DefinitionError> {
        StateMachine::from_value(&v)
    }

    #[test]
    fn a_minimal_machine_parses() {
        let sm =
            parse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}})).unwrap();
        assert_eq!(sm.root.states.len(), 1);
    }

    #[test]
    fn errors_name_the_state_and_field() {
        let e = parse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nope"}}}))
            .unwrap_err();
        assert!(
            e.message.contains("'A'") && e.message.contains("Next") && e.message.contains("Nope"),
            "{e}"
        );
        let e = parse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}})).unwrap_err();
        assert!(
            e.message.contains("'A'") && e.message.contains("Next"),
            "{e}"
        );
        let e = parse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}, "B": {"Type": "Succeed"}}}))
            .unwrap_err();
        assert!(
            e.message.contains("'B'") && e.message.contains("reachable"),
            "{e}"
        );
        let e = parse(
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "x", "End": true,
            "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}}}),
        )
        .unwrap_err();
        assert!(e.message.contains("States.ALL"), "{e}");
        let e = parse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "$.a["}}}))
            .unwrap_err();
        assert!(e.message.contains("InputPath"), "{e}");
        let e = parse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Parameters": {"x.$": "nope"}}}}))
            .unwrap_err();
        assert!(e.message.contains("x.$"), "{e}");
    }

    #[test]
    fn nested_branch_errors_name_the_nested_state() {
        let e = parse(
            json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "Inner", "States": {"Inner": {"Type": "Wait", "End": true}}}]}}}),
        )
        .unwrap_err();
        assert!(
            e.message.contains("'Inner'") && e.location.contains("/Branches/0/"),
            "{e}"
        );
    }

    #[test]
    fn substitutions_replace_known_and_refuse_unknown() {
        let mut subs = HashMap::new();
        subs.insert(
            "FnArn".to_string(),
            "arn:aws:lambda:us-east-1:1:function:f".to_string(),
        );
        assert_eq!(
            substitute("{\"R\":\"${FnArn}\"}", &subs).unwrap(),
            "{\"R\":\"arn:aws:lambda:us-east-1:1:function:f\"}"
        );
        assert!(substitute("${Other}", &subs).is_err());
    }
}
