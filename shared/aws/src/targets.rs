//! [`AwsTargets`]: the one [`DeployTarget`] the AWS backend hands to the workflow. It
//! dispatches on [`Target::kind`]: ACM certificates to [`AcmTarget`], ELBv2 listeners to
//! [`ElbTarget`]; every other kind (nginx, HAProxy, generic REST, the embedded runtime's
//! local endpoints) is a [`Error::DeployFailed`] naming the kind, so a wrong inventory
//! entry stops at the first deploy instead of being guessed at.
//!
//! Targets may sit in any region of the account (the inventory names them by ARN): the
//! ACM and ELBv2 clients are built per region, from the region field of the target's ARN,
//! on first use and then kept; a target ARN without a region uses the SDK configuration's.
//!
//! Also here: the AWS backend's single rule for which SDK failures are transient, shared
//! by every adapter of this crate that maps SDK errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use certops_core::ports::{DeployTarget, Keystore};
use certops_core::{Error, Target, TargetKind};

use crate::acm::AcmTarget;
use crate::elb::ElbTarget;

/// Deploy targets on AWS, by kind, with clients in each target's region.
#[derive(Clone)]
pub struct AwsTargets {
    sdk: Option<aws_config::SdkConfig>,
    keystore: Option<Arc<dyn Keystore>>,
    /// Adapters by region (`""`: the ones given to [`AwsTargets::from_parts`]).
    regions: Arc<Mutex<HashMap<String, (AcmTarget, ElbTarget)>>>,
}

impl std::fmt::Debug for AwsTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let regions: Vec<String> = self
            .regions
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("AwsTargets")
            .field("regions", &regions)
            .finish_non_exhaustive()
    }
}

/// The region field of an ARN (`arn:partition:service:region:account:resource`), if any.
pub fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    (parts.next() == Some("arn"))
        .then(|| parts.nth(2))
        .flatten()
        .filter(|r| !r.is_empty())
}

impl AwsTargets {
    /// Both AWS target adapters over one SDK configuration, loading bundles from `keystore`;
    /// each target's clients are in the region its ARN names.
    pub fn new(sdk: &aws_config::SdkConfig, keystore: Arc<dyn Keystore>) -> AwsTargets {
        AwsTargets {
            sdk: Some(sdk.clone()),
            keystore: Some(keystore),
            regions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// From adapters built elsewhere, used for every target whatever its region.
    pub fn from_parts(acm: AcmTarget, elb: ElbTarget) -> AwsTargets {
        AwsTargets {
            sdk: None,
            keystore: None,
            regions: Arc::new(Mutex::new(HashMap::from([(String::new(), (acm, elb))]))),
        }
    }

    /// The adapters for `target`'s region.
    fn adapters(&self, target: &Target) -> Result<(AcmTarget, ElbTarget), Error> {
        let poisoned = || Error::DeployFailed("the target client cache is unusable".into());
        let (Some(sdk), Some(keystore)) = (&self.sdk, &self.keystore) else {
            let regions = self.regions.lock().map_err(|_| poisoned())?;
            return regions.get("").cloned().ok_or_else(poisoned);
        };
        let region = arn_region(&target.id)
            .map(str::to_string)
            .or_else(|| sdk.region().map(|r| r.to_string()))
            .unwrap_or_default();
        let mut regions = self.regions.lock().map_err(|_| poisoned())?;
        let pair = regions.entry(region.clone()).or_insert_with(|| {
            let acm = aws_sdk_acm::config::Builder::from(sdk)
                .region(aws_sdk_acm::config::Region::new(region.clone()))
                .build();
            let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk)
                .region(aws_sdk_elasticloadbalancingv2::config::Region::new(
                    region.clone(),
                ))
                .build();
            let acm = aws_sdk_acm::Client::from_conf(acm);
            (
                AcmTarget::new(acm.clone(), keystore.clone()),
                ElbTarget::new(
                    acm,
                    aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
                    keystore.clone(),
                ),
            )
        });
        Ok(pair.clone())
    }

    fn kind_ok(target: &Target) -> Result<(), Error> {
        match target.kind {
            TargetKind::Acm | TargetKind::LoadBalancer => Ok(()),
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
        Self::kind_ok(target)?;
        let (acm, elb) = self.adapters(target)?;
        match target.kind {
            TargetKind::Acm => acm.current(target).await,
            _ => elb.current(target).await,
        }
    }

    async fn deploy(&self, target: &Target, bundle_ref: &str) -> Result<(), Error> {
        Self::kind_ok(target)?;
        let (acm, elb) = self.adapters(target)?;
        match target.kind {
            TargetKind::Acm => acm.deploy(target, bundle_ref).await,
            _ => elb.deploy(target, bundle_ref).await,
        }
    }

    async fn reload(&self, target: &Target) -> Result<(), Error> {
        Self::kind_ok(target)?;
        let (acm, elb) = self.adapters(target)?;
        match target.kind {
            TargetKind::Acm => acm.reload(target).await,
            _ => elb.reload(target).await,
        }
    }

    async fn key_algorithm(&self, target: &Target) -> Result<Option<String>, Error> {
        Self::kind_ok(target)?;
        let (acm, _) = self.adapters(target)?;
        match target.kind {
            // A listener is re-pointed to a new import: any key type.
            TargetKind::Acm => acm.key_algorithm(target).await,
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certops_core::ReloadMethod;

    #[test]
    fn the_region_comes_from_the_target_arn() {
        assert_eq!(
            arn_region("arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/x/1/2"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws:acm:us-east-1:123456789012:certificate/x"),
            Some("us-east-1")
        );
        assert_eq!(
            arn_region("arn:aws:iam::123456789012:server-certificate/x"),
            None
        );
        assert_eq!(arn_region("web-01"), None);
    }

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
