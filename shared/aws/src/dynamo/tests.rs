//! Unit tests of the DynamoDB store that need no DynamoDB: table routing, TTL, append
//! tokens; the store against moto is `tests/aws_store_queue.rs`.

use super::ttl::secs;
use super::*;
use certops_core::ports::Table;
use chrono::TimeZone;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::Duration;

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
    let e = store.get(Table::Approvals, "a-1").await.unwrap_err();
    assert_eq!(e.name(), "Misconfigured");
    assert!(e.to_string().contains(APPROVALS_TABLE_ENV), "{e}");
    let e = store.audit("exec-1").await.unwrap_err();
    assert!(e.to_string().contains(AUDIT_TABLE_ENV), "{e}");
    assert_eq!(
        store.location(Table::Locks, "k").unwrap().0,
        "certops-state"
    );
}

#[test]
fn approvals_expire_from_their_expires_at_plus_grace() {
    let p = &default_ttl_policies()[&Table::Approvals];
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
    let TtlPolicy::Retention(kept) = default_ttl_policies()[&Table::Triggers].clone() else {
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
    assert_eq!(err.name(), "Misconfigured");
    let text = err.to_string();
    assert!(text.contains(APPROVALS_TABLE_ENV) && text.contains(AUDIT_TABLE_ENV));
    assert!(!text.contains(STATE_TABLE_ENV), "{text}");
    let tables = Tables::from_vars(|n| Some(format!("t-{n}"))).unwrap();
    assert_eq!(tables.audit, format!("t-{AUDIT_TABLE_ENV}"));
}
