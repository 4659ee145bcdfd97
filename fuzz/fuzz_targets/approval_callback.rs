//! The approval callback as `approval-callback` receives it over HTTP
//! ([`handle_http`]): the approval id from the path or the body, the signature over
//! `"{timestamp}.{approvalId}.{body}"`, and the decision in the body.
//!
//! Asserts: a body naming another approval than the path is refused (400) before
//! anything else; a wrong key is 401 and a right one never is; a signature for one
//! approval never verifies for another; a well-formed decision (verdict `approve` or
//! `reject`, a non-blank approver) for an already spent approval is refused as reuse
//! (409) and leaves exactly one audit record, whatever its text (secret-looking
//! content is redacted, never a failed write); anything else is a 400.

#![no_main]

use certops_core::signature::{sign_approval, verify_approval};
use certops_fn_approval_callback::handle_http;
use certops_fuzz::stub_deps::{block_on, deps, NOW, SPENT_APPROVAL};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &[u8] = b"fuzz-approval-callback-secret";

/// Calls the handler with `body` signed by `key` for `signed_id`; returns the
/// status, the answer and how many audit records the spent approval's execution has.
fn call(path_id: Option<&str>, signed_id: &str, key: &[u8], body: &[u8]) -> (u16, Value, usize) {
    let deps = deps();
    let ts = NOW.to_string();
    let sig = sign_approval(key, NOW, signed_id, body);
    let (status, answer) = block_on(handle_http(
        &deps,
        SECRET,
        path_id,
        Some(&ts),
        Some(&sig),
        body,
    ));
    let audited = block_on(
        deps.store
            .audit("arn:aws:states:fuzz:execution:ticket-inc-spent"),
    )
    .map(|r| r.len())
    .unwrap_or_default();
    assert!(answer.is_object(), "the answer is a JSON object: {answer}");
    (status, answer, audited)
}

fuzz_target!(|body: &[u8]| {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let body_id = parsed
        .as_ref()
        .and_then(|v| v.get("approvalId"))
        .and_then(Value::as_str);
    let well_formed = parsed.as_ref().is_some_and(|v| {
        matches!(v["verdict"].as_str(), Some("approve" | "reject"))
            && v["approver"].as_str().is_some_and(|a| !a.trim().is_empty())
    });

    // A signature binds the approval id.
    let sig = sign_approval(SECRET, NOW, SPENT_APPROVAL, body);
    let ts = NOW.to_string();
    assert!(verify_approval(SECRET, SPENT_APPROVAL, body, Some(&ts), Some(&sig), NOW).is_ok());
    assert!(verify_approval(SECRET, "APR-OTHER000001", body, Some(&ts), Some(&sig), NOW).is_err());

    // The id in the path.
    let (status, answer, audited) = call(Some(SPENT_APPROVAL), SPENT_APPROVAL, SECRET, body);
    match body_id {
        Some(b) if b != SPENT_APPROVAL => {
            assert_eq!(status, 400, "path/body mismatch must be refused: {answer}");
            assert_eq!(audited, 0);
        }
        _ if well_formed => {
            assert_eq!(
                status, 409,
                "a spent approval is refused as reuse: {answer}"
            );
            assert_eq!(audited, 1, "the refused reuse is audited: {answer}");
        }
        _ => assert_eq!(status, 400, "a malformed decision is a 400: {answer}"),
    }
    let (forged, answer, _) = call(Some(SPENT_APPROVAL), SPENT_APPROVAL, b"another-key", body);
    match body_id {
        Some(b) if b != SPENT_APPROVAL => assert_eq!(forged, 400, "{answer}"),
        _ => assert_eq!(forged, 401, "a wrong key must be refused: {answer}"),
    }

    // Only the body names the approval.
    match body_id {
        None => {
            let (status, answer, _) = call(None, "", SECRET, body);
            assert_eq!(status, 400, "no approval id: {answer}");
        }
        Some(id) => {
            let (status, answer, _) = call(None, id, SECRET, body);
            assert_ne!(
                status, 401,
                "a correctly signed callback is not refused as unsigned: {answer}"
            );
            assert!([400, 409].contains(&status), "status {status}: {answer}");
            let (forged, _, _) = call(None, id, b"another-key", body);
            assert_eq!(forged, 401);
        }
    }
});
