//! Slack's request signature (`X-Slack-Signature: v0=<hex>`): HMAC-SHA256 with the app's
//! signing secret over `v0:{X-Slack-Request-Timestamp}:{raw body}`, accepted within
//! ±300 s of now and compared in constant time. Nothing of a request is read before its
//! signature holds.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::InboundError;

/// Header carrying the request time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Header carrying `v0=<lowercase hex>`.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// How far the timestamp may be from now, either way, in seconds.
pub const WINDOW_SECONDS: i64 = 300;

/// `v0=<hex HMAC-SHA256(secret, "v0:{timestamp}:{body}")>`, as Slack computes it.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    mac(secret, timestamp, body)
        .map(|m| format!("v0={}", hex::encode(m.finalize().into_bytes())))
        .unwrap_or_default()
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length, so this never fails in practice.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    Some(mac)
}

/// Checks a request's signature headers against its raw body at `now` (unix seconds).
///
/// Refused (401) when a header is missing or malformed, the timestamp is more than
/// [`WINDOW_SECONDS`] away from `now`, or the signature does not match.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), InboundError> {
    let ts: i64 = timestamp
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            InboundError::unauthorized("missing or malformed X-Slack-Request-Timestamp")
        })?;
    if (now - ts).abs() > WINDOW_SECONDS {
        return Err(InboundError::unauthorized(
            "X-Slack-Request-Timestamp is outside the ±300 s window",
        ));
    }
    let given = signature
        .and_then(|s| s.trim().strip_prefix("v0="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| InboundError::unauthorized("missing or malformed X-Slack-Signature"))?;
    mac(secret, ts, body)
        .ok_or_else(|| InboundError::unauthorized("signing secret unusable"))?
        .verify_slice(&given)
        .map_err(|_| InboundError::unauthorized("X-Slack-Signature does not match the body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in Slack's "Verifying requests from Slack".
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TIMESTAMP: i64 = 1531420618;
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slack_documented_vector_signs_and_verifies() {
        assert_eq!(
            sign(DOC_SECRET.as_bytes(), DOC_TIMESTAMP, DOC_BODY.as_bytes()),
            DOC_SIGNATURE
        );
        let ts = DOC_TIMESTAMP.to_string();
        verify(
            DOC_SECRET.as_bytes(),
            Some(&ts),
            Some(DOC_SIGNATURE),
            DOC_BODY.as_bytes(),
            DOC_TIMESTAMP + 10,
        )
        .expect("documented vector verifies");
    }

    #[test]
    fn window_is_299_in_301_out_both_ways() {
        let secret = b"s3cret";
        let body = b"payload=%7B%7D";
        let now = 1_800_000_000;
        for (offset, ok) in [
            (299, true),
            (-299, true),
            (300, true),
            (301, false),
            (-301, false),
        ] {
            let ts = now + offset;
            let sig = sign(secret, ts, body);
            let r = verify(secret, Some(&ts.to_string()), Some(&sig), body, now);
            assert_eq!(r.is_ok(), ok, "offset {offset}: {r:?}");
        }
    }

    #[test]
    fn tampered_body_wrong_secret_and_malformed_headers_are_refused() {
        let now = 1_800_000_000;
        let ts = now.to_string();
        let sig = sign(b"s3cret", now, b"payload=a");
        for (secret, ts, sig, body) in [
            (
                &b"s3cret"[..],
                Some(ts.as_str()),
                Some(sig.as_str()),
                &b"payload=b"[..],
            ),
            (b"other", Some(&ts), Some(&sig), b"payload=a"),
            (b"s3cret", None, Some(&sig), b"payload=a"),
            (b"s3cret", Some("-5"), Some(&sig), b"payload=a"),
            (b"s3cret", Some(&ts), None, b"payload=a"),
            (b"s3cret", Some(&ts), Some("v1=00"), b"payload=a"),
            (b"s3cret", Some(&ts), Some("v0=zz"), b"payload=a"),
        ] {
            let e = verify(secret, ts, sig, body, now).unwrap_err();
            assert_eq!(e.status, 401);
        }
    }
}
