//! Running a state: the dispatch by state type, and the types that finish in
//! one step (Pass, Succeed, Fail, Choice) or wait on a timer (Wait). Task is in
//! `task.rs`; Parallel and Map in `map_parallel.rs`.

use super::data_flow::{apply_io, effective, eval_dynamic, eval_template, output_of, path_error};
use super::{Env, Execution, Flow, Frame, Phase, StatesError, Timer, TimerKind};
use crate::choice::ChoiceError;
use crate::definition::{
    IoPath, ResultPath, State, StateKind, StateMachine, StringSource, Transition, WaitSpec,
};
use crate::history::EventType;
use crate::path::excerpt;
use chrono::DateTime;
use serde_json::Value;

impl Execution {
    pub(super) fn run_state(
        &mut self,
        def: &StateMachine,
        st: &State,
        fid: u32,
        f: &mut Frame,
        env: &mut Env,
    ) -> Flow {
        let result = match &st.kind {
            StateKind::Pass { result } => self.run_pass(st, f, result.as_ref(), env),
            StateKind::Succeed => {
                let out = apply_io(&st.input_path, "InputPath", &f.input)
                    .and_then(|v| apply_io(&st.output_path, "OutputPath", &v));
                match out {
                    Ok(out) => {
                        self.emit_state(env, f, EventType::SucceedStateExited, st, &out);
                        self.finish_frame(def, fid, f, out, env);
                        return Flow::Stop;
                    }
                    Err(e) => Err(e),
                }
            }
            StateKind::Fail { error, cause } => {
                let e = self.fail_state_error(st, f, error.as_ref(), cause.as_ref(), env);
                self.fail_frame(def, fid, f, e, env);
                return Flow::Stop;
            }
            StateKind::Choice { choices, default } => {
                self.run_choice(st, f, choices, *default, env)
            }
            StateKind::Wait(spec) => return self.run_wait(def, st, fid, f, spec, env),
            StateKind::Task(spec) => return self.run_task(def, st, fid, f, spec, env),
            StateKind::Parallel { branches } => {
                return self.run_parallel(def, st, fid, f, branches.len(), env)
            }
            StateKind::Map(_) => return self.run_map(def, st, fid, f, env),
        };
        match result {
            Ok((next, out)) => self.transition(def, fid, f, next, out, env),
            Err(e) => self.handle_error(def, st, fid, f, e, env),
        }
    }

    fn run_pass(
        &mut self,
        st: &State,
        f: &mut Frame,
        result: Option<&Value>,
        env: &mut Env,
    ) -> Result<(Transition, Value), StatesError> {
        let eff = effective(&st.input_path, &f.input)?;
        let res = match &st.parameters {
            Some(t) => {
                let v = eval_template(t, "Parameters", &self.scope(f, st, &eff), env.rng)?;
                result.cloned().unwrap_or(v)
            }
            None => match result {
                Some(r) => r.clone(),
                None => eff.into_owned(),
            },
        };
        self.assign(st.assign.as_ref(), f, st, &res, env)?;
        // A Pass has no Catch, so its raw input is not needed once the result
        // is placed: move it instead of copying it.
        let raw = std::mem::take(&mut f.input);
        let out = match &st.result_path {
            ResultPath::Replace => res,
            ResultPath::Discard => raw,
            ResultPath::At(p) => p.set(raw, res).map_err(|e| {
                StatesError::new(
                    "States.ResultPathMatchFailure",
                    format!("Unable to apply ResultPath '{p}': {e}"),
                )
            })?,
        };
        let out = output_of(&st.output_path, out)?;
        f.carry = Some(self.emit_state(env, f, EventType::PassStateExited, st, &out));
        Ok((st.next, out))
    }

    fn fail_state_error(
        &self,
        st: &State,
        f: &Frame,
        error: Option<&StringSource>,
        cause: Option<&StringSource>,
        env: &mut Env,
    ) -> StatesError {
        let scope = self.scope(f, st, &f.input);
        let mut resolve =
            |s: Option<&StringSource>, field: &str| -> Result<Option<String>, StatesError> {
                match s {
                    None => Ok(None),
                    Some(StringSource::Fixed(x)) => Ok(Some(x.clone())),
                    Some(StringSource::Dynamic(d)) => {
                        let v = eval_dynamic(d, &field, &scope, env.rng)?;
                        match v {
                            Value::String(s) => Ok(Some(s)),
                            other => Err(StatesError::runtime(format!(
                                "The value of {field} must be a string, got {}",
                                excerpt(&other)
                            ))),
                        }
                    }
                }
            };
        let e = match resolve(error, "ErrorPath") {
            Ok(e) => e,
            Err(x) => return x,
        };
        let c = match resolve(cause, "CausePath") {
            Ok(c) => c,
            Err(x) => return x,
        };
        StatesError::new(e.unwrap_or_default(), c.unwrap_or_default())
    }

    fn run_choice(
        &mut self,
        st: &State,
        f: &mut Frame,
        choices: &[crate::choice::ChoiceRule],
        default: Option<usize>,
        env: &mut Env,
    ) -> Result<(Transition, Value), StatesError> {
        // A Choice passes its effective input on; with `InputPath: $` that is the
        // input itself, moved rather than copied (a Choice has no Catch to need it).
        let eff = match st.input_path {
            IoPath::Whole => std::mem::take(&mut f.input),
            _ => apply_io(&st.input_path, "InputPath", &f.input)?,
        };
        let mut chosen = None;
        {
            let scope = self.scope(f, st, &eff);
            for c in choices {
                let matched = c.rule.eval(&scope).map_err(|ChoiceError { path }| {
                    StatesError::runtime(format!(
                        "Invalid path '{path}': The choice state's condition path references an invalid value."
                    ))
                })?;
                if matched {
                    chosen = Some((c.next, c.assign.as_ref()));
                    break;
                }
            }
        }
        let (next, assign) = match chosen {
            Some(x) => x,
            None => match default {
                Some(d) => (d, st.assign.as_ref()),
                None => {
                    return Err(StatesError::new(
                        "States.NoChoiceMatched",
                        format!(
                            "No Choice Rules matched and no Default was specified in state '{}'",
                            st.name
                        ),
                    ))
                }
            },
        };
        self.assign(assign, f, st, &eff, env)?;
        let out = output_of(&st.output_path, eff)?;
        f.carry = Some(self.emit_state(env, f, EventType::ChoiceStateExited, st, &out));
        Ok((Transition::Next(next), out))
    }

    fn run_wait(
        &mut self,
        def: &StateMachine,
        st: &State,
        fid: u32,
        f: &mut Frame,
        spec: &WaitSpec,
        env: &mut Env,
    ) -> Flow {
        let computed = (|| -> Result<(i64, Value), StatesError> {
            let eff = apply_io(&st.input_path, "InputPath", &f.input)?;
            let at = match spec {
                WaitSpec::Seconds(s) => env.now_ms + (*s as i64) * 1000,
                WaitSpec::Timestamp(t) => t.timestamp_millis(),
                WaitSpec::SecondsPath(p) => {
                    let v = p
                        .select(&crate::path::InputOnly(&eff))
                        .map_err(|e| path_error("SecondsPath", e))?;
                    let s = v.as_u64().ok_or_else(|| {
                        StatesError::runtime(format!(
                            "SecondsPath '{p}' must select a non-negative integer, got {v}"
                        ))
                    })?;
                    env.now_ms + (s as i64) * 1000
                }
                WaitSpec::TimestampPath(p) => {
                    let v = p
                        .select(&crate::path::InputOnly(&eff))
                        .map_err(|e| path_error("TimestampPath", e))?;
                    let t = v
                        .as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .ok_or_else(|| {
                            StatesError::runtime(format!(
                                "TimestampPath '{p}' must select an RFC 3339 timestamp, got {v}"
                            ))
                        })?;
                    t.timestamp_millis()
                }
            };
            Ok((at, eff))
        })();
        match computed {
            Ok((at, eff)) => {
                if let Err(e) = self.assign(st.assign.as_ref(), f, st, &eff, env) {
                    return self.handle_error(def, st, fid, f, e, env);
                }
                let out = match apply_io(&st.output_path, "OutputPath", &eff) {
                    Ok(o) => o,
                    Err(e) => return self.handle_error(def, st, fid, f, e, env),
                };
                let seq = self.bump_seq();
                f.phase = Phase::Timer {
                    seq,
                    at_ms: at,
                    wait_output: Some(out),
                };
                env.effects.timers.push(Timer {
                    at_ms: at,
                    frame: fid,
                    seq,
                    kind: TimerKind::Resume,
                });
                Flow::Stop
            }
            Err(e) => self.handle_error(def, st, fid, f, e, env),
        }
    }
}
