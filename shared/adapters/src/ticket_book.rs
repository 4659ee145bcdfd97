//! [`Itsm`] stand-in for ServiceNow: a local ticket book in SQLite.
//!
//! Incidents are numbered `INC0010001`, `INC0010002`, …; changes of every type share the
//! `CHG0030001…` sequence, as in ServiceNow. Opening is idempotent by correlation id (the
//! trigger's idempotency key), so the same trigger twice yields one ticket; a retried update
//! adds no second identical work note and no second attachment of the same name. Tickets never
//! hold secrets: content that looks like a key or token is refused.

use std::sync::Arc;

use async_trait::async_trait;
use certops_core::ports::{
    Clock, Itsm, NewTicket, Ticket, TicketKind, TicketState, TicketUpdate, WorkNote,
};
use certops_core::{check_no_secrets, Error};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::local_db::{db_err, from_json, to_json, LocalDb};

/// The SQLite-backed local ticket book.
#[derive(Clone)]
pub struct TicketBook {
    db: LocalDb,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for TicketBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketBook").field("db", &self.db).finish()
    }
}

/// Number prefix and first number of each sequence.
fn sequence(kind: TicketKind) -> (&'static str, i64) {
    match kind {
        TicketKind::Incident => ("INC", 10_001),
        TicketKind::StandardChange | TicketKind::NormalChange | TicketKind::EmergencyChange => {
            ("CHG", 30_001)
        }
    }
}

impl TicketBook {
    /// A ticket book over `db`; work notes are stamped with `clock`.
    pub fn new(db: LocalDb, clock: Arc<dyn Clock>) -> TicketBook {
        TicketBook { db, clock }
    }

    /// Every ticket, in the order they were opened (for `certops` listings).
    pub fn list(&self) -> Result<Vec<Ticket>, Error> {
        self.db.with(|c| {
            let mut stmt = c
                .prepare("SELECT ticket FROM tickets ORDER BY pos")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            rows.iter().map(|t| from_json(t, "ticket")).collect()
        })
    }

    /// The ticket opened for `correlation_id`, if any.
    pub fn find_by_correlation_id(&self, correlation_id: &str) -> Result<Option<Ticket>, Error> {
        self.db.with(|c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT ticket FROM tickets WHERE correlation_id = ?1",
                    params![correlation_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            text.map(|t| from_json(&t, "ticket")).transpose()
        })
    }
}

fn refuse_secrets<T: serde::Serialize>(value: &T, root: &str) -> Result<(), Error> {
    let json = serde_json::to_value(value)
        .map_err(|e| Error::InvalidInput(format!("not serializable: {e}")))?;
    check_no_secrets(&json, root)
}

#[async_trait]
impl Itsm for TicketBook {
    async fn open(&self, ticket: NewTicket) -> Result<Ticket, Error> {
        if ticket.correlation_id.trim().is_empty() {
            return Err(Error::InvalidInput(
                "a ticket needs a correlation id".into(),
            ));
        }
        refuse_secrets(&ticket, "ticket")?;
        self.db.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT ticket FROM tickets WHERE correlation_id = ?1",
                    params![ticket.correlation_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if let Some(existing) = existing {
                return from_json(&existing, "ticket");
            }
            let (prefix, first) = sequence(ticket.kind);
            let next: i64 = tx
                .query_row(
                    "INSERT INTO ticket_counters (prefix, last) VALUES (?1, ?2) \
                     ON CONFLICT (prefix) DO UPDATE SET last = last + 1 RETURNING last",
                    params![prefix, first],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            let created = Ticket {
                number: format!("{prefix}{next:07}"),
                kind: ticket.kind,
                short_description: ticket.short_description,
                description: ticket.description,
                ci: ticket.ci,
                priority: ticket.priority,
                state: TicketState::New,
                correlation_id: ticket.correlation_id,
                work_notes: Vec::new(),
                attachments: Vec::new(),
                approved_by: None,
                approved_at: None,
            };
            tx.execute(
                "INSERT INTO tickets (number, correlation_id, ticket) VALUES (?1, ?2, ?3)",
                params![created.number, created.correlation_id, to_json(&created)?],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            tracing::info!(number = %created.number, ci = %created.ci, "ticket opened");
            Ok(created)
        })
    }

    async fn get(&self, number: &str) -> Result<Option<Ticket>, Error> {
        self.db.with(|c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT ticket FROM tickets WHERE number = ?1",
                    params![number],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            text.map(|t| from_json(&t, "ticket")).transpose()
        })
    }

    async fn read_record(&self, number: &str) -> Result<Option<serde_json::Value>, Error> {
        // The local book keeps only what certops opened or was told; fields it never
        // stores (environment, opener, category) are absent rather than invented.
        Ok(self.get(number).await?.map(|t| {
            let class = match t.kind {
                TicketKind::Incident => "incident",
                _ => "change_request",
            };
            serde_json::json!({
                "number": t.number,
                "sys_id": t.number,
                "sys_class_name": class,
                "cmdb_ci": t.ci,
                "priority": t.priority.to_string(),
                "correlation_id": t.correlation_id,
                "short_description": t.short_description,
            })
        }))
    }

    async fn update(
        &self,
        number: &str,
        author: &str,
        update: TicketUpdate,
    ) -> Result<Ticket, Error> {
        refuse_secrets(&update, "update")?;
        refuse_secrets(&author, "author")?;
        let now = self.clock.now();
        self.db.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let text: Option<String> = tx
                .query_row(
                    "SELECT ticket FROM tickets WHERE number = ?1",
                    params![number],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let Some(text) = text else {
                return Err(Error::NotFound(format!("no ticket {number}")));
            };
            let mut ticket: Ticket = from_json(&text, "ticket")?;
            if let Some(state) = update.state {
                ticket.state = state;
            }
            // A retried step writes the same note and attachment again: keep one of each,
            // as the ServiceNow adapter does.
            if let Some(note) = update.work_note {
                if !ticket
                    .work_notes
                    .iter()
                    .any(|w| w.author == author && w.text == note)
                {
                    ticket.work_notes.push(WorkNote {
                        at: now,
                        author: author.to_string(),
                        text: note,
                    });
                }
            }
            if let Some(attachment) = update.attachment {
                if !ticket.attachments.iter().any(|a| a.name == attachment.name) {
                    ticket.attachments.push(attachment);
                }
            }
            if let Some(approver) = update.approved_by {
                ticket.approved_by = Some(approver);
            }
            if let Some(at) = update.approved_at {
                ticket.approved_at = Some(at);
            }
            tx.execute(
                "UPDATE tickets SET ticket = ?2 WHERE number = ?1",
                params![number, to_json(&ticket)?],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(ticket)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certops_core::ports::Attachment;
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;

    struct Fixed(DateTime<Utc>);
    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
    }

    fn book() -> TicketBook {
        TicketBook::new(LocalDb::open_in_memory().unwrap(), Arc::new(Fixed(now())))
    }

    fn new(kind: TicketKind, correlation: &str) -> NewTicket {
        NewTicket {
            kind,
            short_description: "Certificate for shop.example.com expires in 12 days".into(),
            description: "Renew and deploy".into(),
            ci: "shop-www".into(),
            priority: 2,
            correlation_id: correlation.into(),
            standard_change: None,
        }
    }

    #[tokio::test]
    async fn numbers_follow_servicenow_per_kind_sequences() {
        let b = book();
        let i1 = b.open(new(TicketKind::Incident, "t1")).await.unwrap();
        let c1 = b.open(new(TicketKind::NormalChange, "t2")).await.unwrap();
        let c2 = b
            .open(new(TicketKind::EmergencyChange, "t3"))
            .await
            .unwrap();
        let i2 = b.open(new(TicketKind::Incident, "t4")).await.unwrap();
        assert_eq!(
            [i1.number, c1.number, c2.number, i2.number],
            ["INC0010001", "CHG0030001", "CHG0030002", "INC0010002"]
        );
        assert_eq!(c1.state, TicketState::New);
        assert_eq!(b.list().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn opening_twice_with_one_correlation_id_yields_one_ticket() {
        let b = book();
        let first = b
            .open(new(TicketKind::NormalChange, "scan:shop:2026-12-01"))
            .await
            .unwrap();
        let second = b
            .open(new(TicketKind::Incident, "scan:shop:2026-12-01"))
            .await
            .unwrap();
        assert_eq!(first, second);
        assert_eq!(b.list().unwrap().len(), 1);
        assert_eq!(
            b.find_by_correlation_id("scan:shop:2026-12-01")
                .unwrap()
                .unwrap()
                .number,
            "CHG0030001"
        );
        assert_eq!(
            b.open(new(TicketKind::Incident, " "))
                .await
                .unwrap_err()
                .name(),
            "InvalidInput"
        );
    }

    #[tokio::test]
    async fn updates_append_notes_attachments_state_and_approver() {
        let b = book();
        let t = b.open(new(TicketKind::NormalChange, "c")).await.unwrap();
        b.update(
            &t.number,
            "certops",
            TicketUpdate {
                state: Some(TicketState::Assess),
                work_note: Some("validation passed".into()),
                ..TicketUpdate::default()
            },
        )
        .await
        .unwrap();
        let updated = b
            .update(
                &t.number,
                "certops",
                TicketUpdate {
                    state: Some(TicketState::Closed),
                    work_note: Some("renewed".into()),
                    attachment: Some(Attachment {
                        name: "evidence.json".into(),
                        content: json!({"expiry_after": "2027-03-01"}),
                    }),
                    approved_by: Some("dana@example.com".into()),
                    approved_at: Some(now()),
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.state, TicketState::Closed);
        assert_eq!(updated.work_notes.len(), 2);
        assert_eq!(updated.work_notes[0].text, "validation passed");
        assert_eq!(updated.work_notes[1].at, now());
        assert_eq!(updated.work_notes[1].author, "certops");
        assert_eq!(updated.attachments[0].name, "evidence.json");
        assert_eq!(updated.approved_by.as_deref(), Some("dana@example.com"));
        assert_eq!(b.get(&t.number).await.unwrap(), Some(updated));
        assert_eq!(b.get("CHG9999999").await.unwrap(), None);
        assert_eq!(
            b.update("CHG9999999", "x", TicketUpdate::default())
                .await
                .unwrap_err()
                .name(),
            "NotFound"
        );
    }

    #[tokio::test]
    async fn secrets_never_enter_a_ticket() {
        let b = book();
        let t = b.open(new(TicketKind::Incident, "s")).await.unwrap();
        let err = b
            .update(
                &t.number,
                "certops",
                TicketUpdate {
                    work_note: Some(
                        concat!(
                            "-----BEGIN PRIVATE",
                            " KEY-----\nAAAA\n-----END PRIVATE",
                            " KEY-----"
                        )
                        .into(),
                    ),
                    ..TicketUpdate::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.name(), "SecretMaterial");
        assert!(b
            .get(&t.number)
            .await
            .unwrap()
            .unwrap()
            .work_notes
            .is_empty());
        let mut bad = new(TicketKind::Incident, "s2");
        bad.description = "Authorization: Bearer abcdefghijklmnopqrstuvwxyz".into();
        assert_eq!(b.open(bad).await.unwrap_err().name(), "SecretMaterial");
    }
}
