//! [`Store`] over SQLite: a key/value table with conditional writes, and the append-only,
//! hash-chained audit trail.
//!
//! Every conditional write is one `BEGIN IMMEDIATE` transaction, so the read and the write
//! cannot be separated by another writer in this or another process. Audit rows carry a
//! `UNIQUE (execution, seq)` constraint and SQL triggers that abort any `UPDATE` or
//! `DELETE`: the chain can only grow, and two concurrent appends can never both become
//! record *n*. Each append also moves the chain's anchored head (`audit_heads`: length, last
//! hash and an HMAC under the [`AuditKey`]) in the same transaction, and refuses to extend a
//! chain whose head is missing or does not match its last record.

use async_trait::async_trait;
use certops_core::ports::{Store, Table};
use certops_core::{AuditEntry, AuditKey, AuditRecord, ChainHead, Error};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use crate::local_db::{db_err, from_json, to_json, LocalDb};

const NO_UPDATE: &str = "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit \
     BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;";
const NO_DELETE: &str = "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit \
     BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;";
const NO_HEAD_DELETE: &str = "CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads \
     BEGIN SELECT RAISE(ABORT, 'audit heads are never deleted'); END;";

/// The SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: LocalDb,
    key: AuditKey,
}

impl SqliteStore {
    /// A store over `db`'s `kv`, `audit` and `audit_heads` tables; `key` MACs the heads.
    pub fn new(db: LocalDb, key: AuditKey) -> SqliteStore {
        SqliteStore { db, key }
    }

    /// Runs `sql` with `params` with the append-only trigger `trigger` out of the way (dropped
    /// and re-created from `create` in the same transaction), as someone with write access to
    /// the database file could. Returns the rows changed. For the tamper helpers below only.
    fn bypassing(
        &self,
        trigger: &str,
        create: &str,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<usize, Error> {
        self.db.with(|c| {
            let tx = c.transaction().map_err(db_err)?;
            tx.execute_batch(&format!("DROP TRIGGER {trigger};"))
                .map_err(db_err)?;
            let n = tx.execute(sql, params).map_err(db_err)?;
            tx.execute_batch(create).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(n)
        })
    }

    /// **For tests of `certops audit verify` only.** Deletes the anchored head of
    /// `execution`, bypassing the trigger that forbids it. Returns whether one was deleted.
    pub fn tamper_delete_head(&self, execution: &str) -> Result<bool, Error> {
        self.bypassing(
            "audit_heads_no_delete",
            NO_HEAD_DELETE,
            "DELETE FROM audit_heads WHERE execution = ?1",
            &[&execution],
        )
        .map(|n| n > 0)
    }

    /// **For tests of `certops audit verify` only.** Deletes the records of `execution`
    /// from `from_seq` on, bypassing the append-only trigger. Returns how many.
    pub fn tamper_truncate(&self, execution: &str, from_seq: u64) -> Result<usize, Error> {
        self.bypassing(
            "audit_no_delete",
            NO_DELETE,
            "DELETE FROM audit WHERE execution = ?1 AND seq >= ?2",
            &[&execution, &seq_to_sql(from_seq)?],
        )
    }

    /// **For tests of `certops audit verify` only.** Replaces the stored record at
    /// `record.seq` of `record.execution` with `record` as given (for instance edited and
    /// re-hashed), bypassing the append-only trigger, as someone with write access to the
    /// database file but not the audit key could. Returns whether a record was replaced.
    pub fn tamper_replace_record(&self, record: &AuditRecord) -> Result<bool, Error> {
        self.bypassing(
            "audit_no_update",
            NO_UPDATE,
            "UPDATE audit SET record = ?3 WHERE execution = ?1 AND seq = ?2",
            &[
                &record.execution,
                &seq_to_sql(record.seq)?,
                &to_json(record)?,
            ],
        )
        .map(|n| n > 0)
    }

    /// **For tests of `certops audit verify` only.** Rewrites the `summary` of one stored
    /// audit record in place, bypassing the append-only trigger, to simulate someone editing
    /// the database file. The record's hash is left alone, so [`certops_core::verify_chain`]
    /// must then report a break at `seq`. Returns whether a record was changed.
    pub fn tamper_audit_summary(
        &self,
        execution: &str,
        seq: u64,
        new_summary: Value,
    ) -> Result<bool, Error> {
        let sql_seq = seq_to_sql(seq)?;
        let stored: Option<String> = self.db.with(|c| {
            c.query_row(
                "SELECT record FROM audit WHERE execution = ?1 AND seq = ?2",
                params![execution, sql_seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
        })?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let mut record: Value = from_json(&stored, "audit record")?;
        record["summary"] = new_summary;
        self.bypassing(
            "audit_no_update",
            NO_UPDATE,
            "UPDATE audit SET record = ?3 WHERE execution = ?1 AND seq = ?2",
            &[&execution, &sql_seq, &to_json(&record)?],
        )
        .map(|n| n > 0)
    }
}

fn seq_to_sql(seq: u64) -> Result<i64, Error> {
    i64::try_from(seq).map_err(|_| Error::InvalidInput(format!("audit seq {seq} is out of range")))
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidInput("a store key must not be empty".into()));
    }
    Ok(())
}

fn read_value(
    tx: &rusqlite::Transaction<'_>,
    table: Table,
    key: &str,
) -> Result<Option<Value>, Error> {
    let text: Option<String> = tx
        .query_row(
            "SELECT value FROM kv WHERE tbl = ?1 AND key = ?2",
            params![table.name(), key],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
    text.map(|t| from_json(&t, "value")).transpose()
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_if_absent(&self, table: Table, key: &str, value: &Value) -> Result<bool, Error> {
        check_key(key)?;
        let text = to_json(value)?;
        self.db.with(|c| {
            let n = c
                .execute(
                    "INSERT INTO kv (tbl, key, value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tbl, key) DO NOTHING",
                    params![table.name(), key, text],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Value>, Error> {
        self.db.with(|c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT value FROM kv WHERE tbl = ?1 AND key = ?2",
                    params![table.name(), key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            text.map(|t| from_json(&t, "value")).transpose()
        })
    }

    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: Option<&Value>,
        new: &Value,
    ) -> Result<bool, Error> {
        check_key(key)?;
        let text = to_json(new)?;
        self.db.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            // Compare parsed JSON, not text: key order must not matter.
            if read_value(&tx, table, key)?.as_ref() != expected {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO kv (tbl, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
                params![table.name(), key, text],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
    }

    async fn delete_if(&self, table: Table, key: &str, expected: &Value) -> Result<bool, Error> {
        check_key(key)?;
        self.db.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            if read_value(&tx, table, key)?.as_ref() != Some(expected) {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM kv WHERE tbl = ?1 AND key = ?2",
                params![table.name(), key],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
    }

    async fn append_audit(&self, execution: &str, entry: AuditEntry) -> Result<AuditRecord, Error> {
        self.db.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let last: Option<String> = tx
                .query_row(
                    "SELECT record FROM audit WHERE execution = ?1 ORDER BY seq DESC LIMIT 1",
                    params![execution],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let prev: Option<AuditRecord> =
                last.map(|t| from_json(&t, "audit record")).transpose()?;
            let head: Option<ChainHead> = tx
                .query_row(
                    "SELECT head FROM audit_heads WHERE execution = ?1",
                    params![execution],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .map_err(db_err)?
                .map(|t| from_json(&t, "audit head"))
                .transpose()?;
            certops_core::audit::check_append(execution, prev.as_ref(), head.as_ref(), &self.key)?;
            // `next` refuses secret material (check_no_secrets) before anything is written.
            let record = AuditRecord::next(prev.as_ref(), execution, entry)?;
            tx.execute(
                "INSERT INTO audit (execution, seq, record) VALUES (?1, ?2, ?3)",
                params![execution, seq_to_sql(record.seq)?, to_json(&record)?],
            )
            .map_err(db_err)?;
            tx.execute(
                "INSERT INTO audit_heads (execution, head) VALUES (?1, ?2) \
                 ON CONFLICT (execution) DO UPDATE SET head = excluded.head",
                params![execution, to_json(&ChainHead::after(&record, &self.key))?],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(record)
        })
    }

    async fn audit(&self, execution: &str) -> Result<Vec<AuditRecord>, Error> {
        self.db.with(|c| {
            let mut stmt = c
                .prepare("SELECT seq, record FROM audit WHERE execution = ?1 ORDER BY seq")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![execution], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            rows.into_iter()
                .map(|(seq, text)| {
                    // A row edited into something unparseable is a broken chain, not an outage.
                    serde_json::from_str(&text).map_err(|e| Error::ChainBreak {
                        seq: u64::try_from(seq).unwrap_or_default(),
                        reason: format!("stored record does not parse: {e}"),
                    })
                })
                .collect()
        })
    }

    async fn audit_head(&self, execution: &str) -> Result<Option<ChainHead>, Error> {
        self.db.with(|c| {
            c.query_row(
                "SELECT head FROM audit_heads WHERE execution = ?1",
                params![execution],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(db_err)?
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| Error::ChainBreak {
                    seq: 0,
                    reason: format!("the anchored head of {execution} does not parse: {e}"),
                })
            })
            .transpose()
        })
    }

    async fn audited_executions(&self) -> Result<Vec<String>, Error> {
        self.db.with(|c| {
            // Executions with records or with a head: a chain whose records are all gone
            // still has its head, and is reported as missing.
            let mut stmt = c
                .prepare(
                    "SELECT execution FROM audit UNION SELECT execution FROM audit_heads \
                     ORDER BY execution",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    // The Store port's behaviour (conditional writes, the audit chain, secret refusal) is
    // checked for this store and DynamoDB alike by tests/harness/contract/store.rs; these
    // tests cover what is SQLite's own: separate connections, SQL-level append-only, tamper.
    use super::*;
    use certops_core::{verify_chain, AuditKind};
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalDb::open(&dir.path().join("certops.db")).unwrap();
        (
            dir,
            SqliteStore::new(db, certops_core::AuditKey::new(vec![3u8; 32]).unwrap()),
        )
    }

    fn entry(n: u32, summary: Value) -> AuditEntry {
        AuditEntry {
            at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, n).unwrap(),
            kind: AuditKind::Action,
            actor: "step:test".into(),
            summary,
            runbook_version: "1.0.0".into(),
        }
    }

    fn race<T: Send + 'static>(
        path: &std::path::Path,
        n: usize,
        f: impl Fn(SqliteStore, usize) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let f = Arc::new(f);
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let store = SqliteStore::new(
                    LocalDb::open(path).unwrap(),
                    certops_core::AuditKey::new(vec![3u8; 32]).unwrap(),
                );
                let f = f.clone();
                std::thread::spawn(move || f(store, i))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn concurrent_lock_attempts_from_separate_connections_have_exactly_one_winner() {
        let (dir, _s) = store();
        let wins = race(&dir.path().join("certops.db"), 8, |s, i| {
            block_on(s.compare_and_swap(Table::Locks, "cert", None, &json!({"exec": i}))).unwrap()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    }

    #[test]
    fn concurrent_appends_from_separate_connections_never_fork_the_chain() {
        let (dir, s) = store();
        race(&dir.path().join("certops.db"), 8, |s, i| {
            for j in 0..5 {
                block_on(s.append_audit("exec-c", entry(j, json!({"writer": i})))).unwrap();
            }
        });
        let records = block_on(s.audit("exec-c")).unwrap();
        assert_eq!(records.len(), 40);
        assert_eq!(verify_chain(&records), Ok(()));
    }

    #[tokio::test]
    async fn audit_rows_cannot_be_updated_or_deleted_through_sql() {
        let (_d, s) = store();
        s.append_audit("exec-1", entry(0, json!({}))).await.unwrap();
        let update = s.db.with(|c| {
            c.execute("UPDATE audit SET record = '{}'", [])
                .map_err(db_err)
        });
        assert!(update.is_err());
        let delete =
            s.db.with(|c| c.execute("DELETE FROM audit", []).map_err(db_err));
        assert!(delete.is_err());
        assert_eq!(s.audit("exec-1").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn tampering_is_detected_by_verify_chain() {
        let (_d, s) = store();
        for i in 0..3 {
            s.append_audit("exec-t", entry(i, json!({"approver": "dana"})))
                .await
                .unwrap();
        }
        assert!(s
            .tamper_audit_summary("exec-t", 1, json!({"approver": "mallory"}))
            .unwrap());
        assert!(!s.tamper_audit_summary("exec-t", 7, json!({})).unwrap());
        let records = s.audit("exec-t").await.unwrap();
        assert_eq!(records[1].summary, json!({"approver": "mallory"}));
        match verify_chain(&records) {
            Err(Error::ChainBreak { seq, .. }) => assert_eq!(seq, 1),
            other => panic!("tampering not detected: {other:?}"),
        }
        // The append-only trigger is back in place afterwards.
        assert!(s
            .db
            .with(|c| c
                .execute("UPDATE audit SET record = '{}'", [])
                .map_err(db_err))
            .is_err());
    }
}
