//! What we report about one certificate, parsed with x509-parser.

use certops_core::Fingerprint;
use chrono::{DateTime, Utc};
use serde::Serialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

/// RSA moduli below this many bits are classified `weak`.
pub const MIN_RSA_BITS: usize = 2048;

/// A parsed certificate's reportable facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Subject distinguished name (RFC 4514 text).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS and IP subject alternative names.
    pub sans: Vec<String>,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// SHA-256 of the DER encoding, lowercase hex without separators.
    pub sha256: String,
    /// Public key algorithm: `RSA`, `EC`, `Ed25519`, or the OID's short name.
    pub key_type: String,
    /// Public key size in bits (modulus for RSA, field size for EC).
    pub key_bits: usize,
    /// Signature algorithm by which the issuer signed this certificate.
    pub signature_algorithm: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Whether the subject equals the issuer (a root or a self-signed leaf).
    pub self_issued: bool,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// The ACME Renewal Information identifier (RFC 9773 §4.1): base64url of the authority
    /// key identifier's `keyIdentifier` bytes, a dot, base64url of the DER serial's content
    /// bytes. `None` without an AKI `keyIdentifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ari_id: Option<String>,
}

/// The ARI identifier of `cert` ([`CertSummary::ari_id`]).
fn ari_id(cert: &X509Certificate<'_>) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use x509_parser::extensions::ParsedExtension;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })?;
    Some(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(aki.0),
        URL_SAFE_NO_PAD.encode(cert.raw_serial())
    ))
}

/// A certificate parsed just enough for chain analysis; keeps raw names for comparison.
#[derive(Debug, Clone)]
pub(crate) struct ParsedCert {
    pub summary: CertSummary,
    pub raw_subject: Vec<u8>,
    pub raw_issuer: Vec<u8>,
}

/// SHA-256 of DER bytes as lowercase hex: the fingerprint format used everywhere here
/// ([`Fingerprint::of_der`]'s text).
pub fn sha256_hex(der: &[u8]) -> String {
    Fingerprint::of_der(der).into()
}

/// Normalises a fingerprint to lowercase hex as [`Fingerprint::parse`] does: 64 hex digits in
/// either case, optionally `:`-separated and prefixed `sha256:`.
pub fn normalize_fingerprint(text: &str) -> Result<String, crate::Error> {
    Fingerprint::parse(text)
        .map(String::from)
        .map_err(|_| crate::Error::InvalidFingerprint(text.to_owned()))
}

fn to_utc(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn parse(der: &[u8]) -> Result<ParsedCert, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let registry = x509_parser::objects::oid_registry();
    let sig_oid = &cert.signature_algorithm.algorithm;
    let signature_algorithm = x509_parser::objects::oid2sn(sig_oid, registry)
        .map(str::to_owned)
        .unwrap_or_else(|_| sig_oid.to_id_string());
    let spki = cert.public_key();
    let (key_type, key_bits) = match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => ("RSA".to_owned(), rsa.key_size()),
        Ok(PublicKey::EC(ec)) => ("EC".to_owned(), ec.key_size()),
        _ => {
            let oid = &spki.algorithm.algorithm;
            let name = x509_parser::objects::oid2sn(oid, registry)
                .map(str::to_owned)
                .unwrap_or_else(|_| oid.to_id_string());
            let bits = if name.eq_ignore_ascii_case("ed25519") {
                256
            } else {
                spki.subject_public_key.data.len() * 8
            };
            (name, bits)
        }
    };
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push((*d).to_owned()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => sans.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => sans.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let raw_subject = cert.subject().as_raw().to_vec();
    let raw_issuer = cert.issuer().as_raw().to_vec();
    let summary = CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        serial: cert.raw_serial_as_string(),
        sha256: sha256_hex(der),
        key_type,
        key_bits,
        signature_algorithm,
        not_before: to_utc(cert.validity().not_before.timestamp()),
        not_after: to_utc(cert.validity().not_after.timestamp()),
        self_issued: raw_subject == raw_issuer,
        is_ca: cert.is_ca(),
        ari_id: ari_id(&cert),
    };
    Ok(ParsedCert {
        summary,
        raw_subject,
        raw_issuer,
    })
}

impl CertSummary {
    /// Why this certificate is cryptographically weak, if it is: an RSA key under 2048 bits
    /// or a SHA-1 / MD5 signature. A self-issued certificate's own signature is not judged
    /// (a root's self-signature is never checked by clients).
    pub fn weakness(&self) -> Option<String> {
        if self.key_type == "RSA" && self.key_bits < MIN_RSA_BITS {
            return Some(format!(
                "RSA key of {} bits (< {MIN_RSA_BITS})",
                self.key_bits
            ));
        }
        let alg = self.signature_algorithm.to_ascii_lowercase();
        if !self.self_issued && (alg.contains("sha1") || alg.contains("md5") || alg.contains("md2"))
        {
            return Some(format!("signature algorithm {}", self.signature_algorithm));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(key_type: &str, bits: usize, alg: &str, self_issued: bool) -> CertSummary {
        CertSummary {
            subject: "CN=a".into(),
            issuer: "CN=b".into(),
            sans: vec![],
            serial: "01".into(),
            sha256: "00".repeat(32),
            key_type: key_type.into(),
            key_bits: bits,
            signature_algorithm: alg.into(),
            not_before: Utc::now(),
            not_after: Utc::now(),
            self_issued,
            ari_id: None,
            is_ca: false,
        }
    }

    #[test]
    fn weak_keys_and_digests_are_flagged() {
        assert!(summary("RSA", 1024, "sha256WithRSAEncryption", false)
            .weakness()
            .unwrap()
            .contains("1024"));
        assert!(summary("RSA", 2048, "sha1WithRSAEncryption", false)
            .weakness()
            .unwrap()
            .contains("sha1"));
        assert!(summary("EC", 256, "ecdsa-with-SHA1", false)
            .weakness()
            .is_some());
        assert!(summary("RSA", 2048, "md5WithRSAEncryption", false)
            .weakness()
            .is_some());
        assert_eq!(
            summary("RSA", 2048, "sha256WithRSAEncryption", false).weakness(),
            None
        );
        assert_eq!(
            summary("EC", 256, "ecdsa-with-SHA256", false).weakness(),
            None
        );
        // A root's self-signature is never verified by clients.
        assert_eq!(
            summary("RSA", 4096, "sha1WithRSAEncryption", true).weakness(),
            None
        );
    }

    #[test]
    fn fingerprints_normalise() {
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_fingerprint(&fp).unwrap(), "ab".repeat(32));
        assert!(normalize_fingerprint("abc").is_err());
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
        let prefixed = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(normalize_fingerprint(&prefixed).unwrap(), "ab".repeat(32));
    }
}
