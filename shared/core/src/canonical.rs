//! Canonical JSON: the byte form that plan hashes and audit hashes are computed over.
//!
//! Canonical means: object keys sorted (by Unicode code point, recursively), no insignificant
//! whitespace, serde_json's number and string formatting. Two values that are equal as JSON
//! produce identical bytes whatever the order their keys were inserted in — which matters
//! because the workspace enables serde_json's `preserve_order`.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::Error;

/// Returns a copy of `value` whose objects have their keys sorted, at every depth.
pub fn sort_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut sorted = Map::with_capacity(entries.len());
            for (key, inner) in entries {
                sorted.insert(key.clone(), sort_keys(inner));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// The canonical text of a JSON value: sorted keys, compact.
pub fn to_canonical_string(value: &Value) -> String {
    // Serialising a `Value` cannot fail: its map keys are strings and its numbers finite.
    sort_keys(value).to_string()
}

/// The canonical bytes of any serialisable value.
///
/// Fails with [`Error::InvalidInput`] only if `value` cannot be represented as JSON
/// (for example a map with non-string keys).
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_value(value)
        .map_err(|e| Error::InvalidInput(format!("not representable as JSON: {e}")))?;
    Ok(to_canonical_string(&json).into_bytes())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_recursively_and_whitespace_dropped() {
        let value = json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": null}});
        assert_eq!(
            to_canonical_string(&value),
            r#"{"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}"#
        );
    }

    #[test]
    fn insertion_order_does_not_change_the_bytes() {
        let mut one = Map::new();
        one.insert("alpha".into(), json!(1));
        one.insert("beta".into(), json!("two"));
        let mut two = Map::new();
        two.insert("beta".into(), json!("two"));
        two.insert("alpha".into(), json!(1));
        assert_eq!(
            to_canonical_string(&Value::Object(one)),
            to_canonical_string(&Value::Object(two))
        );
    }

    #[test]
    fn array_order_is_significant() {
        assert_ne!(
            to_canonical_string(&json!([1, 2])),
            to_canonical_string(&json!([2, 1]))
        );
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn non_string_map_keys_are_invalid_input_not_a_panic() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        assert_eq!(to_canonical_bytes(&map).unwrap_err().name(), "InvalidInput");
    }
}
