//! The audit table's hash chain: reading the anchored head and the records, committing a
//! record and moving the head in one transaction, recognising a retried append
//! ([`append_token`]), and the back-off between concurrent appenders.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::*;
use crate::sdk_error::sdk_error;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use certops_core::canonical::to_canonical_string;
use certops_core::{AuditRecord, ChainHead, Error};

/// Attempts of one audit append against concurrent appenders before giving up.
pub(super) const MAX_APPEND_ATTEMPTS: u32 = 32;
/// How many reads of a head and last record that disagree an append takes before it refuses
/// the chain as tampered.
pub(super) const UNSETTLED_READS: u32 = 6;

impl DynamoStore {
    /// The head of `execution`'s chain: `(seq, hash, stored text)`.
    pub(super) async fn read_head(
        &self,
        execution: &str,
    ) -> Result<Option<(ChainHead, String)>, Error> {
        let audit = self.audit_table()?;
        let out = self
            .client
            .get_item()
            .table_name(audit)
            .key("execution", AttributeValue::S(execution.to_string()))
            .key("seq", AttributeValue::N(HEAD_SEQ.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB GetItem", audit, e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let broken = |reason: String| Error::ChainBreak { seq: 0, reason };
        let text = string_attr(item, HEAD)
            .ok_or_else(|| broken(format!("the audit head of {execution} has no {HEAD} text")))?;
        let head: ChainHead = serde_json::from_str(text)
            .map_err(|e| broken(format!("the audit head of {execution} does not parse: {e}")))?;
        Ok(Some((head, text.to_string())))
    }

    /// One audit record by position (strongly consistent).
    pub(super) async fn read_record(
        &self,
        execution: &str,
        seq: u64,
    ) -> Result<Option<AuditRecord>, Error> {
        let audit = self.audit_table()?;
        let out = self
            .client
            .get_item()
            .table_name(audit)
            .key("execution", AttributeValue::S(execution.to_string()))
            .key("seq", AttributeValue::N(seq.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB GetItem", audit, e))?;
        out.item().map(|i| parse_record(i, seq)).transpose()
    }

    /// The last stored record of `execution` (strongly consistent), for chains without a head.
    pub(super) async fn last_record(&self, execution: &str) -> Result<Option<AuditRecord>, Error> {
        let audit = self.audit_table()?;
        let out = self
            .client
            .query()
            .table_name(audit)
            .key_condition_expression("#e = :e AND #s >= :first")
            .expression_attribute_names("#e", "execution")
            .expression_attribute_names("#s", "seq")
            .expression_attribute_values(":e", AttributeValue::S(execution.to_string()))
            .expression_attribute_values(":first", AttributeValue::N("0".into()))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("DynamoDB Query", audit, e))?;
        out.items()
            .first()
            .map(|i| parse_record(i, number_attr(i, "seq").unwrap_or_default()))
            .transpose()
    }

    /// The chain's current last record and the head's stored text (to condition on).
    pub(super) async fn current_tail(
        &self,
        execution: &str,
    ) -> Result<(Option<AuditRecord>, Option<String>), Error> {
        let mut read = self.read_head(execution).await?;
        if read.is_none() {
            // No head: the chain must be empty. A record seen now may be a concurrent first
            // append that committed (record and head together) after the head was read:
            // read the head again before calling the chain headless.
            if self.last_record(execution).await?.is_some() {
                read = self.read_head(execution).await?;
            }
        }
        let (prev, head) = match read {
            Some((head, text)) => {
                let seq = head.length.saturating_sub(1);
                (self.read_record(execution, seq).await?, Some((head, text)))
            }
            // Still no head: a record now means the head was removed (refused below).
            None => (self.last_record(execution).await?, None),
        };
        certops_core::audit::check_append(
            execution,
            prev.as_ref(),
            head.as_ref().map(|(h, _)| h),
            &self.key,
        )?;
        Ok((prev, head.map(|(_, text)| text)))
    }

    /// Writes `record` and moves the head from `head` (its stored text; `None`: absent) in
    /// one transaction. `Ok(false)` when another append got there first.
    pub(super) async fn commit(
        &self,
        record: &AuditRecord,
        head: Option<&str>,
    ) -> Result<bool, Error> {
        let text = serde_json::to_value(record)
            .map(|v| to_canonical_string(&v))
            .map_err(|e| Error::InvalidInput(format!("audit record not serializable: {e}")))?;
        let put_record = Put::builder()
            .table_name(self.audit_table()?)
            .item("execution", AttributeValue::S(record.execution.clone()))
            .item("seq", AttributeValue::N(record.seq.to_string()))
            .item("record", AttributeValue::S(text))
            .item("hash", AttributeValue::S(record.hash.clone()))
            .condition_expression("attribute_not_exists(#e)")
            .expression_attribute_names("#e", "execution")
            .build()
            .map_err(|e| Error::InvalidInput(format!("audit record write: {e}")))?;
        let new_head = serde_json::to_value(ChainHead::after(record, &self.key))
            .map_err(|e| Error::InvalidInput(format!("audit head not serializable: {e}")))?;
        let head_put = Put::builder()
            .table_name(self.audit_table()?)
            .item("execution", AttributeValue::S(record.execution.clone()))
            .item("seq", AttributeValue::N(HEAD_SEQ.to_string()))
            .item(HEAD, AttributeValue::S(to_canonical_string(&new_head)));
        let head_put = match head {
            None => head_put
                .condition_expression("attribute_not_exists(#e)")
                .expression_attribute_names("#e", "execution"),
            Some(old) => head_put
                .condition_expression("#h = :old")
                .expression_attribute_names("#h", HEAD)
                .expression_attribute_values(":old", AttributeValue::S(old.to_string())),
        }
        .build()
        .map_err(|e| Error::InvalidInput(format!("audit head write: {e}")))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_record).build())
            .transact_items(TransactWriteItem::builder().put(head_put).build())
            .client_request_token(append_token(&record.execution, record.seq, &record.hash))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    let codes: Vec<&str> = c
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .filter(|code| *code != "None")
                        .collect();
                    if codes
                        .iter()
                        .all(|c| matches!(*c, "ConditionalCheckFailed" | "TransactionConflict"))
                        && !codes.is_empty()
                    {
                        // Either another append moved the head (or was mid-flight): re-read
                        // and retry; or this very record was committed by an earlier try
                        // whose answer was lost: then it is done, not to be appended again.
                        Ok(self.committed(record).await?)
                    } else if codes
                        .iter()
                        .any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded"))
                    {
                        Err(Error::Transient(format!(
                            "audit append to {} throttled ({})",
                            record.execution,
                            codes.join(", ")
                        )))
                    } else {
                        Err(Error::InvalidInput(format!(
                            "audit append to {} cancelled ({})",
                            record.execution,
                            codes.join(", ")
                        )))
                    }
                }
                Some(TransactWriteItemsError::IdempotentParameterMismatchException(_)) => {
                    // The token names this record (execution, seq, hash): a mismatch means a
                    // different request reused it, i.e. the slot went to another record.
                    Ok(self.committed(record).await?)
                }
                _ => Err(sdk_error(
                    "DynamoDB TransactWriteItems",
                    &self.tables.audit,
                    e,
                )),
            },
        }
    }

    /// Whether `record` itself (same hash) is stored at its position.
    pub(super) async fn committed(&self, record: &AuditRecord) -> Result<bool, Error> {
        Ok(self
            .read_record(&record.execution, record.seq)
            .await?
            .is_some_and(|stored| stored.hash == record.hash))
    }
}

/// The `ClientRequestToken` of the transaction appending a record: 32 hex digits of SHA-256
/// over the execution, the sequence number and the record's hash. The same record always
/// gets the same token (so a retried request is recognised), a different record at the same
/// position a different one.
pub fn append_token(execution: &str, seq: u64, hash: &str) -> String {
    let digest =
        certops_core::canonical::sha256_hex(format!("{execution}\n{seq}\n{hash}").as_bytes());
    digest[..32].to_string()
}

/// A stored audit record; one that does not parse is a broken chain, not an outage.
pub(super) fn parse_record(
    item: &HashMap<String, AttributeValue>,
    seq: u64,
) -> Result<AuditRecord, Error> {
    let text = string_attr(item, "record").ok_or_else(|| Error::ChainBreak {
        seq,
        reason: "stored record has no record text".into(),
    })?;
    serde_json::from_str(text).map_err(|e| Error::ChainBreak {
        seq,
        reason: format!("stored record does not parse: {e}"),
    })
}

/// A short pause before retrying a lost append: grows with the attempt, jittered so
/// competing appenders spread out.
pub(super) fn backoff(attempt: u32) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % 20;
    Duration::from_millis(5 * u64::from(attempt.min(10)) + jitter)
}
