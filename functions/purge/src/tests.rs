//! `purge` against the embedded adapters: the in-process CDN cache named in the inventory.

use super::*;
use crate::test_world::{Env, World, CDN};

#[tokio::test]
async fn the_planned_paths_are_purged_and_audited() {
    let w = World::new(Env::Dev).await;
    let event = w.validated("exec-1").await;
    w.adapters.cdn.put(CDN, "/index.html", "old page");
    let out = handle(&w.deps, event).await.unwrap();
    assert_ne!(out.invalidation_id, "none");
    assert_eq!(
        w.adapters.cdn.get(CDN, "/index.html"),
        None,
        "the cached page is gone"
    );
    let purges = w.adapters.cdn.purges();
    assert_eq!(purges.len(), 1);
    assert_eq!(purges[0].id, out.invalidation_id);
    assert_eq!(
        (
            purges[0].distribution_id.as_str(),
            purges[0].paths.clone(),
            purges[0].removed
        ),
        (CDN, vec!["/*".to_string()], 1)
    );
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["action"], "purge");
    assert_eq!(
        last.summary["result"]["invalidationId"],
        json!(out.invalidation_id)
    );
}

#[tokio::test]
async fn a_failing_cdn_is_purge_failed_and_the_attempt_is_audited() {
    let w = World::new(Env::Dev).await;
    let event = w.validated("exec-1").await;
    w.adapters.cdn.put(CDN, "/index.html", "old page");
    w.adapters.cdn.set_failing(CDN, true);
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "PurgeFailed");
    assert!(w.adapters.cdn.get(CDN, "/index.html").is_some());
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["result"]["error"], "PurgeFailed");
}

#[tokio::test]
async fn a_blocked_execution_has_no_plan_to_purge_under() {
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
    assert!(w.adapters.cdn.purges().is_empty());
}
