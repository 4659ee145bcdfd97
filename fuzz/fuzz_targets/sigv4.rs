//! SigV4 verification of the local Step Functions API ([`certops_asl::sigv4::verify`]):
//! the `Authorization` header's parsing, the canonical request over the exact
//! bytes, the credential scope and the clock.
//!
//! Input: `METHOD\npath\nquery\n` then `name: value` header lines, a blank line and
//! the body.
//!
//! Asserts: the request as given verifies only for the one known principal; the
//! same request signed by a SigV4 client (written here from the published steps,
//! signing `host`, `x-amz-date`, `x-amz-target` and every other header it carries)
//! verifies and names that principal; changing the body, the operation or the
//! method after signing is `BadSignature`; the signed request 301 s later is `Stale`.

#![no_main]

use certops_asl::sigv4::{verify, AuthError, SignedRequest, ALGORITHM, SERVICE};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const KEY_ID: &str = "AKIDFUZZEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYFUZZKEY";
const NOW: i64 = 1_765_095_300; // 2025-12-07T08:15:00Z
const AMZ_DATE: &str = "20251207T081500Z";

fn secret_for(key: &str) -> Option<&'static str> {
    (key == KEY_ID).then_some(SECRET)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// SigV4 "trimall": the value with runs of whitespace as one space, trimmed;
/// repeated headers joined with commas.
fn canonical_value(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `Authorization` header a SigV4 client sends for `req`.
fn sign(req: &SignedRequest<'_>) -> String {
    let mut names: Vec<&str> = req.headers.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let canonical_headers: String = names
        .iter()
        .map(|n| format!("{n}:{}\n", canonical_value(&req.headers, n)))
        .collect();
    let mut query: Vec<(&str, &str)> = req
        .query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    query.sort_unstable();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        if req.path.is_empty() { "/" } else { req.path },
        query.join("&"),
        canonical_headers,
        names.join(";"),
        hex::encode(Sha256::digest(req.body))
    );
    let date = &AMZ_DATE[..8];
    let scope = format!("{date}/us-east-1/{SERVICE}/aws4_request");
    let to_sign = format!(
        "{ALGORITHM}\n{AMZ_DATE}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(
        &hmac(
            &hmac(
                &hmac(format!("AWS4{SECRET}").as_bytes(), date.as_bytes()),
                b"us-east-1",
            ),
            SERVICE.as_bytes(),
        ),
        b"aws4_request",
    );
    format!(
        "{ALGORITHM} Credential={KEY_ID}/{scope}, SignedHeaders={}, Signature={}",
        names.join(";"),
        hex::encode(hmac(&k, to_sign.as_bytes()))
    )
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let method = lines.next().unwrap_or_default();
    let path = lines.next().unwrap_or_default();
    let query = lines.next().unwrap_or_default();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect();

    // The request as given: parsed without panicking, accepted only for the principal.
    let given = SignedRequest {
        method,
        path,
        query,
        headers: headers.clone(),
        body,
    };
    if let Ok(key) = verify(&given, secret_for, NOW) {
        assert_eq!(key, KEY_ID);
    }

    // The same request, signed by a client.
    let mut signed_headers: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !["authorization", "x-amz-date", "x-amz-content-sha256"].contains(&k.as_str())
        })
        .collect();
    for (name, value) in [
        ("host", "127.0.0.1:8083"),
        ("x-amz-target", "AWSStepFunctions.ListStateMachines"),
    ] {
        if !signed_headers.iter().any(|(k, _)| k == name) {
            signed_headers.push((name.into(), value.into()));
        }
    }
    signed_headers.push(("x-amz-date".into(), AMZ_DATE.into()));
    let mut req = SignedRequest {
        method,
        path,
        query,
        headers: signed_headers,
        body,
    };
    let auth = sign(&req);
    req.headers.push(("authorization".into(), auth));
    assert_eq!(
        verify(&req, secret_for, NOW),
        Ok(KEY_ID.to_string()),
        "{}",
        req.headers.len()
    );
    assert!(matches!(
        verify(&req, secret_for, NOW + 301),
        Err(AuthError::Stale(_))
    ));

    let mut longer = body.to_vec();
    longer.push(b'x');
    let tampered = SignedRequest {
        body: &longer,
        headers: req.headers.clone(),
        ..req
    };
    assert_eq!(
        verify(&tampered, secret_for, NOW),
        Err(AuthError::BadSignature)
    );

    let mut swapped = req.headers.clone();
    for (k, v) in swapped.iter_mut() {
        if k == "x-amz-target" {
            v.push_str("X");
        }
    }
    let tampered = SignedRequest {
        method,
        path,
        query,
        headers: swapped,
        body,
    };
    assert_eq!(
        verify(&tampered, secret_for, NOW),
        Err(AuthError::BadSignature)
    );

    let other_method = if method == "GET" { "POST" } else { "GET" };
    let tampered = SignedRequest {
        method: other_method,
        path,
        query,
        headers: req.headers.clone(),
        body,
    };
    assert_eq!(
        verify(&tampered, secret_for, NOW),
        Err(AuthError::BadSignature)
    );
});
