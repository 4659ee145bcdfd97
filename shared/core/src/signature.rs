//! Webhook signatures: `sha256=<hex HMAC-SHA256 of the raw body>` in the
//! `x-certops-signature` header, checked in constant time. Every inbound
//! webhook (ServiceNow, approval callbacks) goes through [`verify`].

use crate::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "x-certops-signature";

/// Checks `sha256=<hex>` against the HMAC of `body`.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), Error> {
    let header = header.ok_or_else(|| Error::InvalidInput(format!("missing {HEADER} header")))?;
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or_else(|| Error::InvalidInput("signature must be 'sha256=<hex>'".into()))?;
    let sig =
        hex::decode(hex_sig).map_err(|_| Error::InvalidInput("signature is not hex".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| Error::InvalidInput("empty webhook secret".into()))?;
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| Error::InvalidInput("webhook signature does not match".into()))
}

/// The header value for a body (for senders and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"number":"INC0010001"}"#;
        let good = sign(b"s3cret", body);
        assert!(verify(b"s3cret", body, Some(&good)).is_ok());
        assert!(verify(b"other", body, Some(&good)).is_err());
        assert!(verify(b"s3cret", b"{}", Some(&good)).is_err());
        assert!(verify(b"s3cret", body, None).is_err());
        assert!(verify(b"s3cret", body, Some("md5=00")).is_err());
    }
}
