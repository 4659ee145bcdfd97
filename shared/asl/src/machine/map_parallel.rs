//! Parallel branches and inline Map iterations: child frames started from a
//! parent state, `MaxConcurrency`, the tolerated-failure thresholds, and
//! collecting the children's results (or the first failure) for the parent.

use super::data_flow::{apply_io, eval_template, number_from, path_error};
use super::{Env, Execution, ExecutionStatus, Flow, Frame, Phase, StatesError};
use crate::definition::{State, StateKind, StateMachine};
use crate::history::EventType;
use crate::path::excerpt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A Parallel or Map state's children: those running, the results so far,
/// and (for Map) the items still to start and the failure tolerances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Children {
    seq: u64,
    is_map: bool,
    effective: Value,
    items: Vec<Value>,
    results: Vec<Value>,
    running: BTreeMap<usize, u32>,
    next_to_start: usize,
    done: usize,
    failures: usize,
    max_concurrency: usize,
    tolerated_count: Option<u64>,
    tolerated_percentage: Option<f64>,
}

/// What a Map state needs to start: effective input, items, max concurrency, tolerances.
type MapSetup = (Value, Vec<Value>, usize, Option<u64>, Option<f64>);

impl Execution {
    pub(super) fn run_parallel(
        &mut self,
        def: &StateMachine,
        st: &State,
        fid: u32,
        f: &mut Frame,
        n: usize,
        env: &mut Env,
    ) -> Flow {
        let eff = match apply_io(&st.input_path, "InputPath", &f.input).and_then(|eff| {
            match &st.parameters {
                Some(t) => eval_template(t, "Parameters", &self.scope(f, st, &eff), env.rng),
                None => Ok(eff),
            }
        }) {
            Ok(v) => v,
            Err(e) => return self.handle_error(def, st, fid, f, e, env),
        };
        self.emit(env, f, EventType::ParallelStateStarted, None);
        let seq = self.bump_seq();
        let mut running = BTreeMap::new();
        for i in 0..n {
            let mut addr = f.branch.clone();
            addr.push((f.state, i));
            let start = def.branch(&addr).map(|b| b.start_at).unwrap_or(0);
            let child = Frame {
                parent: Some(fid),
                index: i,
                branch: addr,
                state: start,
                input: eff.clone(),
                phase: Phase::Enter,
                attempts: Vec::new(),
                retry_count: 0,
                entered_ms: env.now_ms,
                last_event: f.last_event,
                vars: f.vars.clone(),
                carry: None,
            };
            running.insert(i, self.add_frame(child));
        }
        f.phase = Phase::Children(Box::new(Children {
            seq,
            is_map: false,
            effective: Value::Null,
            items: Vec::new(),
            results: vec![Value::Null; n],
            running,
            next_to_start: n,
            done: 0,
            failures: 0,
            max_concurrency: 0,
            tolerated_count: None,
            tolerated_percentage: None,
        }));
        Flow::Stop
    }

    pub(super) fn run_map(
        &mut self,
        def: &StateMachine,
        st: &State,
        fid: u32,
        f: &mut Frame,
        env: &mut Env,
    ) -> Flow {
        let StateKind::Map(spec) = &st.kind else {
            return Flow::Stop;
        };
        let prepared = (|| -> Result<MapSetup, StatesError> {
            let eff = apply_io(&st.input_path, "InputPath", &f.input)?;
            let items_v = match &spec.items_path {
                Some(p) => p
                    .select(&self.scope(f, st, &eff))
                    .map_err(|e| path_error("ItemsPath", e))?,
                None => eff.clone(),
            };
            let Value::Array(items) = items_v else {
                return Err(StatesError::runtime(format!(
                    "Map state '{}': ItemsPath must select an array, got {}",
                    st.name,
                    excerpt(&items_v)
                )));
            };
            let mc = spec
                .max_concurrency
                .as_ref()
                .map(|s| number_from(s, "MaxConcurrency", &eff))
                .transpose()?
                .unwrap_or(0) as usize;
            let tc = spec
                .tolerated_count
                .as_ref()
                .map(|s| number_from(s, "ToleratedFailureCount", &eff))
                .transpose()?;
            let tp = spec
                .tolerated_percentage
                .as_ref()
                .map(|s| number_from(s, "ToleratedFailurePercentage", &eff))
                .transpose()?
                .map(|p| p as f64);
            Ok((eff, items, mc, tc, tp))
        })();
        let (eff, items, mc, tc, tp) = match prepared {
            Ok(x) => x,
            Err(e) => return self.handle_error(def, st, fid, f, e, env),
        };
        let n = items.len();
        self.emit(
            env,
            f,
            EventType::MapStateStarted,
            Some(json!({"length": n})),
        );
        let seq = self.bump_seq();
        let mut ch = Box::new(Children {
            seq,
            is_map: true,
            effective: eff,
            items,
            results: vec![Value::Null; n],
            running: BTreeMap::new(),
            next_to_start: 0,
            done: 0,
            failures: 0,
            max_concurrency: mc,
            tolerated_count: tc,
            tolerated_percentage: tp,
        });
        if n == 0 {
            self.emit(env, f, EventType::MapStateSucceeded, None);
            f.phase = Phase::Run;
            let keep = self.complete_with_result(def, fid, f, json!([]), env);
            if keep && matches!(f.phase, Phase::Enter) {
                // complete_with_result queued the frame again; keep going here instead.
                if self.runnable.back() == Some(&fid) {
                    self.runnable.pop_back();
                }
                return Flow::Continue;
            }
            return Flow::Stop;
        }
        if let Err(e) = self.start_iterations(def, st, fid, f, &mut ch, env) {
            return self.handle_error(def, st, fid, f, e, env);
        }
        f.phase = Phase::Children(ch);
        Flow::Stop
    }

    fn start_iterations(
        &mut self,
        def: &StateMachine,
        st: &State,
        fid: u32,
        f: &mut Frame,
        ch: &mut Children,
        env: &mut Env,
    ) -> Result<(), StatesError> {
        let limit = if ch.max_concurrency == 0 {
            usize::MAX
        } else {
            ch.max_concurrency
        };
        while ch.next_to_start < ch.items.len() && ch.running.len() < limit {
            let i = ch.next_to_start;
            ch.next_to_start += 1;
            let item = std::mem::take(&mut ch.items[i]);
            let input = match &st.parameters {
                Some(t) => {
                    let mut scope = self.scope(f, st, &ch.effective);
                    scope.map_item = Some((i, &item));
                    eval_template(t, "ItemSelector", &scope, env.rng)?
                }
                None => item,
            };
            let started = self.emit(
                env,
                f,
                EventType::MapIterationStarted,
                Some(json!({"name": st.name, "index": i})),
            );
            let mut addr = f.branch.clone();
            addr.push((f.state, 0));
            let start = def.branch(&addr).map(|b| b.start_at).unwrap_or(0);
            let child = Frame {
                parent: Some(fid),
                index: i,
                branch: addr,
                state: start,
                input,
                phase: Phase::Enter,
                attempts: Vec::new(),
                retry_count: 0,
                entered_ms: env.now_ms,
                last_event: started,
                vars: f.vars.clone(),
                carry: None,
            };
            let id = self.add_frame(child);
            ch.running.insert(i, id);
        }
        Ok(())
    }

    pub(super) fn child_done(
        &mut self,
        def: &StateMachine,
        pid: u32,
        index: usize,
        child_last: u64,
        outcome: Result<Value, StatesError>,
        env: &mut Env,
    ) {
        let Some(mut p) = self.frames.remove(&pid) else {
            return;
        };
        let Some(st) = self.state_of(def, &p) else {
            return;
        };
        let Phase::Children(mut ch) = std::mem::replace(&mut p.phase, Phase::Run) else {
            self.frames.insert(pid, p);
            return;
        };
        ch.running.remove(&index);
        p.last_event = p.last_event.max(child_last);
        let mut failure: Option<StatesError> = None;
        match outcome {
            Ok(v) => {
                ch.results[index] = v;
                ch.done += 1;
                if ch.is_map {
                    self.emit(
                        env,
                        &mut p,
                        EventType::MapIterationSucceeded,
                        Some(json!({"name": st.name, "index": index})),
                    );
                }
            }
            Err(e) => {
                ch.done += 1;
                ch.failures += 1;
                if ch.is_map {
                    self.emit(
                        env,
                        &mut p,
                        EventType::MapIterationFailed,
                        Some(json!({"name": st.name, "index": index})),
                    );
                    let total = ch.results.len() as f64;
                    let within_count = ch.tolerated_count.is_some_and(|c| ch.failures as u64 <= c);
                    let within_pct = ch
                        .tolerated_percentage
                        .is_some_and(|pct| (ch.failures as f64) * 100.0 / total <= pct);
                    if within_count || within_pct {
                        ch.results[index] = json!({"Error": e.error, "Cause": e.cause});
                    } else if ch.tolerated_count.is_some() || ch.tolerated_percentage.is_some() {
                        failure = Some(StatesError::new(
                            "States.ExceedToleratedFailureThreshold",
                            format!("The number of failed items in Map state '{}' exceeded the tolerated failure threshold", st.name),
                        ));
                    } else {
                        failure = Some(e);
                    }
                } else {
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            // Abort every child still running.
            for (&i, &cid) in &ch.running {
                self.abort_frame_tree(cid);
                if ch.is_map {
                    self.emit(
                        env,
                        &mut p,
                        EventType::MapIterationAborted,
                        Some(json!({"name": st.name, "index": i})),
                    );
                }
            }
            let failed = if ch.is_map {
                EventType::MapStateFailed
            } else {
                EventType::ParallelStateFailed
            };
            self.emit(env, &mut p, failed, None);
            let keep = self.error_in_waiting_frame(def, pid, &mut p, e, env);
            if keep && self.status == ExecutionStatus::Running {
                self.frames.insert(pid, p);
            }
            return;
        }
        if ch.done == ch.results.len() {
            let ok = if ch.is_map {
                EventType::MapStateSucceeded
            } else {
                EventType::ParallelStateSucceeded
            };
            self.emit(env, &mut p, ok, None);
            let results = std::mem::take(&mut ch.results);
            let keep = self.complete_with_result(def, pid, &mut p, Value::Array(results), env);
            if keep && self.status == ExecutionStatus::Running {
                self.frames.insert(pid, p);
            }
            return;
        }
        if ch.is_map {
            if let Err(e) = self.start_iterations(def, st, pid, &mut p, &mut ch, env) {
                for &cid in ch.running.values() {
                    self.abort_frame_tree(cid);
                }
                self.emit(env, &mut p, EventType::MapStateFailed, None);
                let keep = self.error_in_waiting_frame(def, pid, &mut p, e, env);
                if keep && self.status == ExecutionStatus::Running {
                    self.frames.insert(pid, p);
                }
                return;
            }
        }
        p.phase = Phase::Children(ch);
        self.frames.insert(pid, p);
    }

    fn abort_frame_tree(&mut self, id: u32) {
        let children: Vec<u32> = self
            .frames
            .iter()
            .filter(|(_, f)| f.parent == Some(id))
            .map(|(k, _)| *k)
            .collect();
        for c in children {
            self.abort_frame_tree(c);
        }
        self.frames.remove(&id);
    }
}
