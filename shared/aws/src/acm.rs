//! [`DeployTarget`] for [`TargetKind::Acm`]: an AWS Certificate Manager certificate that
//! certops re-imports in place. `target.id` is the certificate ARN.
//!
//! - `deploy` loads the bundle from the keystore, splits the leaf from the rest of the
//!   chain and calls `ImportCertificate` with `CertificateArn = target.id`, so the ARN (and
//!   every CloudFront distribution, API Gateway domain or load balancer using it) stays the
//!   same; then it tags the certificate `certops:bundle = <bundle reference>`. ACM does not
//!   take tags on a re-import, so the tag is written right after it.
//! - `current` is that tag: the reference of the bundle the certificate holds.
//! - `reload` does nothing: ACM's consumers pick the re-imported certificate up themselves
//!   (the inventory says `reload = "none"`).
//! - A re-import may not change the key algorithm (ACM refuses, or worse, consumers pinned
//!   to the key type break): `deploy` compares the certificate's `KeyAlgorithm` with the
//!   bundle's leaf key and refuses a mismatch before changing anything.
//!
//! Every failure of `deploy` and `reload` is [`Error::DeployFailed`] (the message says when
//! retrying may help); `current` reports throttling and network trouble as
//! [`Error::Transient`] so the deploy step's snapshot is retried rather than rolled back.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::Tag;
use certops_core::ports::{DeployTarget, Keystore};
use certops_core::{Error, ReloadMethod, Target, TargetKind};

use crate::sdk_error::{sdk_failure, SdkFailure};

pub use aws_sdk_acm;

/// The certificate tag holding the bundle reference a certificate was imported from.
pub const BUNDLE_TAG: &str = "certops:bundle";
/// The certificate tag (`true`) marking a certificate certops may re-import or tag: the
/// operator sets it on the ACM targets of the inventory, certops on every new import. The
/// deploy and rollback roles may touch no other certificate (infra/template.yaml).
pub const MANAGED_TAG: &str = "certops:managed";

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// An ACM certificate re-imported in place.
#[derive(Clone)]
pub struct AcmTarget {
    client: aws_sdk_acm::Client,
    keystore: Arc<dyn Keystore>,
}

impl std::fmt::Debug for AcmTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmTarget").finish_non_exhaustive()
    }
}

impl AcmTarget {
    /// A target adapter importing bundles loaded from `keystore`.
    pub fn new(client: aws_sdk_acm::Client, keystore: Arc<dyn Keystore>) -> AcmTarget {
        AcmTarget { client, keystore }
    }

    /// The ACM client.
    pub fn client(&self) -> &aws_sdk_acm::Client {
        &self.client
    }
}

/// Splits a chain PEM (leaf first) into the leaf and the rest of the chain (`None` when the
/// bundle holds the leaf only). Each block is kept as PEM text.
pub(crate) fn split_chain(chain_pem: &str) -> Result<(String, Option<String>), String> {
    let mut blocks = Vec::new();
    let mut rest = chain_pem;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let end = after
            .find(END)
            .ok_or_else(|| "a certificate block has no END line".to_string())?;
        blocks.push(format!("{}\n", &after[..end + END.len()]));
        rest = &after[end + END.len()..];
    }
    let mut blocks = blocks.into_iter();
    let leaf = blocks
        .next()
        .ok_or_else(|| "the bundle holds no certificate".to_string())?;
    let chain: String = blocks.collect();
    Ok((leaf, (!chain.is_empty()).then_some(chain)))
}

/// `DeployFailed` for a failed call, saying whether a retry may help.
pub(crate) fn deploy_failed(what: &str, f: &SdkFailure) -> Error {
    Error::DeployFailed(format!(
        "{what}: {}{}",
        f.detail,
        if f.transient {
            " (temporary; retrying may succeed)"
        } else {
            ""
        }
    ))
}

/// A failure of a read that only looks: transient stays transient.
pub(crate) fn read_failed(what: &str, f: &SdkFailure) -> Error {
    if f.transient {
        Error::Transient(format!("{what}: {}", f.detail))
    } else {
        Error::DeployFailed(format!("{what}: {}", f.detail))
    }
}

/// The `certops:bundle` tag of a certificate, if it has one.
pub(crate) async fn bundle_tag(
    client: &aws_sdk_acm::Client,
    certificate_arn: &str,
) -> Result<Option<String>, SdkFailure> {
    let out = client
        .list_tags_for_certificate()
        .certificate_arn(certificate_arn)
        .send()
        .await
        .map_err(|e| sdk_failure(&e))?;
    Ok(out
        .tags()
        .iter()
        .find(|t| t.key() == BUNDLE_TAG)
        .and_then(|t| t.value())
        .map(str::to_string))
}

fn bundle_tag_of(bundle_ref: &str) -> Result<Tag, Error> {
    Tag::builder()
        .key(BUNDLE_TAG)
        .value(bundle_ref)
        .build()
        .map_err(|e| Error::DeployFailed(format!("tag for {bundle_ref}: {e}")))
}

/// Imports the bundle `bundle_ref` into ACM: onto `onto` (a re-import that keeps the ARN)
/// or as a new certificate. Either way the certificate ends up tagged with the reference.
/// Returns the certificate ARN.
pub(crate) async fn import_bundle(
    client: &aws_sdk_acm::Client,
    keystore: &dyn Keystore,
    bundle_ref: &str,
    onto: Option<&str>,
) -> Result<String, Error> {
    let bundle = keystore
        .get_bundle(bundle_ref)
        .await
        .map_err(|e| Error::DeployFailed(format!("bundle {bundle_ref} cannot be loaded: {e}")))?;
    let (leaf, chain) = split_chain(&bundle.chain_pem)
        .map_err(|e| Error::DeployFailed(format!("bundle {bundle_ref}: {e}")))?;
    let tag = bundle_tag_of(bundle_ref)?;
    // The SDK redacts the key in its Debug output; the request owns this copy and drops it
    // when the call is done.
    let mut request = client
        .import_certificate()
        .certificate(Blob::new(leaf.into_bytes()))
        .private_key(Blob::new(bundle.key.expose().as_bytes()))
        .set_certificate_chain(chain.map(|c| Blob::new(c.into_bytes())));
    request = match onto {
        Some(arn) => request.certificate_arn(arn),
        None => request.tags(tag.clone()).tags(
            Tag::builder()
                .key(MANAGED_TAG)
                .value("true")
                .build()
                .map_err(|e| Error::DeployFailed(format!("tag {MANAGED_TAG}: {e}")))?,
        ),
    };
    let what = match onto {
        Some(arn) => format!("re-import of {bundle_ref} onto {arn}"),
        None => format!("import of {bundle_ref}"),
    };
    let out = request
        .send()
        .await
        .map_err(|e| deploy_failed(&what, &sdk_failure(&e)))?;
    drop(bundle);
    let arn = out
        .certificate_arn()
        .map(str::to_string)
        .or_else(|| onto.map(str::to_string))
        .ok_or_else(|| Error::DeployFailed(format!("{what}: ACM returned no certificate ARN")))?;
    if onto.is_some() {
        client
            .add_tags_to_certificate()
            .certificate_arn(&arn)
            .tags(tag)
            .send()
            .await
            .map_err(|e| {
                deploy_failed(
                    &format!("tagging {arn} with {bundle_ref}"),
                    &sdk_failure(&e),
                )
            })?;
    }
    tracing::info!(certificate = %arn, bundle = %bundle_ref, "bundle imported into ACM");
    Ok(arn)
}

/// The ACM `KeyAlgorithm` name of a chain's leaf public key (`EC_prime256v1`,
/// `EC_secp384r1`, `EC_secp521r1`, `RSA_2048`, ...).
pub fn leaf_key_algorithm(chain_pem: &str) -> Result<String, String> {
    use x509_parser::public_key::PublicKey;
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| format!("the chain is not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("the leaf does not parse: {e}"))?;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => Ok(format!("RSA_{}", rsa.key_size())),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => Ok("EC_prime256v1".into()),
                "1.3.132.0.34" => Ok("EC_secp384r1".into()),
                "1.3.132.0.35" => Ok("EC_secp521r1".into()),
                other => Err(format!("unsupported EC curve {other}")),
            }
        }
        Ok(_) => Err("the leaf key is neither RSA nor EC".into()),
        Err(e) => Err(format!("the leaf key does not parse: {e}")),
    }
}

/// The `KeyAlgorithm` ACM reports for a certificate (`None` if it reports none).
async fn held_key_algorithm(
    client: &aws_sdk_acm::Client,
    certificate_arn: &str,
) -> Result<Option<String>, SdkFailure> {
    let described = client
        .describe_certificate()
        .certificate_arn(certificate_arn)
        .send()
        .await
        .map_err(|e| sdk_failure(&e))?;
    Ok(described
        .certificate()
        .and_then(|c| c.key_algorithm())
        .map(|k| k.as_str().to_string()))
}

/// Refuses, before any change, a re-import that would change the certificate's key
/// algorithm (validation refuses such a plan already; this guards a changed certificate).
async fn same_key_algorithm(
    client: &aws_sdk_acm::Client,
    keystore: &dyn Keystore,
    certificate_arn: &str,
    bundle_ref: &str,
) -> Result<(), Error> {
    let Some(current) = held_key_algorithm(client, certificate_arn)
        .await
        .map_err(|f| deploy_failed(&format!("describing {certificate_arn}"), &f))?
    else {
        return Ok(());
    };
    let bundle = keystore
        .get_bundle(bundle_ref)
        .await
        .map_err(|e| Error::DeployFailed(format!("bundle {bundle_ref} cannot be loaded: {e}")))?;
    let new = leaf_key_algorithm(&bundle.chain_pem)
        .map_err(|e| Error::DeployFailed(format!("bundle {bundle_ref}: {e}")))?;
    if new != current {
        return Err(Error::DeployFailed(format!(
            "{certificate_arn} holds a {current} key and the renewal a {new} key; a re-import \
             may not change the key algorithm, so nothing was changed (renew with a {current} \
             key, or move the consumers to a new certificate)"
        )));
    }
    Ok(())
}

fn acm_only(target: &Target) -> Result<(), Error> {
    if target.kind != TargetKind::Acm {
        return Err(Error::DeployFailed(format!(
            "the ACM adapter does not handle kind {:?} (target {})",
            target.kind, target.id
        )));
    }
    if target.reload != ReloadMethod::None {
        return Err(Error::DeployFailed(format!(
            "ACM target {} has reload method {:?}; ACM consumers pick a re-import up by \
             themselves, so only \"none\" applies",
            target.id, target.reload
        )));
    }
    Ok(())
}

#[async_trait]
impl DeployTarget for AcmTarget {
    async fn current(&self, target: &Target) -> Result<Option<String>, Error> {
        acm_only(target)?;
        bundle_tag(&self.client, &target.id)
            .await
            .map_err(|f| read_failed(&format!("tags of {}", target.id), &f))
    }

    async fn key_algorithm(&self, target: &Target) -> Result<Option<String>, Error> {
        acm_only(target)?;
        held_key_algorithm(&self.client, &target.id)
            .await
            .map_err(|f| read_failed(&format!("the key algorithm of {}", target.id), &f))
    }

    async fn deploy(&self, target: &Target, bundle_ref: &str) -> Result<(), Error> {
        acm_only(target)?;
        same_key_algorithm(&self.client, self.keystore.as_ref(), &target.id, bundle_ref).await?;
        import_bundle(
            &self.client,
            self.keystore.as_ref(),
            bundle_ref,
            Some(&target.id),
        )
        .await
        .map(|_| ())
    }

    async fn reload(&self, target: &Target) -> Result<(), Error> {
        acm_only(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(body: &str) -> String {
        format!("{BEGIN}\n{body}\n{END}\n")
    }

    #[test]
    fn the_leaf_is_split_from_the_rest_of_the_chain() {
        let chain = format!("{}{}{}", block("TEFG"), block("SU5U"), block("Uk9PVA=="));
        let (leaf, rest) = split_chain(&chain).unwrap();
        assert_eq!(leaf, block("TEFG"));
        assert_eq!(
            rest.unwrap(),
            format!("{}{}", block("SU5U"), block("Uk9PVA=="))
        );

        let (leaf, rest) = split_chain(&format!("junk\r\n{}", block("TEFG"))).unwrap();
        assert_eq!(leaf, block("TEFG"));
        assert_eq!(rest, None);

        assert!(split_chain("").is_err());
        assert!(split_chain(&format!("{BEGIN}\nTEFG\n")).is_err());
    }

    #[test]
    fn only_acm_targets_reloaded_by_none_are_handled() {
        let mut t = Target {
            kind: TargetKind::Acm,
            id: "arn:aws:acm:us-east-1:123456789012:certificate/x".into(),
            reload: ReloadMethod::None,
        };
        acm_only(&t).unwrap();
        t.reload = ReloadMethod::ListenerUpdate;
        assert_eq!(acm_only(&t).unwrap_err().name(), "DeployFailed");
        t.reload = ReloadMethod::None;
        t.kind = TargetKind::LoadBalancer;
        assert_eq!(acm_only(&t).unwrap_err().name(), "DeployFailed");
    }
}
