//! SQLite persistence for the engine: state machines, execution snapshots and
//! history events. Each advance of an execution is written in one transaction
//! (its new events plus its snapshot), so a restart resumes from a consistent
//! point.

use crate::history::HistoryEvent;
use crate::machine::{Execution, Invocation};
use rusqlite::{params, Connection};
use std::path::Path;

/// The store failed. The engine reports it as [`EngineError::Store`]
/// (kind [`EngineErrorKind::StoreFailure`]). New variants may be added.
///
/// [`EngineError::Store`]: crate::EngineError::Store
/// [`EngineErrorKind::StoreFailure`]: crate::EngineErrorKind::StoreFailure
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored record could not be decoded.
    #[error("state database holds an unreadable record: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A stored state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineRow {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// Definition text as given (substitutions applied).
    pub definition: String,
    /// Role ARN.
    pub role_arn: String,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// Last update time, epoch ms.
    pub updated_ms: i64,
    /// Revision counter (bumped by updates).
    pub revision: u64,
}

/// The SQLite-backed store.
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA cache_size = -1024;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS state_machines (
                 arn TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 definition TEXT NOT NULL,
                 role_arn TEXT NOT NULL,
                 created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL,
                 revision INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS executions (
                 arn TEXT PRIMARY KEY,
                 state_machine_arn TEXT NOT NULL,
                 status TEXT NOT NULL,
                 start_ms INTEGER NOT NULL,
                 definition TEXT NOT NULL,
                 snapshot TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS executions_by_machine ON executions(state_machine_arn, start_ms);
             CREATE TABLE IF NOT EXISTS events (
                 execution_arn TEXT NOT NULL,
                 id INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (execution_arn, id)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS pending_invocations (
                 execution_arn TEXT NOT NULL,
                 frame INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (execution_arn, frame)
             ) WITHOUT ROWID;",
        )?;
        Ok(SqliteStore { conn })
    }

    /// Inserts or replaces a state machine.
    pub fn put_machine(&mut self, m: &MachineRow) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO state_machines (arn, name, definition, role_arn, created_ms, updated_ms, revision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(arn) DO UPDATE SET definition = excluded.definition, role_arn = excluded.role_arn,
                 updated_ms = excluded.updated_ms, revision = excluded.revision",
            params![m.arn, m.name, m.definition, m.role_arn, m.created_ms, m.updated_ms, m.revision as i64],
        )?;
        Ok(())
    }

    /// Deletes a state machine (its executions stay readable).
    pub fn delete_machine(&mut self, arn: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM state_machines WHERE arn = ?1", params![arn])?;
        Ok(())
    }

    /// Every stored state machine.
    pub fn machines(&self) -> Result<Vec<MachineRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT arn, name, definition, role_arn, created_ms, updated_ms, revision FROM state_machines ORDER BY created_ms",
        )?;
        let rows = st.query_map([], |r| {
            Ok(MachineRow {
                arn: r.get(0)?,
                name: r.get(1)?,
                definition: r.get(2)?,
                role_arn: r.get(3)?,
                created_ms: r.get(4)?,
                updated_ms: r.get(5)?,
                revision: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Writes an execution's new events and its snapshot in one transaction.
    /// `definition` is given on the first save only.
    pub fn save_execution(
        &mut self,
        exec: &Execution,
        definition: Option<&str>,
        events: &[HistoryEvent],
        invocations: &[Invocation],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut pending = tx.prepare_cached(
                "INSERT OR REPLACE INTO pending_invocations (execution_arn, frame, seq, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for inv in invocations {
                pending.execute(params![
                    exec.meta.execution_arn,
                    inv.frame,
                    inv.seq as i64,
                    serde_json::to_string(inv)?
                ])?;
            }
            if exec.status != crate::machine::ExecutionStatus::Running {
                tx.prepare_cached("DELETE FROM pending_invocations WHERE execution_arn = ?1")?
                    .execute(params![exec.meta.execution_arn])?;
            }
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO events (execution_arn, id, body) VALUES (?1, ?2, ?3)",
            )?;
            for e in events {
                ins.execute(params![
                    exec.meta.execution_arn,
                    e.id as i64,
                    serde_json::to_string(e)?
                ])?;
            }
            let snapshot = serde_json::to_string(exec)?;
            match definition {
                Some(d) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO executions (arn, state_machine_arn, status, start_ms, definition, snapshot)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        exec.meta.execution_arn,
                        exec.meta.state_machine_arn,
                        exec.status.as_str(),
                        exec.meta.start_ms,
                        d,
                        snapshot
                    ])?;
                }
                None => {
                    tx.prepare_cached(
                        "UPDATE executions SET status = ?2, snapshot = ?3 WHERE arn = ?1",
                    )?
                    .execute(params![
                        exec.meta.execution_arn,
                        exec.status.as_str(),
                        snapshot
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every stored execution with the definition it started with, oldest first.
    pub fn executions(&self) -> Result<Vec<(Execution, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT snapshot, definition FROM executions ORDER BY start_ms, arn")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (snap, def) = row?;
            out.push((serde_json::from_str(&snap)?, def));
        }
        Ok(out)
    }

    /// The full history of one execution, in id order.
    pub fn history(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT body FROM events WHERE execution_arn = ?1 ORDER BY id")?;
        let rows = st.query_map(params![execution_arn], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in rows {
            out.push(serde_json::from_str(&body?)?);
        }
        Ok(out)
    }

    /// Task invocations recorded for an execution that may not have completed.
    pub fn pending_invocations(&self, execution_arn: &str) -> Result<Vec<Invocation>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT body FROM pending_invocations WHERE execution_arn = ?1 ORDER BY frame",
        )?;
        let rows = st.query_map(params![execution_arn], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in rows {
            out.push(serde_json::from_str(&body?)?);
        }
        Ok(out)
    }
}
