//! One classification of AWS SDK failures for every adapter of this crate: which failures a
//! retry may cure ([`TRANSIENT_CODES`], HTTP 429 and 5xx, network trouble and time-outs: the
//! core's [`Error::Transient`], which Step Functions retries) and which it cannot (anything
//! else). A service message is kept only when it does not look like it carries secret
//! material; request content is never included.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use certops_core::Error;

/// What went wrong with one AWS call, in words safe to log (the service's error code and
/// message, or the transport failure; never request content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SdkFailure {
    /// The service's error code, if it answered.
    pub code: Option<String>,
    /// Whether retrying may succeed (throttling, 5xx, network, time-out).
    pub transient: bool,
    /// `code: message`, or the transport failure.
    pub detail: String,
}

/// Classifies an SDK failure (any AWS service: the SDK crates share one error type).
pub(crate) fn sdk_failure<E>(e: &SdkError<E>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SdkFailure {
                code: None,
                transient: true,
                detail: format!(
                    "AWS unreachable: {}",
                    aws_sdk_sfn::error::DisplayErrorContext(e)
                ),
            }
        }
        SdkError::ConstructionFailure(_) => SdkFailure {
            code: None,
            transient: false,
            detail: format!(
                "request not built: {}",
                aws_sdk_sfn::error::DisplayErrorContext(e)
            ),
        },
        _ => {
            let code = e.code().map(str::to_string);
            let status = e.raw_response().map(|r| r.status().as_u16());
            let transient = code
                .as_deref()
                .is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || status.is_some_and(|s| s == 429 || s >= 500);
            SdkFailure {
                detail: format!(
                    "{}{}",
                    code.as_deref().unwrap_or("unknown error"),
                    safe_message(e.message())
                ),
                code,
                transient,
            }
        }
    }
}

impl SdkFailure {
    /// Whether the service answered with `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// Service error codes that mean "try again later" in the APIs this crate calls (DynamoDB,
/// SQS, Step Functions, Secrets Manager, ACM, ELBv2, CloudFront and the SDK's shared
/// vocabulary); besides these, HTTP 429 and 5xx are transient.
pub(crate) const TRANSIENT_CODES: &[&str] = &[
    "TooManyRequestsException",
    "TooManyRequests",
    "ServiceUnavailableException",
    "InternalServiceError",
    "InternalServiceErrorException",
    "ServiceQuotaExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "TransactionConflictException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "SlowDown",
    "KmsThrottled",
    "KMS.ThrottlingException",
    "OverLimit",
];

/// Maps an SDK failure of `op` on `target` onto the core's errors: network, timeouts,
/// throttling and 5xx are [`Error::Transient`] (Step Functions retries them); anything else
/// (missing table or queue, access denied, validation) is [`Error::InvalidInput`], which
/// retrying will not fix. The service's message is kept unless it looks like it carries
/// secret material; request content is never included.
pub(crate) fn sdk_error<E>(op: &str, target: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => Error::Transient(format!("{op} on {target} timed out")),
        SdkError::DispatchFailure(d) => Error::Transient(format!(
            "{op} on {target} could not be sent ({})",
            if d.is_timeout() {
                "timeout"
            } else if d.is_io() {
                "connection error"
            } else {
                "dispatch failure"
            }
        )),
        SdkError::ResponseError(r) => Error::Transient(format!(
            "{op} on {target}: unreadable response (HTTP {})",
            r.raw().status().as_u16()
        )),
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("unknown");
            let message = safe_message(s.err().message());
            let text = format!("{op} on {target}: {code} (HTTP {status}){message}");
            if status == 429 || status >= 500 || TRANSIENT_CODES.contains(&code) {
                Error::Transient(text)
            } else {
                Error::InvalidInput(text)
            }
        }
        _ => Error::InvalidInput(format!("{op} on {target}: request could not be built")),
    }
}

/// `": <message>"`, shortened, or nothing when absent or when it looks like it carries a
/// secret.
fn safe_message(message: Option<&str>) -> String {
    match message {
        None => String::new(),
        Some(m) if certops_core::audit::find_secret(m).is_some() => {
            ": (message withheld: it looks like it carries secret material)".into()
        }
        Some(m) => {
            let short: String = m.chars().take(300).collect();
            format!(": {short}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_messages_that_look_secret_are_withheld() {
        let key = format!("-----BEGIN {}-----", ["PRIVATE", "KEY"].join(" "));
        assert!(safe_message(Some(&key)).contains("withheld"));
        assert_eq!(
            safe_message(Some("Requested resource not found")),
            ": Requested resource not found"
        );
        assert_eq!(safe_message(None), "");
    }

    #[test]
    fn one_list_of_transient_codes_covers_every_service() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "TooManyRequestsException",
            "ServiceQuotaExceededException",
            "InternalFailure",
        ] {
            assert!(TRANSIENT_CODES.contains(&code), "{code}");
        }
        assert!(!TRANSIENT_CODES.contains(&"AccessDeniedException"));
    }
}
