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

use crate::choice::ChoiceError;
use crate::clock::iso_millis;
use crate::definition::{
    BranchAddr, Dynamic, Integration, IoPath, NumberSource, ResultPath, State, StateKind,
    StateMachine, StringSource, TaskSpec, Template, Transition, WaitSpec,
};
use crate::history::{payload_shared, payload_text, Details, EventType, HistoryEvent};
use crate::intrinsics::{IntrinsicContext, IntrinsicError};
use crate::path::{excerpt, Path, PathError, Roots};
use base64::Engine as _;
use chrono::DateTime;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// AWS's default Task timeout when none is given.
const DEFAULT_TASK_TIMEOUT_SECS: u64 = 99_999_999;

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
struct Children {
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

/// Why a callback could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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

/// What a Map state needs to start: effective input, items, max concurrency, tolerances.
type MapSetup = (Value, Vec<Value>, usize, Option<u64>, Option<f64>);

enum Flow {
    /// The frame moved to another state and should keep going.
    Continue,
    /// The frame is waiting, or is gone.
    Stop,
}

struct Scope<'a> {
    input: &'a Value,
    vars: &'a Map<String, Value>,
    meta: &'a ExecutionMeta,
    state_name: &'a str,
    entered_ms: i64,
    retry_count: u32,
    token: Option<&'a str>,
    map_item: Option<(usize, &'a Value)>,
}

impl Roots for Scope<'_> {
    fn input(&self) -> &Value {
        self.input
    }

    fn context(&self) -> Value {
        let mut ctx = json!({
            "Execution": {
                "Id": self.meta.execution_arn,
                "Input": self.meta.input,
                "Name": self.meta.name,
                "RoleArn": self.meta.role_arn,
                "StartTime": iso_millis(self.meta.start_ms),
                "RedriveCount": 0,
            },
            "State": {
                "EnteredTime": iso_millis(self.entered_ms),
                "Name": self.state_name,
                "RetryCount": self.retry_count,
            },
            "StateMachine": {
                "Id": self.meta.state_machine_arn,
                "Name": self.meta.state_machine_name,
            },
        });
        if let Some(t) = self.token {
            ctx["Task"] = json!({ "Token": t });
        }
        if let Some((i, v)) = self.map_item {
            ctx["Map"] = json!({ "Item": { "Index": i, "Value": v } });
        }
        ctx
    }

    fn variable(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }
}

struct IntrinsicScope<'a, 'b> {
    scope: &'a Scope<'b>,
    rng: &'a mut dyn RngCore,
}

impl IntrinsicContext for IntrinsicScope<'_, '_> {
    fn resolve(&self, path: &str) -> Result<Value, IntrinsicError> {
        let p = Path::parse(path).map_err(|e| IntrinsicError {
            message: e.to_string(),
            path_failure: true,
        })?;
        self.resolve_parsed(&p)
    }

    fn resolve_parsed(&self, path: &Path) -> Result<Value, IntrinsicError> {
        path.select(self.scope).map_err(|e| IntrinsicError {
            message: e.to_string(),
            path_failure: true,
        })
    }

    fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

fn path_error(field: impl std::fmt::Display, e: PathError) -> StatesError {
    StatesError::runtime(format!(
        "An error occurred while evaluating the field '{field}': {e}"
    ))
}

/// A `"key.$"` template field's name as error messages quote it, formatted
/// only when an error needs it (not once per evaluation).
struct DollarKey<'a>(&'a str);

impl std::fmt::Display for DollarKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.$", self.0)
    }
}

fn eval_dynamic(
    d: &Dynamic,
    field: &dyn std::fmt::Display,
    scope: &Scope,
    rng: &mut dyn RngCore,
) -> Result<Value, StatesError> {
    match d {
        Dynamic::Path(p) => p.select(scope).map_err(|e| path_error(field, e)),
        Dynamic::Intrinsic(expr) => {
            let mut ic = IntrinsicScope { scope, rng };
            expr.evaluate(&mut ic).map_err(|e| {
                if e.path_failure {
                    StatesError::runtime(format!("The field '{field}': {}", e.message))
                } else {
                    StatesError::new(
                        "States.IntrinsicFailure",
                        format!("The field '{field}': {}", e.message),
                    )
                }
            })
        }
    }
}

fn eval_template(
    t: &Template,
    field: &str,
    scope: &Scope,
    rng: &mut dyn RngCore,
) -> Result<Value, StatesError> {
    match t {
        Template::Const(v) => Ok(v.clone()),
        Template::Dynamic(d) => eval_dynamic(d, &field, scope, rng),
        Template::Object {
            fields,
            skeleton: Some(skeleton),
        } => {
            let mut out = skeleton.clone();
            for ((k, sub), slot) in fields.iter().zip(out.values_mut()) {
                match sub {
                    // Already in place.
                    Template::Const(_) => {}
                    Template::Dynamic(d) => *slot = eval_dynamic(d, &DollarKey(k), scope, rng)?,
                    other => *slot = eval_template(other, k, scope, rng)?,
                }
            }
            Ok(Value::Object(out))
        }
        Template::Object {
            fields,
            skeleton: None,
        } => {
            let mut out = Map::with_capacity(fields.len());
            for (k, sub) in fields {
                let v = match sub {
                    Template::Dynamic(d) => eval_dynamic(d, &DollarKey(k), scope, rng)?,
                    other => eval_template(other, k, scope, rng)?,
                };
                out.insert(k.clone(), v);
            }
            Ok(Value::Object(out))
        }
        Template::Array(items) => items
            .iter()
            .map(|i| eval_template(i, field, scope, rng))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
    }
}

fn apply_io(p: &IoPath, field: &str, v: &Value) -> Result<Value, StatesError> {
    match p {
        IoPath::Whole => Ok(v.clone()),
        IoPath::Null => Ok(json!({})),
        IoPath::At(path) => path
            .select(&crate::path::InputOnly(v))
            .map_err(|e| StatesError::runtime(format!("Invalid path '{path}' in {field}: {e}"))),
    }
}

/// The effective input without copying it when `InputPath` is `$`.
fn effective<'a>(p: &IoPath, v: &'a Value) -> Result<std::borrow::Cow<'a, Value>, StatesError> {
    match p {
        IoPath::Whole => Ok(std::borrow::Cow::Borrowed(v)),
        other => apply_io(other, "InputPath", v).map(std::borrow::Cow::Owned),
    }
}

/// `OutputPath` over an owned value: `$` passes it through without a copy.
fn output_of(p: &IoPath, v: Value) -> Result<Value, StatesError> {
    match p {
        IoPath::Whole => Ok(v),
        other => apply_io(other, "OutputPath", &v),
    }
}

fn apply_result_path(rp: &ResultPath, raw: &Value, result: Value) -> Result<Value, StatesError> {
    match rp {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(raw.clone()),
        ResultPath::At(p) => p.set(raw.clone(), result).map_err(|e| {
            StatesError::new(
                "States.ResultPathMatchFailure",
                format!(
                    "Unable to apply ResultPath '{p}' to input '{}': {e}",
                    excerpt(raw)
                ),
            )
        }),
    }
}

fn number_from(src: &NumberSource, field: &str, input: &Value) -> Result<u64, StatesError> {
    match src {
        NumberSource::Fixed(n) => Ok(*n),
        NumberSource::Path(p) => {
            let v = p
                .select(&crate::path::InputOnly(input))
                .map_err(|e| path_error(format_args!("{field}Path"), e))?;
            v.as_u64().ok_or_else(|| {
                StatesError::runtime(format!(
                    "The value of {field}Path '{p}' must be a non-negative integer, got {v}"
                ))
            })
        }
    }
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

fn resource_parts(resource: &str) -> (String, String) {
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::") {
        match rest.split_once(':') {
            Some((t, r)) => (t.to_string(), r.to_string()),
            None => (rest.to_string(), String::new()),
        }
    } else {
        ("lambda".into(), resource.to_string())
    }
}

fn lambda_invoke_response(payload: Value, request_id: &str) -> Value {
    json!({
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {
                "X-Amz-Executed-Version": ["$LATEST"],
                "x-amzn-RequestId": [request_id],
                "Content-Type": ["application/json"],
            },
            "HttpHeaders": {
                "X-Amz-Executed-Version": "$LATEST",
                "x-amzn-RequestId": request_id,
                "Content-Type": "application/json",
            },
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": { "RequestId": request_id },
        "StatusCode": 200,
    })
}

fn uuid_from(rng: &mut dyn RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
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

    fn emit_raw(&mut self, env: &Env, kind: EventType, prev: u64, details: Option<Value>) -> u64 {
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
    fn emit_state(
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
    fn emit_state_text(
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

    fn emit(&mut self, env: &Env, f: &mut Frame, kind: EventType, details: Option<Value>) -> u64 {
        let id = self.emit_raw(env, kind, f.last_event, details);
        f.last_event = id;
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

    /// Records a quota breach; the first one wins.
    fn halt_with(&mut self, e: StatesError) {
        if self.halt.is_none() {
            self.halt = Some(e);
        }
    }

    /// Ends the execution for the quota breach [`Execution::halt_with`] recorded.
    /// Nothing decided in the same advance is invoked.
    fn fail_halted(&mut self, env: &mut Env) {
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

    fn scope<'a>(&'a self, f: &'a Frame, st: &'a State, input: &'a Value) -> Scope<'a> {
        Scope {
            input,
            vars: &f.vars,
            meta: &self.meta,
            state_name: &st.name,
            entered_ms: f.entered_ms,
            retry_count: f.retry_count,
            token: None,
            map_item: None,
        }
    }

    fn assign(
        &self,
        template: Option<&Template>,
        f: &mut Frame,
        st: &State,
        dollar: &Value,
        env: &mut Env,
    ) -> Result<(), StatesError> {
        let Some(t) = template else { return Ok(()) };
        let scope = self.scope(f, st, dollar);
        let v = eval_template(t, "Assign", &scope, env.rng)?;
        if let Value::Object(m) = v {
            for (k, val) in m {
                f.vars.insert(k, val);
            }
        }
        Ok(())
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

    fn run_state(
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

    fn bump_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn run_task(
        &mut self,
        def: &StateMachine,
        st: &State,
        fid: u32,
        f: &mut Frame,
        spec: &TaskSpec,
        env: &mut Env,
    ) -> Flow {
        let waits = matches!(
            spec.integration,
            Integration::LambdaInvokeWaitForToken
                | Integration::Other {
                    wait_for_token: true
                }
        );
        let token = waits.then(|| {
            let mut b = [0u8; 48];
            env.rng.fill_bytes(&mut b);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        });
        let prepared = (|| -> Result<(Value, u64, Option<u64>), StatesError> {
            let eff = apply_io(&st.input_path, "InputPath", &f.input)?;
            let params = match &st.parameters {
                Some(t) => {
                    let mut scope = self.scope(f, st, &eff);
                    scope.token = token.as_deref();
                    eval_template(t, "Parameters", &scope, env.rng)?
                }
                None => eff.clone(),
            };
            let timeout = spec
                .timeout
                .as_ref()
                .map(|s| number_from(s, "TimeoutSeconds", &eff))
                .transpose()?
                .unwrap_or(DEFAULT_TASK_TIMEOUT_SECS);
            let heartbeat = spec
                .heartbeat
                .as_ref()
                .map(|s| number_from(s, "HeartbeatSeconds", &eff))
                .transpose()?;
            if let Some(h) = heartbeat {
                if h >= timeout && spec.timeout.is_some() {
                    return Err(StatesError::runtime(format!(
                        "HeartbeatSeconds ({h}) must be smaller than TimeoutSeconds ({timeout})"
                    )));
                }
            }
            Ok((params, timeout, heartbeat))
        })();
        let (params, timeout, heartbeat) = match prepared {
            Ok(x) => x,
            Err(e) => return self.handle_error(def, st, fid, f, e, env),
        };
        let (function, payload) = match spec.integration {
            Integration::LambdaInvoke | Integration::LambdaInvokeWaitForToken => {
                let Some(name) = params.get("FunctionName").and_then(Value::as_str) else {
                    let e = StatesError::runtime(format!(
                        "The Parameters of state '{}' must hold a string 'FunctionName' for {}",
                        st.name, spec.resource
                    ));
                    return self.handle_error(def, st, fid, f, e, env);
                };
                (
                    Some(name.to_string()),
                    params.get("Payload").cloned().unwrap_or_else(|| json!({})),
                )
            }
            Integration::LambdaArn => (Some(spec.resource.clone()), params.clone()),
            Integration::Other { .. } => (None, params.clone()),
        };
        let seq = self.bump_seq();
        let timeout_at = if spec.timeout.is_some() {
            env.now_ms
                .saturating_add((timeout as i64).saturating_mul(1000))
        } else {
            i64::MAX
        };
        let heartbeat_ms = heartbeat.map(|h| h as i64 * 1000);
        if spec.integration == Integration::LambdaArn {
            let mut d = json!({"resource": spec.resource, "input": payload_text(&payload)});
            if spec.timeout.is_some() {
                d["timeoutInSeconds"] = json!(timeout);
            }
            self.emit(env, f, EventType::LambdaFunctionScheduled, Some(d));
            self.emit(env, f, EventType::LambdaFunctionStarted, None);
        } else {
            let (rt, r) = resource_parts(&spec.resource);
            let mut d = json!({
                "resourceType": rt,
                "resource": r,
                "region": self.meta.region,
                "parameters": payload_text(&params),
            });
            if spec.timeout.is_some() {
                d["timeoutInSeconds"] = json!(timeout);
            }
            if let Some(h) = heartbeat {
                d["heartbeatInSeconds"] = json!(h);
            }
            self.emit(env, f, EventType::TaskScheduled, Some(d));
            self.emit(
                env,
                f,
                EventType::TaskStarted,
                Some(json!({"resourceType": rt, "resource": r})),
            );
        }
        let inv = Invocation {
            frame: fid,
            seq,
            resource: spec.resource.clone(),
            function,
            payload,
            token: token.clone(),
            state_name: st.name.clone(),
        };
        env.effects.invocations.push(inv);
        if spec.timeout.is_some() {
            // Without TimeoutSeconds AWS waits 99999999 s; no timer is needed for that.
            env.effects.timers.push(Timer {
                at_ms: timeout_at,
                frame: fid,
                seq,
                kind: TimerKind::TaskTimeout,
            });
        }
        let heartbeat_at = heartbeat_ms.map(|h| env.now_ms + h);
        if let Some(at) = heartbeat_at {
            env.effects.timers.push(Timer {
                at_ms: at,
                frame: fid,
                seq,
                kind: TimerKind::Heartbeat,
            });
        }
        // One shared copy of the token for the task, the engine's index and the slot.
        let token: Option<std::sync::Arc<str>> = token.map(std::sync::Arc::from);
        if let Some(t) = &token {
            env.effects.tokens.push((t.clone(), fid, seq));
        }
        f.phase = Phase::Task(Box::new(TaskWait {
            seq,
            token,
            submitted: false,
            heartbeat_ms,
            heartbeat_at,
            timeout_at,
        }));
        Flow::Stop
    }

    /// Applies a task invocation's outcome. Stale outcomes are ignored.
    pub fn on_task_result(
        &mut self,
        def: &StateMachine,
        frame: u32,
        seq: u64,
        result: Result<Value, StatesError>,
        env: &mut Env,
    ) {
        let Some(mut f) = self.frames.remove(&frame) else {
            return;
        };
        let keep = match &mut f.phase {
            Phase::Task(tw) if tw.seq == seq => {
                let waits = tw.token.is_some();
                match result {
                    Ok(v) if waits => {
                        tw.submitted = true;
                        let rid = uuid_from(env.rng);
                        let out = lambda_invoke_response(v, &rid);
                        let (rt, r) = self.task_resource(def, &f);
                        self.emit(
                            env,
                            &mut f,
                            EventType::TaskSubmitted,
                            Some(json!({"resourceType": rt, "resource": r, "output": payload_text(&out)})),
                        );
                        true
                    }
                    Ok(v) => {
                        let is_arn = self.is_lambda_arn(def, &f);
                        let out = if is_arn {
                            v
                        } else if self.is_lambda_invoke(def, &f) {
                            let rid = uuid_from(env.rng);
                            lambda_invoke_response(v, &rid)
                        } else {
                            v
                        };
                        if is_arn {
                            self.emit(
                                env,
                                &mut f,
                                EventType::LambdaFunctionSucceeded,
                                Some(json!({"output": payload_text(&out)})),
                            );
                        } else {
                            let (rt, r) = self.task_resource(def, &f);
                            self.emit(
                                env,
                                &mut f,
                                EventType::TaskSucceeded,
                                Some(json!({"resourceType": rt, "resource": r, "output": payload_text(&out)})),
                            );
                        }
                        self.complete_with_result(def, frame, &mut f, out, env)
                    }
                    Err(e) => {
                        if self.is_lambda_arn(def, &f) {
                            self.emit(
                                env,
                                &mut f,
                                EventType::LambdaFunctionFailed,
                                Some(json!({"error": e.error, "cause": e.cause})),
                            );
                        } else {
                            let (rt, r) = self.task_resource(def, &f);
                            self.emit(
                                env,
                                &mut f,
                                EventType::TaskFailed,
                                Some(json!({"resourceType": rt, "resource": r, "error": e.error, "cause": e.cause})),
                            );
                        }
                        self.error_in_waiting_frame(def, frame, &mut f, e, env)
                    }
                }
            }
            _ => true,
        };
        if keep && self.status == ExecutionStatus::Running {
            self.frames.insert(frame, f);
        }
        self.run(def, env);
    }

    /// Applies `SendTaskSuccess` / `SendTaskFailure` for a waiting task.
    pub fn on_callback(
        &mut self,
        def: &StateMachine,
        frame: u32,
        seq: u64,
        result: Result<Value, StatesError>,
        env: &mut Env,
    ) -> Result<(), CallbackError> {
        let waiting = matches!(self.frames.get(&frame).map(|f| &f.phase), Some(Phase::Task(tw)) if tw.seq == seq && tw.token.is_some());
        if !waiting || self.status != ExecutionStatus::Running {
            return Err(CallbackError::NotWaiting);
        }
        let Some(mut f) = self.frames.remove(&frame) else {
            return Err(CallbackError::NotWaiting);
        };
        let (rt, r) = self.task_resource(def, &f);
        let keep = match result {
            Ok(v) => {
                self.emit(
                    env,
                    &mut f,
                    EventType::TaskSucceeded,
                    Some(json!({"resourceType": rt, "resource": r, "output": payload_text(&v)})),
                );
                self.complete_with_result(def, frame, &mut f, v, env)
            }
            Err(e) => {
                self.emit(
                    env,
                    &mut f,
                    EventType::TaskFailed,
                    Some(json!({"resourceType": rt, "resource": r, "error": e.error, "cause": e.cause})),
                );
                self.error_in_waiting_frame(def, frame, &mut f, e, env)
            }
        };
        if keep && self.status == ExecutionStatus::Running {
            self.frames.insert(frame, f);
        }
        self.run(def, env);
        Ok(())
    }

    /// Applies `SendTaskHeartbeat`: pushes the heartbeat deadline out.
    pub fn on_heartbeat(
        &mut self,
        frame: u32,
        seq: u64,
        env: &mut Env,
    ) -> Result<(), CallbackError> {
        match self.frames.get_mut(&frame).map(|f| &mut f.phase) {
            Some(Phase::Task(tw)) if tw.seq == seq && self.status == ExecutionStatus::Running => {
                if let Some(h) = tw.heartbeat_ms {
                    let at = env.now_ms + h;
                    tw.heartbeat_at = Some(at);
                    env.effects.timers.push(Timer {
                        at_ms: at,
                        frame,
                        seq,
                        kind: TimerKind::Heartbeat,
                    });
                }
                Ok(())
            }
            _ => Err(CallbackError::NotWaiting),
        }
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

    fn task_timed_out(
        &mut self,
        def: &StateMachine,
        fid: u32,
        f: &mut Frame,
        e: StatesError,
        env: &mut Env,
    ) -> bool {
        if self.is_lambda_arn(def, f) {
            self.emit(
                env,
                f,
                EventType::LambdaFunctionTimedOut,
                Some(json!({"error": e.error, "cause": e.cause})),
            );
        } else {
            let (rt, r) = self.task_resource(def, f);
            self.emit(
                env,
                f,
                EventType::TaskTimedOut,
                Some(
                    json!({"resourceType": rt, "resource": r, "error": e.error, "cause": e.cause}),
                ),
            );
        }
        self.error_in_waiting_frame(def, fid, f, e, env)
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

    fn task_spec<'d>(&self, def: &'d StateMachine, f: &Frame) -> Option<&'d TaskSpec> {
        match &self.state_of(def, f)?.kind {
            StateKind::Task(t) => Some(t),
            _ => None,
        }
    }

    fn is_lambda_arn(&self, def: &StateMachine, f: &Frame) -> bool {
        self.task_spec(def, f)
            .is_some_and(|t| t.integration == Integration::LambdaArn)
    }

    fn is_lambda_invoke(&self, def: &StateMachine, f: &Frame) -> bool {
        self.task_spec(def, f).is_some_and(|t| {
            matches!(
                t.integration,
                Integration::LambdaInvoke | Integration::LambdaInvokeWaitForToken
            )
        })
    }

    fn task_resource(&self, def: &StateMachine, f: &Frame) -> (String, String) {
        self.task_spec(def, f)
            .map(|t| resource_parts(&t.resource))
            .unwrap_or_default()
    }

    /// A Task/Parallel/Map produced its raw result: ResultSelector → Assign →
    /// ResultPath → OutputPath → exit. Returns whether the frame still exists.
    fn complete_with_result(
        &mut self,
        def: &StateMachine,
        fid: u32,
        f: &mut Frame,
        mut result: Value,
        env: &mut Env,
    ) -> bool {
        let Some(st) = self.state_of(def, f) else {
            self.fail_frame(
                def,
                fid,
                f,
                StatesError::runtime("internal: state not found"),
                env,
            );
            return false;
        };
        let done = (|| -> Result<Value, StatesError> {
            // ResultSelector and Assign both read the raw result and the
            // variables as they were when the state was entered.
            let selected = match &st.result_selector {
                Some(t) => {
                    eval_template(t, "ResultSelector", &self.scope(f, st, &result), env.rng)?
                }
                None if st.assign.is_some() => result.clone(),
                None => std::mem::take(&mut result),
            };
            self.assign(st.assign.as_ref(), f, st, &result, env)?;
            let out = apply_result_path(&st.result_path, &f.input, selected)?;
            output_of(&st.output_path, out)
        })();
        match done {
            Ok(out) => {
                let text = self.emit_state(env, f, EventType::exited(state_type(st)), st, &out);
                match st.next {
                    Transition::Next(n) => {
                        f.state = n;
                        f.input = out;
                        f.carry = Some(text);
                        f.phase = Phase::Enter;
                        self.runnable.push_back(fid);
                        true
                    }
                    Transition::End => {
                        f.phase = Phase::Run;
                        self.finish_frame(def, fid, f, out, env);
                        false
                    }
                }
            }
            Err(e) => {
                f.phase = Phase::Run;
                match self.handle_error(def, st, fid, f, e, env) {
                    Flow::Continue => {
                        self.runnable.push_back(fid);
                        true
                    }
                    Flow::Stop => !matches!(f.phase, Phase::Run | Phase::Enter),
                }
            }
        }
    }

    /// An error reached a frame that was waiting (task, children): retry, catch or fail.
    fn error_in_waiting_frame(
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
    fn handle_error(
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

    fn run_parallel(
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

    fn run_map(
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

    fn child_done(
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
