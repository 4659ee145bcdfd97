//! The [`Itsm`] contract: records opened once per correlation id, numbered per kind, moved
//! through the states the workflow uses on each kind (incident and normal, emergency and
//! standard change), carrying work notes with their author, the approver and decision
//! time, and evidence attachments; a retried update adds nothing; secrets never enter a
//! record; the record itself is readable for intake.
//!
//! [`run_all`] runs every case, each on an adapter from the backend's factory and with its
//! own correlation ids, so the local ticket book and the ServiceNow adapter (against the
//! emulator) pass the same list.

use certops_core::ports::{Attachment, Itsm, NewTicket, TicketKind, TicketState, TicketUpdate};
use chrono::{TimeZone, Utc};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;

/// Every case, in order, each on an adapter from `fresh`.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = Arc<dyn Itsm>>,
{
    macro_rules! case {
        ($name:ident) => {{
            eprintln!("itsm contract: {}", stringify!($name));
            $name(&*fresh(stringify!($name)).await, stringify!($name)).await;
        }};
    }
    case!(opening_is_idempotent_by_correlation_id);
    case!(unknown_records_are_none_and_updating_one_is_not_found);
    case!(a_normal_change_goes_from_new_to_closed_with_approver_notes_and_evidence);
    case!(an_emergency_change_can_be_mitigating_then_closed);
    case!(a_standard_change_is_closed_without_an_approval);
    case!(an_incident_goes_in_progress_mitigating_and_resolved);
    case!(a_blocked_change_is_canceled_and_a_blocked_incident_waits);
    case!(a_retried_update_adds_no_second_note_or_attachment);
    case!(secrets_never_enter_a_record);
    case!(the_record_is_readable_for_intake);
}

fn new(kind: TicketKind, case: &str, n: u32) -> NewTicket {
    NewTicket {
        kind,
        short_description: format!("Renew TLS certificate shop.example.com ({case})"),
        description: "The expiry scan found the certificate expiring in 7 days.".into(),
        ci: "shop-web-prod".into(),
        priority: 3,
        correlation_id: format!("contract:{case}:{n}"),
        standard_change: None,
    }
}

fn note(text: &str) -> TicketUpdate {
    TicketUpdate {
        work_note: Some(text.into()),
        ..TicketUpdate::default()
    }
}

fn to(state: TicketState, text: &str) -> TicketUpdate {
    TicketUpdate {
        state: Some(state),
        work_note: Some(text.into()),
        ..TicketUpdate::default()
    }
}

/// Opening twice with one correlation id yields one record, whatever the second asks for.
pub async fn opening_is_idempotent_by_correlation_id(i: &dyn Itsm, case: &str) {
    let first = i
        .open(new(TicketKind::NormalChange, case, 1))
        .await
        .unwrap();
    let again = i.open(new(TicketKind::Incident, case, 1)).await.unwrap();
    assert_eq!(first.number, again.number);
    assert_eq!(again.kind, TicketKind::NormalChange);
    assert_eq!(first.state, TicketState::New);
    assert_eq!(first.ci, "shop-web-prod");
    assert_eq!(first.priority, 3);
    assert_eq!(first.correlation_id, format!("contract:{case}:1"));
    assert!(first.number.starts_with("CHG"), "{}", first.number);
    let inc = i.open(new(TicketKind::Incident, case, 2)).await.unwrap();
    assert!(inc.number.starts_with("INC"), "{}", inc.number);
    assert_ne!(inc.number, first.number);
    assert_eq!(
        i.get(&first.number).await.unwrap().unwrap().number,
        first.number
    );
    let mut blank = new(TicketKind::Incident, case, 3);
    blank.correlation_id = "  ".into();
    assert_eq!(i.open(blank).await.unwrap_err().name(), "InvalidInput");
}

/// `get` of an unknown number is `None`; updating it is `NotFound`.
pub async fn unknown_records_are_none_and_updating_one_is_not_found(i: &dyn Itsm, _case: &str) {
    assert_eq!(i.get("CHG9999999").await.unwrap(), None);
    assert_eq!(i.get("INC9999999").await.unwrap(), None);
    let e = i
        .update("CHG9999999", "step:contract", note("x"))
        .await
        .unwrap_err();
    assert_eq!(e.name(), "NotFound", "{e}");
}

/// The path a normal change takes in a planned renewal.
pub async fn a_normal_change_goes_from_new_to_closed_with_approver_notes_and_evidence(
    i: &dyn Itsm,
    case: &str,
) {
    let t = i
        .open(new(TicketKind::NormalChange, case, 1))
        .await
        .unwrap();
    let n = &t.number;
    let a = i
        .update(
            n,
            "step:validate",
            to(TicketState::Assess, "validation passed"),
        )
        .await
        .unwrap();
    assert_eq!(a.state, TicketState::Assess);
    let at = Utc
        .with_ymd_and_hms(2026, 12, 1, 10, 30, 0)
        .single()
        .unwrap();
    let s = i
        .update(
            n,
            "step:itsm-update",
            TicketUpdate {
                state: Some(TicketState::Scheduled),
                work_note: Some("Approved by dana@example.com".into()),
                approved_by: Some("dana@example.com".into()),
                approved_at: Some(at),
                attachment: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(s.state, TicketState::Scheduled);
    assert_eq!(s.approved_by.as_deref(), Some("dana@example.com"));
    assert_eq!(s.approved_at, Some(at));
    let evidence = json!({"expiryBefore": "2026-12-08T00:00:00Z", "expiryAfter": "2027-03-08T00:00:00Z", "endpoints": [{"fingerprint": "ab12"}]});
    let c = i
        .update(
            n,
            "step:itsm-update",
            TicketUpdate {
                state: Some(TicketState::Closed),
                work_note: Some("Renewal verified from outside.".into()),
                attachment: Some(Attachment {
                    name: "evidence.json".into(),
                    content: evidence.clone(),
                }),
                ..TicketUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.state, TicketState::Closed);
    assert_eq!(c.approved_by.as_deref(), Some("dana@example.com"));
    let texts: Vec<&str> = c.work_notes.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "validation passed",
            "Approved by dana@example.com",
            "Renewal verified from outside."
        ]
    );
    assert_eq!(c.work_notes[0].author, "step:validate");
    assert_eq!(c.work_notes[2].author, "step:itsm-update");
    assert_eq!(c.attachments.len(), 1);
    assert_eq!(c.attachments[0].name, "evidence.json");
    assert_eq!(c.attachments[0].content, evidence);
    assert_eq!(i.get(n).await.unwrap().unwrap(), c);
}

/// An emergency change approved by the ECAB, kept Mitigating while the CDN purge is
/// outstanding, then closed.
pub async fn an_emergency_change_can_be_mitigating_then_closed(i: &dyn Itsm, case: &str) {
    let t = i
        .open(new(TicketKind::EmergencyChange, case, 1))
        .await
        .unwrap();
    assert_eq!(t.kind, TicketKind::EmergencyChange);
    let n = &t.number;
    let a = i
        .update(
            n,
            "step:validate",
            to(TicketState::Assess, "emergency path: ECAB"),
        )
        .await
        .unwrap();
    assert_eq!(a.state, TicketState::Assess);
    let s = i
        .update(
            n,
            "step:itsm-update",
            TicketUpdate {
                state: Some(TicketState::Scheduled),
                work_note: Some("Approved by erin@example.com (ECAB)".into()),
                approved_by: Some("erin@example.com".into()),
                approved_at: Some(Utc::now()),
                attachment: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(s.state, TicketState::Scheduled);
    let m = i
        .update(
            n,
            "step:itsm-update",
            to(
                TicketState::Mitigating,
                "CDN purge failed; on-call notified",
            ),
        )
        .await
        .unwrap();
    assert_eq!(m.state, TicketState::Mitigating);
    let c = i
        .update(
            n,
            "step:itsm-update",
            to(TicketState::Closed, "purged by hand; closing"),
        )
        .await
        .unwrap();
    assert_eq!(c.state, TicketState::Closed);
    assert_eq!(c.approved_by.as_deref(), Some("erin@example.com"));
}

/// A pre-approved standard change needs no approval to be closed.
pub async fn a_standard_change_is_closed_without_an_approval(i: &dyn Itsm, case: &str) {
    let t = i
        .open(new(TicketKind::StandardChange, case, 1))
        .await
        .unwrap();
    assert_eq!(t.kind, TicketKind::StandardChange);
    // Validation marks records Assess; a standard change has no such state and stays put.
    let a = i
        .update(
            &t.number,
            "step:validate",
            to(TicketState::Assess, "pre-approved"),
        )
        .await
        .unwrap();
    assert!(
        matches!(a.state, TicketState::New | TicketState::Assess),
        "{:?}",
        a.state
    );
    let c = i
        .update(
            &t.number,
            "step:itsm-update",
            to(TicketState::Closed, "renewed under the standard change"),
        )
        .await
        .unwrap();
    assert_eq!(c.state, TicketState::Closed);
    assert_eq!(c.approved_by, None);
}

/// An incident: approved work in progress, Mitigating, then Resolved with evidence.
pub async fn an_incident_goes_in_progress_mitigating_and_resolved(i: &dyn Itsm, case: &str) {
    let t = i.open(new(TicketKind::Incident, case, 1)).await.unwrap();
    let n = &t.number;
    let p = i
        .update(
            n,
            "step:itsm-update",
            TicketUpdate {
                state: Some(TicketState::Implement),
                work_note: Some("Approved by erin@example.com".into()),
                approved_by: Some("erin@example.com".into()),
                approved_at: Some(Utc::now()),
                attachment: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.state, TicketState::Implement);
    assert_eq!(p.approved_by.as_deref(), Some("erin@example.com"));
    let m = i
        .update(
            n,
            "step:itsm-update",
            to(TicketState::Mitigating, "purge failed"),
        )
        .await
        .unwrap();
    assert_eq!(m.state, TicketState::Mitigating);
    let r = i
        .update(
            n,
            "step:itsm-update",
            TicketUpdate {
                state: Some(TicketState::Resolved),
                work_note: Some("verified".into()),
                attachment: Some(Attachment {
                    name: "evidence.json".into(),
                    content: json!({"ok": true}),
                }),
                ..TicketUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.state, TicketState::Resolved);
    assert_eq!(r.attachments.len(), 1);
    assert_eq!(r.work_notes.len(), 3);
}

/// Blocked: a change is canceled, an incident waits for a human (Assess).
pub async fn a_blocked_change_is_canceled_and_a_blocked_incident_waits(i: &dyn Itsm, case: &str) {
    let c = i
        .open(new(TicketKind::NormalChange, case, 1))
        .await
        .unwrap();
    let c = i
        .update(
            &c.number,
            "step:itsm-update",
            to(TicketState::Canceled, "blocked: unknown CI"),
        )
        .await
        .unwrap();
    assert_eq!(c.state, TicketState::Canceled);
    let inc = i.open(new(TicketKind::Incident, case, 2)).await.unwrap();
    let inc = i
        .update(
            &inc.number,
            "step:itsm-update",
            to(TicketState::Assess, "blocked: unknown CI"),
        )
        .await
        .unwrap();
    assert_eq!(inc.state, TicketState::Assess);
}

/// The same update applied twice (a retried step) leaves one note and one attachment.
pub async fn a_retried_update_adds_no_second_note_or_attachment(i: &dyn Itsm, case: &str) {
    let t = i.open(new(TicketKind::Incident, case, 1)).await.unwrap();
    let u = TicketUpdate {
        state: Some(TicketState::Implement),
        work_note: Some("deploying to lb-shop".into()),
        attachment: Some(Attachment {
            name: "evidence.json".into(),
            content: json!({"step": 1}),
        }),
        ..TicketUpdate::default()
    };
    let once = i
        .update(&t.number, "step:itsm-update", u.clone())
        .await
        .unwrap();
    let twice = i.update(&t.number, "step:itsm-update", u).await.unwrap();
    assert_eq!(once.work_notes.len(), 1);
    assert_eq!(twice.work_notes.len(), 1, "{:?}", twice.work_notes);
    assert_eq!(twice.attachments.len(), 1);
    assert_eq!(twice.state, TicketState::Implement);
}

/// Key material or bearer tokens are refused before anything is written.
pub async fn secrets_never_enter_a_record(i: &dyn Itsm, case: &str) {
    let t = i.open(new(TicketKind::Incident, case, 1)).await.unwrap();
    let pem = concat!(
        "-----BEGIN PRIVATE",
        " KEY-----\nAAAA\n-----END PRIVATE",
        " KEY-----"
    );
    let e = i
        .update(&t.number, "step:contract", note(pem))
        .await
        .unwrap_err();
    assert_eq!(e.name(), "SecretMaterial");
    assert!(i
        .get(&t.number)
        .await
        .unwrap()
        .unwrap()
        .work_notes
        .is_empty());
    let mut bad = new(TicketKind::Incident, case, 2);
    bad.description = "Authorization: Bearer abcdefghijklmnopqrstuvwxyz".into();
    assert_eq!(i.open(bad).await.unwrap_err().name(), "SecretMaterial");
}

/// `read_record` gives intake the record's own number, sys_id, class, CI and priority.
pub async fn the_record_is_readable_for_intake(i: &dyn Itsm, case: &str) {
    let t = i.open(new(TicketKind::Incident, case, 1)).await.unwrap();
    let r = i.read_record(&t.number).await.unwrap().unwrap();
    assert_eq!(r["number"], t.number);
    assert_eq!(r["sys_class_name"], "incident");
    assert_eq!(r["cmdb_ci"], "shop-web-prod");
    assert_eq!(r["priority"], "3");
    assert!(r["sys_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(i.read_record("INC9999999").await.unwrap(), None);
}
