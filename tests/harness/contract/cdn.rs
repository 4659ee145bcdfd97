//! The `CdnPurger` contract (shared/core/src/ports.rs): a purge returns an invalidation id;
//! failures are `PurgeFailed`; a CDN kind the adapter does not handle is `PurgeFailed`
//! naming the kind; a purge naming no paths is refused. Whether a retried purge gets the
//! same id back is the adapter's promise, stated by the caller.

use certops_core::ports::CdnPurger;
use certops_core::Cdn;

/// What an adapter promises about purging the same CDN again right away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPromise {
    /// The retry is the same invalidation: the same id comes back.
    SameId,
    /// Each purge is its own invalidation: a new id comes back.
    NewId,
    /// The adapter sends the service an idempotency key and the service returns the
    /// first invalidation for it (CloudFront's `CallerReference`). The suite only requires
    /// a valid id; the caller checks the key the adapter sent.
    ByService,
}

/// Runs the CDN contract: `cdn` is purgeable, `failing` is a CDN of the right kind whose
/// purge fails (unknown distribution, injected fault), `wrong_kind` is a CDN the adapter
/// does not handle. Returns the ids of the first purge and its retry.
pub async fn cdn_contract(
    purger: &dyn CdnPurger,
    cdn: &Cdn,
    failing: &Cdn,
    wrong_kind: &Cdn,
    retry: RetryPromise,
) -> (String, String) {
    let first = purger.purge(cdn).await.expect("purge");
    assert!(
        !first.trim().is_empty(),
        "a purge returns an invalidation id"
    );
    let again = purger.purge(cdn).await.expect("retried purge");
    assert!(!again.trim().is_empty());
    match retry {
        RetryPromise::SameId => {
            assert_eq!(again, first, "a retried purge is the same invalidation")
        }
        RetryPromise::NewId => assert_ne!(again, first, "each purge is a new invalidation"),
        RetryPromise::ByService => {}
    }

    let err = purger.purge(failing).await.expect_err("a failing purge");
    assert_eq!(err.name(), "PurgeFailed", "{err}");

    let err = purger.purge(wrong_kind).await.expect_err("a wrong kind");
    assert_eq!(err.name(), "PurgeFailed", "{err}");
    let kind = format!("{:?}", wrong_kind.kind);
    assert!(err.to_string().contains(&kind), "{err} should name {kind}");

    let mut no_paths = cdn.clone();
    no_paths.paths.clear();
    let err = purger
        .purge(&no_paths)
        .await
        .expect_err("a purge naming no paths");
    assert!(
        ["InvalidInput", "PurgeFailed"].contains(&err.name()),
        "{err}"
    );
    (first, again)
}
