//! Keeps secrets off every console page and JSON answer: task tokens (which
//! `GetExecutionHistory` would show inside `.waitForTaskToken` parameters),
//! sealed tokens, passwords, secrets and any PEM private key, including inside
//! JSON documents carried as strings (history payloads).

use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";

fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("token")
        || k.contains("secret")
        || k.contains("password")
        || k.contains("privatekey")
        || k.contains("private_key")
        || k == "key_pem"
}

fn private_key_text(s: &str) -> bool {
    s.contains("PRIVATE KEY-----")
}

/// Redacts `v` in place.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map.iter_mut() {
                if secret_key(k) && !inner.is_null() {
                    *inner = Value::String(REDACTED.into());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if private_key_text(s) {
                *s = REDACTED.into();
            } else if s.starts_with('{') || s.starts_with('[') {
                if let Ok(mut inner) = serde_json::from_str::<Value>(s) {
                    let before = inner.clone();
                    redact(&mut inner);
                    if inner != before {
                        *s = inner.to_string();
                    }
                }
            }
        }
        _ => {}
    }
}

/// A redacted copy.
pub fn redacted(mut v: Value) -> Value {
    redact(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_keys_and_nested_payloads_are_redacted() {
        let pem = format!(
            "-----BEGIN {k}-----\nAAA\n-----END {k}-----",
            k = "PRIVATE KEY"
        );
        let payload = json!({"execution": "e1", "taskToken": "tok-123"}).to_string();
        let v = redacted(json!({
            "input": payload,
            "sealedToken": "abc",
            "nested": [{"pem": pem, "idempotencyKey": "keep"}],
            "plain": "keep"
        }));
        let text = v.to_string();
        assert!(!text.contains("tok-123") && !text.contains("abc") && !text.contains("AAA"));
        assert!(text.contains("keep") && text.contains("e1"));
    }
}
