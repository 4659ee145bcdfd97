//! [`Chat`] stand-in for Teams/Slack: approval cards land in a local inbox (SQLite) that
//! the CLI and a local web page read; notifications are stored and logged.
//!
//! The card names an approval id, never a task token. Notification text that looks like a
//! secret is replaced by `[REDACTED]` before it is stored or logged.

use std::sync::Arc;

use async_trait::async_trait;
use certops_core::ports::{ApprovalCard, Chat, Clock};
use certops_core::{check_no_secrets, redact, Error};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::local_db::{db_err, from_json, to_json, LocalDb};

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// The person or rota.
    pub to: String,
    /// The text (redacted if it looked like it carried a secret).
    pub text: String,
}

/// The SQLite-backed local chat inbox.
#[derive(Clone)]
pub struct LocalChat {
    db: LocalDb,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for LocalChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChat").field("db", &self.db).finish()
    }
}

impl LocalChat {
    /// An inbox over `db`; `clock` decides which cards have expired.
    pub fn new(db: LocalDb, clock: Arc<dyn Clock>) -> LocalChat {
        LocalChat { db, clock }
    }

    /// Cards that are neither dismissed nor expired, oldest first.
    pub fn pending_cards(&self) -> Result<Vec<ApprovalCard>, Error> {
        let now = self.clock.now();
        let cards = self.db.with(|c| {
            let mut stmt = c
                .prepare("SELECT card FROM chat_cards WHERE dismissed = 0 ORDER BY pos")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            rows.iter()
                .map(|t| from_json::<ApprovalCard>(t, "approval card"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(cards.into_iter().filter(|c| c.expires_at > now).collect())
    }

    /// One card by approval id (dismissed and expired ones included).
    pub fn card(&self, approval_id: &str) -> Result<Option<ApprovalCard>, Error> {
        self.db.with(|c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT card FROM chat_cards WHERE approval_id = ?1",
                    params![approval_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            text.map(|t| from_json(&t, "approval card")).transpose()
        })
    }

    /// Takes a card out of the pending list once it has been answered. `Ok(false)` when no
    /// such card exists.
    pub fn dismiss(&self, approval_id: &str) -> Result<bool, Error> {
        self.db.with(|c| {
            let n = c
                .execute(
                    "UPDATE chat_cards SET dismissed = 1 WHERE approval_id = ?1",
                    params![approval_id],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
    }

    /// Every notification sent, oldest first.
    pub fn notifications(&self) -> Result<Vec<Notification>, Error> {
        self.db.with(|c| {
            let mut stmt = c
                .prepare("SELECT at, recipient, text FROM chat_notifications ORDER BY pos")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            rows.into_iter()
                .map(|(at, to, text)| {
                    let at = DateTime::parse_from_rfc3339(&at)
                        .map_err(|e| {
                            Error::InvalidInput(format!("stored time does not parse: {e}"))
                        })?
                        .with_timezone(&Utc);
                    Ok(Notification { at, to, text })
                })
                .collect()
        })
    }
}

fn redacted(text: &str) -> String {
    match redact(&Value::String(text.to_string())) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[async_trait]
impl Chat for LocalChat {
    async fn request_approval(&self, card: &ApprovalCard) -> Result<(), Error> {
        if card.approval_id.trim().is_empty() {
            return Err(Error::InvalidInput("an approval card needs an id".into()));
        }
        let json = serde_json::to_value(card)
            .map_err(|e| Error::InvalidInput(format!("card not serializable: {e}")))?;
        check_no_secrets(&json, "card")?;
        let text = to_json(card)?;
        self.db.with(|c| {
            let inserted = c
                .execute(
                    "INSERT INTO chat_cards (approval_id, card) VALUES (?1, ?2) \
                     ON CONFLICT (approval_id) DO NOTHING",
                    params![card.approval_id, text],
                )
                .map_err(db_err)?;
            if inserted == 1 {
                return Ok(());
            }
            // Posting the same card again (a retried step) is fine; a different card under
            // the same id is not.
            let stored: String = c
                .query_row(
                    "SELECT card FROM chat_cards WHERE approval_id = ?1",
                    params![card.approval_id],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if from_json::<ApprovalCard>(&stored, "approval card")? == *card {
                Ok(())
            } else {
                Err(Error::Conflict(format!(
                    "approval {} was already posted with different content",
                    card.approval_id
                )))
            }
        })?;
        tracing::info!(approval_id = %card.approval_id, ticket = %card.ticket, path = %card.path, "approval card posted to the local inbox");
        Ok(())
    }

    async fn notify(&self, to: &str, text: &str) -> Result<(), Error> {
        let to = redacted(to);
        let text = redacted(text);
        let at = self.clock.now();
        self.db.with(|c| {
            c.execute(
                "INSERT INTO chat_notifications (at, recipient, text) VALUES (?1, ?2, ?3)",
                params![at.to_rfc3339(), to, text],
            )
            .map_err(db_err)
        })?;
        tracing::warn!(to = %to, text = %text, "notification");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use std::sync::Mutex;

    struct Manual(Mutex<DateTime<Utc>>);
    impl Clock for Manual {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
    }

    fn card(id: &str, minutes: i64) -> ApprovalCard {
        ApprovalCard {
            approval_id: id.into(),
            ticket: "CHG0030001".into(),
            path: "normal".into(),
            cert: "shop-www (shop.example.com)".into(),
            summary: "renew via corp-pki, deploy to 2 targets".into(),
            plan_hash: "ab".repeat(32),
            approvers: vec!["dana@example.com".into()],
            requested_by: "certops".into(),
            expires_at: t0() + TimeDelta::minutes(minutes),
        }
    }

    #[tokio::test]
    async fn cards_are_pending_until_dismissed_or_expired() {
        let clock = Arc::new(Manual(Mutex::new(t0())));
        let chat = LocalChat::new(LocalDb::open_in_memory().unwrap(), clock.clone());
        chat.request_approval(&card("a1", 60)).await.unwrap();
        chat.request_approval(&card("a2", 10)).await.unwrap();
        chat.request_approval(&card("a3", 60)).await.unwrap();
        // Posting the same card again is idempotent; different content under the id is not.
        chat.request_approval(&card("a1", 60)).await.unwrap();
        assert_eq!(
            chat.request_approval(&card("a1", 61))
                .await
                .unwrap_err()
                .name(),
            "Conflict"
        );
        let ids = |v: Vec<ApprovalCard>| v.into_iter().map(|c| c.approval_id).collect::<Vec<_>>();
        assert_eq!(ids(chat.pending_cards().unwrap()), ["a1", "a2", "a3"]);
        assert!(chat.dismiss("a3").unwrap());
        assert!(!chat.dismiss("nope").unwrap());
        *clock.0.lock().unwrap() = t0() + TimeDelta::minutes(30);
        assert_eq!(ids(chat.pending_cards().unwrap()), ["a1"]);
        assert_eq!(chat.card("a2").unwrap(), Some(card("a2", 10)));
        assert_eq!(chat.card("zz").unwrap(), None);
    }

    #[tokio::test]
    async fn cards_carrying_tokens_are_refused() {
        let chat = LocalChat::new(
            LocalDb::open_in_memory().unwrap(),
            Arc::new(Manual(Mutex::new(t0()))),
        );
        let mut c = card("a1", 60);
        c.summary =
            "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjZXJ0b3BzIn0.c2lnbmF0dXJlLXZhbHVl".into();
        assert_eq!(
            chat.request_approval(&c).await.unwrap_err().name(),
            "SecretMaterial"
        );
        assert!(chat.pending_cards().unwrap().is_empty());
    }

    #[tokio::test]
    async fn notifications_are_stored_in_order_and_redacted() {
        let chat = LocalChat::new(
            LocalDb::open_in_memory().unwrap(),
            Arc::new(Manual(Mutex::new(t0()))),
        );
        chat.notify(
            "oncall-shop@example.com",
            "CDN purge failed for shop-www; ticket Mitigating",
        )
        .await
        .unwrap();
        chat.notify(
            "oncall",
            concat!(
                "key: -----BEGIN PRIVATE",
                " KEY-----\nAAAA\n-----END PRIVATE",
                " KEY-----"
            ),
        )
        .await
        .unwrap();
        let n = chat.notifications().unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].to, "oncall-shop@example.com");
        assert_eq!(n[0].at, t0());
        assert!(n[0].text.contains("CDN purge failed"));
        assert_eq!(n[1].text, "[REDACTED]");
    }
}
