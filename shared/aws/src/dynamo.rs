//! [`Store`] over DynamoDB: conditional writes on the state and approvals tables, and the
//! append-only, hash-chained audit trail on the audit table.
//!
//! Layout (the environment contract):
//!
//! | Table | Key | Attributes |
//! |---|---|---|
//! | `CERTOPS_STATE_TABLE` | `pk` (S) = `<logical table>#<key>` | `value` (S, JSON), `ttl` (N, epoch s) |
//! | `CERTOPS_APPROVALS_TABLE` | `pk` (S) = `approvals#<key>` | `value` (S, JSON), `ttl` (N, epoch s) |
//! | `CERTOPS_AUDIT_TABLE` | `execution` (S), `seq` (N) | `record` (S, JSON), `hash` (S) |
//!
//! Values are stored as canonical JSON ([`certops_core::canonical`]: sorted keys, compact),
//! so a condition on the stored text compares values semantically, exactly as
//! `SqliteStore` compares parsed JSON: key order never matters, `1` and `1.0` differ.
//! A failed condition is `Ok(false)`, never an error.
//!
//! Each execution's anchored chain head ([`ChainHead`]: length, last hash and an HMAC under
//! the [`AuditKey`], which the functions read from Secrets Manager) lives in the audit
//! table itself, in the execution's partition at sort key [`HEAD_SEQ`] (`-1`, before every
//! record), in the attribute `head`: it is retained and protected exactly as the records are
//! (the audit table outlives the stack; no role may delete from it). An append writes the
//! record and moves the head in one `TransactWriteItems`, conditional on the record's slot
//! being free and the head being the one it read: of two concurrent appends one commits and
//! the other re-reads the new head and tries again, so the chain never forks. The head kept
//! apart from the records lets a reader detect a truncated, deleted or re-hashed chain
//! ([`certops_core::verify_anchored`]); an append refuses to extend a chain whose head is
//! missing, not made with the key, or not its last record's.
//!
//! The transaction carries a `ClientRequestToken` derived from the execution, the sequence
//! number and the record's hash ([`append_token`]): when the SDK retries an append whose
//! success response was lost, DynamoDB answers the retry as the original (for ten minutes)
//! instead of running it again. Past that, or on a service that ignores the token, a
//! retry whose record slot is taken is checked against the stored record: the same hash
//! means this very record was committed, and it is not appended a second time.
//!
//! TTL is housekeeping: records get a `ttl` attribute according to their logical table's
//! [`TtlPolicy`], and DynamoDB deletes them some time after it passes (typically within
//! days). Until then they read as present, as in the embedded store, which never expires
//! anything.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::sdk_error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use certops_core::canonical::to_canonical_string;
use certops_core::ports::{Clock, Store, SystemClock};
use certops_core::{AuditEntry, AuditKey, AuditRecord, ChainHead, Error};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The SDK this adapter is built on, re-exported so tools and tests build matching clients
/// (for example to create tables on an emulator).
pub use aws_sdk_dynamodb;

/// Environment variable naming the state table.
pub const STATE_TABLE_ENV: &str = "CERTOPS_STATE_TABLE";
/// Environment variable naming the approvals table.
pub const APPROVALS_TABLE_ENV: &str = "CERTOPS_APPROVALS_TABLE";
/// Environment variable naming the audit table.
pub const AUDIT_TABLE_ENV: &str = "CERTOPS_AUDIT_TABLE";

/// The logical table routed to the approvals table; every other one goes to the state table.
pub const APPROVALS: &str = "approvals";
/// The sort key (`seq`) of an execution's chain head item in the audit table: below every
/// record (records start at 0), so it never shows among them.
pub const HEAD_SEQ: i64 = -1;
/// The attribute of the head item holding `{"seq", "hash"}` as canonical JSON text.
pub const HEAD: &str = "head";

/// Partition key attribute of the state and approvals tables.
pub const PK: &str = "pk";
/// Value attribute (JSON text) of the state and approvals tables.
pub const VALUE: &str = "value";
/// TTL attribute (epoch seconds) of the state and approvals tables.
pub const TTL: &str = "ttl";

/// How long Step Functions refuses to reuse the name of a closed STANDARD execution.
pub const EXECUTION_NAME_REUSE: Duration = Duration::from_secs(90 * 24 * 3600);
/// The renewal definition's `TimeoutSeconds` (48 h): an execution closes at the latest
/// this long after it started.
pub const EXECUTION_TIMEOUT: Duration = Duration::from_secs(48 * 3600);
/// How long an idempotency key (`triggers`) is kept by default: as long as Step Functions
/// may still refuse its execution name (90 days after the execution closed, which is at
/// most the execution time-out after the start). Dropped earlier, an identical trigger
/// would be started again and meet `ExecutionAlreadyExists` instead of the recorded one.
pub const DEFAULT_TRIGGER_RETENTION: Duration =
    Duration::from_secs(EXECUTION_NAME_REUSE.as_secs() + EXECUTION_TIMEOUT.as_secs());
/// How long a renewal lock (`locks`) is kept by default. Locks are released by the final
/// ITSM step; one older than this belongs to an execution that died without releasing it,
/// and expiring it lets the next renewal of that certificate run.
pub const DEFAULT_LOCK_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an approval is kept after its `expires_at` by default, so a late callback is
/// told the approval expired instead of that it does not exist.
pub const DEFAULT_APPROVAL_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Attempts of one audit append against concurrent appenders before giving up.
const MAX_APPEND_ATTEMPTS: u32 = 32;
/// How many reads of a head and last record that disagree an append takes before it refuses
/// the chain as tampered.
const UNSETTLED_READS: u32 = 6;

/// When records of one logical table expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlPolicy {
    /// Never: no `ttl` attribute.
    Keep,
    /// `retention` after each write.
    Retention(Duration),
    /// At the instant found at the first of `pointers` (JSON pointers into the value) that is
    /// present, as RFC 3339 text or epoch seconds, plus `grace`. No `ttl` when none is present.
    FromValue {
        /// JSON pointers tried in order, e.g. `/expires_at`.
        pointers: Vec<String>,
        /// Added to the instant found.
        grace: Duration,
    },
}

impl TtlPolicy {
    /// The `ttl` (epoch seconds) of `value` written at `now`, if it expires.
    pub fn expiry(&self, value: &Value, now: DateTime<Utc>) -> Option<i64> {
        match self {
            TtlPolicy::Keep => None,
            TtlPolicy::Retention(d) => Some(now.timestamp().saturating_add(secs(*d))),
            TtlPolicy::FromValue { pointers, grace } => pointers
                .iter()
                .find_map(|p| value.pointer(p).and_then(instant))
                .map(|at| at.saturating_add(secs(*grace))),
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Epoch seconds of an RFC 3339 string or a number.
fn instant(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp()),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The default policies: approvals expire [`DEFAULT_APPROVAL_GRACE`] after their
/// `expires_at` (top level, or inside `request` as the approval step stores it), triggers
/// and locks after [`DEFAULT_TRIGGER_RETENTION`] / [`DEFAULT_LOCK_RETENTION`]; issuances,
/// deployments, observations and chain heads are kept.
pub fn default_ttl_policies() -> HashMap<String, TtlPolicy> {
    HashMap::from([
        (
            APPROVALS.to_string(),
            TtlPolicy::FromValue {
                pointers: vec!["/expires_at".into(), "/request/expires_at".into()],
                grace: DEFAULT_APPROVAL_GRACE,
            },
        ),
        (
            "triggers".to_string(),
            TtlPolicy::Retention(DEFAULT_TRIGGER_RETENTION),
        ),
        (
            "locks".to_string(),
            TtlPolicy::Retention(DEFAULT_LOCK_RETENTION),
        ),
    ])
}

/// The three physical tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// State table (every logical table but `approvals`).
    pub state: String,
    /// Approvals table.
    pub approvals: String,
    /// Audit table.
    pub audit: String,
}

impl Tables {
    /// Reads [`STATE_TABLE_ENV`], [`APPROVALS_TABLE_ENV`] and [`AUDIT_TABLE_ENV`] through
    /// `get`; fails with [`Error::InvalidInput`] naming every one that is missing or empty.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Tables, Error> {
        let read = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let (state, approvals, audit) = (
            read(STATE_TABLE_ENV),
            read(APPROVALS_TABLE_ENV),
            read(AUDIT_TABLE_ENV),
        );
        match (state, approvals, audit) {
            (Some(state), Some(approvals), Some(audit)) => Ok(Tables {
                state,
                approvals,
                audit,
            }),
            (state, approvals, audit) => {
                let missing: Vec<&str> = [
                    (state.is_none(), STATE_TABLE_ENV),
                    (approvals.is_none(), APPROVALS_TABLE_ENV),
                    (audit.is_none(), AUDIT_TABLE_ENV),
                ]
                .into_iter()
                .filter_map(|(m, n)| m.then_some(n))
                .collect();
                Err(Error::InvalidInput(format!(
                    "the DynamoDB store needs the environment variable(s) {} (table names)",
                    missing.join(", ")
                )))
            }
        }
    }
}

/// The DynamoDB-backed [`Store`].
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
    ttl: HashMap<String, TtlPolicy>,
    clock: Arc<dyn Clock>,
    key: AuditKey,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("tables", &self.tables)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// A store on `tables`, with a client built from `sdk`, the [`default_ttl_policies`] and
    /// the system clock.
    pub fn new(sdk: &aws_config::SdkConfig, tables: Tables, key: AuditKey) -> DynamoStore {
        DynamoStore {
            client: Client::new(sdk),
            tables,
            ttl: default_ttl_policies(),
            clock: Arc::new(SystemClock),
            key,
        }
    }

    /// A store on `tables` through an existing client (for example one with interceptors).
    pub fn from_client(client: Client, tables: Tables, key: AuditKey) -> DynamoStore {
        DynamoStore {
            client,
            tables,
            key,
            ttl: default_ttl_policies(),
            clock: Arc::new(SystemClock),
        }
    }

    /// A store on the tables named by `CERTOPS_STATE_TABLE`, `CERTOPS_APPROVALS_TABLE` and
    /// `CERTOPS_AUDIT_TABLE`. Each function is given only the tables it uses, so a variable
    /// may be missing: the store then fails with [`Error::InvalidInput`] naming the variable
    /// when (and only when) that table is used. Fails here if none is set.
    pub fn from_env(sdk: &aws_config::SdkConfig, key: AuditKey) -> Result<DynamoStore, Error> {
        let read = |n: &str| {
            std::env::var(n)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_default()
        };
        let tables = Tables {
            state: read(STATE_TABLE_ENV),
            approvals: read(APPROVALS_TABLE_ENV),
            audit: read(AUDIT_TABLE_ENV),
        };
        if tables.state.is_empty() && tables.approvals.is_empty() && tables.audit.is_empty() {
            // Names every variable.
            Tables::from_vars(|_| None)?;
        }
        Ok(DynamoStore::new(sdk, tables, key))
    }

    /// A physical table name, or the error naming the variable that was not set.
    fn physical<'a>(name: &'a str, var: &str) -> Result<&'a str, Error> {
        if name.is_empty() {
            Err(Error::InvalidInput(format!(
                "{var} is not set for this function; it needs that table"
            )))
        } else {
            Ok(name)
        }
    }

    fn audit_table(&self) -> Result<&str, Error> {
        Self::physical(&self.tables.audit, AUDIT_TABLE_ENV)
    }

    /// Sets the TTL policy of one logical table (replacing its default).
    pub fn with_ttl(mut self, table: &str, policy: TtlPolicy) -> DynamoStore {
        self.ttl.insert(table.to_string(), policy);
        self
    }

    /// Reads time (for retention-based TTLs) from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> DynamoStore {
        self.clock = clock;
        self
    }

    /// The physical tables.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The physical table and partition key of `key` in logical `table`.
    pub fn location(&self, table: &str, key: &str) -> Result<(&str, String), Error> {
        check_names(table, key)?;
        let physical = if table == APPROVALS {
            Self::physical(&self.tables.approvals, APPROVALS_TABLE_ENV)?
        } else {
            Self::physical(&self.tables.state, STATE_TABLE_ENV)?
        };
        Ok((physical, format!("{table}#{key}")))
    }

    fn item(&self, table: &str, pk: String, value: &Value) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (PK.to_string(), AttributeValue::S(pk)),
            (
                VALUE.to_string(),
                AttributeValue::S(to_canonical_string(value)),
            ),
        ]);
        let expiry = self
            .ttl
            .get(table)
            .and_then(|p| p.expiry(value, self.clock.now()));
        if let Some(at) = expiry {
            item.insert(TTL.to_string(), AttributeValue::N(at.to_string()));
        }
        item
    }

    /// A conditional `PutItem`; `Ok(false)` when the condition fails.
    async fn conditional_put(
        &self,
        table: &str,
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
    async fn read_text(&self, table: &str, key: &str) -> Result<Option<String>, Error> {
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
                Error::InvalidInput(format!(
                    "{table}#{key} in {physical} has no {VALUE} text attribute"
                ))
            })
    }

    /// The head of `execution`'s chain: `(seq, hash, stored text)`.
    async fn read_head(&self, execution: &str) -> Result<Option<(ChainHead, String)>, Error> {
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
    async fn read_record(&self, execution: &str, seq: u64) -> Result<Option<AuditRecord>, Error> {
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
    async fn last_record(&self, execution: &str) -> Result<Option<AuditRecord>, Error> {
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
    async fn current_tail(
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
    async fn commit(&self, record: &AuditRecord, head: Option<&str>) -> Result<bool, Error> {
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
    async fn committed(&self, record: &AuditRecord) -> Result<bool, Error> {
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

fn check_names(table: &str, key: &str) -> Result<(), Error> {
    if table.is_empty() || key.is_empty() {
        return Err(Error::InvalidInput(
            "store table and key must not be empty".into(),
        ));
    }
    if table.contains('#') {
        return Err(Error::InvalidInput(format!(
            "store table \"{table}\" must not contain '#' (it separates table and key)"
        )));
    }
    Ok(())
}

fn string_attr<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn number_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// A stored audit record; one that does not parse is a broken chain, not an outage.
fn parse_record(item: &HashMap<String, AttributeValue>, seq: u64) -> Result<AuditRecord, Error> {
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
fn backoff(attempt: u32) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % 20;
    Duration::from_millis(5 * u64::from(attempt.min(10)) + jitter)
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_if_absent(&self, table: &str, key: &str, value: &Value) -> Result<bool, Error> {
        self.conditional_put(table, key, value, None).await
    }

    async fn get(&self, table: &str, key: &str) -> Result<Option<Value>, Error> {
        let Some(text) = self.read_text(table, key).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::InvalidInput(format!(
                "stored value of {table}#{key} is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    async fn compare_and_swap(
        &self,
        table: &str,
        key: &str,
        expected: Option<&Value>,
        new: &Value,
    ) -> Result<bool, Error> {
        self.conditional_put(table, key, new, expected).await
    }

    async fn delete_if(&self, table: &str, key: &str, expected: &Value) -> Result<bool, Error> {
        let (physical, pk) = self.location(table, key)?;
        let result = self
            .client
            .delete_item()
            .table_name(physical)
            .key(PK, AttributeValue::S(pk))
            .condition_expression("attribute_exists(#pk) AND #v = :expected")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#v", VALUE)
            .expression_attribute_values(
                ":expected",
                AttributeValue::S(to_canonical_string(expected)),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("DynamoDB DeleteItem", physical, e)),
        }
    }

    async fn append_audit(&self, execution: &str, entry: AuditEntry) -> Result<AuditRecord, Error> {
        if execution.trim().is_empty() {
            return Err(Error::InvalidInput(
                "audit record needs an execution".into(),
            ));
        }
        let mut unsettled = 0;
        for attempt in 1..=MAX_APPEND_ATTEMPTS {
            let (prev, head) = match self.current_tail(execution).await {
                Ok(tail) => tail,
                // A head and a last record that disagree are tampering, or a concurrent
                // append seen half-way where the service does not isolate a transaction's
                // items from single-item reads (moto): look again a few times first.
                Err(e @ Error::ChainBreak { .. }) => {
                    unsettled += 1;
                    if unsettled >= UNSETTLED_READS {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // `next` refuses secret material (check_no_secrets) before anything is written.
            let record = AuditRecord::next(prev.as_ref(), execution, entry.clone())?;
            if self.commit(&record, head.as_deref()).await? {
                return Ok(record);
            }
            tracing::debug!(%execution, attempt, "audit append lost to a concurrent append; retrying");
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(Error::Transient(format!(
            "audit append to {execution} lost to concurrent appends {MAX_APPEND_ATTEMPTS} times"
        )))
    }

    async fn audit(&self, execution: &str) -> Result<Vec<AuditRecord>, Error> {
        let audit = self.audit_table()?;
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(audit)
                .key_condition_expression("#e = :e AND #s >= :first")
                .expression_attribute_names("#e", "execution")
                .expression_attribute_names("#s", "seq")
                .expression_attribute_values(":e", AttributeValue::S(execution.to_string()))
                .expression_attribute_values(":first", AttributeValue::N("0".into()))
                .scan_index_forward(true)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("DynamoDB Query", audit, e))?;
            for item in out.items() {
                let seq = number_attr(item, "seq").unwrap_or_default();
                records.push(parse_record(item, seq)?);
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(records);
            }
        }
    }

    async fn audit_head(&self, execution: &str) -> Result<Option<ChainHead>, Error> {
        Ok(self.read_head(execution).await?.map(|(head, _)| head))
    }

    async fn audited_executions(&self) -> Result<Vec<String>, Error> {
        let audit = self.audit_table()?;
        let mut executions = BTreeSet::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(audit)
                .projection_expression("#e")
                .expression_attribute_names("#e", "execution")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("DynamoDB Scan", audit, e))?;
            executions.extend(
                out.items()
                    .iter()
                    .filter_map(|i| string_attr(i, "execution").map(str::to_string)),
            );
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(executions.into_iter().collect());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn a_table_the_function_was_not_given_is_named_when_used() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let store = DynamoStore::new(
            &sdk,
            Tables {
                state: "certops-state".into(),
                approvals: String::new(),
                audit: String::new(),
            },
            AuditKey::new(vec![5u8; 32]).unwrap(),
        );
        // Neither call reaches the network: the missing table is found first.
        let e = store.get(APPROVALS, "a-1").await.unwrap_err();
        assert_eq!(e.name(), "InvalidInput");
        assert!(e.to_string().contains(APPROVALS_TABLE_ENV), "{e}");
        let e = store.audit("exec-1").await.unwrap_err();
        assert!(e.to_string().contains(AUDIT_TABLE_ENV), "{e}");
        assert_eq!(store.location("locks", "k").unwrap().0, "certops-state");
    }

    #[test]
    fn approvals_expire_from_their_expires_at_plus_grace() {
        let p = &default_ttl_policies()[APPROVALS];
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap();
        let grace = secs(DEFAULT_APPROVAL_GRACE);
        assert_eq!(
            p.expiry(&json!({"expires_at": at.to_rfc3339()}), now()),
            Some(at.timestamp() + grace)
        );
        assert_eq!(
            p.expiry(&json!({"request": {"expires_at": at}}), now()),
            Some(at.timestamp() + grace)
        );
        assert_eq!(p.expiry(&json!({"status": "pending"}), now()), None);
        assert_eq!(p.expiry(&json!({"expires_at": "soon"}), now()), None);
    }

    #[test]
    fn triggers_outlive_the_execution_name_reuse_window() {
        // Step Functions refuses a closed execution's name for 90 days; an execution closes
        // at most 48 h after it started.
        let TtlPolicy::Retention(kept) = default_ttl_policies()["triggers"].clone() else {
            panic!("triggers expire by retention");
        };
        assert!(
            kept >= Duration::from_secs((90 * 24 + 48) * 3600),
            "{kept:?}"
        );
    }

    #[test]
    fn the_append_token_names_the_record_and_fits_dynamodb() {
        let t = append_token("exec-1", 3, "aa11");
        assert_eq!(
            t,
            append_token("exec-1", 3, "aa11"),
            "a retried request, the same token"
        );
        assert_ne!(
            t,
            append_token("exec-1", 3, "bb22"),
            "another record, another token"
        );
        assert_ne!(t, append_token("exec-1", 4, "aa11"));
        assert_ne!(t, append_token("exec-2", 3, "aa11"));
        assert!((1..=36).contains(&t.len()) && t.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn retention_counts_from_the_write() {
        let p = TtlPolicy::Retention(Duration::from_secs(60));
        assert_eq!(p.expiry(&json!(1), now()), Some(now().timestamp() + 60));
        assert_eq!(TtlPolicy::Keep.expiry(&json!(1), now()), None);
    }

    #[test]
    fn missing_table_variables_are_all_named() {
        let err =
            Tables::from_vars(|n| (n == STATE_TABLE_ENV).then(|| "state".to_string())).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        let text = err.to_string();
        assert!(text.contains(APPROVALS_TABLE_ENV) && text.contains(AUDIT_TABLE_ENV));
        assert!(!text.contains(STATE_TABLE_ENV), "{text}");
        let tables = Tables::from_vars(|n| Some(format!("t-{n}"))).unwrap();
        assert_eq!(tables.audit, format!("t-{AUDIT_TABLE_ENV}"));
    }
}
