//! The parsed form of a definition: the state machine, its branches and
//! states, and each state type's own fields. Values of these types are built
//! only by [`StateMachine::parse`] (in `parse.rs`), so every index in them
//! (`Next`, `StartAt`, a catcher's target) points at an existing state; the
//! interpreter in [`crate::machine`] reads them.

use super::{Dynamic, Template};
use crate::choice::ChoiceRule;
use crate::path::Path;
use chrono::{DateTime, FixedOffset};
use serde_json::Value;

/// A whole state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    /// The top-level states.
    pub root: Branch,
    /// `TimeoutSeconds` of the whole execution.
    pub timeout_seconds: Option<u64>,
    /// `Comment`.
    pub comment: Option<String>,
}

/// A list of states with a start: the top level, a Parallel branch or a Map processor.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Index of `StartAt`.
    pub start_at: usize,
    /// The states, in definition order.
    pub states: Vec<State>,
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// Its name.
    pub name: String,
    /// The same name, shared by every history event of the state.
    pub shared_name: std::sync::Arc<str>,
    /// What kind of state it is, with the kind's own fields.
    pub kind: StateKind,
    /// `InputPath`.
    pub input_path: IoPath,
    /// `OutputPath`.
    pub output_path: IoPath,
    /// `Parameters` (or `ItemSelector` for Map).
    pub parameters: Option<Template>,
    /// `ResultSelector`.
    pub result_selector: Option<Template>,
    /// `ResultPath`.
    pub result_path: ResultPath,
    /// `Assign`.
    pub assign: Option<Template>,
    /// Where to go next.
    pub next: Transition,
    /// `Retry`.
    pub retry: Vec<Retrier>,
    /// `Catch`.
    pub catch: Vec<Catcher>,
}

/// `Next` or `End`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// Go to the state at this index.
    Next(usize),
    /// The branch ends here.
    End,
}

/// `InputPath` / `OutputPath`.
#[derive(Debug, Clone)]
pub enum IoPath {
    /// `$` (the default): everything.
    Whole,
    /// `null`: an empty object.
    Null,
    /// A path.
    At(Path),
}

/// `ResultPath`.
#[derive(Debug, Clone)]
pub enum ResultPath {
    /// `$` (the default): the result replaces the input.
    Replace,
    /// `null`: the result is discarded, the input passes through.
    Discard,
    /// A reference path inside the input.
    At(Path),
}

/// A number given literally or by a path (`TimeoutSeconds` / `TimeoutSecondsPath`).
#[derive(Debug, Clone)]
pub enum NumberSource {
    /// A literal.
    Fixed(u64),
    /// Read from the effective input.
    Path(Path),
}

/// A string given literally or computed (`Error` / `ErrorPath`).
#[derive(Debug, Clone)]
pub enum StringSource {
    /// A literal.
    Fixed(String),
    /// A path or intrinsic.
    Dynamic(Dynamic),
}

/// The kind of a state and its own fields.
#[derive(Debug, Clone)]
pub enum StateKind {
    /// `Pass`.
    Pass {
        /// `Result`.
        result: Option<Value>,
    },
    /// `Task`.
    Task(Box<TaskSpec>),
    /// `Choice`.
    Choice {
        /// `Choices`.
        choices: Vec<ChoiceRule>,
        /// `Default`.
        default: Option<usize>,
    },
    /// `Wait`.
    Wait(WaitSpec),
    /// `Succeed`.
    Succeed,
    /// `Fail`.
    Fail {
        /// `Error` / `ErrorPath`.
        error: Option<StringSource>,
        /// `Cause` / `CausePath`.
        cause: Option<StringSource>,
    },
    /// `Parallel`.
    Parallel {
        /// `Branches`.
        branches: Vec<Branch>,
    },
    /// `Map` (inline).
    Map(Box<MapSpec>),
}

/// A Task's own fields.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// `Resource` as written (after substitutions).
    pub resource: String,
    /// How the resource is reached.
    pub integration: Integration,
    /// `TimeoutSeconds` / `TimeoutSecondsPath` (default 99999999).
    pub timeout: Option<NumberSource>,
    /// `HeartbeatSeconds` / `HeartbeatSecondsPath`.
    pub heartbeat: Option<NumberSource>,
}

/// How a Task resource is invoked.
#[derive(Debug, Clone, PartialEq)]
pub enum Integration {
    /// `arn:aws:states:::lambda:invoke` — request/response.
    LambdaInvoke,
    /// `arn:aws:states:::lambda:invoke.waitForTaskToken` — callback.
    LambdaInvokeWaitForToken,
    /// A plain Lambda function ARN (or name).
    LambdaArn,
    /// Any other service integration; passed to the invoker as is.
    Other {
        /// True for a `.waitForTaskToken` suffix.
        wait_for_token: bool,
    },
}

/// A Wait state's delay.
#[derive(Debug, Clone)]
pub enum WaitSpec {
    /// `Seconds`.
    Seconds(u64),
    /// `Timestamp`.
    Timestamp(DateTime<FixedOffset>),
    /// `SecondsPath`.
    SecondsPath(Path),
    /// `TimestampPath`.
    TimestampPath(Path),
}

/// A Map state's own fields.
#[derive(Debug, Clone)]
pub struct MapSpec {
    /// `ItemsPath` (default `$`).
    pub items_path: Option<Path>,
    /// `ItemProcessor` / `Iterator`.
    pub processor: Branch,
    /// `MaxConcurrency` / `MaxConcurrencyPath` (0 = unlimited).
    pub max_concurrency: Option<NumberSource>,
    /// `ToleratedFailureCount` / `…Path`.
    pub tolerated_count: Option<NumberSource>,
    /// `ToleratedFailurePercentage` / `…Path`.
    pub tolerated_percentage: Option<NumberSource>,
}

/// One `Retry` entry.
#[derive(Debug, Clone)]
pub struct Retrier {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `IntervalSeconds` (default 1).
    pub interval_seconds: f64,
    /// `MaxAttempts` (default 3).
    pub max_attempts: u32,
    /// `BackoffRate` (default 2.0).
    pub backoff_rate: f64,
    /// `MaxDelaySeconds`.
    pub max_delay_seconds: Option<f64>,
    /// `JitterStrategy: FULL`.
    pub full_jitter: bool,
}

/// One `Catch` entry.
#[derive(Debug, Clone)]
pub struct Catcher {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `Next`, resolved.
    pub next: usize,
    /// `ResultPath` (default `$`).
    pub result_path: ResultPath,
    /// `Assign`.
    pub assign: Option<Template>,
}

impl StateMachine {
    /// Finds a branch by its address (see [`BranchAddr`]).
    pub fn branch(&self, addr: &[(usize, usize)]) -> Option<&Branch> {
        let mut b = &self.root;
        for &(state, branch) in addr {
            b = match &b.states.get(state)?.kind {
                StateKind::Parallel { branches } => branches.get(branch)?,
                StateKind::Map(m) if branch == 0 => &m.processor,
                _ => return None,
            };
        }
        Some(b)
    }
}

/// Address of a nested branch: (state index, branch index) pairs from the top level.
pub type BranchAddr = Vec<(usize, usize)>;
