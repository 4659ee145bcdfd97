//! Recording history events, and the two AWS quotas checked while recording:
//! an execution's event count ([`super::MAX_HISTORY_EVENTS`]) and a state's payload
//! size ([`MAX_PAYLOAD_BYTES`]). A breach halts the advance and fails the
//! execution with `States.Runtime` / `States.DataLimitExceeded`.

use super::{Env, Execution, ExecutionStatus, Frame, StatesError, MAX_PAYLOAD_BYTES};
use crate::definition::State;
use crate::history::{payload_shared, Details, EventType, HistoryEvent};
use serde_json::Value;

/// Whether an event ends the execution (those may take the last history id).
fn is_execution_end(kind: EventType) -> bool {
    matches!(
        kind,
        EventType::ExecutionSucceeded
            | EventType::ExecutionFailed
            | EventType::ExecutionAborted
            | EventType::ExecutionTimedOut
    )
}

impl Execution {
    pub(super) fn emit_raw(
        &mut self,
        env: &Env,
        kind: EventType,
        prev: u64,
        details: Option<Value>,
    ) -> u64 {
        self.emit_details(env, kind, prev, details.map(|d| Details::Json(Box::new(d))))
    }

    fn emit_details(
        &mut self,
        env: &Env,
        kind: EventType,
        prev: u64,
        details: Option<Details>,
    ) -> u64 {
        let id = self.next_event;
        if id >= env.history_limit && !is_execution_end(kind) {
            // The last event id is kept for the failure that ends the execution.
            self.halt_with(StatesError::runtime(format!(
                "The execution reached the maximum number of history events ({}).",
                env.history_limit
            )));
            return self.last_event;
        }
        self.next_event += 1;
        self.last_event = id;
        self.pending_events.push(HistoryEvent {
            timestamp_ms: env.now_ms,
            kind,
            id,
            previous_event_id: prev,
            details,
        });
        id
    }

    /// Records a state's entry or exit: its shared name and the payload text.
    pub(super) fn emit_state(
        &mut self,
        env: &Env,
        f: &mut Frame,
        kind: EventType,
        st: &State,
        payload: &Value,
    ) -> std::sync::Arc<str> {
        let text = payload_shared(payload);
        self.emit_state_text(env, f, kind, st, text.clone());
        text
    }

    /// Records a state's entry or exit with already-serialized payload text.
    pub(super) fn emit_state_text(
        &mut self,
        env: &Env,
        f: &mut Frame,
        kind: EventType,
        st: &State,
        payload: std::sync::Arc<str>,
    ) {
        if payload.len() > MAX_PAYLOAD_BYTES {
            let what = if kind.as_str().ends_with("Exited") {
                "output"
            } else {
                "input"
            };
            self.halt_with(StatesError::new(
                "States.DataLimitExceeded",
                format!(
                    "The state '{}' has an {what} of {} bytes, above the maximum of {MAX_PAYLOAD_BYTES} bytes.",
                    st.name,
                    payload.len()
                ),
            ));
            return;
        }
        self.slice_bytes += payload.len();
        let details = Details::State {
            name: st.shared_name.clone(),
            payload,
        };
        let id = self.emit_details(env, kind, f.last_event, Some(details));
        f.last_event = id;
    }

    pub(super) fn emit(
        &mut self,
        env: &Env,
        f: &mut Frame,
        kind: EventType,
        details: Option<Value>,
    ) -> u64 {
        let id = self.emit_raw(env, kind, f.last_event, details);
        f.last_event = id;
        id
    }

    /// Records a quota breach; the first one wins.
    fn halt_with(&mut self, e: StatesError) {
        if self.halt.is_none() {
            self.halt = Some(e);
        }
    }

    /// Ends the execution for the quota breach [`Execution::halt_with`] recorded.
    /// Nothing decided in the same advance is invoked.
    pub(super) fn fail_halted(&mut self, env: &mut Env) {
        let Some(e) = self.halt.take() else { return };
        if self.status == ExecutionStatus::Succeeded
            && self.pending_events.last().map(|x| x.kind) == Some(EventType::ExecutionSucceeded)
        {
            // The end was reached only by dropping events past the quota: it does not stand.
            self.pending_events.pop();
            self.next_event -= 1;
            self.last_event = self.next_event - 1;
            self.status = ExecutionStatus::Running;
            self.output = None;
            self.stop_ms = None;
        }
        if self.status != ExecutionStatus::Running {
            return;
        }
        env.effects.invocations.clear();
        env.effects.tokens.clear();
        self.end(env, ExecutionStatus::Failed, EventType::ExecutionFailed, e);
    }
}
