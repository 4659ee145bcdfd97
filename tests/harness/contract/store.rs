//! The [`Store`] contract: conditional writes that compare values semantically, and an
//! append-only audit chain per execution that verifies and never forks, even under
//! concurrent appends.
//!
//! Every case takes a fresh, empty store. [`run_all`] runs every case, each on a store the
//! backend's factory makes, so the embedded and the AWS adapter pass the same list.

use certops_core::ports::{Store, Table};
use certops_core::{verify_chain, AuditEntry, AuditKind, AuditRecord};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;

/// Every case, in order, each on a store from `fresh`.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    macro_rules! case {
        ($name:ident) => {{
            eprintln!("store contract: {}", stringify!($name));
            $name(&*fresh(stringify!($name)).await).await;
        }};
    }
    case!(get_of_a_missing_key_is_none);
    case!(put_if_absent_writes_once);
    case!(logical_tables_are_independent);
    case!(compare_and_swap_honours_the_expected_value);
    case!(compare_and_swap_ignores_key_order);
    case!(delete_if_only_deletes_the_expected_value);
    case!(empty_names_are_invalid_input);
    case!(audit_appends_form_a_verifiable_chain_in_order);
    case!(audit_refuses_secret_material);
    eprintln!("store contract: concurrent_audit_appends_never_fork");
    concurrent_audit_appends_never_fork(fresh("concurrent_audit_appends_never_fork").await).await;
}

/// An audit entry whose summary is `summary`, `n` seconds into the test day.
pub fn entry(n: u32, summary: Value) -> AuditEntry {
    AuditEntry {
        at: Utc
            .with_ymd_and_hms(2026, 12, 1, 9, 0, 0)
            .single()
            .expect("valid date")
            + chrono::Duration::seconds(i64::from(n)),
        kind: AuditKind::Action,
        actor: "step:contract".into(),
        summary,
        runbook_version: "1.0.0".into(),
    }
}

/// `get` of a key never written is `None`, in every logical table.
pub async fn get_of_a_missing_key_is_none(s: &dyn Store) {
    for &table in Table::ALL {
        assert_eq!(
            s.get(table, "never-written").await.unwrap(),
            None,
            "{table}"
        );
    }
}

/// The first `put_if_absent` writes; the second returns `false` and leaves the first value.
pub async fn put_if_absent_writes_once(s: &dyn Store) {
    assert!(s
        .put_if_absent(Table::Locks, "shop", &json!({"owner": "a"}))
        .await
        .unwrap());
    assert!(!s
        .put_if_absent(Table::Locks, "shop", &json!({"owner": "b"}))
        .await
        .unwrap());
    assert_eq!(
        s.get(Table::Locks, "shop").await.unwrap(),
        Some(json!({"owner": "a"}))
    );
    // Not only objects: any JSON value round-trips.
    let value = json!([1, "two", null, {"three": 3.5}]);
    assert!(s
        .put_if_absent(Table::Observations, "o", &value)
        .await
        .unwrap());
    assert_eq!(s.get(Table::Observations, "o").await.unwrap(), Some(value));
}

/// The same key in two logical tables (routed to different physical tables or not) is two
/// records; keys may contain the separator.
pub async fn logical_tables_are_independent(s: &dyn Store) {
    for (i, &table) in Table::ALL.iter().enumerate() {
        assert!(s.put_if_absent(table, "k", &json!(i)).await.unwrap());
    }
    for (i, &table) in Table::ALL.iter().enumerate() {
        assert_eq!(s.get(table, "k").await.unwrap(), Some(json!(i)), "{table}");
    }
    assert!(s
        .put_if_absent(Table::Locks, "a#b", &json!("x"))
        .await
        .unwrap());
    assert_eq!(s.get(Table::Locks, "a").await.unwrap(), None);
    assert_eq!(s.get(Table::Locks, "a#b").await.unwrap(), Some(json!("x")));
}

/// CAS with an absent expectation creates; with the right value swaps; with a wrong or
/// stale value (or absent when present) returns `false` and changes nothing.
pub async fn compare_and_swap_honours_the_expected_value(s: &dyn Store) {
    let pending = json!({"state": "pending", "n": 1});
    assert!(s
        .compare_and_swap(Table::Approvals, "a1", None, &pending)
        .await
        .unwrap());
    // Absent expected, but present: refused.
    assert!(!s
        .compare_and_swap(Table::Approvals, "a1", None, &json!({"state": "x"}))
        .await
        .unwrap());
    // Wrong expected: refused.
    assert!(!s
        .compare_and_swap(
            Table::Approvals,
            "a1",
            Some(&json!({"state": "approved", "n": 1})),
            &json!({"state": "y"})
        )
        .await
        .unwrap());
    // Right expected: swapped.
    assert!(s
        .compare_and_swap(
            Table::Approvals,
            "a1",
            Some(&pending),
            &json!({"state": "used"})
        )
        .await
        .unwrap());
    // The same expectation is now stale: the approval is single-use.
    assert!(!s
        .compare_and_swap(
            Table::Approvals,
            "a1",
            Some(&pending),
            &json!({"state": "again"})
        )
        .await
        .unwrap());
    assert_eq!(
        s.get(Table::Approvals, "a1").await.unwrap(),
        Some(json!({"state": "used"}))
    );
    // A present expectation on a missing key: refused, nothing created.
    assert!(!s
        .compare_and_swap(Table::Approvals, "a2", Some(&pending), &json!(1))
        .await
        .unwrap());
    assert_eq!(s.get(Table::Approvals, "a2").await.unwrap(), None);
}

/// The expected value matches whatever order its object keys are in, at every depth.
pub async fn compare_and_swap_ignores_key_order(s: &dyn Store) {
    let stored = json!({"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": null}});
    assert!(s
        .put_if_absent(Table::Triggers, "t", &stored)
        .await
        .unwrap());
    let reordered = json!({"a": {"x": null, "y": [1, {"p": 2, "q": 1}]}, "b": 1});
    assert!(s
        .compare_and_swap(
            Table::Triggers,
            "t",
            Some(&reordered),
            &json!({"z": 1, "c": 2})
        )
        .await
        .unwrap());
    assert_eq!(
        s.get(Table::Triggers, "t").await.unwrap(),
        Some(json!({"c": 2, "z": 1}))
    );
    // Array order is significant, as are number forms.
    assert!(!s
        .compare_and_swap(
            Table::Triggers,
            "t",
            Some(&json!({"z": 1, "c": 2.0})),
            &json!(0)
        )
        .await
        .unwrap());
    assert!(s
        .delete_if(Table::Triggers, "t", &json!({"z": 1, "c": 2}))
        .await
        .unwrap());
}

/// `delete_if` with the wrong value keeps the record; with the right one deletes it; a
/// second delete finds nothing.
pub async fn delete_if_only_deletes_the_expected_value(s: &dyn Store) {
    s.put_if_absent(Table::Locks, "c", &json!({"exec": "e1", "since": "t"}))
        .await
        .unwrap();
    assert!(!s
        .delete_if(Table::Locks, "c", &json!({"exec": "e2", "since": "t"}))
        .await
        .unwrap());
    assert!(s.get(Table::Locks, "c").await.unwrap().is_some());
    assert!(s
        .delete_if(Table::Locks, "c", &json!({"since": "t", "exec": "e1"}))
        .await
        .unwrap());
    assert_eq!(s.get(Table::Locks, "c").await.unwrap(), None);
    assert!(!s
        .delete_if(Table::Locks, "c", &json!({"exec": "e1", "since": "t"}))
        .await
        .unwrap());
    // Deleted means absent: it can be created again.
    assert!(s.put_if_absent(Table::Locks, "c", &json!(2)).await.unwrap());
}

/// Empty keys are refused as `InvalidInput`, not written (a table is a [`Table`], never
/// empty).
pub async fn empty_names_are_invalid_input(s: &dyn Store) {
    let err = s
        .put_if_absent(Table::Locks, "", &json!(1))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidInput", "{err}");
    let err = s
        .compare_and_swap(Table::Locks, "", None, &json!(1))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidInput", "{err}");
    let err = s
        .delete_if(Table::Approvals, "", &json!(1))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidInput", "{err}");
}

/// Appends get seq 0, 1, 2 …; `audit` returns them in order; the chain verifies with
/// `certops_core`; executions are separate chains and all are listed.
pub async fn audit_appends_form_a_verifiable_chain_in_order(s: &dyn Store) {
    assert!(s.audit("exec-1").await.unwrap().is_empty());
    assert!(s.audited_executions().await.unwrap().is_empty());
    let mut appended = Vec::new();
    for i in 0..5u32 {
        let r = s
            .append_audit("exec-1", entry(i, json!({"step": i, "b": 1, "a": 2})))
            .await
            .unwrap();
        assert_eq!(r.seq, u64::from(i));
        appended.push(r);
    }
    let first_of_2 = s.append_audit("exec-2", entry(0, json!({}))).await.unwrap();
    assert_eq!(first_of_2.seq, 0, "each execution has its own chain");
    let records = s.audit("exec-1").await.unwrap();
    assert_eq!(
        records, appended,
        "stored records are the ones returned, in order"
    );
    assert_eq!(verify_chain(&records), Ok(()));
    assert_eq!(records[1].prev_hash, records[0].hash);
    assert_eq!(s.audit("exec-2").await.unwrap(), [first_of_2]);
    assert_eq!(s.audited_executions().await.unwrap(), ["exec-1", "exec-2"]);
}

/// An entry that carries key material is refused as `SecretMaterial` and nothing is appended.
pub async fn audit_refuses_secret_material(s: &dyn Store) {
    s.append_audit("exec-s", entry(0, json!({"ok": true})))
        .await
        .unwrap();
    let pem = format!(
        "-----BEGIN {k}-----\nMIIB\n-----END {k}-----",
        k = ["PRIVATE", "KEY"].join(" ")
    );
    let err = s
        .append_audit("exec-s", entry(1, json!({"response": {"key": pem}})))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "SecretMaterial", "{err}");
    assert_eq!(s.audit("exec-s").await.unwrap().len(), 1);
    // The chain continues from the last good record.
    let r = s
        .append_audit("exec-s", entry(2, json!({"ok": 2})))
        .await
        .unwrap();
    assert_eq!(r.seq, 1);
}

/// Tasks appending to one execution at the same time produce one chain: every append
/// lands, seqs are 0..n without gaps or duplicates, and the chain verifies.
pub async fn concurrent_audit_appends_never_fork(s: Arc<dyn Store>) {
    const TASKS: u32 = 6;
    const EACH: u32 = 4;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let s = s.clone();
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let r = s
                    .append_audit("exec-race", entry(t * EACH + i, json!({"task": t, "i": i})))
                    .await
                    .unwrap();
                seqs.push(r.seq);
            }
            seqs
        });
    }
    let mut seqs: Vec<u64> = tasks.join_all().await.into_iter().flatten().collect();
    seqs.sort_unstable();
    let n = u64::from(TASKS * EACH);
    assert_eq!(
        seqs,
        (0..n).collect::<Vec<_>>(),
        "every append got its own seq"
    );
    let records: Vec<AuditRecord> = s.audit("exec-race").await.unwrap();
    assert_eq!(records.len() as u64, n);
    assert_eq!(verify_chain(&records), Ok(()), "one unforked chain");
    let mut summaries: Vec<String> = records.iter().map(|r| r.summary.to_string()).collect();
    summaries.sort();
    summaries.dedup();
    assert_eq!(summaries.len() as u64, n, "no entry lost or doubled");
    assert_eq!(s.audited_executions().await.unwrap(), ["exec-race"]);
}
