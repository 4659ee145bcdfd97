//! The one SQLite file the embedded adapters share (WAL mode), and the mapping of SQLite
//! failures onto [`certops_core::Error`].
//!
//! Every SQLite-backed adapter ([`crate::SqliteStore`], [`crate::SqliteQueue`],
//! [`crate::TicketBook`], [`crate::LocalChat`]) holds a clone of one [`LocalDb`]; the
//! connection sits behind a mutex so statements from one process never interleave, and
//! read-modify-write operations use `BEGIN IMMEDIATE` so a second process (the CLI next to
//! `certops serve`) is serialized by SQLite's own write lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use certops_core::Error;
use rusqlite::{Connection, ErrorCode};

/// Every table the embedded adapters use. `IF NOT EXISTS` makes opening idempotent.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kv (
    tbl   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tbl, key)
);

CREATE TABLE IF NOT EXISTS audit (
    execution TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    record    TEXT    NOT NULL,
    UNIQUE (execution, seq)
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;

CREATE TABLE IF NOT EXISTS audit_heads (
    execution TEXT PRIMARY KEY,
    head      TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit heads are never deleted'); END;

CREATE TABLE IF NOT EXISTS queue_messages (
    pos           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    queue         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_by_queue ON queue_messages (queue, visible_at_ms);

CREATE TABLE IF NOT EXISTS tickets (
    pos            INTEGER PRIMARY KEY AUTOINCREMENT,
    number         TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL UNIQUE,
    ticket         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ticket_counters (
    prefix TEXT    PRIMARY KEY,
    last   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS chat_cards (
    pos         INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id TEXT    NOT NULL UNIQUE,
    card        TEXT    NOT NULL,
    dismissed   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chat_notifications (
    pos   INTEGER PRIMARY KEY AUTOINCREMENT,
    at    TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text  TEXT NOT NULL
);
"#;

/// One SQLite database shared by the SQLite-backed adapters. Cheap to clone.
#[derive(Clone)]
pub struct LocalDb {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for LocalDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDb").field("path", &self.path).finish()
    }
}

impl LocalDb {
    /// Opens (creating if needed) the database file at `path` in WAL mode and creates every
    /// table. Fails with [`Error::Transient`] when the file cannot be opened.
    pub fn open(path: &Path) -> Result<LocalDb, Error> {
        let conn = Connection::open(path).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// An in-memory database (tests, throwaway demos): same schema, nothing persisted.
    pub fn open_in_memory() -> Result<LocalDb, Error> {
        Self::init(Connection::open_in_memory().map_err(db_err)?, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<LocalDb, Error> {
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(LocalDb {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file, `None` when in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` with exclusive use of the connection (within this process).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut guard: MutexGuard<'_, Connection> =
            self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// Maps a SQLite failure onto the core's errors: a unique-constraint violation is a
/// [`Error::Conflict`], anything else (busy, I/O, corruption) a [`Error::Transient`].
pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
            Error::Conflict(format!("sqlite constraint: {e}"))
        }
        _ => Error::Transient(format!("sqlite: {e}")),
    }
}

/// Serializes a value for a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::InvalidInput(format!("not serializable: {e}")))
}

/// Parses a JSON column; a row that does not parse was written by something else.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, Error> {
    // Corrupt stored data does not heal on a retry: Corrupt, never Transient, as on DynamoDB.
    serde_json::from_str(text)
        .map_err(|e| Error::Corrupt(format!("stored {what} does not parse: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_wal_database_with_every_table_and_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certops.db");
        let db = LocalDb::open(&path).unwrap();
        let (mode, tables) = db
            .with(|c| {
                let mode: String = c
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(db_err)?;
                let mut stmt = c
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                    .map_err(db_err)?;
                let names = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                Ok((mode, names))
            })
            .unwrap();
        assert_eq!(mode, "wal");
        for t in [
            "audit",
            "chat_cards",
            "chat_notifications",
            "kv",
            "queue_messages",
            "ticket_counters",
            "tickets",
        ] {
            assert!(tables.contains(&t.to_string()), "{t} missing: {tables:?}");
        }
        drop(db);
        let again = LocalDb::open(&path).unwrap();
        assert_eq!(again.path(), Some(path.as_path()));
    }

    #[test]
    fn a_unique_violation_is_a_conflict_and_other_failures_are_transient() {
        let db = LocalDb::open_in_memory().unwrap();
        let err = db
            .with(|c| {
                c.execute(
                    "INSERT INTO kv (tbl, key, value) VALUES ('t', 'k', '1')",
                    [],
                )
                .map_err(db_err)?;
                c.execute(
                    "INSERT INTO kv (tbl, key, value) VALUES ('t', 'k', '2')",
                    [],
                )
                .map_err(db_err)
            })
            .unwrap_err();
        assert_eq!(err.name(), "Conflict");
        let err = db
            .with(|c| c.execute("SELECT * FROM no_such_table", []).map_err(db_err))
            .unwrap_err();
        assert_eq!(err.name(), "Transient");
    }
}
