//! Guardrails on what an issuer returned, before anything is stored or deployed: the
//! certificate carries the key this step generated, names exactly the planned SAN set (no
//! shrink, no extra), chains to the issuer's trust anchors, and starts within clock-skew
//! tolerance. Any failure is [`Error::IssuanceFailed`] with the reason; the step stops there,
//! so nothing is deployed.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use certops_core::Error;
use chrono::{DateTime, Utc};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::GeneralName;

/// How far in the future a certificate's `notBefore` may lie (clocks disagree a little).
pub const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

fn failed(reason: impl Into<String>) -> Error {
    Error::IssuanceFailed(format!("guardrail: {}", reason.into()))
}

fn ders(pem: &str) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    for item in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let item = item.map_err(|e| failed(format!("the chain is not PEM: {e}")))?;
        if item.label == "CERTIFICATE" {
            out.push(item.contents);
        }
    }
    Ok(out)
}

/// Checks `chain_pem` (leaf first) against the key's raw public key, the planned `names`,
/// the trust anchors (`None`: the public web roots) at `now`.
pub fn check(
    chain_pem: &str,
    public_key_raw: &[u8],
    names: &[String],
    anchors_pem: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let chain = ders(chain_pem)?;
    let Some(leaf_der) = chain.first() else {
        return Err(failed("the issuer returned no certificate"));
    };
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| failed(format!("the leaf does not parse: {e}")))?;

    if leaf.public_key().subject_public_key.data.as_ref() != public_key_raw {
        return Err(failed(
            "the certificate's public key is not the key generated for it",
        ));
    }

    let planned: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    let mut issued = BTreeSet::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    issued.insert(d.to_ascii_lowercase());
                }
                other => {
                    issued.insert(format!("{other:?}"));
                }
            }
        }
    }
    if issued != planned {
        let missing: Vec<&String> = planned.difference(&issued).collect();
        let extra: Vec<&String> = issued.difference(&planned).collect();
        return Err(failed(format!(
            "the certificate's names differ from the plan: missing {missing:?}, unplanned {extra:?}"
        )));
    }

    let not_before = DateTime::from_timestamp(leaf.validity().not_before.timestamp(), 0)
        .ok_or_else(|| failed("notBefore is out of range"))?;
    if not_before > now + CLOCK_SKEW {
        return Err(failed(format!(
            "notBefore {} is more than {} minutes ahead of now ({})",
            not_before.to_rfc3339(),
            CLOCK_SKEW.num_minutes(),
            now.to_rfc3339()
        )));
    }

    let anchors_der = match anchors_pem {
        Some(pem) => ders(pem)?,
        None => Vec::new(),
    };
    let owned: Vec<CertificateDer<'static>> =
        anchors_der.into_iter().map(CertificateDer::from).collect();
    let mut anchors = Vec::new();
    for der in &owned {
        anchors.push(
            webpki::anchor_from_trusted_cert(der)
                .map_err(|e| failed(format!("a trust anchor does not parse: {e:?}")))?
                .to_owned(),
        );
    }
    if anchors_pem.is_none() {
        anchors.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let intermediates: Vec<CertificateDer<'static>> = chain[1..]
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let leaf_cert = CertificateDer::from(leaf_der.clone());
    let ee = webpki::EndEntityCert::try_from(&leaf_cert).map_err(|e| {
        failed(format!(
            "the leaf is not a usable end-entity certificate: {e:?}"
        ))
    })?;
    let at = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            u64::try_from(now.timestamp().max(not_before.timestamp())).unwrap_or(0),
        );
    let unix = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    ee.verify_for_usage(
        algs,
        &anchors,
        &intermediates,
        unix,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| {
        failed(format!(
            "the chain does not verify to the issuer's trust anchors: {e:?}"
        ))
    })?;
    Ok(())
}
