//! [`AwsTargets`]: the one [`DeployTarget`] the AWS backend hands to the workflow. It
//! dispatches on [`Target::kind`]: ACM certificates to [`AcmTarget`], ELBv2 listeners to
//! [`ElbTarget`]; every other kind (nginx, HAProxy, generic REST, the embedded runtime's
//! local endpoints) is a [`Error::DeployFailed`] naming the kind, so a wrong inventory
//! entry stops at the first deploy instead of being guessed at.
//!
//! Also here: the AWS backend's single rule for which SDK failures are transient, shared
//! by every adapter of this crate that maps SDK errors.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use certops_core::ports::{DeployTarget, Keystore};
use certops_core::{Error, Target, TargetKind};

use crate::acm::AcmTarget;
use crate::elb::ElbTarget;

/// Deploy targets on AWS, by kind.
#[derive(Debug, Clone)]
pub struct AwsTargets {
    acm: AcmTarget,
    elb: ElbTarget,
}

impl AwsTargets {
    /// Both AWS target adapters over one SDK configuration, loading bundles from `keystore`.
    pub fn new(sdk: &aws_config::SdkConfig, keystore: Arc<dyn Keystore>) -> AwsTargets {
        AwsTargets::from_parts(
            AcmTarget::new(aws_sdk_acm::Client::new(sdk), keystore.clone()),
            ElbTarget::new(
                aws_sdk_acm::Client::new(sdk),
                aws_sdk_elasticloadbalancingv2::Client::new(sdk),
                keystore,
            ),
        )
    }

    /// From adapters built elsewhere.
    pub fn from_parts(acm: AcmTarget, elb: ElbTarget) -> AwsTargets {
        AwsTargets { acm, elb }
    }

    fn pick(&self, target: &Target) -> Result<&dyn DeployTarget, Error> {
        match target.kind {
            TargetKind::Acm => Ok(&self.acm),
            TargetKind::LoadBalancer => Ok(&self.elb),
            other => Err(Error::DeployFailed(format!(
                "target kind {other:?} is not deployable from the AWS backend \
                 (only acm and load-balancer are); target {}",
                target.id
            ))),
        }
    }
}

#[async_trait]
impl DeployTarget for AwsTargets {
    async fn current(&self, target: &Target) -> Result<Option<String>, Error> {
        self.pick(target)?.current(target).await
    }

    async fn deploy(&self, target: &Target, bundle_ref: &str) -> Result<(), Error> {
        self.pick(target)?.deploy(target, bundle_ref).await
    }

    async fn reload(&self, target: &Target) -> Result<(), Error> {
        self.pick(target)?.reload(target).await
    }
}

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

/// Service error codes that mean "try again later" in the APIs this crate calls.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "TooManyRequests",
    "RequestThrottled",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServiceError",
    "InternalServiceErrorException",
    "InternalServerError",
];

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
                    "{}: {}",
                    code.as_deref().unwrap_or("unknown error"),
                    e.message().unwrap_or("no message")
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

#[cfg(test)]
mod tests {
    use super::*;
    use certops_core::ReloadMethod;

    #[tokio::test]
    async fn kinds_other_than_acm_and_load_balancer_are_deploy_failed_naming_the_kind() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let keystore: Arc<dyn Keystore> = Arc::new(crate::secrets::SecretsKeystore::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            crate::secrets::DEFAULT_PREFIX,
        ));
        let targets = AwsTargets::new(&sdk, keystore);
        for kind in [
            TargetKind::Nginx,
            TargetKind::Haproxy,
            TargetKind::GenericRest,
            TargetKind::Local,
        ] {
            let t = Target {
                kind,
                id: "web-01".into(),
                reload: ReloadMethod::HotSwap,
            };
            for err in [
                targets.current(&t).await.unwrap_err(),
                targets.deploy(&t, "arn:x").await.unwrap_err(),
                targets.reload(&t).await.unwrap_err(),
            ] {
                assert_eq!(err.name(), "DeployFailed");
                let text = err.to_string();
                assert!(text.contains(&format!("{kind:?}")), "{text}");
                assert!(
                    text.contains("not deployable from the AWS backend"),
                    "{text}"
                );
            }
        }
    }
}
