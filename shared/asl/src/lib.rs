//! A faithful, embeddable interpreter of the Amazon States Language (JSONPath
//! query mode), with AWS-shaped execution history, a durable SQLite-backed
//! engine, and the Step Functions JSON protocol for a local API endpoint.
//!
//! The same definition file that AWS Step Functions runs is parsed and
//! executed here; Task states call in-process handlers through a
//! [`TaskInvoker`].
//!
//! ```
//! use certops_asl::{Engine, EngineOptions, NoTasks, TokioClock};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let engine = Engine::open(EngineOptions::default(), Arc::new(NoTasks), Arc::new(TokioClock::system())).unwrap();
//! let sm = engine
//!     .create_state_machine(
//!         "hello",
//!         r#"{"StartAt": "Greet", "States": {"Greet": {"Type": "Pass",
//!             "Parameters": {"greeting.$": "States.Format('Hello, {}!', $.who)"}, "End": true}}}"#,
//!         "arn:aws:iam::123456789012:role/certops-local",
//!     )
//!     .unwrap();
//! let started = engine.start_execution(&sm.arn, Some("first"), serde_json::json!({"who": "world"})).unwrap();
//! let done = engine.wait_for(&started.meta.execution_arn).await.unwrap();
//! assert_eq!(done.output.unwrap()["greeting"], "Hello, world!");
//! # });
//! ```
//!
//! # Modules
//!
//! From the lowest layer up (a module uses only those above it in this list):
//!
//! * [`path`]: JSONPath as Step Functions uses it (reference paths, the `$$`
//!   context object and `$name` variables).
//! * [`intrinsics`]: `States.*` intrinsic functions, parsed once and evaluated.
//! * `template` (private; its items are public in [`definition`]): payload
//!   templates (`Parameters`, `ResultSelector`, `ItemSelector`, `Assign`).
//! * [`choice`]: Choice rules and their evaluation.
//! * [`definition`]: the parsed, validated state machine, its parser, and
//!   `DefinitionSubstitutions`.
//! * [`history`]: history events in the shape `GetExecutionHistory` returns.
//! * [`clock`]: wall-clock time and tokio timers.
//! * [`machine`]: one execution as a pure step machine (states, tasks,
//!   Map/Parallel, data flow, retry/catch, history recording).
//! * [`store`]: the SQLite persistence of machines, executions and history.
//! * [`engine`]: the local engine that drives executions (errors, task
//!   dispatch and callbacks, scheduling and timers).
//! * [`functions`]: in-process Lambda functions as a [`TaskInvoker`].
//! * [`api`]: the Step Functions JSON protocol over the engine.
//! * [`sigv4`]: AWS Signature Version 4 verification for the local API.

pub mod api;
pub mod choice;
pub mod clock;
pub mod definition;
pub mod engine;
pub mod functions;
pub mod history;
pub mod intrinsics;
pub mod machine;
pub mod path;
pub mod sigv4;
pub mod store;
mod template;

pub use clock::{Clock, ScaledClock, TokioClock};
pub use definition::{DefinitionError, StateMachine};
pub use engine::{
    BoxFuture, Engine, EngineError, EngineErrorKind, EngineOptions, ExecutionInfo, MachineInfo,
    NoTasks, Storage, TaskInvoker, TaskRequest, DEFAULT_TRANSITIONS_PER_SLICE,
};
pub use functions::FunctionRegistry;
pub use history::{EventType, HistoryEvent};
pub use machine::{ExecutionStatus, StatesError, MAX_HISTORY_EVENTS, MAX_PAYLOAD_BYTES};

/// The role ARN given to state machines created without one.
pub const DEFAULT_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/certops-local";
