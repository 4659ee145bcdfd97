//! Execution history in the shape `GetExecutionHistory` returns on AWS:
//! `type` names, `id`/`previousEventId` numbering and `…EventDetails` fields.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

macro_rules! event_types {
    ($($name:ident),* $(,)?) => {
        /// Every history event type the engine records, named as AWS names them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                $name,
            )*
        }

        impl EventType {
            /// The AWS `type` string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$name => stringify!($name),)*
                }
            }

            /// Looks a type up by its AWS name.
            pub fn from_name(s: &str) -> Option<EventType> {
                match s {
                    $(stringify!($name) => Some(EventType::$name),)*
                    _ => None,
                }
            }
        }
    };
}

event_types!(
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionAborted,
    ExecutionTimedOut,
    PassStateEntered,
    PassStateExited,
    TaskStateEntered,
    TaskStateExited,
    TaskStateAborted,
    TaskScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    ChoiceStateEntered,
    ChoiceStateExited,
    WaitStateEntered,
    WaitStateExited,
    WaitStateAborted,
    SucceedStateEntered,
    SucceedStateExited,
    FailStateEntered,
    ParallelStateEntered,
    ParallelStateExited,
    ParallelStateStarted,
    ParallelStateSucceeded,
    ParallelStateFailed,
    ParallelStateAborted,
    MapStateEntered,
    MapStateExited,
    MapStateStarted,
    MapStateSucceeded,
    MapStateFailed,
    MapStateAborted,
    MapIterationStarted,
    MapIterationSucceeded,
    MapIterationFailed,
    MapIterationAborted,
    LambdaFunctionScheduled,
    LambdaFunctionStarted,
    LambdaFunctionSucceeded,
    LambdaFunctionFailed,
    LambdaFunctionTimedOut,
);

impl EventType {
    /// The name of the `…EventDetails` field this type carries.
    pub fn details_key(self) -> String {
        let s = self.as_str();
        if s.ends_with("StateEntered") {
            return "stateEnteredEventDetails".into();
        }
        if s.ends_with("StateExited") {
            return "stateExitedEventDetails".into();
        }
        let mut out = String::with_capacity(s.len() + 12);
        let mut chars = s.chars();
        if let Some(c) = chars.next() {
            out.push(c.to_ascii_lowercase());
        }
        out.extend(chars);
        out.push_str("EventDetails");
        out
    }

    /// The `…StateEntered` type for a state type name.
    pub fn entered(state_type: &str) -> EventType {
        match state_type {
            "Task" => EventType::TaskStateEntered,
            "Choice" => EventType::ChoiceStateEntered,
            "Wait" => EventType::WaitStateEntered,
            "Succeed" => EventType::SucceedStateEntered,
            "Fail" => EventType::FailStateEntered,
            "Parallel" => EventType::ParallelStateEntered,
            "Map" => EventType::MapStateEntered,
            _ => EventType::PassStateEntered,
        }
    }

    /// The `…StateExited` type for a state type name.
    pub fn exited(state_type: &str) -> EventType {
        match state_type {
            "Task" => EventType::TaskStateExited,
            "Choice" => EventType::ChoiceStateExited,
            "Wait" => EventType::WaitStateExited,
            "Succeed" => EventType::SucceedStateExited,
            "Parallel" => EventType::ParallelStateExited,
            "Map" => EventType::MapStateExited,
            _ => EventType::PassStateExited,
        }
    }
}

/// One history event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When it happened, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Its type.
    pub kind: EventType,
    /// 1-based, increasing within an execution.
    pub id: u64,
    /// The event that led to this one (0 for the first).
    pub previous_event_id: u64,
    /// The `…EventDetails` object, if the type has one.
    pub details: Option<Value>,
}

impl HistoryEvent {
    /// The event as the Step Functions JSON protocol carries it (timestamps in epoch seconds).
    pub fn to_aws_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("timestamp".into(), json!(self.timestamp_ms as f64 / 1000.0));
        m.insert("type".into(), json!(self.kind.as_str()));
        m.insert("id".into(), json!(self.id));
        m.insert("previousEventId".into(), json!(self.previous_event_id));
        if let Some(d) = &self.details {
            let mut d = d.clone();
            // Payloads are never truncated here; AWS reports that beside each one.
            if let Value::Object(o) = &mut d {
                for (field, flag) in [("input", "inputDetails"), ("output", "outputDetails")] {
                    if o.contains_key(field) && !o.contains_key(flag) {
                        o.insert(flag.into(), json!({"truncated": false}));
                    }
                }
            }
            m.insert(self.kind.details_key(), d);
        }
        Value::Object(m)
    }
}

/// `stateEnteredEventDetails` / `stateExitedEventDetails`-style payload text.
pub fn payload_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_keys_follow_aws_naming() {
        assert_eq!(
            EventType::PassStateEntered.details_key(),
            "stateEnteredEventDetails"
        );
        assert_eq!(
            EventType::TaskStateExited.details_key(),
            "stateExitedEventDetails"
        );
        assert_eq!(
            EventType::TaskScheduled.details_key(),
            "taskScheduledEventDetails"
        );
        assert_eq!(
            EventType::MapIterationStarted.details_key(),
            "mapIterationStartedEventDetails"
        );
        assert_eq!(
            EventType::ExecutionFailed.details_key(),
            "executionFailedEventDetails"
        );
        assert_eq!(
            EventType::from_name("TaskSubmitted"),
            Some(EventType::TaskSubmitted)
        );
    }

    #[test]
    fn aws_json_shape() {
        let e = HistoryEvent {
            timestamp_ms: 1_500,
            kind: EventType::ExecutionSucceeded,
            id: 4,
            previous_event_id: 3,
            details: Some(json!({"output": "{}"})),
        };
        let j = e.to_aws_json();
        assert_eq!(j["type"], "ExecutionSucceeded");
        assert_eq!(j["timestamp"], 1.5);
        assert_eq!(j["previousEventId"], 3);
        assert_eq!(j["executionSucceededEventDetails"]["output"], "{}");
    }
}
