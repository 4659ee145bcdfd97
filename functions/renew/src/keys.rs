//! The certificate's new private key and its CSR. The key is generated here, in the renew
//! step, with the algorithm the inventory names (ECDSA P-256 by default); it goes to the
//! keystore and nowhere else — the issuer only ever sees the CSR.

use certops_core::{Error, KeyType};

/// Generates a key of `kind`.
pub fn generate(kind: KeyType) -> Result<rcgen::KeyPair, Error> {
    let failed = |e: rcgen::Error| Error::Transient(format!("key generation failed: {e}"));
    match kind {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::Rsa3072 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
        KeyType::Rsa4096 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
    }
    .map_err(failed)
}

/// A PEM CSR signed by `key` for `common_name` and exactly `names` (the planned SAN set).
pub fn csr(key: &rcgen::KeyPair, common_name: &str, names: &[String]) -> Result<String, Error> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| Error::InvalidInput(format!("certificate names are invalid: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name.to_string());
    params
        .serialize_request(key)
        .and_then(|c| c.pem())
        .map_err(|e| Error::Transient(format!("CSR generation failed: {e}")))
}

/// The planned names: the common name first, then every other SAN, each once.
pub fn planned_names(common_name: &str, sans: &[String]) -> Vec<String> {
    let mut names = vec![common_name.to_string()];
    names.extend(sans.iter().filter(|s| *s != common_name).cloned());
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;

    #[test]
    fn each_key_type_signs_a_csr_for_exactly_the_names() {
        for kind in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048] {
            let key = generate(kind).unwrap();
            let names = planned_names("a.example.com", &["b.example.com".into()]);
            let pem = csr(&key, "a.example.com", &names).unwrap();
            let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(
                &der.contents,
            )
            .unwrap();
            assert_eq!(
                req.certification_request_info
                    .subject_pki
                    .subject_public_key
                    .data
                    .as_ref(),
                key.public_key_raw(),
                "{kind:?}"
            );
        }
    }
}
