//! `verify` against the embedded adapters: real TLS handshakes with the in-process
//! endpoint after the real `validate`, `renew` and `deploy` steps.

use super::*;
use crate::test_world::{Env, World, TARGET};
use certops_adapters::TargetFault;

#[path = "../../deploy/src/test_deployed.rs"]
mod test_deployed;
use test_deployed::deployed;

#[tokio::test]
async fn the_new_leaf_served_with_a_valid_chain_is_served() {
    let w = World::new(Env::Dev).await;
    let event = deployed(&w, "exec-1").await;
    let renewal = event.state.renewal.clone().unwrap();
    let out = handle(&w.deps, event).await.unwrap();
    assert!(out.served);
    assert_eq!((out.attempt, out.wait_seconds), (1, 0));
    assert_eq!(out.fingerprint, renewal.fingerprint);
    assert!(!out.observations.is_empty());
    for o in &out.observations {
        assert_eq!(o.fingerprint, renewal.fingerprint);
        assert_eq!(o.not_after, renewal.not_after);
        assert!(o.chain_valid, "{o:?}");
    }
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["result"], "served");
}

#[tokio::test]
async fn the_old_leaf_still_served_waits_then_is_not_yet_served() {
    let w = World::new(Env::Dev).await;
    // The target accepts the bundle but keeps serving the old certificate.
    w.adapters
        .endpoints
        .set_fault(TARGET, Some(TargetFault::IgnoresReload));
    let mut event = deployed(&w, "exec-1").await;

    let first = handle(&w.deps, event.clone()).await.unwrap();
    assert!(!first.served);
    assert_eq!(first.attempt, 1);
    assert_eq!(first.wait_seconds, 1, "the policy's interval");
    assert!(first
        .observations
        .iter()
        .all(|o| o.fingerprint == w.initial_fingerprint));

    // The policy allows two verifications: the second is the last.
    event.state.verification = Some(first);
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "NotYetServed");
    assert!(err.to_string().contains("after 2 of 2"), "{err}");
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["result"], "NotYetServed");
}

#[tokio::test]
async fn nothing_renewed_is_nothing_to_verify() {
    let w = World::new(Env::Dev).await;
    let mut event = w.scan_event("exec-1");
    event.state.validation = Some(
        certops_fn_validate::handle(&w.deps, event.clone())
            .await
            .unwrap(),
    );
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("no renewal output"), "{err}");
}
