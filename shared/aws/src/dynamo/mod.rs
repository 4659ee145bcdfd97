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
use std::sync::Arc;

use crate::sdk_error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use certops_core::canonical::to_canonical_string;
use certops_core::ports::{Clock, Store, SystemClock, Table};
use certops_core::{AuditEntry, AuditKey, AuditRecord, ChainHead, Error};
use serde_json::Value;

mod audit_chain;
mod items;
mod ttl;

pub use audit_chain::append_token;
use audit_chain::{backoff, parse_record, MAX_APPEND_ATTEMPTS, UNSETTLED_READS};
use items::{check_key, number_attr, string_attr};
pub use ttl::{
    default_ttl_policies, TtlPolicy, DEFAULT_APPROVAL_GRACE, DEFAULT_LOCK_RETENTION,
    DEFAULT_TRIGGER_RETENTION, EXECUTION_NAME_REUSE, EXECUTION_TIMEOUT,
};

/// The SDK this adapter is built on, re-exported so tools and tests build matching clients
/// (for example to create tables on an emulator).
pub use aws_sdk_dynamodb;

/// Environment variable naming the state table.
pub const STATE_TABLE_ENV: &str = "CERTOPS_STATE_TABLE";
/// Environment variable naming the approvals table.
pub const APPROVALS_TABLE_ENV: &str = "CERTOPS_APPROVALS_TABLE";
/// Environment variable naming the audit table.
pub const AUDIT_TABLE_ENV: &str = "CERTOPS_AUDIT_TABLE";

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
    /// `get`; fails with [`Error::Misconfigured`] naming every one that is missing or empty.
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
                Err(Error::Misconfigured(format!(
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
    ttl: HashMap<Table, TtlPolicy>,
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
    /// may be missing: the store then fails with [`Error::Misconfigured`] naming the variable
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
            Err(Error::Misconfigured(format!(
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
    pub fn with_ttl(mut self, table: Table, policy: TtlPolicy) -> DynamoStore {
        self.ttl.insert(table, policy);
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
    pub fn location(&self, table: Table, key: &str) -> Result<(&str, String), Error> {
        check_key(key)?;
        let physical = if table == Table::Approvals {
            Self::physical(&self.tables.approvals, APPROVALS_TABLE_ENV)?
        } else {
            Self::physical(&self.tables.state, STATE_TABLE_ENV)?
        };
        Ok((physical, format!("{table}#{key}")))
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_if_absent(&self, table: Table, key: &str, value: &Value) -> Result<bool, Error> {
        self.conditional_put(table, key, value, None).await
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Value>, Error> {
        let Some(text) = self.read_text(table, key).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Corrupt(format!(
                "stored value of {table}#{key} is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: Option<&Value>,
        new: &Value,
    ) -> Result<bool, Error> {
        self.conditional_put(table, key, new, expected).await
    }

    async fn delete_if(&self, table: Table, key: &str, expected: &Value) -> Result<bool, Error> {
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
mod tests;
