//! Errors of the engine's operations, each with the AWS error name
//! (`__type`) the local Step Functions API answers with.

use crate::store::StoreError;

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
