//! The one error type of the domain core, with stable names for Step Functions.
//!
//! Step Functions routes Lambda failures by the `errorType` string (`Retry`/`Catch`
//! `ErrorEquals`). [`Error::name`] is that string; it never changes once published, so the
//! state machine definition can depend on it. The human message ([`std::fmt::Display`]) may
//! change freely and must never carry key material.

/// Everything that can go wrong in certops, one variant per routable outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A temporary failure (network blip, throttling by a dependency); retrying may succeed.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The issuer refused because a rate limit was hit; take the fallback path.
    #[error("rate limited by issuer: {0}")]
    RateLimited(String),
    /// The issuer is unreachable or failing; take the fallback path.
    #[error("issuer unavailable: {0}")]
    IssuerDown(String),
    /// Deterministic validation did not pass.
    #[error("validation failed: {0}")]
    ValidationFailed(String),
    /// Validation decided the change must not run; the reasons are listed.
    #[error("blocked: {}", .reasons.join("; "))]
    Blocked {
        /// One human reason per failed check.
        reasons: Vec<String>,
    },
    /// An authorised approver rejected the change.
    #[error("approval rejected by {approver}{}", .comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    ApprovalRejected {
        /// Who rejected.
        approver: String,
        /// The approver's comment, if any.
        comment: Option<String>,
    },
    /// The approval (or the wait for it) passed its time-out.
    #[error("approval expired at {expired_at}")]
    ApprovalExpired {
        /// When the approval stopped being valid (RFC 3339).
        expired_at: String,
    },
    /// The approver is the requester; separation of duties forbids it.
    #[error("self-approval refused: {identity} requested this change")]
    SelfApproval {
        /// The identity that tried to approve its own request.
        identity: String,
    },
    /// The approver does not belong to the group allowed to approve this change.
    #[error("{approver} is not in the change authority for {cert_id}")]
    NotInChangeAuthority {
        /// Who tried to approve.
        approver: String,
        /// The certificate object the change is for.
        cert_id: String,
    },
    /// The plan being executed is not the plan that was approved.
    #[error("plan drift: approved plan hash {expected}, current plan hash {actual}")]
    PlanDrift {
        /// The approved plan hash.
        expected: String,
        /// The hash of the plan as it is now.
        actual: String,
    },
    /// Installing the certificate on a termination point or reloading it failed.
    #[error("deploy failed: {0}")]
    DeployFailed(String),
    /// The CDN purge / invalidation failed.
    #[error("CDN purge failed: {0}")]
    PurgeFailed(String),
    /// An endpoint serves a wrong certificate, expiry or chain after deploy.
    #[error("verification failed: {0}")]
    VerificationFailed(String),
    /// The new certificate is not served yet (propagation); retrying may succeed.
    #[error("not yet served: {0}")]
    NotYetServed(String),
    /// Restoring the last-known-good certificate failed; humans must act.
    #[error("rollback failed: {0}")]
    RollbackFailed(String),
    /// Input could not be parsed or is inconsistent; the message names the entry and field.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An inbound message without a valid credential: a missing, malformed, wrong or stale
    /// signature. Nothing it asked for was done.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// certops' own configuration is missing or invalid (environment, configuration files,
    /// key files, secrets' format): an operator must fix it; a retry changes nothing.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
    /// Stored state that does not parse or lacks what every writer puts there: written by
    /// something else, or damaged. A retry changes nothing; the record needs a look.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// A conflicting operation exists (duplicate trigger, renewal already running, used approval).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The audit hash chain is broken at `seq`.
    #[error("audit chain broken at seq {seq}: {reason}")]
    ChainBreak {
        /// The first record whose link does not hold.
        seq: u64,
        /// What does not hold.
        reason: String,
    },
    /// An executing step found no approval in the Store that authorises this plan for this
    /// execution (missing, pending, granted by no authorised approver, or spent elsewhere).
    #[error("not approved: {0}")]
    ApprovalMissing(String),
    /// Something that looks like a private key or secret token was about to be recorded.
    #[error("secret material refused at {location}")]
    SecretMaterial {
        /// Where it was found (a JSON path such as `summary.response.body`); never the value.
        location: String,
    },
    /// A dependency refused the credentials or the caller's rights (HTTP 401/403);
    /// retrying will not help until someone fixes the account or its roles.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// A record the step works on no longer exists at the dependency (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The issuer refused or failed the request, or what it issued fails a guardrail (key,
    /// names, chain, validity); nothing is deployed. The message carries the reason (for ACME,
    /// the problem's type and detail).
    #[error("issuance failed: {0}")]
    IssuanceFailed(String),
}

impl Error {
    /// The stable error name Step Functions matches in `ErrorEquals`.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Transient(_) => "Transient",
            Error::RateLimited(_) => "RateLimited",
            Error::IssuerDown(_) => "IssuerDown",
            Error::ValidationFailed(_) => "ValidationFailed",
            Error::Blocked { .. } => "Blocked",
            Error::ApprovalRejected { .. } => "ApprovalRejected",
            Error::ApprovalExpired { .. } => "ApprovalExpired",
            Error::SelfApproval { .. } => "SelfApproval",
            Error::NotInChangeAuthority { .. } => "NotInChangeAuthority",
            Error::PlanDrift { .. } => "PlanDrift",
            Error::DeployFailed(_) => "DeployFailed",
            Error::PurgeFailed(_) => "PurgeFailed",
            Error::VerificationFailed(_) => "VerificationFailed",
            Error::NotYetServed(_) => "NotYetServed",
            Error::RollbackFailed(_) => "RollbackFailed",
            Error::InvalidInput(_) => "InvalidInput",
            Error::Unauthorized(_) => "Unauthorized",
            Error::Misconfigured(_) => "Misconfigured",
            Error::Corrupt(_) => "Corrupt",
            Error::Conflict(_) => "Conflict",
            Error::ChainBreak { .. } => "ChainBreak",
            Error::SecretMaterial { .. } => "SecretMaterial",
            Error::AccessDenied(_) => "AccessDenied",
            Error::NotFound(_) => "NotFound",
            Error::IssuanceFailed(_) => "IssuanceFailed",

            Error::ApprovalMissing(_) => "ApprovalMissing",
        }
    }

    /// Whether Step Functions should retry this error in place (with backoff).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transient(_) | Error::NotYetServed(_))
    }

    /// The HTTP status an HTTP edge (the webhook, the approval callback, the console)
    /// answers this refusal with: the caller's fault is 4xx, certops' own is 5xx.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Unauthorized(_) => 401,
            Error::SelfApproval { .. } | Error::NotInChangeAuthority { .. } => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) | Error::ApprovalExpired { .. } | Error::PlanDrift { .. } => 409,
            e if e.is_retryable() => 503,
            // certops' own configuration or stored state.
            Error::Misconfigured(_) | Error::Corrupt(_) => 500,
            // A system certops reads from refused certops' credentials.
            Error::AccessDenied(_) => 502,
            _ => 400,
        }
    }
}

/// Every stable error name, for checking a state machine definition against the code.
pub const ERROR_NAMES: &[&str] = &[
    "Transient",
    "RateLimited",
    "IssuerDown",
    "ValidationFailed",
    "Blocked",
    "ApprovalRejected",
    "ApprovalExpired",
    "SelfApproval",
    "NotInChangeAuthority",
    "PlanDrift",
    "DeployFailed",
    "PurgeFailed",
    "VerificationFailed",
    "NotYetServed",
    "RollbackFailed",
    "InvalidInput",
    "Unauthorized",
    "Misconfigured",
    "Corrupt",
    "Conflict",
    "ChainBreak",
    "SecretMaterial",
    "AccessDenied",
    "NotFound",
    "IssuanceFailed",
    "ApprovalMissing",
];

#[cfg(feature = "lambda")]
impl From<Error> for lambda_runtime::Diagnostic {
    fn from(error: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.name().to_string(),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn http_statuses_are_chosen_by_variant() {
        let cases = [
            (Error::Unauthorized("stale".into()), 401),
            (
                Error::SelfApproval {
                    identity: "sam".into(),
                },
                403,
            ),
            (Error::NotFound("INC1".into()), 404),
            (Error::Conflict("spent".into()), 409),
            (Error::Transient("down".into()), 503),
            (Error::Misconfigured("no key".into()), 500),
            (Error::Corrupt("unreadable".into()), 500),
            (Error::AccessDenied("401 from ServiceNow".into()), 502),
            (Error::InvalidInput("no approver".into()), 400),
        ];
        for (e, status) in cases {
            assert_eq!(e.http_status(), status, "{e}");
        }
    }

    use super::*;

    fn one_of_each() -> Vec<Error> {
        let s = || "x".to_string();
        vec![
            Error::Transient(s()),
            Error::RateLimited(s()),
            Error::IssuerDown(s()),
            Error::ValidationFailed(s()),
            Error::Blocked { reasons: vec![s()] },
            Error::ApprovalRejected {
                approver: s(),
                comment: None,
            },
            Error::ApprovalExpired { expired_at: s() },
            Error::SelfApproval { identity: s() },
            Error::NotInChangeAuthority {
                approver: s(),
                cert_id: s(),
            },
            Error::PlanDrift {
                expected: s(),
                actual: s(),
            },
            Error::DeployFailed(s()),
            Error::PurgeFailed(s()),
            Error::VerificationFailed(s()),
            Error::NotYetServed(s()),
            Error::RollbackFailed(s()),
            Error::InvalidInput(s()),
            Error::Unauthorized(s()),
            Error::Misconfigured(s()),
            Error::Corrupt(s()),
            Error::Conflict(s()),
            Error::ChainBreak {
                seq: 3,
                reason: s(),
            },
            Error::SecretMaterial { location: s() },
            Error::AccessDenied(s()),
            Error::NotFound(s()),
            Error::IssuanceFailed(s()),
            Error::ApprovalMissing(s()),
        ]
    }

    #[test]
    fn every_variant_has_a_distinct_stable_name_listed_in_error_names() {
        let names: Vec<&str> = one_of_each().iter().map(Error::name).collect();
        assert_eq!(names, ERROR_NAMES);
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn names_are_the_variant_names_step_functions_matches() {
        assert_eq!(Error::RateLimited("le".into()).name(), "RateLimited");
        assert_eq!(
            Error::PlanDrift {
                expected: "a".into(),
                actual: "b".into()
            }
            .name(),
            "PlanDrift"
        );
    }

    #[test]
    fn messages_say_what_happened() {
        let e = Error::Blocked {
            reasons: vec!["unknown CI".into(), "outside window".into()],
        };
        assert_eq!(e.to_string(), "blocked: unknown CI; outside window");
        let e = Error::ApprovalRejected {
            approver: "bob".into(),
            comment: Some("not today".into()),
        };
        assert_eq!(e.to_string(), "approval rejected by bob: not today");
    }

    #[test]
    fn only_transient_and_propagation_errors_are_retryable() {
        let retryable: Vec<&str> = one_of_each()
            .iter()
            .filter(|e| e.is_retryable())
            .map(Error::name)
            .collect();
        assert_eq!(retryable, ["Transient", "NotYetServed"]);
    }

    #[cfg(feature = "lambda")]
    #[test]
    fn lambda_diagnostic_carries_the_stable_name_and_message() {
        for error in one_of_each() {
            let name = error.name();
            let message = error.to_string();
            let diagnostic = lambda_runtime::Diagnostic::from(error);
            assert_eq!(diagnostic.error_type, name);
            assert_eq!(diagnostic.error_message, message);
        }
        let d: lambda_runtime::Diagnostic = Error::RateLimited("429 from ACME".into()).into();
        assert_eq!(d.error_type, "RateLimited");
        assert_eq!(d.error_message, "rate limited by issuer: 429 from ACME");
    }
}
