//! [`DeployTarget`] for [`TargetKind::LoadBalancer`]: an ELBv2 (ALB/NLB) HTTPS or TLS
//! listener whose default certificate certops replaces. `target.id` is the listener ARN.
//!
//! - `deploy` puts the bundle into ACM as a certificate tagged `certops:bundle = <bundle
//!   reference>`, reusing a certificate already imported for that reference (a retried or
//!   repeated deploy imports nothing new), and records it on the listener as the tag
//!   `certops:pending-certificate = <certificate ARN>`. Nothing is kept in process memory:
//!   the Lambda that reloads may not be the one that deployed.
//! - `reload` (`reload = "listener-update"`) reads that tag and calls `ModifyListener`, so
//!   the listener's default certificate becomes the imported one. Repeating it is harmless.
//! - `current` is the `certops:bundle` tag of the listener's default certificate, i.e. what
//!   the listener serves now; for a certificate certops did not import (the first renewal)
//!   it is that certificate's ARN, so the deploy step's snapshot can restore it.
//! - `deploy` of a certificate ARN (ACM or IAM, as `current` returns it) imports nothing:
//!   it prepares the listener to be pointed back at that certificate (a rollback). A renewal
//!   is always imported under a new ARN and the listener re-pointed, so the certificate it
//!   served before stays untouched and restorable.
//!
//! Reuse looks first at the certificates the listener already names (its pending and its
//! default certificate), then at every imported ACM certificate's tags (one
//! `ListTagsForCertificate` per imported certificate), so a bundle shared by several
//! listeners is imported once.
//!
//! Every failure of `deploy` and `reload` is [`Error::DeployFailed`]; `current` reports
//! throttling and network trouble as [`Error::Transient`].

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_acm::types::{CertificateType, Filters, KeyAlgorithm};
use aws_sdk_elasticloadbalancingv2::types::{Certificate, Tag};
use certops_core::ports::{DeployTarget, Keystore};
use certops_core::{Error, ReloadMethod, Target, TargetKind};

use crate::acm::{bundle_tag, deploy_failed, import_bundle, read_failed};
use crate::sdk_error::sdk_failure;

pub use aws_sdk_elasticloadbalancingv2;

/// The listener tag naming the certificate `deploy` prepared for the next `reload`.
pub const PENDING_TAG: &str = "certops:pending-certificate";

/// An ELBv2 listener's default certificate.
#[derive(Clone)]
pub struct ElbTarget {
    acm: aws_sdk_acm::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    keystore: Arc<dyn Keystore>,
}

impl std::fmt::Debug for ElbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElbTarget").finish_non_exhaustive()
    }
}

fn elb_only(target: &Target) -> Result<(), Error> {
    if target.kind != TargetKind::LoadBalancer {
        return Err(Error::DeployFailed(format!(
            "the ELBv2 adapter does not handle kind {:?} (target {})",
            target.kind, target.id
        )));
    }
    if target.reload != ReloadMethod::ListenerUpdate {
        return Err(Error::DeployFailed(format!(
            "load balancer target {} has reload method {:?}; only \"listener-update\" applies",
            target.id, target.reload
        )));
    }
    Ok(())
}

impl ElbTarget {
    /// A target adapter importing bundles loaded from `keystore` into ACM and pointing
    /// listeners at them.
    pub fn new(
        acm: aws_sdk_acm::Client,
        elb: aws_sdk_elasticloadbalancingv2::Client,
        keystore: Arc<dyn Keystore>,
    ) -> ElbTarget {
        ElbTarget { acm, elb, keystore }
    }

    /// The ELBv2 client.
    pub fn elb_client(&self) -> &aws_sdk_elasticloadbalancingv2::Client {
        &self.elb
    }

    /// The ACM client.
    pub fn acm_client(&self) -> &aws_sdk_acm::Client {
        &self.acm
    }

    /// The listener's default certificate ARN (`None` for a listener without one).
    /// A missing listener is `DeployFailed` (the inventory names something that is not there).
    pub async fn default_certificate(&self, listener_arn: &str) -> Result<Option<String>, Error> {
        let out = self
            .elb
            .describe_listeners()
            .listener_arns(listener_arn)
            .send()
            .await
            .map_err(|e| read_failed(&format!("listener {listener_arn}"), &sdk_failure(&e)))?;
        let listener = out.listeners().first().ok_or_else(|| {
            Error::DeployFailed(format!("listener {listener_arn} does not exist"))
        })?;
        let certs = listener.certificates();
        // DescribeListeners lists only the default certificate; take the flagged one if a
        // service also lists others.
        let default = certs
            .iter()
            .find(|c| c.is_default() == Some(true))
            .or_else(|| certs.first());
        Ok(default
            .and_then(|c| c.certificate_arn())
            .map(str::to_string))
    }

    /// The certificate ARN `deploy` recorded on the listener for the next `reload`.
    pub async fn pending_certificate(&self, listener_arn: &str) -> Result<Option<String>, Error> {
        let out = self
            .elb
            .describe_tags()
            .resource_arns(listener_arn)
            .send()
            .await
            .map_err(|e| read_failed(&format!("tags of {listener_arn}"), &sdk_failure(&e)))?;
        Ok(out
            .tag_descriptions()
            .iter()
            .filter(|d| d.resource_arn() == Some(listener_arn))
            .flat_map(|d| d.tags())
            .find(|t| t.key() == Some(PENDING_TAG))
            .and_then(|t| t.value())
            .map(str::to_string))
    }

    /// Whether `certificate_arn` is tagged with `bundle_ref` (a certificate that is gone
    /// is simply not a match).
    async fn holds(&self, certificate_arn: &str, bundle_ref: &str) -> Result<bool, Error> {
        match bundle_tag(&self.acm, certificate_arn).await {
            Ok(tag) => Ok(tag.as_deref() == Some(bundle_ref)),
            Err(f) if f.is("ResourceNotFoundException") => Ok(false),
            Err(f) => Err(deploy_failed(&format!("tags of {certificate_arn}"), &f)),
        }
    }

    /// An imported ACM certificate already tagged with `bundle_ref`, if any.
    async fn imported_for(
        &self,
        bundle_ref: &str,
        candidates: &[Option<String>],
    ) -> Result<Option<String>, Error> {
        for arn in candidates.iter().flatten() {
            if self.holds(arn, bundle_ref).await? {
                return Ok(Some(arn.clone()));
            }
        }
        // ListCertificates returns RSA-2048 certificates only unless asked for every key type.
        let mut includes = Filters::builder();
        for key_type in KeyAlgorithm::values() {
            includes = includes.key_types(KeyAlgorithm::from(*key_type));
        }
        let mut pages = self
            .acm
            .list_certificates()
            .includes(includes.build())
            .into_paginator()
            .items()
            .send();
        while let Some(summary) = pages.next().await {
            let summary =
                summary.map_err(|e| deploy_failed("listing ACM certificates", &sdk_failure(&e)))?;
            let imported = summary
                .r#type()
                .is_none_or(|t| *t == CertificateType::Imported);
            let Some(arn) = summary.certificate_arn() else {
                continue;
            };
            if imported
                && !candidates.iter().flatten().any(|c| c == arn)
                && self.holds(arn, bundle_ref).await?
            {
                return Ok(Some(arn.to_string()));
            }
        }
        Ok(None)
    }
}

/// Whether `reference` is an ACM or IAM certificate ARN (a listener snapshot) rather than
/// a keystore reference.
pub fn is_certificate_arn(reference: &str) -> bool {
    let mut parts = reference.splitn(6, ':');
    let (arn, _partition, service) = (parts.next(), parts.next(), parts.next());
    let resource = reference.rsplit(':').next().unwrap_or_default();
    arn == Some("arn")
        && match service {
            Some("acm") => resource.starts_with("certificate/"),
            Some("iam") => resource.starts_with("server-certificate/"),
            _ => false,
        }
}

/// A listener read that failed while deploying is the deploy's failure; a transient one
/// says retrying may help.
fn deploy_failure(e: Error) -> Error {
    match e {
        Error::Transient(m) => {
            Error::DeployFailed(format!("{m} (temporary; retrying may succeed)"))
        }
        other => other,
    }
}

#[async_trait]
impl DeployTarget for ElbTarget {
    async fn current(&self, target: &Target) -> Result<Option<String>, Error> {
        elb_only(target)?;
        let Some(arn) = self.default_certificate(&target.id).await? else {
            return Ok(None);
        };
        match bundle_tag(&self.acm, &arn).await {
            Ok(Some(tag)) => Ok(Some(tag)),
            // Not imported by certops: the certificate itself is what to restore.
            Ok(None) => Ok(Some(arn)),
            // Not an ACM certificate certops can read (e.g. an IAM server certificate).
            Err(f) if f.is("ResourceNotFoundException") || f.is("InvalidArnException") => {
                Ok(Some(arn))
            }
            Err(f) => Err(read_failed(&format!("tags of {arn}"), &f)),
        }
    }

    async fn deploy(&self, target: &Target, bundle_ref: &str) -> Result<(), Error> {
        elb_only(target)?;
        let listener = target.id.as_str();
        // Checked first, so a wrong listener ARN imports nothing.
        let default = self
            .default_certificate(listener)
            .await
            .map_err(deploy_failure)?;
        let pending = self
            .pending_certificate(listener)
            .await
            .map_err(deploy_failure)?;
        let certificate = if is_certificate_arn(bundle_ref) {
            // A snapshot of what the listener served: point back at it, import nothing.
            bundle_ref.to_string()
        } else {
            match self.imported_for(bundle_ref, &[pending, default]).await? {
                Some(arn) => arn,
                None => import_bundle(&self.acm, self.keystore.as_ref(), bundle_ref, None).await?,
            }
        };
        self.elb
            .add_tags()
            .resource_arns(listener)
            .tags(Tag::builder().key(PENDING_TAG).value(&certificate).build())
            .send()
            .await
            .map_err(|e| deploy_failed(&format!("tagging {listener}"), &sdk_failure(&e)))?;
        tracing::info!(listener, certificate = %certificate, bundle = %bundle_ref, "certificate ready for the listener");
        Ok(())
    }

    async fn reload(&self, target: &Target) -> Result<(), Error> {
        elb_only(target)?;
        let listener = target.id.as_str();
        let certificate = self
            .pending_certificate(listener)
            .await
            .map_err(|e| Error::DeployFailed(e.to_string()))?
            .ok_or_else(|| {
                Error::DeployFailed(format!(
                    "nothing to reload on {listener}: no certificate was deployed to it \
                     (no {PENDING_TAG} tag)"
                ))
            })?;
        self.elb
            .modify_listener()
            .listener_arn(listener)
            .certificates(Certificate::builder().certificate_arn(&certificate).build())
            .send()
            .await
            .map_err(|e| {
                deploy_failed(
                    &format!("pointing {listener} at {certificate}"),
                    &sdk_failure(&e),
                )
            })?;
        tracing::info!(listener, certificate = %certificate, "listener default certificate replaced");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_load_balancers_updated_through_the_listener_are_handled() {
        let mut t = Target {
            kind: TargetKind::LoadBalancer,
            id: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/x/1/2".into(),
            reload: ReloadMethod::ListenerUpdate,
        };
        elb_only(&t).unwrap();
        t.reload = ReloadMethod::None;
        assert_eq!(elb_only(&t).unwrap_err().name(), "DeployFailed");
        t.reload = ReloadMethod::ListenerUpdate;
        t.kind = TargetKind::Acm;
        assert_eq!(elb_only(&t).unwrap_err().name(), "DeployFailed");
    }

    #[test]
    fn certificate_arns_are_told_from_keystore_references() {
        assert!(is_certificate_arn(
            "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d"
        ));
        assert!(is_certificate_arn(
            "arn:aws:iam::123456789012:server-certificate/shop-2025"
        ));
        assert!(!is_certificate_arn(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:certops/bundles/shop-AbCdEf"
        ));
        assert!(!is_certificate_arn("keystore:shop/v1"));
    }
}
