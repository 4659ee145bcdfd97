//! Error handling: `Retry` (back-off, max delay, jitter) and then `Catch`,
//! before an error fails its frame. `States.Runtime` and
//! `States.DataLimitExceeded` can be neither retried nor caught.

use super::data_flow::apply_result_path;
use super::{Env, Execution, Flow, Frame, Phase, StatesError, Timer, TimerKind};
use crate::definition::{State, StateMachine};
use serde_json::{json, Value};

/// True for errors that neither `Retry` nor `Catch` (even `States.ALL`) may handle.
pub fn is_uncatchable(error: &str) -> bool {
    matches!(error, "States.Runtime" | "States.DataLimitExceeded")
}

/// Whether a retrier's or catcher's `ErrorEquals` matches `error`.
pub fn error_matches(error_equals: &[String], error: &str) -> bool {
    if is_uncatchable(error) {
        return false;
    }
    error_equals.iter().any(|e| match e.as_str() {
        "States.ALL" => true,
        "States.TaskFailed" => error != "States.Timeout",
        other => other == error,
    })
}

impl Execution {
    /// An error reached a frame that was waiting (task, children): retry, catch or fail.
    pub(super) fn error_in_waiting_frame(
        &mut self,
        def: &StateMachine,
        fid: u32,
        f: &mut Frame,
        e: StatesError,
        env: &mut Env,
    ) -> bool {
        let Some(st) = self.state_of(def, f) else {
            self.fail_frame(def, fid, f, e, env);
            return false;
        };
        f.phase = Phase::Run;
        match self.handle_error(def, st, fid, f, e, env) {
            Flow::Continue => {
                self.runnable.push_back(fid);
                true
            }
            Flow::Stop => !matches!(f.phase, Phase::Run | Phase::Enter),
        }
    }

    /// Retry, then Catch, then fail the frame.
    pub(super) fn handle_error(
        &mut self,
        def: &StateMachine,
        st: &State,
        fid: u32,
        f: &mut Frame,
        e: StatesError,
        env: &mut Env,
    ) -> Flow {
        if !is_uncatchable(&e.error) {
            if f.attempts.len() != st.retry.len() {
                f.attempts = vec![0; st.retry.len()];
            }
            if let Some(i) = st
                .retry
                .iter()
                .position(|r| error_matches(&r.error_equals, &e.error))
            {
                let r = &st.retry[i];
                if f.attempts[i] < r.max_attempts {
                    let mut delay = r.interval_seconds * r.backoff_rate.powi(f.attempts[i] as i32);
                    if let Some(max) = r.max_delay_seconds {
                        delay = delay.min(max);
                    }
                    if r.full_jitter {
                        let unit = (env.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                        delay *= unit;
                    }
                    f.attempts[i] += 1;
                    f.retry_count += 1;
                    let seq = self.bump_seq();
                    let at = env.now_ms + (delay * 1000.0).round() as i64;
                    f.phase = Phase::Timer {
                        seq,
                        at_ms: at,
                        wait_output: None,
                    };
                    env.effects.timers.push(Timer {
                        at_ms: at,
                        frame: fid,
                        seq,
                        kind: TimerKind::Resume,
                    });
                    return Flow::Stop;
                }
            }
            if let Some(c) = st
                .catch
                .iter()
                .find(|c| error_matches(&c.error_equals, &e.error))
            {
                let err_out = json!({"Error": e.error, "Cause": e.cause});
                let caught = (|| -> Result<Value, StatesError> {
                    self.assign(c.assign.as_ref(), f, st, &err_out, env)?;
                    apply_result_path(&c.result_path, &f.input, err_out.clone())
                })();
                match caught {
                    Ok(out) => {
                        f.state = c.next;
                        f.input = out;
                        f.carry = None;
                        f.phase = Phase::Enter;
                        return Flow::Continue;
                    }
                    Err(e2) => {
                        self.fail_frame(def, fid, f, e2, env);
                        return Flow::Stop;
                    }
                }
            }
        }
        self.fail_frame(def, fid, f, e, env);
        Flow::Stop
    }
}
