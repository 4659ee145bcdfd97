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

/// The `…EventDetails` of an event. State entries and exits — two thirds of
/// every history — are kept compactly (the state's shared name and the
/// payload text) and become a JSON object only when read; everything else is
/// JSON already. Either way they serialize to the same JSON object.
#[derive(Debug, Clone, PartialEq)]
pub enum Details {
    /// `stateEnteredEventDetails` (`input`) or `stateExitedEventDetails` (`output`).
    State {
        /// The state's name.
        name: std::sync::Arc<str>,
        /// The payload as JSON text (shared when a state's output is the next state's input).
        payload: std::sync::Arc<str>,
    },
    /// Any other details object (boxed: it is the rarer kind, and keeping
    /// it out of line halves the size of every event).
    Json(Box<Value>),
}

impl Details {
    /// The details as a JSON object; `payload_field` names the payload (`input`/`output`).
    fn to_value(&self, payload_field: &str) -> Value {
        match self {
            Details::State { name, payload } => {
                let mut m = Map::new();
                m.insert("name".into(), Value::String(name.to_string()));
                m.insert(payload_field.into(), Value::String(payload.to_string()));
                Value::Object(m)
            }
            Details::Json(v) => (**v).clone(),
        }
    }
}

/// One history event.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    /// When it happened, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Its type.
    pub kind: EventType,
    /// 1-based, increasing within an execution.
    pub id: u64,
    /// The event that led to this one (0 for the first).
    pub previous_event_id: u64,
    /// The `…EventDetails`, if the type has any.
    pub details: Option<Details>,
}

/// The stored form of an event (the format in the state database).
#[derive(Serialize, Deserialize)]
struct StoredEvent {
    timestamp_ms: i64,
    kind: EventType,
    id: u64,
    previous_event_id: u64,
    details: Option<Value>,
}

impl Serialize for HistoryEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredEvent {
            timestamp_ms: self.timestamp_ms,
            kind: self.kind,
            id: self.id,
            previous_event_id: self.previous_event_id,
            details: self.details_value(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for HistoryEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = StoredEvent::deserialize(d)?;
        Ok(HistoryEvent {
            timestamp_ms: e.timestamp_ms,
            kind: e.kind,
            id: e.id,
            previous_event_id: e.previous_event_id,
            details: e.details.map(|d| Details::Json(Box::new(d))),
        })
    }
}

impl HistoryEvent {
    /// The `…EventDetails` object as JSON (without the `…Details.truncated` flags).
    pub fn details_value(&self) -> Option<Value> {
        let field = if self.kind.as_str().ends_with("StateExited") {
            "output"
        } else {
            "input"
        };
        self.details.as_ref().map(|d| d.to_value(field))
    }

    /// The event as the Step Functions JSON protocol carries it (timestamps in epoch seconds).
    pub fn to_aws_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("timestamp".into(), json!(self.timestamp_ms as f64 / 1000.0));
        m.insert("type".into(), json!(self.kind.as_str()));
        m.insert("id".into(), json!(self.id));
        m.insert("previousEventId".into(), json!(self.previous_event_id));
        if let Some(mut d) = self.details_value() {
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

/// A serialization buffer above this size is released after use rather
/// than kept for the next payload.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    /// Reused for every payload serialized on this thread, so the text is
    /// written without growing a fresh buffer step by step and then copied
    /// once, at its exact size, into the shared text.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`payload_text`] as shared text, as history events hold it.
pub fn payload_shared(v: &Value) -> std::sync::Arc<str> {
    SCRATCH
        .try_with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return std::sync::Arc::from(payload_text(v));
            };
            buf.clear();
            let text = match serde_json::to_writer(&mut *buf, v) {
                Ok(()) => std::str::from_utf8(&buf)
                    .map(std::sync::Arc::from)
                    .unwrap_or_else(|_| std::sync::Arc::from("null")),
                Err(_) => std::sync::Arc::from("null"),
            };
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            text
        })
        .unwrap_or_else(|_| std::sync::Arc::from(payload_text(v)))
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
    fn shared_payload_text_matches_plain_text() {
        let small = json!({"a": [1, 2.5, "x\"y"], "b": null, "é": {"k": true}});
        let serde = |v: &Value| serde_json::to_string(v).unwrap();
        assert_eq!(&*payload_shared(&small), serde(&small));
        assert_eq!(payload_text(&small), serde(&small));
        // A payload larger than the kept buffer, then a small one again.
        let big = json!({"blob": "z".repeat(2 * SCRATCH_KEEP)});
        assert_eq!(&*payload_shared(&big), serde(&big));
        assert_eq!(&*payload_shared(&small), serde(&small));
        assert_eq!(&*payload_shared(&Value::Null), "null");
    }

    #[test]
    fn events_stay_small() {
        // Memory-backed engines hold every event: ids, time, type and two
        // shared texts, nothing inline that most events do not use.
        assert!(
            std::mem::size_of::<HistoryEvent>() <= 72,
            "{}",
            std::mem::size_of::<HistoryEvent>()
        );
    }

    #[test]
    fn aws_json_shape() {
        let e = HistoryEvent {
            timestamp_ms: 1_500,
            kind: EventType::ExecutionSucceeded,
            id: 4,
            previous_event_id: 3,
            details: Some(Details::Json(Box::new(json!({"output": "{}"})))),
        };
        let j = e.to_aws_json();
        assert_eq!(j["type"], "ExecutionSucceeded");
        assert_eq!(j["timestamp"], 1.5);
        assert_eq!(j["previousEventId"], 3);
        assert_eq!(j["executionSucceededEventDetails"]["output"], "{}");
    }
}
