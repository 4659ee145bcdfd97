//! The [`Workflow`] port over AWS Step Functions (`aws-sdk-sfn`): the same
//! client drives AWS or `certops serve` (set `AWS_ENDPOINT_URL`).

use async_trait::async_trait;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use certops_core::ports::Workflow;
use certops_core::Error;
use serde_json::Value;

/// Step Functions workflow adapter.
pub struct SfnWorkflow {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl SfnWorkflow {
    /// An adapter for one state machine.
    pub fn new(client: aws_sdk_sfn::Client, state_machine_arn: String) -> SfnWorkflow {
        SfnWorkflow {
            client,
            state_machine_arn,
        }
    }
}

fn map<E: ProvideErrorMetadata + std::fmt::Debug>(e: aws_sdk_sfn::error::SdkError<E>) -> Error {
    let code = e.code().unwrap_or("").to_string();
    let msg = e.message().unwrap_or("").to_string();
    match code.as_str() {
        "InvalidToken" | "TaskDoesNotExist" | "TaskTimedOut" | "ExecutionAlreadyExists" => {
            Error::Conflict(format!("{code}: {msg}"))
        }
        "" => Error::Transient(format!("Step Functions unreachable: {e:?}")),
        "ThrottlingException" | "ServiceUnavailable" | "InternalFailure" => {
            Error::Transient(format!("{code}: {msg}"))
        }
        _ => Error::InvalidInput(format!("{code}: {msg}")),
    }
}

#[async_trait]
impl Workflow for SfnWorkflow {
    async fn start(&self, name: &str, input: &Value) -> Result<(String, bool), Error> {
        let arn = self
            .state_machine_arn
            .replacen(":stateMachine:", ":execution:", 1)
            + ":"
            + name;
        // Idempotent by name: an existing execution of this trigger is the answer.
        if self
            .client
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .is_ok()
        {
            return Ok((arn, true));
        }
        let out = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .map_err(map)?;
        Ok((out.execution_arn().to_string(), false))
    }

    async fn send_success(&self, task_token: &str, output: &Value) -> Result<(), Error> {
        self.client
            .send_task_success()
            .task_token(task_token)
            .output(output.to_string())
            .send()
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn send_failure(&self, task_token: &str, error: &str, cause: &str) -> Result<(), Error> {
        self.client
            .send_task_failure()
            .task_token(task_token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map_err(map)?;
        Ok(())
    }
}
