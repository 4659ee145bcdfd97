//! The local engine: state machines, executions, task tokens and timers,
//! driven on tokio, persisted in SQLite (or kept in memory).
//!
//! Task states call a [`TaskInvoker`], which resolves a resource to an
//! in-process handler. Callbacks (`SendTaskSuccess`, …) and timers feed
//! results back into the pure [`Execution`] step machine.
//!
//! This file holds the engine's state and its operations (open and restore,
//! state machines, executions, history); `error.rs` the [`EngineError`] they
//! return, `task.rs` the invoker port, task dispatch and task-token
//! callbacks, and `scheduler.rs` what follows each advance (effects,
//! persistence, yielding) and the timer task.

mod error;
mod scheduler;
mod task;

pub use error::{EngineError, EngineErrorKind};
pub use scheduler::CRASH_AFTER_BOUNDARY_ENV;
pub use task::{BoxFuture, NoTasks, TaskInvoker, TaskRequest};

use crate::clock::Clock;
use crate::definition::{substitute, DefinitionError, StateMachine};
use crate::history::{payload_text, HistoryEvent};
use crate::machine::{
    Effects, Execution, ExecutionMeta, ExecutionStatus, Timer, MAX_HISTORY_EVENTS,
    MAX_PAYLOAD_BYTES,
};
use crate::store::{MachineRow, SqliteStore};
use rand::rngs::StdRng;
use rand::SeedableRng;
use scheduler::timer_loop;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use task::Dispatch;
use tokio::sync::Notify;

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
}
