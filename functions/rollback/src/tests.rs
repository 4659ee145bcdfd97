//! `rollback` against the embedded adapters: the deploy step's snapshots restored on the
//! in-process TLS endpoint, revalidated by a real handshake.

use super::*;
use crate::test_world::{Env, World, TARGET};
use certops_core::ports::Table;

#[path = "../../deploy/src/test_deployed.rs"]
mod test_deployed;
use test_deployed::deployed;

#[tokio::test]
async fn the_last_known_good_is_restored_and_served_again() {
    let w = World::new(Env::Dev).await;
    let served_before = w.adapters.endpoints.installed(TARGET).unwrap();
    let event = deployed(&w, "exec-1").await;
    assert_ne!(
        w.adapters.endpoints.installed(TARGET),
        Some(served_before.clone())
    );

    let out = handle(&w.deps, event).await.unwrap();
    assert_eq!(out.restored.len(), 1);
    assert_eq!(out.restored[0].target.id, TARGET);
    assert_eq!(
        out.restored[0].last_known_good.as_ref(),
        Some(&served_before)
    );
    assert_eq!(w.adapters.endpoints.installed(TARGET), Some(served_before));
    assert!(!out.observations.is_empty());
    assert!(out
        .observations
        .iter()
        .all(|o| o.fingerprint == w.initial_fingerprint));
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["action"], "revalidate");
    assert_eq!(last.summary["wrong"], json!([]));
}

#[tokio::test]
async fn a_target_never_touched_is_left_alone() {
    let w = World::new(Env::Dev).await;
    let mut event = w.scan_event("exec-1");
    event.state.validation = Some(
        certops_fn_validate::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    let out = handle(&w.deps, event).await.unwrap();
    assert!(out.restored.is_empty());
    assert!(out
        .observations
        .iter()
        .all(|o| o.fingerprint == w.initial_fingerprint));
}

#[tokio::test]
async fn a_snapshot_without_last_known_good_fails_the_rollback_loudly() {
    let w = World::new(Env::Dev).await;
    let event = deployed(&w, "exec-1").await;
    let installed = w.adapters.endpoints.installed(TARGET);
    // What deploy records for a target whose certificate certops cannot read back.
    let key = snapshot_key("exec-1", TARGET);
    let store = w.deps.store.as_ref();
    let snapshot = store.get(Table::Deployments, &key).await.unwrap().unwrap();
    let mut unknown = snapshot.clone();
    unknown["lastKnownGood"] = serde_json::Value::Null;
    assert!(store
        .compare_and_swap(Table::Deployments, &key, Some(&snapshot), &unknown)
        .await
        .unwrap());
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "RollbackFailed");
    assert!(err.to_string().contains("no last-known-good"), "{err}");
    assert_eq!(
        w.adapters.endpoints.installed(TARGET),
        installed,
        "nothing was touched"
    );
}

#[tokio::test]
async fn a_blocked_execution_has_nothing_to_roll_back() {
    let w = World::new(Env::Dev).await;
    let mut event = w.scan_event("exec-1");
    if let certops_core::Trigger::Scan(s) = &mut event.state.trigger {
        s.ci = "no-such-ci".into();
    }
    event.state.validation = Some(
        certops_fn_validate::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("nothing to roll back"), "{err}");
}
