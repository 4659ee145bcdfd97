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
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// [`payload_text`] as shared text, as history events hold it: the same
/// compact JSON, written by [`write_compact`].
pub fn payload_shared(v: &Value) -> std::sync::Arc<str> {
    SCRATCH
        .try_with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return std::sync::Arc::from(payload_text(v));
            };
            buf.clear();
            write_compact(&mut buf, v);
            let text = std::sync::Arc::from(buf.as_str());
            if buf.capacity() > SCRATCH_KEEP {
                *buf = String::new();
            }
            text
        })
        .unwrap_or_else(|_| std::sync::Arc::from(payload_text(v)))
}

/// Appends `v` as compact JSON, byte for byte what `serde_json::to_string`
/// writes, without going through serde's generic serializer (payload text
/// is made on every state transition).
pub fn write_compact(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(out, x);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_compact(out, x);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(u) = n.as_u64() {
        write_u64(out, u);
    } else if let Some(i) = n.as_i64() {
        // Negative (non-negative ones are u64 above).
        out.push('-');
        write_u64(out, i.unsigned_abs());
    } else {
        // Floats (and arbitrary-precision numbers): serde_json's own text.
        use std::fmt::Write as _;
        let _ = write!(out, "{n}");
    }
}

fn write_u64(out: &mut String, mut u: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// A JSON string literal, escaped as serde_json escapes: `"`, `\\` and
/// control characters only (`\b \f \n \r \t`, the rest as `\u00XX`).
fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
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
        assert_eq!(&*payload_shared(&small), payload_text(&small));
        // A payload larger than the kept buffer, then a small one again.
        let big = json!({"blob": "z".repeat(2 * SCRATCH_KEEP)});
        assert_eq!(&*payload_shared(&big), payload_text(&big));
        assert_eq!(&*payload_shared(&small), payload_text(&small));
        assert_eq!(&*payload_shared(&Value::Null), "null");
    }

    #[test]
    fn compact_text_is_serde_json_text() {
        let fixed = [
            json!(null),
            json!(true),
            json!([false, [], {}, [[]], {"": ""}]),
            json!([0, 1, -1, u64::MAX, i64::MIN, i64::MAX, 10, -10, 1234567890]),
            json!([0.0, -0.0, 0.1, 1.5, -2.25, 1e300, 1e-300, 5e-324, 1.7976931348623157e308, 123456789.125]),
            json!("plain"),
            json!("quote \" backslash \\ slash / del \u{7f} nul \u{0} bell \u{7} esc \u{1b} us \u{1f}"),
            json!("\u{8}\u{c}\n\r\t"),
            json!("é ü 中文 😀 \u{2028}\u{2029}"),
            json!({"k\"ey": {"nested": [1, {"x": "y\n"}]}, "z": 0, "a": -0.5}),
        ];
        for v in &fixed {
            let mut out = String::new();
            write_compact(&mut out, v);
            assert_eq!(out, serde_json::to_string(v).unwrap(), "{v:?}");
        }
        // Random documents, all byte values and number kinds included.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        fn random(rng: &mut rand::rngs::StdRng, depth: u32) -> Value {
            let pick = if depth == 0 {
                rng.random_range(0..6)
            } else {
                rng.random_range(0..8)
            };
            let text = |rng: &mut rand::rngs::StdRng| -> String {
                (0..rng.random_range(0..12))
                    .map(|_| match rng.random_range(0..4) {
                        0 => char::from(rng.random_range(0u8..0x80)),
                        1 => char::from_u32(rng.random_range(0x80..0xd800)).unwrap_or('x'),
                        2 => ['"', '\\', '/', '\n'][rng.random_range(0..4)],
                        _ => char::from(rng.random_range(b'a'..=b'z')),
                    })
                    .collect()
            };
            match pick {
                0 => Value::Null,
                1 => Value::Bool(rng.random()),
                2 => json!(rng.random::<u64>() >> rng.random_range(0..64)),
                3 => json!(-(rng.random::<i64>() >> rng.random_range(1..64)) - 1),
                4 => serde_json::Number::from_f64(f64::from_bits(rng.random()))
                    .map_or(Value::Null, Value::Number),
                5 => Value::String(text(rng)),
                6 => Value::Array(
                    (0..rng.random_range(0..5))
                        .map(|_| random(rng, depth - 1))
                        .collect(),
                ),
                _ => Value::Object(
                    (0..rng.random_range(0..5))
                        .map(|_| (text(rng), random(rng, depth - 1)))
                        .collect(),
                ),
            }
        }
        for _ in 0..2000 {
            let v = random(&mut rng, 4);
            let mut out = String::new();
            write_compact(&mut out, &v);
            assert_eq!(out, serde_json::to_string(&v).unwrap(), "{v:?}");
        }
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
