//! The ServiceNow webhook as `intake` receives it: the signature headers over the
//! exact body bytes, the body (plain or base64 as API Gateway delivers it), the
//! record inside it and its mapping to a trigger and an idempotency key.
//!
//! Asserts: a correctly signed body is always judged on its content (never 401) and
//! a wrongly signed one always 401; base64 delivery answers exactly as plain text;
//! 202 exactly when the record maps to a ticket trigger of category "Certificate";
//! every key is a Step Functions execution name (1–80 of `[A-Za-z0-9_-]`), as
//! `Trigger::idempotency_key` promises.

#![no_main]

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body;
use base64::Engine as _;
use certops_core::Trigger;
use certops_fn_intake::{
    handle_webhook, sign_webhook, trigger_from_servicenow, verify_webhook, CERTIFICATE_CATEGORY,
    SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use certops_fuzz::stub_deps::{block_on, deps, NOW};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &[u8] = b"fuzz-servicenow-webhook-secret";

/// Delivers `body` signed with `key`, as text or base64, and returns (status, JSON answer).
fn deliver(body: &[u8], key: &[u8], as_base64: bool) -> Option<(i64, Value)> {
    let mut req = ApiGatewayV2httpRequest::default();
    if as_base64 {
        req.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
        req.is_base64_encoded = true;
    } else {
        // API Gateway hands a text body over as a string; other bytes come as base64.
        req.body = Some(String::from_utf8(body.to_vec()).ok()?);
    }
    req.headers.insert(
        "content-type",
        "application/json".parse().expect("a header value"),
    );
    req.headers.insert(
        TIMESTAMP_HEADER,
        NOW.to_string().parse().expect("digits are a header value"),
    );
    req.headers.insert(
        SIGNATURE_HEADER,
        sign_webhook(key, NOW, body)
            .parse()
            .expect("hex is a header value"),
    );
    let resp = block_on(handle_webhook(&deps(), SECRET, req));
    let text = match resp.body {
        Some(Body::Text(t)) => t,
        other => panic!("the webhook answers with a JSON text body, got {other:?}"),
    };
    let answer: Value = serde_json::from_str(&text).expect("the answer is JSON");
    Some((resp.status_code, answer))
}

fn is_execution_name(key: &str) -> bool {
    (1..=80).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fuzz_target!(|body: &[u8]| {
    // The MAC covers the exact bytes, and header text is never a forgery.
    let ts = NOW.to_string();
    let sig = sign_webhook(SECRET, NOW, body);
    assert!(verify_webhook(SECRET, body, Some(&ts), Some(&sig), NOW).is_ok());
    if let Ok(text) = std::str::from_utf8(body) {
        let mut lines = text.splitn(3, '\n');
        let (a, b) = (lines.next(), lines.next());
        assert!(verify_webhook(SECRET, body, a, b, NOW).is_err());
        assert!(verify_webhook(SECRET, body, b, a, NOW).is_err());
    }

    let (status, answer) = deliver(body, SECRET, true).expect("base64 always delivers");
    if let Some(plain) = deliver(body, SECRET, false) {
        assert_eq!(
            plain,
            (status, answer.clone()),
            "base64 delivery must answer as plain text does"
        );
    }
    let (forged, _) = deliver(body, b"not-the-secret", true).expect("base64 always delivers");
    if body.len() > certops_fn_intake::MAX_WEBHOOK_BODY {
        // Refused for its size before any signature is computed, whoever signed it.
        assert_eq!((status, forged), (413, 413), "an oversized body is 413");
        return;
    }
    assert_eq!(
        forged, 401,
        "a body signed with another key must be refused"
    );
    assert!(
        [200, 202, 400, 404, 409, 422, 503].contains(&status),
        "unexpected status {status} for a signed body: {answer}"
    );
    assert!(answer.is_object());

    // What the handler decided follows from the record it mapped.
    let expect_started = match serde_json::from_slice::<Value>(body) {
        Ok(payload) => {
            let record = payload.get("record").unwrap_or(&payload);
            match trigger_from_servicenow(record) {
                Ok(trigger) => {
                    let key = trigger.idempotency_key();
                    assert!(is_execution_name(&key), "not an execution name: {key:?}");
                    assert_eq!(key, trigger.idempotency_key(), "keys are deterministic");
                    match &trigger {
                        Trigger::Ticket(t) => {
                            assert!(!t.number.trim().is_empty());
                            assert!(!t.sys_id.trim().is_empty());
                            assert!(!t.ci.trim().is_empty());
                            t.category.trim().eq_ignore_ascii_case(CERTIFICATE_CATEGORY)
                        }
                        Trigger::Scan(_) => panic!("a ServiceNow record maps to a ticket"),
                    }
                }
                Err(_) => false,
            }
        }
        Err(_) => false,
    };
    if expect_started {
        assert_eq!(status, 202, "a certificate ticket starts once: {answer}");
        assert!(answer["idempotencyKey"]
            .as_str()
            .is_some_and(is_execution_name));
    } else {
        assert!(
            [400, 422].contains(&status),
            "status {status} for a body that is not a certificate ticket: {answer}"
        );
    }
});
