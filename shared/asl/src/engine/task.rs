//! Tasks: the [`TaskInvoker`] port a host implements, the dispatch of
//! invocations outside the engine lock (a handler that is already done is
//! applied at once, the others become tokio tasks), their results, and the
//! task-token callbacks (`SendTaskSuccess`, `SendTaskFailure`,
//! `SendTaskHeartbeat`).

use super::error::EngineError;
use super::{Core, Engine};
use crate::definition::StateMachine;
use crate::machine::{Env, Execution, StatesError};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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

/// A task invocation waiting to be polled (see [`Engine::flush`]).
pub(super) struct Dispatch {
    pub(super) arn: Arc<str>,
    pub(super) frame: u32,
    pub(super) seq: u64,
    pub(super) fut: BoxFuture<Result<Value, StatesError>>,
}

impl Engine {
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

    /// Polls every queued invocation once, outside the lock: a handler that is
    /// already done (most in-process handlers) is applied at once, in a loop
    /// rather than by recursion; the others become tokio tasks. Polling
    /// outside the lock lets a handler call back into the engine.
    pub(super) fn flush(&self) {
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
    pub(super) fn with_flush<R>(&self, f: impl FnOnce() -> R) -> R {
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

    /// Live task tokens (for diagnostics and tests).
    pub fn live_tokens(&self) -> usize {
        self.lock().tokens.len()
    }
}
