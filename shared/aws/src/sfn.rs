//! The [`Workflow`] port over AWS Step Functions (`aws-sdk-sfn`). The same client drives
//! AWS, `certops serve` (the local Step Functions endpoint) or an emulator: only the
//! endpoint in the `SdkConfig` changes.
//!
//! Starting is idempotent by execution name, as the port asks: the name is the trigger's
//! idempotency key, so a repeated trigger finds its execution instead of starting a second
//! one. Step Functions itself answers a repeated `StartExecution` with the same name and
//! input only while the execution runs (and does not say it was a repeat); this adapter
//! looks the name up first, so the answer is `(arn, true)` whether the execution is still
//! running or has finished, exactly as the embedded engine answers. The same name with a
//! different input is an [`Error::Conflict`].
//!
//! Task tokens are never logged or put into error messages.

use async_trait::async_trait;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::HistoryEvent;
use certops_core::ports::Workflow;
use certops_core::Error;
use serde_json::Value;

pub use aws_sdk_sfn;

/// Step Functions workflow adapter for one state machine.
#[derive(Debug, Clone)]
pub struct SfnWorkflow {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl SfnWorkflow {
    /// An adapter starting executions of `state_machine_arn` (a state machine, version or
    /// alias ARN).
    pub fn new(client: aws_sdk_sfn::Client, state_machine_arn: impl Into<String>) -> SfnWorkflow {
        SfnWorkflow {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }

    /// An adapter over `sdk` for the state machine in `CERTOPS_STATE_MACHINE_ARN`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<SfnWorkflow, Error> {
        let arn = std::env::var("CERTOPS_STATE_MACHINE_ARN")
            .map_err(|_| Error::InvalidInput("CERTOPS_STATE_MACHINE_ARN is not set".to_string()))?;
        Ok(SfnWorkflow::new(aws_sdk_sfn::Client::new(sdk), arn))
    }

    /// The Step Functions client.
    pub fn client(&self) -> &aws_sdk_sfn::Client {
        &self.client
    }

    /// The state machine executions are started on.
    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    /// The ARN an execution named `name` gets. Executions started through a version or an
    /// alias belong to the state machine itself, so the qualifier is dropped:
    /// `arn:aws:states:r:a:stateMachine:m[:qualifier]` → `arn:aws:states:r:a:execution:m:name`.
    pub fn execution_arn(&self, name: &str) -> Result<String, Error> {
        let parts: Vec<&str> = self.state_machine_arn.split(':').collect();
        if parts.len() < 7 || parts[0] != "arn" || parts[5] != "stateMachine" {
            return Err(Error::InvalidInput(format!(
                "\"{}\" is not a Step Functions state machine ARN",
                self.state_machine_arn
            )));
        }
        Ok(format!(
            "{}:execution:{}:{name}",
            parts[..5].join(":"),
            parts[6]
        ))
    }

    /// An execution's full history, oldest first (every page), for tests and SREs.
    pub async fn history(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>, Error> {
        self.client
            .get_execution_history()
            .execution_arn(execution_arn)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(map)
    }

    /// `Some(existing)` if an execution named like `arn` exists with this input; a
    /// conflict if it exists with another input.
    async fn existing(&self, arn: &str, input: &Value) -> Result<Option<String>, Error> {
        match self
            .client
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
        {
            Ok(found) => {
                let same = found
                    .input()
                    .and_then(|text| serde_json::from_str::<Value>(text).ok())
                    .is_some_and(|existing| existing == *input);
                if same {
                    Ok(Some(found.execution_arn().to_string()))
                } else {
                    Err(Error::Conflict(format!(
                        "execution {arn} already exists with a different input"
                    )))
                }
            }
            Err(e) if e.code() == Some("ExecutionDoesNotExist") => Ok(None),
            Err(e) => Err(map(e)),
        }
    }
}

/// Maps a Step Functions failure onto the core's errors: token and name clashes are
/// conflicts (the callback was already answered, or the name is taken), throttling and
/// network trouble are transient, everything else is the caller's input or configuration.
fn map<E: ProvideErrorMetadata + std::error::Error + 'static>(e: SdkError<E>) -> Error {
    let detail = |e: &SdkError<E>| {
        format!(
            "{}: {}",
            e.code().unwrap_or("unknown"),
            e.message().unwrap_or("no message")
        )
    };
    match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Transient(format!(
                "Step Functions unreachable: {}",
                aws_sdk_sfn::error::DisplayErrorContext(&e)
            ))
        }
        SdkError::ConstructionFailure(_) => Error::InvalidInput(format!(
            "Step Functions request not built: {}",
            aws_sdk_sfn::error::DisplayErrorContext(&e)
        )),
        _ => match e.code() {
            Some("InvalidToken") => Error::Conflict(
                "the task token is not recognised (never issued, or its task was already answered)"
                    .to_string(),
            ),
            Some("TaskDoesNotExist") | Some("TaskTimedOut") => Error::Conflict(
                "the task for this token is no longer waiting (answered, timed out or the execution ended)"
                    .to_string(),
            ),
            Some("ExecutionAlreadyExists") => Error::Conflict(detail(&e)),
            Some(code) if crate::sdk_error::TRANSIENT_CODES.contains(&code) => {
                Error::Transient(detail(&e))
            }
            _ if e.raw_response().is_some_and(|r| r.status().is_server_error()) => {
                Error::Transient(detail(&e))
            }
            _ => Error::InvalidInput(detail(&e)),
        },
    }
}

#[async_trait]
impl Workflow for SfnWorkflow {
    async fn start(&self, name: &str, input: &Value) -> Result<(String, bool), Error> {
        let arn = self.execution_arn(name)?;
        if let Some(existing) = self.existing(&arn, input).await? {
            return Ok((existing, true));
        }
        match self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
        {
            Ok(out) => {
                tracing::info!(execution = %out.execution_arn(), "execution started");
                Ok((out.execution_arn().to_string(), false))
            }
            // Lost a race with another start of the same name (or it finished in between):
            // the same rule as above decides.
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => {
                match self.existing(&arn, input).await? {
                    Some(existing) => Ok((existing, true)),
                    None => Err(map(e)),
                }
            }
            Err(e) => Err(map(e)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(arn: &str) -> SfnWorkflow {
        let conf = aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("us-east-1"))
            .build();
        SfnWorkflow::new(aws_sdk_sfn::Client::from_conf(conf), arn)
    }

    #[test]
    fn execution_arns_drop_the_version_or_alias_qualifier() {
        let base = "arn:aws:states:eu-west-1:123456789012:stateMachine:cert-renewal";
        for arn in [
            base.to_string(),
            format!("{base}:live"),
            format!("{base}:7"),
        ] {
            assert_eq!(
                workflow(&arn).execution_arn("scan-shop").unwrap(),
                "arn:aws:states:eu-west-1:123456789012:execution:cert-renewal:scan-shop"
            );
        }
        for bad in ["", "cert-renewal", "arn:aws:lambda:eu-west-1:1:function:f"] {
            assert_eq!(
                workflow(bad).execution_arn("x").unwrap_err().name(),
                "InvalidInput"
            );
        }
    }
}
