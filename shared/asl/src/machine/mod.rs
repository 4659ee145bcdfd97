//! One execution as a pure, serializable step machine.
//!
//! An [`Execution`] is a set of frames — the top level, each Parallel branch
//! and each Map iteration — that advance state by state until they block on a
//! task, a timer or their children. Advancing records history events and
//! returns [`Effects`] (task invocations and timers) for the engine to carry
//! out; results come back through [`Execution::on_task_result`],
//! [`Execution::on_callback`] and [`Execution::on_timer`]. Nothing here does
//! I/O or reads a clock, so an execution can be snapshotted at any pause and
//! resumed after a restart.
//!
//! This file holds the execution's shape (frames, phases, effects, the
//! public records) and its life cycle: starting, the run loop, moving a
//! frame between states, timers, stopping, and restoring after a restart.
//! The rest is split by job: `states.rs` runs a state by type (Pass, Succeed,
//! Fail, Choice, Wait), `task.rs` Task states and their results and callbacks,
//! `map_parallel.rs` Parallel branches and Map iterations, `data_flow.rs`
//! the input/output processing fields, `retry_catch.rs` `Retry` and `Catch`,
//! and `events.rs` history recording and its quotas.

mod data_flow;
mod events;
mod map_parallel;
mod retry_catch;
mod states;
mod task;

pub use retry_catch::{error_matches, is_uncatchable};

use crate::definition::{BranchAddr, State, StateKind, StateMachine, Transition};
use crate::history::{payload_shared, payload_text, EventType, HistoryEvent};
use map_parallel::Children;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// AWS's quota on events in one execution's history: the event that would
/// exceed it is replaced by `ExecutionFailed` (`States.Runtime`).
pub const MAX_HISTORY_EVENTS: u64 = 25_000;

/// AWS's quota on a state's input or output, and on an execution's input:
/// 256 KiB of UTF-8 text.
pub const MAX_PAYLOAD_BYTES: usize = 262_144;

/// The lifecycle status of an execution, as `DescribeExecution` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Still running.
    Running,
    /// Ended in success.
    Succeeded,
    /// Ended in failure.
    Failed,
    /// Exceeded the state machine's `TimeoutSeconds`.
    TimedOut,
    /// Stopped by `StopExecution`.
    Aborted,
}

impl ExecutionStatus {
    /// The AWS status string.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
    }
}

/// A runtime error with a Step Functions error name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatesError {
    /// The error name (`States.Timeout`, `RateLimited`, …).
    pub error: String,
    /// Human-readable cause.
    pub cause: String,
}

impl StatesError {
    /// Builds an error.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        StatesError {
            error: error.into(),
            cause: cause.into(),
        }
    }

    fn runtime(cause: impl Into<String>) -> Self {
        Self::new("States.Runtime", cause)
    }
}

/// Identity of an execution and what it started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionMeta {
    /// Execution ARN.
    pub execution_arn: String,
    /// Execution name.
    pub name: String,
    /// State machine ARN.
    pub state_machine_arn: std::sync::Arc<str>,
    /// State machine name.
    pub state_machine_name: std::sync::Arc<str>,
    /// IAM role ARN of the state machine.
    pub role_arn: std::sync::Arc<str>,
    /// Start time, epoch milliseconds.
    pub start_ms: i64,
    /// The execution input.
    pub input: Value,
    /// Region used in history details.
    pub region: std::sync::Arc<str>,
}

/// A task the engine must invoke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// Frame that waits for it.
    pub frame: u32,
    /// Wait sequence number; stale results are ignored.
    pub seq: u64,
    /// The Task's `Resource`.
    pub resource: String,
    /// The function name/ARN for Lambda integrations.
    pub function: Option<String>,
    /// The payload the function receives.
    pub payload: Value,
    /// The task token for `.waitForTaskToken` tasks.
    pub token: Option<String>,
    /// The Task state's name.
    pub state_name: String,
}

/// Why a timer was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerKind {
    /// A Wait state or a retry back-off ends.
    Resume,
    /// A Task's `TimeoutSeconds` elapses.
    TaskTimeout,
    /// A Task's `HeartbeatSeconds` elapses without a heartbeat.
    Heartbeat,
    /// The state machine's `TimeoutSeconds` elapses.
    Execution,
}

/// A timer the engine must fire at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    /// When, epoch milliseconds.
    pub at_ms: i64,
    /// Frame it concerns (0 for the execution timeout).
    pub frame: u32,
    /// Wait sequence number at the time it was set.
    pub seq: u64,
    /// What it is for.
    pub kind: TimerKind,
}

/// What an advance asks of the engine.
#[derive(Debug, Default)]
pub struct Effects {
    /// Tasks to invoke.
    pub invocations: Vec<Invocation>,
    /// Timers to set.
    pub timers: Vec<Timer>,
    /// Task tokens that now identify a waiting task: (token, frame, seq).
    pub tokens: Vec<(std::sync::Arc<str>, u32, u64)>,
}

/// What the engine lends an advance: the time and a source of randomness.
pub struct Env<'a> {
    /// Current time, epoch milliseconds.
    pub now_ms: i64,
    /// Randomness (task tokens, jitter, `States.UUID`).
    pub rng: &'a mut dyn RngCore,
    /// Collected effects.
    pub effects: Effects,
    /// History events an execution may have ([`MAX_HISTORY_EVENTS`] by default).
    pub history_limit: u64,
    /// State transitions one [`Execution::run`] may take before it returns with
    /// frames still runnable, so the engine can let others progress (unbounded by default).
    pub slice: u64,
    /// Bytes of state input/output one [`Execution::run`] may record before it
    /// returns the same way (large payloads make each transition costlier).
    pub slice_bytes: usize,
}

impl<'a> Env<'a> {
    /// An environment at `now_ms`.
    pub fn new(now_ms: i64, rng: &'a mut dyn RngCore) -> Self {
        Env {
            now_ms,
            rng,
            effects: Effects::default(),
            history_limit: MAX_HISTORY_EVENTS,
            slice: u64::MAX,
            slice_bytes: usize::MAX,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskWait {
    seq: u64,
    token: Option<std::sync::Arc<str>>,
    submitted: bool,
    heartbeat_ms: Option<i64>,
    heartbeat_at: Option<i64>,
    timeout_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Phase {
    Enter,
    Run,
    Task(Box<TaskWait>),
    Timer {
        seq: u64,
        at_ms: i64,
        wait_output: Option<Value>,
    },
    Children(Box<Children>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Frame {
    parent: Option<u32>,
    index: usize,
    branch: BranchAddr,
    state: usize,
    input: Value,
    phase: Phase,
    attempts: Vec<u32>,
    retry_count: u32,
    entered_ms: i64,
    last_event: u64,
    vars: Map<String, Value>,
    /// The serialized text of `input`, when it is the output the previous
    /// state just recorded: the next Entered event reuses it.
    #[serde(skip)]
    carry: Option<std::sync::Arc<str>>,
}

/// Why a callback could not be applied. The engine reports it as
/// [`EngineError::TaskTimedOut`] (kind [`EngineErrorKind::Conflict`]). New
/// variants may be added.
///
/// [`EngineError::TaskTimedOut`]: crate::EngineError::TaskTimedOut
/// [`EngineErrorKind::Conflict`]: crate::EngineErrorKind::Conflict
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// The task is no longer waiting (timed out, retried, or the execution ended).
    #[error("the task for this token is no longer waiting (it timed out or its execution ended)")]
    NotWaiting,
}

/// One execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    /// Identity and input.
    pub meta: ExecutionMeta,
    /// Status.
    pub status: ExecutionStatus,
    /// Output on success.
    pub output: Option<Value>,
    /// Error name on failure, time-out or abort.
    pub error: Option<String>,
    /// Cause on failure, time-out or abort.
    pub cause: Option<String>,
    /// Stop time, epoch milliseconds.
    pub stop_ms: Option<i64>,
    frames: BTreeMap<u32, Box<Frame>>,
    runnable: VecDeque<u32>,
    next_frame: u32,
    next_event: u64,
    next_seq: u64,
    last_event: u64,
    /// Events recorded since the engine last drained them.
    #[serde(skip)]
    pub pending_events: Vec<HistoryEvent>,
    /// Number of state transitions taken (for throughput figures).
    #[serde(default)]
    pub transitions: u64,
    /// A quota was exceeded while advancing: the execution fails with this
    /// error as soon as the advance returns to [`Execution::run`].
    #[serde(skip)]
    halt: Option<StatesError>,
    /// `transitions` at which the current [`Execution::run`] yields.
    #[serde(skip)]
    yield_at: u64,
    /// Bytes of state payload the current [`Execution::run`] has recorded.
    #[serde(skip)]
    slice_bytes: usize,
}

enum Flow {
    /// The frame moved to another state and should keep going.
    Continue,
    /// The frame is waiting, or is gone.
    Stop,
}

fn state_type(s: &State) -> &'static str {
    match s.kind {
        StateKind::Pass { .. } => "Pass",
        StateKind::Task(_) => "Task",
        StateKind::Choice { .. } => "Choice",
        StateKind::Wait(_) => "Wait",
        StateKind::Succeed => "Succeed",
        StateKind::Fail { .. } => "Fail",
        StateKind::Parallel { .. } => "Parallel",
        StateKind::Map(_) => "Map",
    }
}

impl Execution {
    /// Starts an execution: records `ExecutionStarted` and readies the first state.
    pub fn start(meta: ExecutionMeta, def: &StateMachine, env: &mut Env) -> Execution {
        let mut exec = Execution {
            meta,
            status: ExecutionStatus::Running,
            output: None,
            error: None,
            cause: None,
            stop_ms: None,
            frames: BTreeMap::new(),
            runnable: VecDeque::new(),
            next_frame: 0,
            next_event: 1,
            next_seq: 1,
            last_event: 0,
            pending_events: Vec::with_capacity(16),
            transitions: 0,
            halt: None,
            yield_at: 0,
            slice_bytes: 0,
        };
        let started = exec.emit_raw(
            env,
            EventType::ExecutionStarted,
            0,
            Some(json!({
                "input": payload_text(&exec.meta.input),
                "roleArn": exec.meta.role_arn,
            })),
        );
        let root = Frame {
            parent: None,
            index: 0,
            branch: Vec::new(),
            state: def.root.start_at,
            input: exec.meta.input.clone(),
            phase: Phase::Enter,
            attempts: Vec::new(),
            retry_count: 0,
            entered_ms: env.now_ms,
            last_event: started,
            vars: Map::new(),
            carry: None,
        };
        let id = exec.add_frame(root);
        if let Some(t) = def.timeout_seconds {
            env.effects.timers.push(Timer {
                at_ms: exec.meta.start_ms + (t as i64) * 1000,
                frame: id,
                seq: 0,
                kind: TimerKind::Execution,
            });
        }
        exec
    }

    /// True while frames are ready to advance.
    pub fn has_runnable(&self) -> bool {
        !self.runnable.is_empty()
    }

    /// Number of live frames (branches and iterations in flight, plus the top level).
    pub fn live_frames(&self) -> usize {
        self.frames.len()
    }

    /// Drops everything a finished execution no longer needs.
    pub fn compact(&mut self) {
        if self.status != ExecutionStatus::Running {
            self.frames.clear();
            self.runnable.clear();
        }
    }

    fn add_frame(&mut self, f: Frame) -> u32 {
        let id = self.next_frame;
        self.next_frame += 1;
        self.frames.insert(id, Box::new(f));
        self.runnable.push_back(id);
        id
    }

    /// Advances every ready frame until each is blocked or finished, or until
    /// `env.slice` transitions were taken (then [`Execution::has_runnable`]
    /// stays true and the engine calls `run` again later).
    pub fn run(&mut self, def: &StateMachine, env: &mut Env) {
        self.yield_at = self.transitions.saturating_add(env.slice);
        self.slice_bytes = 0;
        loop {
            if self.halt.is_some() {
                self.fail_halted(env);
                return;
            }
            if self.transitions >= self.yield_at {
                return;
            }
            if self.slice_bytes >= env.slice_bytes {
                self.yield_at = self.transitions;
                return;
            }
            let Some(fid) = self.runnable.pop_front() else {
                return;
            };
            if self.status != ExecutionStatus::Running {
                self.runnable.clear();
                return;
            }
            let Some(mut f) = self.frames.remove(&fid) else {
                continue;
            };
            let keep = self.advance(def, fid, &mut f, env);
            if keep && self.status == ExecutionStatus::Running {
                self.frames.insert(fid, f);
            }
        }
    }

    /// Advances one frame; returns whether the frame still exists.
    fn advance(&mut self, def: &StateMachine, fid: u32, f: &mut Frame, env: &mut Env) -> bool {
        loop {
            if self.halt.is_some() {
                return true;
            }
            let Some(branch) = def.branch(&f.branch) else {
                self.fail_frame(
                    def,
                    fid,
                    f,
                    StatesError::runtime("internal: branch not found"),
                    env,
                );
                return false;
            };
            let Some(st) = branch.states.get(f.state) else {
                self.fail_frame(
                    def,
                    fid,
                    f,
                    StatesError::runtime("internal: state not found"),
                    env,
                );
                return false;
            };
            match f.phase {
                Phase::Enter => {
                    if self.transitions >= self.yield_at || self.slice_bytes >= env.slice_bytes {
                        // This run's slice is used up: enter the state next time.
                        self.yield_at = self.transitions;
                        self.runnable.push_front(fid);
                        return true;
                    }
                    f.entered_ms = env.now_ms;
                    f.attempts = vec![0; st.retry.len()];
                    f.retry_count = 0;
                    self.transitions += 1;
                    let text = match f.carry.take() {
                        Some(t) => t,
                        None => payload_shared(&f.input),
                    };
                    self.emit_state_text(env, f, EventType::entered(state_type(st)), st, text);
                    f.phase = Phase::Run;
                }
                Phase::Run => {}
                _ => return true,
            }
            let flow = self.run_state(def, st, fid, f, env);
            match flow {
                Flow::Continue => continue,
                // A frame that stopped in Enter/Run has finished: it was handed
                // back to its parent or ended the execution, so it is dropped.
                Flow::Stop => return !matches!(f.phase, Phase::Enter | Phase::Run),
            }
        }
    }

    /// Moves the frame on to `next` with `output` as its input, or ends it
    /// (handing `output` to its parent or to the execution) at an `End`.
    fn transition(
        &mut self,
        def: &StateMachine,
        fid: u32,
        f: &mut Frame,
        next: Transition,
        output: Value,
        env: &mut Env,
    ) -> Flow {
        match next {
            Transition::Next(n) => {
                f.state = n;
                f.input = output;
                f.phase = Phase::Enter;
                Flow::Continue
            }
            Transition::End => {
                // The frame ends here; `finish_frame` takes the output, so
                // the frame keeps no copy of it.
                self.finish_frame(def, fid, f, output, env);
                Flow::Stop
            }
        }
    }

    fn bump_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Fires a timer. Stale timers are ignored.
    pub fn on_timer(&mut self, def: &StateMachine, timer: Timer, env: &mut Env) {
        if self.status != ExecutionStatus::Running {
            return;
        }
        if timer.kind == TimerKind::Execution {
            self.end(
                env,
                ExecutionStatus::TimedOut,
                EventType::ExecutionTimedOut,
                StatesError::new(
                    "States.Timeout",
                    "The execution exceeded the state machine's TimeoutSeconds",
                ),
            );
            return;
        }
        let Some(mut f) = self.frames.remove(&timer.frame) else {
            return;
        };
        let keep = match (&f.phase, timer.kind) {
            (
                Phase::Timer {
                    seq, wait_output, ..
                },
                TimerKind::Resume,
            ) if *seq == timer.seq => match wait_output.clone() {
                Some(out) => {
                    let text = self.state_of(def, &f).map(|st| {
                        self.emit_state(env, &mut f, EventType::WaitStateExited, st, &out)
                    });
                    match self.state_of(def, &f).map(|s| s.next) {
                        Some(Transition::Next(n)) => {
                            f.state = n;
                            f.input = out;
                            f.carry = text;
                            f.phase = Phase::Enter;
                            self.runnable.push_back(timer.frame);
                            true
                        }
                        _ => {
                            f.phase = Phase::Run;
                            self.finish_frame(def, timer.frame, &mut f, out, env);
                            false
                        }
                    }
                }
                None => {
                    f.phase = Phase::Run;
                    self.runnable.push_back(timer.frame);
                    true
                }
            },
            (Phase::Task(tw), TimerKind::TaskTimeout) if tw.seq == timer.seq => {
                let e = StatesError::new("States.Timeout", "");
                self.task_timed_out(def, timer.frame, &mut f, e, env)
            }
            (Phase::Task(tw), TimerKind::Heartbeat)
                if tw.seq == timer.seq && tw.heartbeat_at.is_some_and(|at| at <= timer.at_ms) =>
            {
                let e = StatesError::new("States.HeartbeatTimeout", "");
                self.task_timed_out(def, timer.frame, &mut f, e, env)
            }
            _ => true,
        };
        if keep && self.status == ExecutionStatus::Running {
            self.frames.insert(timer.frame, f);
        }
        self.run(def, env);
    }

    /// Stops the execution (`StopExecution`).
    pub fn stop(&mut self, error: Option<String>, cause: Option<String>, env: &mut Env) {
        if self.status != ExecutionStatus::Running {
            return;
        }
        let mut d = Map::new();
        if let Some(e) = &error {
            d.insert("error".into(), json!(e));
        }
        if let Some(c) = &cause {
            d.insert("cause".into(), json!(c));
        }
        let prev = self.last_event;
        self.emit_raw(
            env,
            EventType::ExecutionAborted,
            prev,
            Some(Value::Object(d)),
        );
        self.status = ExecutionStatus::Aborted;
        self.error = error;
        self.cause = cause;
        self.stop_ms = Some(env.now_ms);
        self.frames.clear();
        self.runnable.clear();
    }

    fn end(&mut self, env: &mut Env, status: ExecutionStatus, kind: EventType, e: StatesError) {
        let prev = self.last_event;
        self.emit_raw(
            env,
            kind,
            prev,
            Some(json!({"error": e.error, "cause": e.cause})),
        );
        self.status = status;
        self.error = Some(e.error);
        self.cause = Some(e.cause);
        self.stop_ms = Some(env.now_ms);
        self.frames.clear();
        self.runnable.clear();
    }

    fn state_of<'d>(&self, def: &'d StateMachine, f: &Frame) -> Option<&'d State> {
        def.branch(&f.branch)?.states.get(f.state)
    }

    /// The frame reached its end with `output`.
    fn finish_frame(
        &mut self,
        def: &StateMachine,
        _fid: u32,
        f: &mut Frame,
        output: Value,
        env: &mut Env,
    ) {
        f.phase = Phase::Run;
        match f.parent {
            None => {
                let prev = f.last_event;
                self.emit_raw(
                    env,
                    EventType::ExecutionSucceeded,
                    prev,
                    Some(json!({"output": payload_text(&output)})),
                );
                self.status = ExecutionStatus::Succeeded;
                self.output = Some(output);
                self.stop_ms = Some(env.now_ms);
                self.frames.clear();
                self.runnable.clear();
            }
            Some(pid) => self.child_done(def, pid, f.index, f.last_event, Ok(output), env),
        }
    }

    /// The frame failed with `e`.
    fn fail_frame(
        &mut self,
        def: &StateMachine,
        _fid: u32,
        f: &mut Frame,
        e: StatesError,
        env: &mut Env,
    ) {
        f.phase = Phase::Run;
        match f.parent {
            None => {
                let prev = f.last_event;
                self.emit_raw(
                    env,
                    EventType::ExecutionFailed,
                    prev,
                    Some(json!({"error": e.error, "cause": e.cause})),
                );
                self.status = ExecutionStatus::Failed;
                self.error = Some(e.error);
                self.cause = Some(e.cause);
                self.stop_ms = Some(env.now_ms);
                self.frames.clear();
                self.runnable.clear();
            }
            Some(pid) => self.child_done(def, pid, f.index, f.last_event, Err(e), env),
        }
    }

    /// Timers a restored execution must re-establish, and its live task tokens
    /// (pending invocations are stored separately; see [`Execution::awaits_invocation`]).
    pub fn resume_effects(&self) -> Effects {
        let mut eff = Effects::default();
        for (&id, f) in &self.frames {
            match &f.phase {
                Phase::Task(tw) => {
                    if tw.timeout_at != i64::MAX {
                        eff.timers.push(Timer {
                            at_ms: tw.timeout_at,
                            frame: id,
                            seq: tw.seq,
                            kind: TimerKind::TaskTimeout,
                        });
                    }
                    if let Some(at) = tw.heartbeat_at {
                        eff.timers.push(Timer {
                            at_ms: at,
                            frame: id,
                            seq: tw.seq,
                            kind: TimerKind::Heartbeat,
                        });
                    }
                    if let Some(t) = &tw.token {
                        eff.tokens.push((t.clone(), id, tw.seq));
                    }
                }
                Phase::Timer { seq, at_ms, .. } => eff.timers.push(Timer {
                    at_ms: *at_ms,
                    frame: id,
                    seq: *seq,
                    kind: TimerKind::Resume,
                }),
                _ => {}
            }
        }
        eff
    }

    /// Whether a task's invocation has not completed yet (after a restart it
    /// must be invoked again; tasks are at-least-once, as on AWS).
    pub fn awaits_invocation(&self, frame: u32, seq: u64) -> bool {
        matches!(self.frames.get(&frame).map(|f| &f.phase), Some(Phase::Task(tw)) if tw.seq == seq && !tw.submitted)
            && self.status == ExecutionStatus::Running
    }

    /// Frames that were ready to run when the snapshot was taken.
    pub fn requeue_runnable(&mut self) {
        let ready: Vec<u32> = self
            .frames
            .iter()
            .filter(|(_, f)| matches!(f.phase, Phase::Enter | Phase::Run))
            .map(|(k, _)| *k)
            .collect();
        for id in ready {
            if !self.runnable.contains(&id) {
                self.runnable.push_back(id);
            }
        }
    }
}
