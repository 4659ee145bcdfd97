//! Signed HTTP messages: every inbound webhook (ServiceNow) and approval
//! callback (Teams/Slack relay, local `certops serve`) carries
//!
//! - `x-certops-timestamp: <unix seconds>` and
//! - `x-certops-signature: sha256=<lowercase hex HMAC-SHA256(key, message)>`,
//!
//! where the message is `"{timestamp}.{exact raw body bytes}"` for webhooks and
//! `"{timestamp}.{approvalId}.{exact raw body bytes}"` for approval callbacks, so a
//! captured callback can neither approve another change nor be replayed after
//! [`TOLERANCE_SECONDS`]. The MAC is computed over the bytes as received (never a
//! lossy text conversion) and compared in constant time. ServiceNow webhooks and
//! approval callbacks use separate secrets.
//!
//! ```
//! use certops_core::signature::{sign_webhook, verify_webhook};
//! let body = br#"{"number":"INC0010001"}"#;
//! let sig = sign_webhook(b"key", 1_700_000_000, body);
//! assert!(verify_webhook(b"key", body, Some("1700000000"), Some(&sig), 1_700_000_100).is_ok());
//! assert!(verify_webhook(b"key", body, Some("1700000000"), Some(&sig), 1_700_000_400).is_err());
//! ```

use crate::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "x-certops-signature";

/// The header that carries the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-certops-timestamp";

/// How far (seconds, either way) a signing time may be from the receiver's clock.
pub const TOLERANCE_SECONDS: i64 = 300;

fn mac(secret: &[u8], parts: &[&[u8]]) -> Result<Hmac<Sha256>, Error> {
    if secret.is_empty() {
        return Err(Error::Misconfigured("empty signing secret".into()));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| Error::Misconfigured("unusable signing secret".into()))?;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b".");
        }
        mac.update(p);
    }
    Ok(mac)
}

fn header_value(mac: Result<Hmac<Sha256>, Error>) -> String {
    match mac {
        Ok(m) => format!("sha256={}", hex::encode(m.finalize().into_bytes())),
        Err(_) => String::new(),
    }
}

/// The signature header value for a ServiceNow webhook body signed at `timestamp`.
pub fn sign_webhook(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    header_value(mac(secret, &[timestamp.to_string().as_bytes(), body]))
}

/// The signature header value for an approval callback for `approval_id` signed at `timestamp`.
pub fn sign_approval(secret: &[u8], timestamp: i64, approval_id: &str, body: &[u8]) -> String {
    header_value(mac(
        secret,
        &[
            timestamp.to_string().as_bytes(),
            approval_id.as_bytes(),
            body,
        ],
    ))
}

fn check(
    secret: &[u8],
    parts_after_ts: &[&[u8]],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
) -> Result<(), Error> {
    let ts_text = timestamp
        .ok_or_else(|| Error::Unauthorized(format!("missing {TIMESTAMP_HEADER} header")))?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| Error::Unauthorized(format!("{TIMESTAMP_HEADER} is not unix seconds")))?;
    let header =
        signature.ok_or_else(|| Error::Unauthorized(format!("missing {HEADER} header")))?;
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or_else(|| Error::Unauthorized("signature must be 'sha256=<hex>'".into()))?;
    let sig =
        hex::decode(hex_sig).map_err(|_| Error::Unauthorized("signature is not hex".into()))?;
    let ts_bytes = ts.to_string();
    let mut parts: Vec<&[u8]> = vec![ts_bytes.as_bytes()];
    parts.extend_from_slice(parts_after_ts);
    // Verify the MAC before looking at the time, so a forger learns nothing from the clock.
    mac(secret, &parts)?
        .verify_slice(&sig)
        .map_err(|_| Error::Unauthorized("signature does not match".into()))?;
    if (now - ts).abs() > TOLERANCE_SECONDS {
        return Err(Error::Unauthorized(format!(
            "signature timestamp {ts} is more than {TOLERANCE_SECONDS} s from now ({now}); refusing a stale or replayed message"
        )));
    }
    Ok(())
}

/// Checks a ServiceNow webhook: the timestamp and signature headers (as received),
/// the exact body bytes, and the receiver's clock `now` (unix seconds).
pub fn verify_webhook(
    secret: &[u8],
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
) -> Result<(), Error> {
    check(secret, &[body], timestamp, signature, now)
}

/// Checks an approval callback for `approval_id` (the id in the URL path).
pub fn verify_approval(
    secret: &[u8],
    approval_id: &str,
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
) -> Result<(), Error> {
    check(
        secret,
        &[approval_id.as_bytes(), body],
        timestamp,
        signature,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_000_000;

    #[test]
    fn webhook_signatures_cover_time_and_exact_bytes() {
        let body = br#"{"number":"INC0010001"}"#;
        let ts = NOW.to_string();
        let good = sign_webhook(b"s3cret", NOW, body);
        assert!(verify_webhook(b"s3cret", body, Some(&ts), Some(&good), NOW).is_ok());
        assert!(verify_webhook(b"other", body, Some(&ts), Some(&good), NOW).is_err());
        assert!(verify_webhook(b"s3cret", b"{}", Some(&ts), Some(&good), NOW).is_err());
        assert!(verify_webhook(b"s3cret", body, None, Some(&good), NOW).is_err());
        assert!(verify_webhook(b"s3cret", body, Some(&ts), None, NOW).is_err());
        assert!(verify_webhook(b"s3cret", body, Some(&ts), Some("md5=00"), NOW).is_err());
        // Another timestamp with the same MAC does not verify.
        let later = (NOW + 10).to_string();
        assert!(verify_webhook(b"s3cret", body, Some(&later), Some(&good), NOW).is_err());
        // Stale and future messages are refused even with a valid MAC.
        let old = sign_webhook(b"s3cret", NOW - 301, body);
        let old_ts = (NOW - 301).to_string();
        let err = verify_webhook(b"s3cret", body, Some(&old_ts), Some(&old), NOW).unwrap_err();
        assert!(err.to_string().contains("stale"), "{err}");
        let edge = sign_webhook(b"s3cret", NOW + 300, body);
        assert!(verify_webhook(
            b"s3cret",
            body,
            Some(&(NOW + 300).to_string()),
            Some(&edge),
            NOW
        )
        .is_ok());
    }

    #[test]
    fn invalid_utf8_bodies_are_signed_over_their_exact_bytes() {
        // Two bodies that a lossy UTF-8 conversion maps to the same text.
        let a = b"{\"c\":\"\xff\"}";
        let b = b"{\"c\":\"\xfe\"}";
        assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        let sig = sign_webhook(b"k", NOW, a);
        let ts = NOW.to_string();
        assert!(verify_webhook(b"k", a, Some(&ts), Some(&sig), NOW).is_ok());
        assert!(verify_webhook(b"k", b, Some(&ts), Some(&sig), NOW).is_err());
    }

    #[test]
    fn approval_signatures_bind_the_approval_id() {
        let body = br#"{"approver":"carol@example.com","verdict":"approve"}"#;
        let ts = NOW.to_string();
        let sig = sign_approval(b"k", NOW, "APR-AAAAAAAAAAAA", body);
        assert!(
            verify_approval(b"k", "APR-AAAAAAAAAAAA", body, Some(&ts), Some(&sig), NOW).is_ok()
        );
        assert!(
            verify_approval(b"k", "APR-BBBBBBBBBBBB", body, Some(&ts), Some(&sig), NOW).is_err(),
            "a captured callback must not approve another change"
        );
        // A webhook signature is not an approval signature.
        let webhook = sign_webhook(b"k", NOW, body);
        assert!(verify_approval(b"k", "", body, Some(&ts), Some(&webhook), NOW).is_err());
    }
}
