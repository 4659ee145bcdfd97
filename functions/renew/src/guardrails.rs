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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    struct Ca {
        issuer: rcgen::Issuer<'static, KeyPair>,
        pem: String,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, key: &KeyPair, names: &[&str], starts_in: chrono::TimeDelta) -> String {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        let start = Utc::now() + starts_in;
        p.not_before = time::OffsetDateTime::from_unix_timestamp(start.timestamp()).unwrap();
        p.not_after = p.not_before + time::Duration::days(30);
        p.signed_by(key, &ca.issuer).unwrap().pem()
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    const PLANNED: &[&str] = &["shop.example.com", "www.shop.example.com"];

    #[test]
    fn a_certificate_as_planned_passes() {
        let ca = ca("anchor");
        let key = KeyPair::generate().unwrap();
        let chain = leaf(&ca, &key, PLANNED, chrono::TimeDelta::minutes(-1));
        check(
            &chain,
            key.public_key_raw(),
            &names(PLANNED),
            Some(&ca.pem),
            Utc::now(),
        )
        .unwrap();
    }

    #[test]
    fn fewer_sans_than_planned_is_refused() {
        let ca = ca("anchor");
        let key = KeyPair::generate().unwrap();
        let chain = leaf(&ca, &key, &PLANNED[..1], chrono::TimeDelta::minutes(-1));
        let e = check(
            &chain,
            key.public_key_raw(),
            &names(PLANNED),
            Some(&ca.pem),
            Utc::now(),
        )
        .unwrap_err();
        assert_eq!(e.name(), "IssuanceFailed");
        assert!(e.to_string().contains("www.shop.example.com"), "{e}");
        // And an unplanned extra name too.
        let more = leaf(
            &ca,
            &key,
            &[
                "shop.example.com",
                "www.shop.example.com",
                "evil.example.com",
            ],
            chrono::TimeDelta::minutes(-1),
        );
        let e = check(
            &more,
            key.public_key_raw(),
            &names(PLANNED),
            Some(&ca.pem),
            Utc::now(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("evil.example.com"), "{e}");
    }

    #[test]
    fn a_mismatched_key_is_refused() {
        let ca = ca("anchor");
        let key = KeyPair::generate().unwrap();
        let other = KeyPair::generate().unwrap();
        let chain = leaf(&ca, &other, PLANNED, chrono::TimeDelta::minutes(-1));
        let e = check(
            &chain,
            key.public_key_raw(),
            &names(PLANNED),
            Some(&ca.pem),
            Utc::now(),
        )
        .unwrap_err();
        assert_eq!(e.name(), "IssuanceFailed");
        assert!(e.to_string().contains("public key"), "{e}");
    }

    #[test]
    fn a_future_not_before_is_refused_within_skew_accepted() {
        let ca = ca("anchor");
        let key = KeyPair::generate().unwrap();
        let late = leaf(&ca, &key, PLANNED, chrono::TimeDelta::hours(2));
        let e = check(
            &late,
            key.public_key_raw(),
            &names(PLANNED),
            Some(&ca.pem),
            Utc::now(),
        )
        .unwrap_err();
        assert_eq!(e.name(), "IssuanceFailed");
        assert!(e.to_string().contains("notBefore"), "{e}");
        let skewed = leaf(&ca, &key, PLANNED, chrono::TimeDelta::minutes(2));
        check(
            &skewed,
            key.public_key_raw(),
            &names(PLANNED),
            Some(&ca.pem),
            Utc::now(),
        )
        .unwrap();
    }

    #[test]
    fn a_chain_to_another_anchor_is_refused() {
        let ca1 = ca("anchor");
        let ca2 = ca("stranger");
        let key = KeyPair::generate().unwrap();
        let chain = leaf(&ca2, &key, PLANNED, chrono::TimeDelta::minutes(-1));
        let e = check(
            &chain,
            key.public_key_raw(),
            &names(PLANNED),
            Some(&ca1.pem),
            Utc::now(),
        )
        .unwrap_err();
        assert_eq!(e.name(), "IssuanceFailed");
        assert!(e.to_string().contains("trust anchors"), "{e}");
        // Without configured anchors the public web roots apply, and a private CA fails them.
        let e = check(
            &chain,
            key.public_key_raw(),
            &names(PLANNED),
            None,
            Utc::now(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("trust anchors"), "{e}");
    }
}
