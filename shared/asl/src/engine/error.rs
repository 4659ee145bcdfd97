//! Errors of the engine's operations: [`EngineError`] names the failure as
//! AWS does ([`EngineError::code`] is the `__type` the local Step Functions
//! API answers with), and [`EngineError::kind`] sorts it into the few
//! [`EngineErrorKind`]s a caller branches on.

use crate::store::StoreError;

/// Engine operations fail with AWS's error names.
///
/// New variants may be added as the engine grows (the enum is
/// `#[non_exhaustive]`): a caller that needs to decide what to do matches on
/// [`EngineError::kind`], and keeps the variant for its message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
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

/// The class of an [`EngineError`], for callers that decide what to do about
/// it (report the caller's mistake, treat it as a conflict, retry later)
/// without listing every variant. New kinds may be added (`#[non_exhaustive]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EngineErrorKind {
    /// The state machine definition was refused
    /// ([`EngineError::InvalidDefinition`]).
    InvalidDefinition,
    /// A name, ARN, execution input, task output or request field is
    /// malformed or too large: the request cannot succeed as sent.
    InvalidInput,
    /// The state machine or execution named does not exist.
    NotFound,
    /// The request contradicts the engine's current state: the name belongs
    /// to a different state machine or execution, or the task token does not
    /// identify a waiting task (never issued, already answered, timed out, or
    /// its execution ended: a token is forgotten once its task stops waiting,
    /// so these look alike).
    Conflict,
    /// The state database failed; the same request may succeed later.
    StoreFailure,
}

impl EngineError {
    /// The class of this error (see [`EngineErrorKind`]).
    pub fn kind(&self) -> EngineErrorKind {
        match self {
            EngineError::InvalidDefinition(_) => EngineErrorKind::InvalidDefinition,
            EngineError::InvalidName(_)
            | EngineError::InvalidArn(_)
            | EngineError::InvalidExecutionInput(_)
            | EngineError::InvalidOutput(_)
            | EngineError::Validation(_) => EngineErrorKind::InvalidInput,
            EngineError::StateMachineDoesNotExist(_) | EngineError::ExecutionDoesNotExist(_) => {
                EngineErrorKind::NotFound
            }
            EngineError::StateMachineAlreadyExists(_)
            | EngineError::ExecutionAlreadyExists(_)
            | EngineError::InvalidToken
            | EngineError::TaskTimedOut => EngineErrorKind::Conflict,
            EngineError::Store(_) => EngineErrorKind::StoreFailure,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> String {
        "x".to_string()
    }

    #[test]
    fn every_variant_has_the_kind_its_meaning_gives() {
        let cases = [
            (
                EngineError::InvalidDefinition(s()),
                EngineErrorKind::InvalidDefinition,
            ),
            (EngineError::InvalidName(s()), EngineErrorKind::InvalidInput),
            (EngineError::InvalidArn(s()), EngineErrorKind::InvalidInput),
            (
                EngineError::InvalidExecutionInput(s()),
                EngineErrorKind::InvalidInput,
            ),
            (
                EngineError::InvalidOutput(s()),
                EngineErrorKind::InvalidInput,
            ),
            (EngineError::Validation(s()), EngineErrorKind::InvalidInput),
            (
                EngineError::StateMachineDoesNotExist(s()),
                EngineErrorKind::NotFound,
            ),
            (
                EngineError::ExecutionDoesNotExist(s()),
                EngineErrorKind::NotFound,
            ),
            (
                EngineError::StateMachineAlreadyExists(s()),
                EngineErrorKind::Conflict,
            ),
            (
                EngineError::ExecutionAlreadyExists(s()),
                EngineErrorKind::Conflict,
            ),
            (EngineError::InvalidToken, EngineErrorKind::Conflict),
            (EngineError::TaskTimedOut, EngineErrorKind::Conflict),
            (EngineError::Store(s()), EngineErrorKind::StoreFailure),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e:?}");
        }
    }

    #[test]
    fn the_kind_leaves_the_aws_code_alone() {
        assert_eq!(EngineError::Validation(s()).code(), "ValidationException");
        assert_eq!(EngineError::Store(s()).code(), "InternalFailure");
        assert_eq!(EngineError::InvalidToken.code(), "InvalidToken");
    }

    #[test]
    fn a_store_failure_converts_to_the_store_failure_kind() {
        let decode = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = EngineError::from(StoreError::Decode(decode));
        assert_eq!(e.kind(), EngineErrorKind::StoreFailure);
        assert_eq!(e.code(), "InternalFailure");
    }
}
