//! `renew` against the embedded adapters: the local CA issues, the file keystore keeps
//! the key; the plan and approvals come from the real `validate` step.

use super::*;
use crate::test_world::{Env, World, CERT_ID};
use certops_adapters::IssuerFault;
use certops_core::workflow::ApprovalOutcome;

#[tokio::test]
async fn a_pre_approved_plan_is_issued_into_the_keystore_and_returned_by_reference() {
    let w = World::new(Env::Dev).await;
    let event = w.validated("exec-1").await;
    let v = event.state.validation.clone().unwrap();
    let out = handle(&w.deps, event).await.unwrap();

    assert_eq!(out.source, "internal-pki");
    assert_eq!(Some(&out.plan_hash), v.plan_hash.as_ref());
    assert!(out.bundle_ref.contains(CERT_ID), "{}", out.bundle_ref);
    assert_ne!(out.fingerprint, w.initial_fingerprint);
    // The output names the key by reference only.
    let text = serde_json::to_string(&out).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    // The keystore holds the bundle the output describes.
    let bundle = w.deps.keystore.get_bundle(&out.bundle_ref).await.unwrap();
    let facts = leaf_facts(&bundle.chain_pem).unwrap();
    assert_eq!(
        (facts.fingerprint, facts.not_after),
        (out.fingerprint.clone(), out.not_after)
    );
    assert!(out.not_after > w.expiry);
    // Noted in the ticket and audited.
    let notes = w.work_notes(&v.ticket).await;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Renewed certificate ready") && n.contains(&out.fingerprint)),
        "{notes:?}"
    );
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["action"], "issue");
    assert_eq!(last.summary["bundleRef"], json!(out.bundle_ref));
}

#[tokio::test]
async fn the_fallback_mode_selects_the_provisioned_certificate_without_issuing() {
    let w = World::new(Env::Dev).await;
    let mut event = w.validated("exec-1").await;
    event.mode = Some("fallback".into());
    // Even with the issuer refusing: the fallback path does not ask it.
    w.adapters
        .ca
        .set_fault(CERT_ID, Some(IssuerFault::RateLimited));
    let out = handle(&w.deps, event.clone()).await.unwrap();
    let plan = event
        .state
        .validation
        .as_ref()
        .unwrap()
        .fallback_plan
        .clone()
        .unwrap();
    assert_eq!(out.source, "fallback");
    assert_eq!(Some(&out.bundle_ref), plan.fallback_cert.as_ref());
    assert_eq!(
        Some(&out.plan_hash),
        event
            .state
            .validation
            .as_ref()
            .unwrap()
            .fallback_plan_hash
            .as_ref()
    );
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["action"], "select-fallback");
}

#[tokio::test]
async fn a_rate_limited_issuer_is_rate_limited_and_stores_nothing() {
    let w = World::new(Env::Dev).await;
    let event = w.validated("exec-1").await;
    let before = w.deps.keystore.references().await.unwrap();
    w.adapters
        .ca
        .set_fault(CERT_ID, Some(IssuerFault::RateLimited));
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "RateLimited");
    assert_eq!(w.deps.keystore.references().await.unwrap(), before);
}

#[tokio::test]
async fn an_approval_only_the_state_claims_is_refused_and_audited() {
    // A normal change: the state carries an approval for the right plan hash, but the
    // Store has none (a forged task output). Nothing is issued.
    let w = World::new(Env::Prod).await;
    let mut event = w.validated("exec-1").await;
    let hash = event
        .state
        .validation
        .as_ref()
        .unwrap()
        .plan_hash
        .clone()
        .unwrap();
    event.state.approval = Some(ApprovalOutcome {
        approval_id: certops_core::approval_id("exec-1", &hash),
        approver: crate::test_world::APPROVER.into(),
        decided_at: w.deps.clock.now(),
        plan_hash: hash.clone(),
        comment: None,
    });
    let before = w.deps.keystore.references().await.unwrap();
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "ApprovalMissing", "{err}");
    assert_eq!(w.deps.keystore.references().await.unwrap(), before);
    let last = w.audit("exec-1").await.pop().unwrap();
    assert_eq!(last.summary["refused"], "ApprovalMissing");
    assert_eq!(last.summary["planHash"], json!(hash));
}

#[tokio::test]
async fn a_normal_change_never_approved_is_invalid_input() {
    let w = World::new(Env::Prod).await;
    let event = w.validated("exec-1").await;
    let before = w.deps.keystore.references().await.unwrap();
    let err = handle(&w.deps, event).await.unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("never approved"), "{err}");
    assert_eq!(w.deps.keystore.references().await.unwrap(), before);
    assert!(w
        .audit("exec-1")
        .await
        .iter()
        .all(|r| r.summary["action"] != "issue"));
}
