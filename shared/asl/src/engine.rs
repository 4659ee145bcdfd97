//! The local engine: state machines, executions, task tokens and timers,
//! driven on tokio, persisted in SQLite (or kept in memory).
//!
//! Task states call a [`TaskInvoker`], which resolves a resource to an
//! in-process handler. Callbacks (`SendTaskSuccess`, …) and timers feed
//! results back into the pure [`Execution`] step machine.

use crate::clock::Clock;
use crate::definition::{substitute, DefinitionError, StateMachine};
use crate::history::payload_text;
use crate::history::HistoryEvent;
use crate::machine::{
    Effects, Env, Execution, ExecutionMeta, ExecutionStatus, StatesError, Timer, TimerKind,
    MAX_HISTORY_EVENTS, MAX_PAYLOAD_BYTES,
};
use crate::store::{MachineRow, SqliteStore, StoreError};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::Notify;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a Task state asks of its resource.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    /// The execution it belongs to.
    pub execution_arn: String,
    /// The Task state's name.
    pub state_name: String,
    /// The `Resource` as written.
    pub resource: String,
    /// The Lambda function name or ARN (`FunctionName`, or the resource for a plain ARN).
    pub function: Option<String>,
    /// The payload.
    pub payload: Value,
    /// The task token, for `.waitForTaskToken` tasks.
    pub task_token: Option<String>,
}

/// Resolves Task resources to handlers.
pub trait TaskInvoker: Send + Sync + 'static {
    /// Runs the task. An `Err` carries the error name (a Lambda `errorType`) and cause.
    fn invoke(&self, request: TaskRequest) -> BoxFuture<Result<Value, StatesError>>;
}

/// An invoker with no handlers: every task fails with `States.TaskFailed`.
pub struct NoTasks;

impl TaskInvoker for NoTasks {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
        Box::pin(async move {
            Err(StatesError::new(
                "States.TaskFailed",
                format!(
                    "no handler is registered for resource '{}'",
                    request.resource
                ),
            ))
        })
    }
}

/// Where the engine keeps its state.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Memory only: fastest, lost on exit.
    Memory,
    /// A SQLite file: executions, tokens and timers survive restarts.
    Sqlite(PathBuf),
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Region used in ARNs and history details.
    pub region: String,
    /// Account id used in ARNs.
    pub account: String,
    /// Where state lives.
    pub storage: Storage,
    /// Seed for task tokens and jitter (tests); random when `None`.
    pub seed: Option<u64>,
    /// History events one execution may record before it fails with
    /// `States.Runtime`, as on AWS ([`MAX_HISTORY_EVENTS`], 25,000).
    pub max_history_events: u64,
    /// State transitions an execution takes per hold of the engine lock
    /// before it yields to the scheduler, so one busy (or runaway) execution
    /// cannot keep the API, callbacks and other executions waiting.
    pub transitions_per_slice: u64,
}

/// How many times (1 ms each) a yielded execution lets blocked callers go
/// first before it takes its next slice regardless.
const MAX_DEFERRALS: u32 = 50;

/// Bytes of state payload an execution records per hold of the engine lock.
const SLICE_BYTES: usize = 1 << 20;

/// Default [`EngineOptions::transitions_per_slice`]: well under a millisecond
/// of work in memory.
pub const DEFAULT_TRANSITIONS_PER_SLICE: u64 = 1_000;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            region: "us-east-1".into(),
            account: "123456789012".into(),
            storage: Storage::Memory,
            seed: None,
            max_history_events: MAX_HISTORY_EVENTS,
            transitions_per_slice: DEFAULT_TRANSITIONS_PER_SLICE,
        }
    }
}

/// Engine operations fail with AWS's error names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// No such state machine.
    #[error("State Machine Does Not Exist: '{0}'")]
    StateMachineDoesNotExist(String),
    /// A different state machine has this name.
    #[error("State Machine Already Exists: '{0}'")]
    StateMachineAlreadyExists(String),
    /// The definition was refused.
    #[error("Invalid State Machine Definition: '{0}'")]
    InvalidDefinition(String),
    /// A name is malformed.
    #[error("Invalid Name: '{0}'")]
    InvalidName(String),
    /// An ARN is malformed.
    #[error("Invalid Arn: '{0}'")]
    InvalidArn(String),
    /// No such execution.
    #[error("Execution Does Not Exist: '{0}'")]
    ExecutionDoesNotExist(String),
    /// An execution with this name exists (closed, or running with another input).
    #[error("Execution Already Exists: '{0}'")]
    ExecutionAlreadyExists(String),
    /// Input is not valid JSON.
    #[error("Invalid Execution Input: {0}")]
    InvalidExecutionInput(String),
    /// Output is not valid JSON.
    #[error("Invalid Output: {0}")]
    InvalidOutput(String),
    /// The token was never issued.
    #[error("Invalid Token: the task token is not recognised")]
    InvalidToken,
    /// The task behind the token is no longer waiting.
    #[error("Task Timed Out: the task for this token is no longer waiting")]
    TaskTimedOut,
    /// A request field is invalid.
    #[error("{0}")]
    Validation(String),
    /// The state database failed.
    #[error("{0}")]
    Store(String),
}

impl EngineError {
    /// The AWS error code (`__type`).
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::StateMachineDoesNotExist(_) => "StateMachineDoesNotExist",
            EngineError::StateMachineAlreadyExists(_) => "StateMachineAlreadyExists",
            EngineError::InvalidDefinition(_) => "InvalidDefinition",
            EngineError::InvalidName(_) => "InvalidName",
            EngineError::InvalidArn(_) => "InvalidArn",
            EngineError::ExecutionDoesNotExist(_) => "ExecutionDoesNotExist",
            EngineError::ExecutionAlreadyExists(_) => "ExecutionAlreadyExists",
            EngineError::InvalidExecutionInput(_) => "InvalidExecutionInput",
            EngineError::InvalidOutput(_) => "InvalidOutput",
            EngineError::InvalidToken => "InvalidToken",
            EngineError::TaskTimedOut => "TaskTimedOut",
            EngineError::Validation(_) => "ValidationException",
            EngineError::Store(_) => "InternalFailure",
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e.to_string())
    }
}

/// A state machine as registered.
#[derive(Debug, Clone)]
pub struct MachineInfo {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// Definition text.
    pub definition: String,
    /// Role ARN.
    pub role_arn: String,
    /// Created, epoch ms.
    pub created_ms: i64,
    /// Last updated, epoch ms.
    pub updated_ms: i64,
    /// Revision number.
    pub revision: u64,
}

/// A summary of an execution, as `DescribeExecution` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionInfo {
    /// Identity and input.
    pub meta: ExecutionMeta,
    /// Status.
    pub status: ExecutionStatus,
    /// Output on success.
    pub output: Option<Value>,
    /// Error name.
    pub error: Option<String>,
    /// Cause.
    pub cause: Option<String>,
    /// Stop time, epoch ms.
    pub stop_ms: Option<i64>,
    /// State transitions taken so far.
    pub transitions: u64,
}

struct Machine {
    info: MachineInfo,
    parsed: Arc<StateMachine>,
    /// The definition text shared by every execution started from this revision.
    text: Arc<str>,
    /// ARN, name and role shared by every execution's metadata.
    ids: (Arc<str>, Arc<str>, Arc<str>),
}

fn ids(info: &MachineInfo) -> (Arc<str>, Arc<str>, Arc<str>) {
    (
        Arc::from(info.arn.as_str()),
        Arc::from(info.name.as_str()),
        Arc::from(info.role_arn.as_str()),
    )
}

struct Slot {
    exec: Execution,
    def: Arc<StateMachine>,
    definition: Arc<str>,
    saved: bool,
    tokens: Vec<Arc<str>>,
    /// A continuation of this execution's run is scheduled (it yielded).
    continuing: bool,
}

struct Core {
    machines: BTreeMap<String, Machine>,
    /// Keyed by execution ARN; the key is the one copy of the ARN that
    /// `order`, `history`, tokens, timers and dispatches share.
    executions: HashMap<Arc<str>, Box<Slot>>,
    order: Vec<Arc<str>>,
    tokens: HashMap<Arc<str>, (Arc<str>, u32, u64)>,
    timers: BTreeMap<(i64, u64), (Arc<str>, Timer)>,
    timer_seq: u64,
    /// Memory-only history: each advance's events as one chunk, in order
    /// (an execution that yields adds a chunk per slice without copying the earlier ones).
    history: HashMap<Arc<str>, Vec<Vec<HistoryEvent>>>,
    rng: StdRng,
    store: Option<SqliteStore>,
    /// Invocations decided under the lock, dispatched after it is released.
    outbox: Vec<Dispatch>,
    /// Running executions loaded at open, with what they need re-established,
    /// until [`Engine::resume`].
    paused: Vec<(String, Effects)>,
    /// Told the ARN of every execution that ends (see [`Engine::on_finished`]).
    finished_tx: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// A task invocation waiting to be polled (see [`Engine::flush`]).
struct Dispatch {
    arn: Arc<str>,
    frame: u32,
    seq: u64,
    fut: BoxFuture<Result<Value, StatesError>>,
}

struct Inner {
    core: Mutex<Core>,
    invoker: Arc<dyn TaskInvoker>,
    clock: Arc<dyn Clock>,
    timers_changed: Arc<Notify>,
    finished: Notify,
    opts: EngineOptions,
    region: Arc<str>,
    /// The runtime the engine was opened on: yielded executions continue there.
    runtime: tokio::runtime::Handle,
    /// Callers blocked on `core` right now; a yielded execution lets them go first.
    waiting: AtomicUsize,
}

/// The local Step Functions engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 80
        && name.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !"<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
        })
}

impl Engine {
    /// Opens an engine: loads stored state machines and executions and
    /// resumes every running one (re-arming its timers and tokens). Must be
    /// called inside a tokio runtime; the engine's timer task runs on it.
    pub fn open(
        opts: EngineOptions,
        invoker: Arc<dyn TaskInvoker>,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, EngineError> {
        let engine = Self::open_paused(opts, invoker, clock)?;
        engine.resume();
        Ok(engine)
    }

    /// Opens an engine like [`Engine::open`] but resumes nothing yet: stored
    /// executions are loaded, and their pending invocations, timers and
    /// tokens wait for [`Engine::resume`]. For an invoker whose handlers are
    /// registered after the engine exists (they need it): a task re-invoked
    /// before its handler is registered would fail the execution.
    pub fn open_paused(
        opts: EngineOptions,
        invoker: Arc<dyn TaskInvoker>,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, EngineError> {
        let store = match &opts.storage {
            Storage::Memory => None,
            Storage::Sqlite(p) => Some(SqliteStore::open(p)?),
        };
        let rng = match opts.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let inner = Arc::new(Inner {
            core: Mutex::new(Core {
                machines: BTreeMap::new(),
                executions: HashMap::new(),
                order: Vec::new(),
                tokens: HashMap::new(),
                timers: BTreeMap::new(),
                timer_seq: 0,
                history: HashMap::new(),
                rng,
                store,
                outbox: Vec::new(),
                paused: Vec::new(),
                finished_tx: None,
            }),
            invoker,
            clock,
            timers_changed: Arc::new(Notify::new()),
            finished: Notify::new(),
            region: Arc::from(opts.region.as_str()),
            runtime: tokio::runtime::Handle::current(),
            waiting: AtomicUsize::new(0),
            opts,
        });
        let engine = Engine { inner };
        engine.load()?;
        let weak = Arc::downgrade(&engine.inner);
        tokio::spawn(timer_loop(weak, engine.inner.timers_changed.clone()));
        Ok(engine)
    }

    /// An advance's environment, carrying the engine's quotas.
    fn env<'a>(&self, now: i64, rng: &'a mut StdRng) -> Env<'a> {
        let mut env = Env::new(now, rng);
        env.history_limit = self.inner.opts.max_history_events;
        env.slice = self.inner.opts.transitions_per_slice.max(1);
        env.slice_bytes = SLICE_BYTES;
        env
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        match self.inner.core.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.inner.waiting.fetch_add(1, Ordering::SeqCst);
                let g = self.inner.core.lock().unwrap_or_else(|p| p.into_inner());
                self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
                g
            }
        }
    }

    fn load(&self) -> Result<(), EngineError> {
        let mut core = self.lock();
        let Some(store) = core.store.as_ref() else {
            return Ok(());
        };
        let machines = store.machines()?;
        let executions = store.executions()?;
        for m in machines {
            let parsed = StateMachine::parse(&m.definition)
                .map_err(|e| EngineError::InvalidDefinition(e.to_string()))?;
            let text: Arc<str> = Arc::from(m.definition.as_str());
            let info = MachineInfo {
                arn: m.arn.clone(),
                name: m.name,
                definition: m.definition,
                role_arn: m.role_arn,
                created_ms: m.created_ms,
                updated_ms: m.updated_ms,
                revision: m.revision,
            };
            core.machines.insert(
                m.arn,
                Machine {
                    text,
                    ids: ids(&info),
                    info,
                    parsed: Arc::new(parsed),
                },
            );
        }
        let mut parsed_cache: HashMap<String, (Arc<StateMachine>, Arc<str>)> = HashMap::new();
        let mut resumed = Vec::new();
        for (mut exec, definition) in executions {
            let (def, text) = match parsed_cache.get(&definition) {
                Some(x) => x.clone(),
                None => {
                    let p = Arc::new(
                        StateMachine::parse(&definition)
                            .map_err(|e| EngineError::InvalidDefinition(e.to_string()))?,
                    );
                    let t: Arc<str> = Arc::from(definition.as_str());
                    parsed_cache.insert(definition.clone(), (p.clone(), t.clone()));
                    (p, t)
                }
            };
            let arn = exec.meta.execution_arn.clone();
            if exec.status == ExecutionStatus::Running {
                exec.requeue_runnable();
                let mut effects = exec.resume_effects();
                let pending = match core.store.as_ref() {
                    Some(store) => store.pending_invocations(&arn)?,
                    None => Vec::new(),
                };
                for inv in pending {
                    if exec.awaits_invocation(inv.frame, inv.seq) {
                        effects.invocations.push(inv);
                    }
                }
                resumed.push((arn.clone(), effects));
            }
            let key: Arc<str> = Arc::from(arn.as_str());
            core.order.push(key.clone());
            core.executions.insert(
                key,
                Box::new(Slot {
                    exec,
                    def,
                    definition: text,
                    saved: true,
                    tokens: Vec::new(),
                    continuing: false,
                }),
            );
        }
        core.paused = resumed;
        Ok(())
    }

    /// Resumes the running executions [`Engine::open_paused`] loaded: re-arms
    /// their timers and tokens, invokes again the tasks whose invocation had
    /// not completed, and advances them. Does nothing the second time.
    pub fn resume(&self) {
        let resumed = std::mem::take(&mut self.lock().paused);
        for (arn, effects) in resumed {
            let mut core = self.lock();
            self.apply_effects(&mut core, &arn, effects);
            let now = self.inner.clock.now_ms();
            let Core {
                executions, rng, ..
            } = &mut *core;
            if let Some(slot) = executions.get_mut(arn.as_str()) {
                let mut env = self.env(now, rng);
                let def = slot.def.clone();
                slot.exec.run(&def, &mut env);
                let eff = env.effects;
                self.after(&mut core, &arn, eff);
            }
        }
        self.flush();
    }

    /// Sends the ARN of every execution that ends from now on, by any path
    /// (success, failure, time-out, `StopExecution`) to `tx`: the host
    /// releases what the execution held.
    pub fn on_finished(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        self.lock().finished_tx = Some(tx);
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.opts
    }

    /// The ARN a state machine named `name` gets.
    pub fn state_machine_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{}",
            self.inner.opts.region, self.inner.opts.account, name
        )
    }

    /// Validates a definition (after applying `substitutions`).
    pub fn validate(
        definition: &str,
        substitutions: &HashMap<String, String>,
    ) -> Result<StateMachine, DefinitionError> {
        let text = substitute(definition, substitutions)?;
        StateMachine::parse(&text)
    }

    /// Creates a state machine. Creating the same name with the same definition
    /// and role again returns the existing one, as AWS does.
    pub fn create_state_machine(
        &self,
        name: &str,
        definition: &str,
        role_arn: &str,
    ) -> Result<MachineInfo, EngineError> {
        if !valid_name(name) {
            return Err(EngineError::InvalidName(name.to_string()));
        }
        let parsed = StateMachine::parse(definition)
            .map_err(|e| EngineError::InvalidDefinition(e.to_string()))?;
        let arn = self.state_machine_arn(name);
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        if let Some(existing) = core.machines.get(&arn) {
            if existing.info.definition == definition && existing.info.role_arn == role_arn {
                return Ok(existing.info.clone());
            }
            return Err(EngineError::StateMachineAlreadyExists(arn));
        }
        let info = MachineInfo {
            arn: arn.clone(),
            name: name.to_string(),
            definition: definition.to_string(),
            role_arn: role_arn.to_string(),
            created_ms: now,
            updated_ms: now,
            revision: 1,
        };
        if let Some(store) = core.store.as_mut() {
            store.put_machine(&row(&info))?;
        }
        core.machines.insert(
            arn,
            Machine {
                text: Arc::from(definition),
                ids: ids(&info),
                info: info.clone(),
                parsed: Arc::new(parsed),
            },
        );
        Ok(info)
    }

    /// Replaces a state machine's definition and/or role. Running executions keep the definition they started with.
    pub fn update_state_machine(
        &self,
        arn: &str,
        definition: Option<&str>,
        role_arn: Option<&str>,
    ) -> Result<MachineInfo, EngineError> {
        let parsed = definition
            .map(StateMachine::parse)
            .transpose()
            .map_err(|e| EngineError::InvalidDefinition(e.to_string()))?;
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        let m = core
            .machines
            .get_mut(arn)
            .ok_or_else(|| EngineError::StateMachineDoesNotExist(arn.to_string()))?;
        if let (Some(d), Some(p)) = (definition, parsed) {
            m.info.definition = d.to_string();
            m.parsed = Arc::new(p);
            m.text = Arc::from(d);
        }
        if let Some(r) = role_arn {
            m.info.role_arn = r.to_string();
        }
        m.info.updated_ms = now;
        m.info.revision += 1;
        m.ids = ids(&m.info);
        let info = m.info.clone();
        if let Some(store) = core.store.as_mut() {
            store.put_machine(&row(&info))?;
        }
        Ok(info)
    }

    /// Deletes a state machine. Its executions stay readable; running ones finish.
    pub fn delete_state_machine(&self, arn: &str) -> Result<(), EngineError> {
        let mut core = self.lock();
        if core.machines.remove(arn).is_none() {
            return Err(EngineError::StateMachineDoesNotExist(arn.to_string()));
        }
        if let Some(store) = core.store.as_mut() {
            store.delete_machine(arn)?;
        }
        Ok(())
    }

    /// One state machine.
    pub fn describe_state_machine(&self, arn: &str) -> Result<MachineInfo, EngineError> {
        self.lock()
            .machines
            .get(arn)
            .map(|m| m.info.clone())
            .ok_or_else(|| EngineError::StateMachineDoesNotExist(arn.to_string()))
    }

    /// Every state machine, by ARN.
    pub fn list_state_machines(&self) -> Vec<MachineInfo> {
        self.lock()
            .machines
            .values()
            .map(|m| m.info.clone())
            .collect()
    }

    /// Starts an execution. With a name already used: the same input while
    /// it runs returns the running execution; otherwise `ExecutionAlreadyExists`.
    pub fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<&str>,
        input: Value,
    ) -> Result<ExecutionInfo, EngineError> {
        self.with_flush(|| self.start_execution_locked(state_machine_arn, name, input))
    }

    fn start_execution_locked(
        &self,
        state_machine_arn: &str,
        name: Option<&str>,
        input: Value,
    ) -> Result<ExecutionInfo, EngineError> {
        // AWS's quota on an execution's input, checked before anything is recorded.
        let size = payload_text(&input).len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(EngineError::Validation(format!(
                "1 validation error detected: Value at 'input' failed to satisfy constraint: Member must have length less than or equal to {MAX_PAYLOAD_BYTES} (got {size} bytes)"
            )));
        }
        let mut core = self.lock();
        let ((sm_arn, sm_name, role), def, definition) = {
            let m = core.machines.get(state_machine_arn).ok_or_else(|| {
                EngineError::StateMachineDoesNotExist(state_machine_arn.to_string())
            })?;
            (m.ids.clone(), m.parsed.clone(), m.text.clone())
        };
        let name = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(EngineError::InvalidName(n.to_string()));
                }
                n.to_string()
            }
            None => {
                let mut b = [0u8; 16];
                rand::RngCore::fill_bytes(&mut core.rng, &mut b);
                uuid::Builder::from_random_bytes(b).into_uuid().to_string()
            }
        };
        let arn = format!(
            "arn:aws:states:{}:{}:execution:{}:{}",
            self.inner.opts.region, self.inner.opts.account, sm_name, name
        );
        if let Some(slot) = core.executions.get(arn.as_str()) {
            if slot.exec.status == ExecutionStatus::Running && slot.exec.meta.input == input {
                return Ok(info(&slot.exec));
            }
            return Err(EngineError::ExecutionAlreadyExists(arn));
        }
        let now = self.inner.clock.now_ms();
        let meta = ExecutionMeta {
            execution_arn: arn.clone(),
            name,
            state_machine_arn: sm_arn,
            state_machine_name: sm_name,
            role_arn: role,
            start_ms: now,
            input,
            region: self.inner.region.clone(),
        };
        let Core { rng, .. } = &mut *core;
        let mut env = self.env(now, rng);
        let mut exec = Execution::start(meta, &def, &mut env);
        exec.run(&def, &mut env);
        let effects = env.effects;
        let key: Arc<str> = Arc::from(arn.as_str());
        core.order.push(key.clone());
        core.executions.insert(
            key,
            Box::new(Slot {
                exec,
                def,
                definition,
                saved: false,
                tokens: Vec::new(),
                continuing: false,
            }),
        );
        self.after(&mut core, &arn, effects);
        let slot = core
            .executions
            .get(arn.as_str())
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.clone()))?;
        Ok(info(&slot.exec))
    }

    /// One execution's summary.
    pub fn describe_execution(&self, arn: &str) -> Result<ExecutionInfo, EngineError> {
        self.lock()
            .executions
            .get(arn)
            .map(|s| info(&s.exec))
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))
    }

    /// Executions of a state machine (all when `None`), newest first.
    pub fn list_executions(&self, state_machine_arn: Option<&str>) -> Vec<ExecutionInfo> {
        let core = self.lock();
        core.order
            .iter()
            .rev()
            .filter_map(|a| core.executions.get(a))
            .filter(|s| state_machine_arn.is_none_or(|m| &*s.exec.meta.state_machine_arn == m))
            .map(|s| info(&s.exec))
            .collect()
    }

    /// Number of executions still running.
    pub fn running_count(&self) -> usize {
        self.lock()
            .executions
            .values()
            .filter(|s| s.exec.status == ExecutionStatus::Running)
            .count()
    }

    /// An execution's full history, oldest first.
    pub fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, EngineError> {
        let core = self.lock();
        if !core.executions.contains_key(arn) {
            return Err(EngineError::ExecutionDoesNotExist(arn.to_string()));
        }
        match core.store.as_ref() {
            Some(store) => Ok(store.history(arn)?),
            None => Ok(core
                .history
                .get(arn)
                .map(|chunks| chunks.iter().flatten().cloned().collect())
                .unwrap_or_default()),
        }
    }

    /// Stops a running execution (`ExecutionAborted`).
    pub fn stop_execution(
        &self,
        arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<ExecutionInfo, EngineError> {
        self.with_flush(|| self.stop_execution_locked(arn, error, cause))
    }

    fn stop_execution_locked(
        &self,
        arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<ExecutionInfo, EngineError> {
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        let Core {
            executions, rng, ..
        } = &mut *core;
        let slot = executions
            .get_mut(arn)
            .ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
        let mut env = self.env(now, rng);
        slot.exec.stop(error, cause, &mut env);
        let effects = env.effects;
        self.after(&mut core, arn, effects);
        Ok(info(&core.executions[arn].exec))
    }

    fn callback(
        &self,
        token: &str,
        apply: impl FnOnce(
            &mut Execution,
            &StateMachine,
            u32,
            u64,
            &mut Env,
        ) -> Result<(), crate::machine::CallbackError>,
    ) -> Result<(), EngineError> {
        self.with_flush(|| self.callback_locked(token, apply))
    }

    fn callback_locked(
        &self,
        token: &str,
        apply: impl FnOnce(
            &mut Execution,
            &StateMachine,
            u32,
            u64,
            &mut Env,
        ) -> Result<(), crate::machine::CallbackError>,
    ) -> Result<(), EngineError> {
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        let (arn, frame, seq) = core
            .tokens
            .get(token)
            .cloned()
            .ok_or(EngineError::InvalidToken)?;
        let Core {
            executions,
            rng,
            tokens,
            ..
        } = &mut *core;
        let Some(slot) = executions.get_mut(&*arn) else {
            tokens.remove(token);
            return Err(EngineError::TaskTimedOut);
        };
        let mut env = self.env(now, rng);
        let def = slot.def.clone();
        let res = apply(&mut slot.exec, &def, frame, seq, &mut env);
        let effects = env.effects;
        if res.is_err() {
            core.tokens.remove(token);
        }
        self.after(&mut core, &arn, effects);
        res.map_err(|_| EngineError::TaskTimedOut)
    }

    /// The execution a live task token belongs to (for the API's policy), if any.
    pub fn token_execution(&self, token: &str) -> Option<String> {
        self.lock()
            .tokens
            .get(token)
            .map(|(arn, _, _)| arn.to_string())
    }

    /// `SendTaskSuccess`.
    pub fn send_task_success(&self, token: &str, output: Value) -> Result<(), EngineError> {
        let r = self.callback(token, |exec, def, frame, seq, env| {
            exec.on_callback(def, frame, seq, Ok(output), env)
        });
        if r.is_ok() {
            self.lock().tokens.remove(token);
        }
        r
    }

    /// `SendTaskFailure`.
    pub fn send_task_failure(
        &self,
        token: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<(), EngineError> {
        let e = StatesError::new(error.unwrap_or_default(), cause.unwrap_or_default());
        let r = self.callback(token, |exec, def, frame, seq, env| {
            exec.on_callback(def, frame, seq, Err(e), env)
        });
        if r.is_ok() {
            self.lock().tokens.remove(token);
        }
        r
    }

    /// `SendTaskHeartbeat`.
    pub fn send_task_heartbeat(&self, token: &str) -> Result<(), EngineError> {
        self.callback(token, |exec, _def, frame, seq, env| {
            exec.on_heartbeat(frame, seq, env)
        })
    }

    /// Waits until the execution is no longer running and returns its summary.
    pub async fn wait_for(&self, arn: &str) -> Result<ExecutionInfo, EngineError> {
        loop {
            let notified = self.inner.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let i = self.describe_execution(arn)?;
            if i.status != ExecutionStatus::Running {
                return Ok(i);
            }
            notified.await;
        }
    }

    /// Registers effects, persists the execution's progress and dispatches invocations.
    fn after(&self, core: &mut Core, arn: &str, effects: Effects) {
        // Durable engines record each invocation so a restart can repeat the
        // ones that never completed; the in-memory state does not keep them.
        let invoked = if core.store.is_some() {
            effects.invocations.clone()
        } else {
            Vec::new()
        };
        self.apply_effects(core, arn, effects);
        let Some(slot) = core.executions.get_mut(arn) else {
            return;
        };
        let events = std::mem::take(&mut slot.exec.pending_events);
        let finished = slot.exec.status != ExecutionStatus::Running;
        if !finished && slot.exec.has_runnable() && !slot.continuing {
            // The run yielded with work left: continue after others had their turn.
            slot.continuing = true;
            self.schedule_continue(shared_arn(core, arn));
        }
        let Some(slot) = core.executions.get_mut(arn) else {
            return;
        };
        if finished {
            slot.exec.compact();
            for t in std::mem::take(&mut slot.tokens) {
                core.tokens.remove(&t);
            }
        }
        let Some(slot) = core.executions.get_mut(arn) else {
            return;
        };
        match core.store.as_mut() {
            Some(store) => {
                let definition = (!slot.saved).then(|| slot.definition.clone());
                match store.save_execution(&slot.exec, definition.as_deref(), &events, &invoked) {
                    Ok(()) => {
                        slot.saved = true;
                        crash_point(&events);
                    }
                    Err(e) => {
                        tracing::error!(execution = arn, error = %e, "could not persist execution progress")
                    }
                }
            }
            None => {
                let key = shared_arn(core, arn);
                if !events.is_empty() {
                    // Hand the whole buffer over instead of copying it event by event.
                    core.history.entry(key).or_default().push(events);
                }
            }
        }
        if finished {
            if let Some(tx) = &core.finished_tx {
                let _ = tx.send(arn.to_string());
            }
            self.inner.finished.notify_waiters();
        }
    }

    /// Queues the next slice of a yielded execution's run behind the tasks
    /// already waiting on the runtime.
    fn schedule_continue(&self, arn: Arc<str>) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.runtime.spawn(async move {
            tokio::task::yield_now().await;
            // Callers blocked on the lock (the API, callbacks, other
            // executions) go first; a std mutex would let this task barge.
            let mut deferred = 0;
            while deferred < MAX_DEFERRALS
                && weak
                    .upgrade()
                    .is_some_and(|i| i.waiting.load(Ordering::SeqCst) > 0)
            {
                deferred += 1;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            if let Some(inner) = weak.upgrade() {
                let engine = Engine { inner };
                engine.continue_run(&arn);
                engine.flush();
            }
        });
    }

    /// Runs the next slice of a yielded execution.
    fn continue_run(&self, arn: &str) {
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        let Core {
            executions, rng, ..
        } = &mut *core;
        let Some(slot) = executions.get_mut(arn) else {
            return;
        };
        slot.continuing = false;
        if slot.exec.status != ExecutionStatus::Running {
            return;
        }
        let mut env = self.env(now, rng);
        let def = slot.def.clone();
        slot.exec.run(&def, &mut env);
        let effects = env.effects;
        self.after(&mut core, arn, effects);
    }

    fn apply_effects(&self, core: &mut Core, arn: &str, effects: Effects) {
        let mut timers_changed = false;
        // The execution's shared ARN for every timer, token and dispatch.
        let shared = shared_arn(core, arn);
        for t in effects.timers {
            core.timer_seq += 1;
            let key = (t.at_ms, core.timer_seq);
            core.timers.insert(key, (shared.clone(), t));
            timers_changed = true;
        }
        for (token, frame, seq) in effects.tokens {
            if let Some(slot) = core.executions.get_mut(arn) {
                slot.tokens.push(token.clone());
            }
            core.tokens.insert(token, (shared.clone(), frame, seq));
        }
        for inv in effects.invocations {
            let (frame, seq) = (inv.frame, inv.seq);
            let req = TaskRequest {
                execution_arn: arn.to_string(),
                state_name: inv.state_name,
                resource: inv.resource,
                function: inv.function,
                payload: inv.payload,
                task_token: inv.token,
            };
            let fut = self.inner.invoker.invoke(req);
            core.outbox.push(Dispatch {
                arn: shared.clone(),
                frame,
                seq,
                fut,
            });
        }
        if timers_changed {
            self.inner.timers_changed.notify_one();
        }
    }

    /// Polls every queued invocation once, outside the lock: a handler that is
    /// already done (most in-process handlers) is applied at once, in a loop
    /// rather than by recursion; the others become tokio tasks. Polling
    /// outside the lock lets a handler call back into the engine.
    fn flush(&self) {
        loop {
            let batch = std::mem::take(&mut self.lock().outbox);
            if batch.is_empty() {
                return;
            }
            for Dispatch {
                arn,
                frame,
                seq,
                mut fut,
            } in batch
            {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(result) => self.task_finished(&arn, frame, seq, result),
                    std::task::Poll::Pending => {
                        let weak = Arc::downgrade(&self.inner);
                        tokio::spawn(async move {
                            let result = fut.await;
                            if let Some(inner) = weak.upgrade() {
                                let engine = Engine { inner };
                                engine.task_finished(&arn, frame, seq, result);
                                engine.flush();
                            }
                        });
                    }
                }
            }
        }
    }

    /// Runs `f` (which takes and releases the lock), then dispatches what it queued.
    fn with_flush<R>(&self, f: impl FnOnce() -> R) -> R {
        let r = f();
        self.flush();
        r
    }

    fn task_finished(&self, arn: &str, frame: u32, seq: u64, result: Result<Value, StatesError>) {
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        let Core {
            executions, rng, ..
        } = &mut *core;
        let Some(slot) = executions.get_mut(arn) else {
            return;
        };
        let mut env = self.env(now, rng);
        let def = slot.def.clone();
        slot.exec.on_task_result(&def, frame, seq, result, &mut env);
        let effects = env.effects;
        self.after(&mut core, arn, effects);
    }

    /// Fires due timers; returns the next deadline.
    fn fire_due(&self) -> Option<i64> {
        let now = self.inner.clock.now_ms();
        let mut core = self.lock();
        loop {
            let (&key, _) = core.timers.iter().next()?;
            if key.0 > now {
                return Some(key.0);
            }
            let Some((arn, timer)) = core.timers.remove(&key) else {
                continue;
            };
            let Core {
                executions, rng, ..
            } = &mut *core;
            let Some(slot) = executions.get_mut(&*arn) else {
                continue;
            };
            if slot.exec.status != ExecutionStatus::Running {
                continue;
            }
            let mut env = self.env(now, rng);
            let def = slot.def.clone();
            slot.exec.on_timer(&def, timer, &mut env);
            let effects = env.effects;
            self.after(&mut core, &arn, effects);
            if timer.kind == TimerKind::Execution {
                self.inner.finished.notify_waiters();
            }
        }
    }

    /// Live task tokens (for diagnostics and tests).
    pub fn live_tokens(&self) -> usize {
        self.lock().tokens.len()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Wake the timer task so it sees the engine is gone and ends.
        self.timers_changed.notify_one();
    }
}

async fn timer_loop(weak: Weak<Inner>, changed: Arc<Notify>) {
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let sleep_until = {
            let Some(inner) = weak.upgrade() else { return };
            let engine = Engine { inner };
            let next = engine.fire_due();
            engine.flush();
            next.map(|ms| engine.inner.clock.instant_at(ms))
        };
        match sleep_until {
            Some(at) => {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => notified.await,
        }
    }
}

/// The shared copy of an execution's ARN (the `executions` key), or a new
/// one for an execution that is not (or no longer) registered.
fn shared_arn(core: &Core, arn: &str) -> Arc<str> {
    core.executions
        .get_key_value(arn)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| Arc::from(arn))
}

fn row(i: &MachineInfo) -> MachineRow {
    MachineRow {
        arn: i.arn.clone(),
        name: i.name.clone(),
        definition: i.definition.clone(),
        role_arn: i.role_arn.clone(),
        created_ms: i.created_ms,
        updated_ms: i.updated_ms,
        revision: i.revision,
    }
}

fn info(e: &Execution) -> ExecutionInfo {
    ExecutionInfo {
        meta: e.meta.clone(),
        status: e.status,
        output: e.output.clone(),
        error: e.error.clone(),
        cause: e.cause.clone(),
        stop_ms: e.stop_ms,
        transitions: e.transitions,
    }
}

/// The variable of the crash test's fault injection: see [`crash_point`].
pub const CRASH_AFTER_BOUNDARY_ENV: &str = "CERTOPS_CRASH_AFTER_BOUNDARY";

/// Fault injection for the crash tests: with `CERTOPS_CRASH_AFTER_BOUNDARY=<n>` in the
/// environment, the process aborts (no unwinding, no cleanup: as `kill -9` would leave it)
/// right after the transaction that persisted its n-th state boundary (a `…StateEntered` or
/// `…StateExited` event) commits. Unset, this is one cached lookup per save.
fn crash_point(events: &[crate::history::HistoryEvent]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let Some(limit) = *LIMIT.get_or_init(|| {
        std::env::var(CRASH_AFTER_BOUNDARY_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
    }) else {
        return;
    };
    let boundaries = events
        .iter()
        .filter(|e| {
            let kind = e.kind.as_str();
            kind.ends_with("StateEntered") || kind.ends_with("StateExited")
        })
        .count() as u64;
    if boundaries > 0 && SEEN.fetch_add(boundaries, Ordering::SeqCst) + boundaries >= limit {
        eprintln!("{CRASH_AFTER_BOUNDARY_ENV}={limit}: aborting after state boundary {limit}");
        std::process::abort();
    }
}
