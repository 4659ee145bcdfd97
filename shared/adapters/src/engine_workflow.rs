//! [`Workflow`] over the local Step Functions engine ([`certops_asl::Engine`]) and one
//! state machine.
//!
//! Starting is idempotent by execution name, as the workflow's triggers need: a name that
//! already exists with the same input answers `(arn, true)`, whether that execution is still
//! running or has finished; the same name with a different input is an [`Error::Conflict`].
//! Task tokens are never logged or put into error messages.

use async_trait::async_trait;
use certops_asl::{Engine, EngineError};
use certops_core::ports::Workflow;
use certops_core::Error;
use serde_json::Value;

/// The local engine as the workflow port.
#[derive(Clone)]
pub struct EngineWorkflow {
    engine: Engine,
    state_machine_arn: String,
}

impl std::fmt::Debug for EngineWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineWorkflow")
            .field("state_machine_arn", &self.state_machine_arn)
            .finish_non_exhaustive()
    }
}

/// Maps engine failures onto the core's errors.
fn engine_err(e: EngineError) -> Error {
    match e {
        EngineError::InvalidToken => Error::Conflict(
            "the task token is not recognised (never issued, or its task was already answered)".into(),
        ),
        EngineError::TaskTimedOut => Error::Conflict(
            "the task for this token is no longer waiting (answered, timed out or the execution ended)"
                .into(),
        ),
        EngineError::ExecutionAlreadyExists(arn) => Error::Conflict(format!(
            "execution {arn} already exists with a different input"
        )),
        EngineError::Store(m) => Error::Transient(format!("local engine store: {m}")),
        // Names, ARNs, definitions and inputs: the caller's configuration or data.
        other => {
            Error::InvalidInput(format!("local engine: {} ({})", other, other.code()))
        }
    }
}

impl EngineWorkflow {
    /// Starts executions of `state_machine_arn` on `engine`.
    pub fn new(engine: Engine, state_machine_arn: impl Into<String>) -> EngineWorkflow {
        EngineWorkflow {
            engine,
            state_machine_arn: state_machine_arn.into(),
        }
    }

    /// The engine (for history, describe, `wait_for`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The state machine executions are started on.
    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    /// The ARN an execution named `name` of this state machine has.
    pub fn execution_arn(&self, name: &str) -> Result<String, Error> {
        let machine = self
            .engine
            .describe_state_machine(&self.state_machine_arn)
            .map_err(engine_err)?;
        let opts = self.engine.options();
        Ok(format!(
            "arn:aws:states:{}:{}:execution:{}:{}",
            opts.region, opts.account, machine.name, name
        ))
    }
}

#[async_trait]
impl Workflow for EngineWorkflow {
    async fn start(&self, name: &str, input: &Value) -> Result<(String, bool), Error> {
        let arn = self.execution_arn(name)?;
        // Looked up first: the engine answers a repeated start of a running execution with
        // that execution, and does not say whether it was new.
        if let Ok(existing) = self.engine.describe_execution(&arn) {
            if existing.meta.input == *input {
                return Ok((existing.meta.execution_arn, true));
            }
            return Err(Error::Conflict(format!(
                "execution {arn} already exists with a different input"
            )));
        }
        match self
            .engine
            .start_execution(&self.state_machine_arn, Some(name), input.clone())
        {
            Ok(info) => {
                tracing::info!(execution = %info.meta.execution_arn, "execution started");
                Ok((info.meta.execution_arn, false))
            }
            // Lost a race with another start of the same name: same rule as above.
            Err(EngineError::ExecutionAlreadyExists(arn)) => {
                match self.engine.describe_execution(&arn) {
                    Ok(existing) if existing.meta.input == *input => Ok((arn, true)),
                    _ => Err(engine_err(EngineError::ExecutionAlreadyExists(arn))),
                }
            }
            Err(e) => Err(engine_err(e)),
        }
    }

    async fn send_success(&self, task_token: &str, output: &Value) -> Result<(), Error> {
        self.engine
            .send_task_success(task_token, output.clone())
            .map_err(engine_err)
    }

    async fn send_failure(&self, task_token: &str, error: &str, cause: &str) -> Result<(), Error> {
        self.engine
            .send_task_failure(task_token, Some(error.to_string()), Some(cause.to_string()))
            .map_err(engine_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certops_asl::{
        BoxFuture, EngineOptions, ExecutionStatus, StatesError, TaskInvoker, TaskRequest,
        TokioClock,
    };
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// Answers every task at once and keeps the task tokens, like the approval step does.
    #[derive(Default)]
    struct TokenSink {
        tokens: Arc<Mutex<Vec<String>>>,
    }

    impl TaskInvoker for TokenSink {
        fn invoke(&self, request: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
            let tokens = self.tokens.clone();
            Box::pin(async move {
                if let Some(t) = request.task_token {
                    tokens.lock().unwrap().push(t);
                }
                Ok(json!({}))
            })
        }
    }

    const DEFINITION: &str = r#"{
        "StartAt": "AwaitApproval",
        "States": {
            "AwaitApproval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "request-approval", "Payload": {"token.$": "$$.Task.Token"}},
                "ResultPath": "$.decision",
                "End": true
            }
        }
    }"#;

    async fn workflow() -> (EngineWorkflow, Arc<Mutex<Vec<String>>>) {
        let sink = TokenSink::default();
        let tokens = sink.tokens.clone();
        let engine = Engine::open(
            EngineOptions::default(),
            Arc::new(sink),
            Arc::new(TokioClock::system()),
        )
        .unwrap();
        let sm = engine
            .create_state_machine("cert-renewal", DEFINITION, certops_asl::DEFAULT_ROLE_ARN)
            .unwrap();
        (EngineWorkflow::new(engine, sm.arn), tokens)
    }

    async fn token(tokens: &Arc<Mutex<Vec<String>>>, n: usize) -> String {
        for _ in 0..200 {
            if let Some(t) = tokens.lock().unwrap().get(n) {
                return t.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("no task token {n} was issued");
    }

    #[tokio::test]
    async fn start_is_idempotent_by_name_and_input() {
        let (wf, tokens) = workflow().await;
        let input = json!({"trigger": "scan:shop:2026-12-01"});
        let (arn, existed) = wf.start("scan-shop-2026-12-01", &input).await.unwrap();
        assert!(!existed);
        assert!(
            arn.ends_with(":execution:cert-renewal:scan-shop-2026-12-01"),
            "{arn}"
        );
        let (again, existed) = wf.start("scan-shop-2026-12-01", &input).await.unwrap();
        assert_eq!((again.as_str(), existed), (arn.as_str(), true));
        let err = wf
            .start("scan-shop-2026-12-01", &json!({"other": 1}))
            .await
            .unwrap_err();
        assert_eq!(err.name(), "Conflict");
        // Still idempotent after the execution has finished.
        let t = token(&tokens, 0).await;
        wf.send_success(&t, &json!({"approved": true}))
            .await
            .unwrap();
        let done = wf.engine().wait_for(&arn).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        assert_eq!(
            wf.start("scan-shop-2026-12-01", &input).await.unwrap(),
            (arn, true)
        );
        assert_eq!(wf.engine().list_executions(None).len(), 1);
        assert_eq!(
            wf.start("bad name!", &input).await.unwrap_err().name(),
            "InvalidInput"
        );
    }

    #[tokio::test]
    async fn callbacks_complete_tasks_and_stale_tokens_are_conflicts() {
        let (wf, tokens) = workflow().await;
        let (ok_arn, _) = wf.start("a", &json!({})).await.unwrap();
        let (fail_arn, _) = wf.start("b", &json!({})).await.unwrap();
        let ok_token = token(&tokens, 0).await;
        let fail_token = token(&tokens, 1).await;
        wf.send_success(&ok_token, &json!({"approver": "dana"}))
            .await
            .unwrap();
        wf.send_failure(&fail_token, "ApprovalRejected", "not today")
            .await
            .unwrap();
        let ok = wf.engine().wait_for(&ok_arn).await.unwrap();
        assert_eq!(ok.output.unwrap()["decision"]["approver"], "dana");
        let failed = wf.engine().wait_for(&fail_arn).await.unwrap();
        assert_eq!(failed.status, ExecutionStatus::Failed);
        assert_eq!(failed.error.as_deref(), Some("ApprovalRejected"));

        let reused = wf.send_success(&ok_token, &json!({})).await.unwrap_err();
        assert_eq!(reused.name(), "Conflict");
        assert!(!reused.to_string().contains(&ok_token));
        let unknown = wf.send_failure("never-issued", "X", "y").await.unwrap_err();
        assert_eq!(unknown.name(), "Conflict");
        assert!(unknown.to_string().contains("not recognised"), "{unknown}");
    }

    #[tokio::test]
    async fn an_unknown_state_machine_is_invalid_input() {
        let (wf, _) = workflow().await;
        let other = EngineWorkflow::new(
            wf.engine().clone(),
            "arn:aws:states:us-east-1:123456789012:stateMachine:nope",
        );
        assert_eq!(
            other.start("x", &json!({})).await.unwrap_err().name(),
            "InvalidInput"
        );
    }
}
