//! The state and approvals tables' items: the `pk`/`value`/`ttl` item of a logical
//! table's key, its conditional write and its read, and the attribute helpers.

use std::collections::HashMap;

use super::*;
use crate::sdk_error::sdk_error;
use aws_sdk_dynamodb::types::AttributeValue;
use certops_core::canonical::to_canonical_string;
use certops_core::Error;
use serde_json::Value;

impl DynamoStore {
    pub(super) fn item(
        &self,
        table: Table,
        pk: String,
        value: &Value,
    ) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (PK.to_string(), AttributeValue::S(pk)),
            (
                VALUE.to_string(),
                AttributeValue::S(to_canonical_string(value)),
            ),
        ]);
        let expiry = self
            .ttl
            .get(&table)
            .and_then(|p| p.expiry(value, self.clock.now()));
        if let Some(at) = expiry {
            item.insert(TTL.to_string(), AttributeValue::N(at.to_string()));
        }
        item
    }

    /// A conditional `PutItem`; `Ok(false)` when the condition fails.
    pub(super) async fn conditional_put(
        &self,
        table: Table,
        key: &str,
        value: &Value,
        expected: Option<&Value>,
    ) -> Result<bool, Error> {
        let (physical, pk) = self.location(table, key)?;
        let item = self.item(table, pk, value);
        let request = self
            .client
            .put_item()
            .table_name(physical)
            .set_item(Some(item))
            .expression_attribute_names("#pk", PK);
        let request = match expected {
            None => request.condition_expression("attribute_not_exists(#pk)"),
            Some(v) => request
                .condition_expression("attribute_exists(#pk) AND #v = :expected")
                .expression_attribute_names("#v", VALUE)
                .expression_attribute_values(
                    ":expected",
                    AttributeValue::S(to_canonical_string(v)),
                ),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("DynamoDB PutItem", physical, e)),
        }
    }

    /// The stored `value` text of `key` in logical `table` (strongly consistent). Never
    /// echoes the text in an error: it may be anything someone wrote there.
    pub(super) async fn read_text(&self, table: Table, key: &str) -> Result<Option<String>, Error> {
        let (physical, pk) = self.location(table, key)?;
        let out = self
            .client
            .get_item()
            .table_name(physical)
            .key(PK, AttributeValue::S(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB GetItem", physical, e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        string_attr(item, VALUE)
            .map(|t| Some(t.to_string()))
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "{table}#{key} in {physical} has no {VALUE} text attribute"
                ))
            })
    }
}

pub(super) fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidInput("a store key must not be empty".into()));
    }
    Ok(())
}

pub(super) fn string_attr<'a>(
    item: &'a HashMap<String, AttributeValue>,
    name: &str,
) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(super) fn number_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}
