//! AWS Signature Version 4 verification for the local Step Functions API, so
//! callers authenticate exactly as they do against AWS: boto3, the AWS CLI and
//! `aws-sdk-sfn` sign every request already, with credentials certops keeps in
//! its data directory.
//!
//! The verifier rebuilds the canonical request from what the client says it
//! signed (`SignedHeaders`), over the exact body bytes, derives the signing key
//! from the principal's secret, and compares in constant time. It refuses a
//! request whose `x-amz-date` is more than [`MAX_SKEW_SECONDS`] from the
//! server's clock, whose credential scope does not match that date or the
//! `states` service, or that leaves `host`, `x-amz-date` or `x-amz-target`
//! unsigned (so the operation cannot be swapped under a valid signature).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How far `x-amz-date` may be from the server's clock, either way.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The service name in the credential scope.
pub const SERVICE: &str = "states";

/// A request as the server received it.
pub struct SignedRequest<'a> {
    /// HTTP method (`POST`).
    pub method: &'a str,
    /// The path as received (`/`).
    pub path: &'a str,
    /// The raw query string, without `?` (empty for the JSON protocol).
    pub query: &'a str,
    /// Every header, lowercase names; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// Why a request is not authenticated. The message never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No (or an unreadable) `Authorization` header.
    #[error("missing or malformed SigV4 Authorization header: {0}")]
    Missing(String),
    /// The access key id is not one of certops' principals.
    #[error("The security token included in the request is invalid: unknown access key id")]
    UnknownKey,
    /// The signature does not match.
    #[error("The request signature we calculated does not match the signature you provided")]
    BadSignature,
    /// `x-amz-date` is missing, malformed or too far from now.
    #[error("Signature expired or not yet valid: {0}")]
    Stale(String),
}

impl AuthError {
    /// The AWS error code for the response.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "MissingAuthenticationToken",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::BadSignature => "InvalidSignatureException",
            AuthError::Stale(_) => "InvalidSignatureException",
        }
    }
}

struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: Vec<u8>,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| AuthError::Missing(format!("algorithm must be {ALGORITHM}")))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let missing = |what: &str| AuthError::Missing(format!("no {what}"));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = scope[..] else {
        return Err(AuthError::Missing("malformed credential scope".into()));
    };
    if terminator != "aws4_request" {
        return Err(AuthError::Missing("malformed credential scope".into()));
    }
    let signed_headers: Vec<&str> = signed
        .ok_or_else(|| missing("SignedHeaders"))?
        .split(';')
        .collect();
    let signature = hex::decode(signature.ok_or_else(|| missing("Signature"))?)
        .map_err(|_| AuthError::Missing("Signature is not hex".into()))?;
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        // HMAC accepts keys of any length; this arm is unreachable in practice.
        Err(_) => Vec::new(),
    }
}

fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// `x-amz-date` (`20261207T081500Z`) as unix seconds.
fn amz_date_seconds(text: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Verifies `req` and returns the access key id that signed it; `secret_for`
/// looks up a principal's secret access key. `now` is unix seconds.
pub fn verify<'k>(
    req: &SignedRequest<'_>,
    secret_for: impl Fn(&str) -> Option<&'k str>,
    now: i64,
) -> Result<String, AuthError> {
    let auth_value = header_value(&req.headers, "authorization")
        .ok_or_else(|| AuthError::Missing("no Authorization header".into()))?;
    let auth = parse_authorization(&auth_value)?;
    for required in ["host", "x-amz-date", "x-amz-target"] {
        if !auth.signed_headers.contains(&required) {
            return Err(AuthError::Missing(format!("{required} must be signed")));
        }
    }
    if auth.service != SERVICE {
        return Err(AuthError::Missing(format!(
            "credential scope names service '{}', not '{SERVICE}'",
            auth.service
        )));
    }
    let amz_date = header_value(&req.headers, "x-amz-date")
        .ok_or_else(|| AuthError::Stale("no x-amz-date header".into()))?;
    let at = amz_date_seconds(&amz_date)
        .ok_or_else(|| AuthError::Stale("x-amz-date is not YYYYMMDD'T'HHMMSS'Z'".into()))?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(AuthError::Stale(
            "credential scope date does not match x-amz-date".into(),
        ));
    }
    let secret = secret_for(auth.access_key).ok_or(AuthError::UnknownKey)?;
    let body_hash = hex::encode(Sha256::digest(req.body));
    if let Some(claimed) = header_value(&req.headers, "x-amz-content-sha256") {
        if claimed != body_hash && claimed != "UNSIGNED-PAYLOAD" {
            return Err(AuthError::BadSignature);
        }
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let value = header_value(&req.headers, name).unwrap_or_default();
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        if req.path.is_empty() { "/" } else { req.path },
        canonical_query(req.query),
        canonical_headers,
        auth.signed_headers.join(";"),
        body_hash
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&k_signing).map_err(|_| AuthError::BadSignature)?;
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&auth.signature)
        .map_err(|_| AuthError::BadSignature)?;
    // The time is checked after the signature so an unsigned prober learns nothing.
    if (now - at).abs() > MAX_SKEW_SECONDS {
        return Err(AuthError::Stale(format!(
            "x-amz-date {amz_date} is more than {MAX_SKEW_SECONDS} s from the server's clock"
        )));
    }
    Ok(auth.access_key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client-side signer written from the SigV4 steps, for the unit tests; the
    /// real clients (aws-sdk-sfn, boto3) are checked against the server in `tests/`.
    fn sign(secret: &str, req: &SignedRequest<'_>, amz_date: &str, signed: &[&str]) -> String {
        let date = &amz_date[..8];
        let mut ch = String::new();
        for n in signed {
            ch.push_str(&format!(
                "{n}:{}\n",
                header_value(&req.headers, n).unwrap_or_default()
            ));
        }
        let canonical = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            req.method,
            req.path,
            canonical_query(req.query),
            ch,
            signed.join(";"),
            hex::encode(Sha256::digest(req.body))
        );
        let scope = format!("{date}/us-east-1/states/aws4_request");
        let sts = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k = hmac(
            &hmac(
                &hmac(
                    &hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes()),
                    b"us-east-1",
                ),
                b"states",
            ),
            b"aws4_request",
        );
        format!(
            "{ALGORITHM} Credential=AKIDEXAMPLE/{scope}, SignedHeaders={}, Signature={}",
            signed.join(";"),
            hex::encode(hmac(&k, sts.as_bytes()))
        )
    }

    fn request(body: &'static [u8], amz_date: &str) -> SignedRequest<'static> {
        SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: vec![
                ("host".into(), "127.0.0.1:8083".into()),
                ("x-amz-date".into(), amz_date.into()),
                (
                    "x-amz-target".into(),
                    "AWSStepFunctions.ListStateMachines".into(),
                ),
                ("content-type".into(), "application/x-amz-json-1.0".into()),
            ],
            body,
        }
    }

    const NOW: i64 = 1_765_095_300; // 2025-12-07T08:15:00Z
    const DATE: &str = "20251207T081500Z";

    fn secrets(k: &str) -> Option<&'static str> {
        (k == "AKIDEXAMPLE").then_some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    }

    #[test]
    fn a_correctly_signed_request_names_its_principal() {
        let mut req = request(b"{}", DATE);
        let signed = ["content-type", "host", "x-amz-date", "x-amz-target"];
        let auth = sign(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &req,
            DATE,
            &signed,
        );
        req.headers.push(("authorization".into(), auth));
        assert_eq!(verify(&req, secrets, NOW), Ok("AKIDEXAMPLE".into()));
    }

    #[test]
    fn forged_stale_unsigned_and_swapped_requests_are_refused() {
        let signed = ["content-type", "host", "x-amz-date", "x-amz-target"];
        let good = |req: &SignedRequest<'_>| {
            sign(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                req,
                DATE,
                &signed,
            )
        };
        // Unsigned.
        let req = request(b"{}", DATE);
        assert!(matches!(
            verify(&req, secrets, NOW),
            Err(AuthError::Missing(_))
        ));
        // Wrong key.
        let mut req = request(b"{}", DATE);
        let auth = sign("not-the-secret", &req, DATE, &signed);
        req.headers.push(("authorization".into(), auth));
        assert_eq!(verify(&req, secrets, NOW), Err(AuthError::BadSignature));
        // Body changed after signing.
        let mut req = request(b"{}", DATE);
        let auth = good(&req);
        req.headers.push(("authorization".into(), auth));
        req.body = b"{\"x\":1}";
        assert_eq!(verify(&req, secrets, NOW), Err(AuthError::BadSignature));
        // Operation swapped after signing.
        let mut req = request(b"{}", DATE);
        let auth = good(&req);
        req.headers.push(("authorization".into(), auth));
        req.headers[2].1 = "AWSStepFunctions.DeleteStateMachine".into();
        assert_eq!(verify(&req, secrets, NOW), Err(AuthError::BadSignature));
        // Stale.
        let mut req = request(b"{}", DATE);
        let auth = good(&req);
        req.headers.push(("authorization".into(), auth));
        assert!(matches!(
            verify(&req, secrets, NOW + 3600),
            Err(AuthError::Stale(_))
        ));
        // x-amz-target left out of the signature.
        let mut req = request(b"{}", DATE);
        let partial = ["host", "x-amz-date"];
        let auth = sign(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &req,
            DATE,
            &partial,
        );
        req.headers.push(("authorization".into(), auth));
        assert!(matches!(
            verify(&req, secrets, NOW),
            Err(AuthError::Missing(_))
        ));
        // Unknown key id.
        let mut req = request(b"{}", DATE);
        req.headers.push((
            "authorization".into(),
            good(&request(b"{}", DATE)).replace("AKIDEXAMPLE", "AKIDOTHER"),
        ));
        assert_eq!(verify(&req, secrets, NOW), Err(AuthError::UnknownKey));
    }
}
