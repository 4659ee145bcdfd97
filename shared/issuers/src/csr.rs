//! The CSR every adapter sends: checked here before it leaves, so a request that is not a
//! well-formed, self-signed PKCS#10 is refused with [`Error::InvalidInput`] instead of being
//! handed to a CA (some answer a malformed CSR with a 500).

use certops_core::Error;
use x509_parser::prelude::FromDer;

/// The DER of the PEM CSR `pem`, after checking it parses and its signature verifies.
pub fn der(pem: &str) -> Result<Vec<u8>, Error> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| Error::InvalidInput(format!("the CSR is not PEM: {e}")))?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(Error::InvalidInput(format!(
            "expected a CERTIFICATE REQUEST, got {}",
            block.label
        )));
    }
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| Error::InvalidInput(format!("the CSR does not parse: {e}")))?;
    req.verify_signature()
        .map_err(|e| Error::InvalidInput(format!("the CSR's signature does not verify: {e}")))?;
    Ok(block.contents)
}
