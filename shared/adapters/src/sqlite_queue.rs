//! [`Queue`] persisted in SQLite with SQS semantics: visibility timeout, receive count,
//! delete by receipt, and a dead-letter queue.
//!
//! A message received `max_receives` times without being deleted is moved to
//! `<queue>-dlq` the next time a receive would deliver it (SQS's `maxReceiveCount`), so a
//! poison message ends up somewhere a human looks instead of being retried forever or lost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certops_core::ports::{Clock, Message, Queue};
use certops_core::Error;
use rusqlite::{params, TransactionBehavior};
use serde_json::Value;

use crate::local_db::{db_err, from_json, to_json, LocalDb};

/// Default receives before a message is dead-lettered.
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

/// The dead-letter queue of `queue`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}-dlq")
}

/// The SQLite-backed queue.
#[derive(Clone)]
pub struct SqliteQueue {
    db: LocalDb,
    clock: Arc<dyn Clock>,
    max_receives: u32,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("max_receives", &self.max_receives)
            .finish_non_exhaustive()
    }
}

impl SqliteQueue {
    /// Queues in `db`; visibility is measured with `clock`; a message is dead-lettered after
    /// `max_receives` receives (at least 1; [`DEFAULT_MAX_RECEIVES`] is the usual choice).
    pub fn new(db: LocalDb, clock: Arc<dyn Clock>, max_receives: u32) -> SqliteQueue {
        SqliteQueue {
            db,
            clock,
            max_receives: max_receives.max(1),
        }
    }

    /// How many receives a message gets before it is dead-lettered.
    pub fn max_receives(&self) -> u32 {
        self.max_receives
    }

    /// The bodies of every message in `queue`, oldest first, without receiving them (for the
    /// CLI's view of a dead-letter queue).
    pub fn peek(&self, queue: &str) -> Result<Vec<Value>, Error> {
        self.db.with(|c| {
            let mut stmt = c
                .prepare("SELECT body FROM queue_messages WHERE queue = ?1 ORDER BY pos")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![queue], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            rows.iter().map(|t| from_json(t, "message body")).collect()
        })
    }
}

fn check_queue(queue: &str) -> Result<(), Error> {
    if queue.trim().is_empty() {
        return Err(Error::InvalidInput("queue name must not be empty".into()));
    }
    Ok(())
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: &str, body: &Value) -> Result<String, Error> {
        check_queue(queue)?;
        let id = uuid::Uuid::new_v4().to_string();
        let text = to_json(body)?;
        self.db.with(|c| {
            c.execute(
                "INSERT INTO queue_messages (id, queue, body, visible_at_ms) VALUES (?1, ?2, ?3, 0)",
                params![id, queue, text],
            )
            .map_err(db_err)
        })?;
        Ok(id)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Message>, Error> {
        check_queue(queue)?;
        let now = self.clock.now().timestamp_millis();
        let hidden_until =
            now.saturating_add(i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX));
        let max_receives = i64::from(self.max_receives);
        let dlq = dead_letter_queue(queue);
        self.db.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let mut out = Vec::new();
            {
                let mut stmt = tx
                    .prepare(
                        "SELECT pos, id, body, receive_count FROM queue_messages \
                         WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY pos",
                    )
                    .map_err(db_err)?;
                let candidates = stmt
                    .query_map(params![queue, now], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                drop(stmt);
                let mut received = Vec::new();
                let mut unreadable = Vec::new();
                for (pos, id, body, count) in candidates {
                    if out.len() + unreadable.len() >= max {
                        break;
                    }
                    if count >= max_receives {
                        tx.execute(
                            "UPDATE queue_messages SET queue = ?2, receive_count = 0, \
                             visible_at_ms = 0, receipt = NULL WHERE pos = ?1",
                            params![pos, dlq],
                        )
                        .map_err(db_err)?;
                        tracing::warn!(%queue, message = %id, receives = count, "message moved to the dead-letter queue");
                        continue;
                    }
                    let receipt = uuid::Uuid::new_v4().to_string();
                    tx.execute(
                        "UPDATE queue_messages SET receive_count = receive_count + 1, \
                         visible_at_ms = ?2, receipt = ?3 WHERE pos = ?1",
                        params![pos, hidden_until, receipt],
                    )
                    .map_err(db_err)?;
                    // A body that is not JSON counts as received (so it reaches the
                    // dead-letter queue in time) but is reported, never passed on or dropped.
                    match serde_json::from_str(&body) {
                        Ok(body) => {
                            received.push(pos);
                            out.push(Message {
                                id,
                                receipt,
                                body,
                                receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
                            });
                        }
                        Err(_) => unreadable.push(id),
                    }
                }
                if !unreadable.is_empty() {
                    // Give the readable ones back at once, as if this receive had not seen them.
                    for pos in received {
                        tx.execute(
                            "UPDATE queue_messages SET receive_count = receive_count - 1, \
                             visible_at_ms = 0, receipt = NULL WHERE pos = ?1",
                            params![pos],
                        )
                        .map_err(db_err)?;
                    }
                    tx.commit().map_err(db_err)?;
                    return Err(Error::InvalidInput(format!(
                        "queue {queue}: message(s) {} have a body that is not JSON; they stay \
                         on the queue until they are dead-lettered",
                        unreadable.join(", ")
                    )));
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), Error> {
        let n = self.db.with(|c| {
            c.execute(
                "DELETE FROM queue_messages WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt],
            )
            .map_err(db_err)
        })?;
        if n == 1 {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "receipt is not current for a message in {queue} (already deleted, or received again after its visibility timeout)"
            )))
        }
    }

    async fn depth(&self, queue: &str) -> Result<usize, Error> {
        let n: i64 = self.db.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM queue_messages WHERE queue = ?1",
                params![queue],
                |r| r.get(0),
            )
            .map_err(db_err)
        })?;
        Ok(usize::try_from(n).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeDelta, TimeZone, Utc};
    use serde_json::json;
    use std::sync::Mutex;

    struct Manual(Mutex<DateTime<Utc>>);
    impl Clock for Manual {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }
    impl Manual {
        fn advance(&self, secs: i64) {
            *self.0.lock().unwrap() += TimeDelta::seconds(secs);
        }
    }

    fn queue(max: u32) -> (tempfile::TempDir, Arc<Manual>, SqliteQueue) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(Manual(Mutex::new(
            Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
        )));
        let db = LocalDb::open(&dir.path().join("certops.db")).unwrap();
        (dir, clock.clone(), SqliteQueue::new(db, clock, max))
    }

    const VIS: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn received_messages_are_hidden_until_the_visibility_timeout() {
        let (_d, clock, q) = queue(DEFAULT_MAX_RECEIVES);
        let id = q.send("intake", &json!({"ci": "shop"})).await.unwrap();
        q.send("intake", &json!({"ci": "docs"})).await.unwrap();
        assert_eq!(q.depth("intake").await.unwrap(), 2);
        let got = q.receive("intake", 1, VIS).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].id.as_str(), got[0].receive_count), (id.as_str(), 1));
        assert_eq!(got[0].body, json!({"ci": "shop"}));
        // The first is in flight; the second is next.
        let next = q.receive("intake", 10, VIS).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].body, json!({"ci": "docs"}));
        assert!(q.receive("intake", 10, VIS).await.unwrap().is_empty());
        assert_eq!(
            q.depth("intake").await.unwrap(),
            2,
            "in flight still counts"
        );
        clock.advance(31);
        let again = q.receive("intake", 10, VIS).await.unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].receive_count, 2);
        // Old receipts are stale; current ones delete.
        assert_eq!(
            q.delete("intake", &got[0].receipt)
                .await
                .unwrap_err()
                .name(),
            "Conflict"
        );
        for m in &again {
            q.delete("intake", &m.receipt).await.unwrap();
        }
        assert_eq!(q.depth("intake").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_message_moves_to_the_dlq_after_max_receives() {
        let (dir, clock, q) = queue(3);
        q.send("intake", &json!({"poison": true})).await.unwrap();
        for n in 1..=3 {
            let got = q.receive("intake", 1, VIS).await.unwrap();
            assert_eq!(got[0].receive_count, n);
            clock.advance(31);
        }
        assert!(q.receive("intake", 1, VIS).await.unwrap().is_empty());
        assert_eq!(q.depth("intake").await.unwrap(), 0);
        assert_eq!(q.depth("intake-dlq").await.unwrap(), 1);
        assert_eq!(q.peek("intake-dlq").unwrap(), [json!({"poison": true})]);
        // Persisted: a new queue over the same file sees the dead letter.
        let reopened = SqliteQueue::new(
            LocalDb::open(&dir.path().join("certops.db")).unwrap(),
            clock,
            3,
        );
        let dead = reopened.receive("intake-dlq", 10, VIS).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].receive_count, 1);
    }

    #[tokio::test]
    async fn queues_are_independent_and_names_are_checked() {
        let (_d, _c, q) = queue(DEFAULT_MAX_RECEIVES);
        q.send("a", &json!(1)).await.unwrap();
        assert!(q.receive("b", 10, VIS).await.unwrap().is_empty());
        assert_eq!(
            q.send("", &json!(1)).await.unwrap_err().name(),
            "InvalidInput"
        );
        assert!(q.receive("a", 0, VIS).await.unwrap().is_empty());
        assert_eq!(
            SqliteQueue::new(
                LocalDb::open_in_memory().unwrap(),
                Arc::new(Manual(Mutex::new(Utc::now()))),
                0
            )
            .max_receives(),
            1
        );
    }
}
