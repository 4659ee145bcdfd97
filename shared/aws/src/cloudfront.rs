//! [`CdnPurger`] for [`CdnKind::Cloudfront`]: a CloudFront invalidation of the inventory's
//! paths (`CreateInvalidation`); the invalidation id is the purge id.
//!
//! ## Idempotency: the `CallerReference`
//!
//! CloudFront answers a `CreateInvalidation` whose `CallerReference` and paths match an
//! earlier one with that earlier invalidation instead of creating another. The reference
//! is therefore derived, never random:
//!
//! `certops-` + the first 32 hex digits of SHA-256(distribution id, the sorted distinct
//! paths, a change token)
//!
//! and the change token says which change the purge belongs to. [`CloudFrontPurger::purge_with_token`]
//! takes it from the caller — the execution name is the natural one: every retry of one
//! renewal's purge then maps to one invalidation, and the next renewal gets a new one.
//!
//! The port's [`CdnPurger::purge`] receives only the CDN, so there the token is the
//! *retry window* the call falls in: the current time divided into aligned windows of
//! [`DEFAULT_RETRY_WINDOW`] (10 minutes; see [`CloudFrontPurger::with_retry_window`]). The
//! workflow retries a failed purge within seconds (and the SDK re-sends a request whose
//! answer was lost within the same call), so a retried purge of the same change lands in
//! the same window and gets the same invalidation back; a purge for a later change, minutes
//! or days later, gets a new reference and a new invalidation. The edges are harmless in
//! the safe direction only for retries: a retry that crosses a window boundary creates one
//! extra invalidation (a duplicate purge); two *different* changes of the same distribution
//! and paths inside one window share an invalidation, which is why callers that know the
//! change should pass it to `purge_with_token`.
//!
//! Every failure is [`Error::PurgeFailed`] (the message says when retrying may help): the
//! state machine retries it with back-off and then notifies on-call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use certops_core::ports::{CdnPurger, Clock};
use certops_core::{Cdn, CdnKind, Error};
use sha2::{Digest, Sha256};

use crate::sdk_error::sdk_failure;

pub use aws_sdk_cloudfront;

/// How long retries of one purge count as the same change when no change token is given.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(600);

/// CloudFront invalidations.
#[derive(Clone)]
pub struct CloudFrontPurger {
    client: aws_sdk_cloudfront::Client,
    clock: Arc<dyn Clock>,
    window: Duration,
}

impl std::fmt::Debug for CloudFrontPurger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudFrontPurger")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// The distinct paths, sorted: the same set in another order is the same purge.
fn normalized(paths: &[String]) -> Vec<String> {
    let mut paths = paths.to_vec();
    paths.sort();
    paths.dedup();
    paths
}

impl CloudFrontPurger {
    /// A purger reading the time from `clock`, with the [`DEFAULT_RETRY_WINDOW`].
    pub fn new(client: aws_sdk_cloudfront::Client, clock: Arc<dyn Clock>) -> CloudFrontPurger {
        CloudFrontPurger {
            client,
            clock,
            window: DEFAULT_RETRY_WINDOW,
        }
    }

    /// The same purger with another retry window (at least one second).
    pub fn with_retry_window(mut self, window: Duration) -> CloudFrontPurger {
        self.window = window.max(Duration::from_secs(1));
        self
    }

    /// The CloudFront client.
    pub fn client(&self) -> &aws_sdk_cloudfront::Client {
        &self.client
    }

    /// The `CallerReference` of a purge of `cdn` for the change `token` (see the module docs).
    pub fn caller_reference(cdn: &Cdn, token: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(cdn.distribution_id.as_bytes());
        for path in normalized(&cdn.paths) {
            hash.update([0u8]);
            hash.update(path.as_bytes());
        }
        hash.update([1u8]);
        hash.update(token.as_bytes());
        let digest = hex::encode(hash.finalize());
        format!("certops-{}", &digest[..32])
    }

    /// The change token [`CdnPurger::purge`] uses: the aligned retry window of now.
    pub fn window_token(&self) -> String {
        let secs = self.clock.now().timestamp().max(0) as u64;
        format!("window-{}", secs / self.window.as_secs().max(1))
    }

    /// Invalidates `cdn`'s paths as part of the change `token`: repeating it with the same
    /// token returns the same invalidation (CloudFront matches the `CallerReference`).
    pub async fn purge_with_token(&self, cdn: &Cdn, token: &str) -> Result<String, Error> {
        if cdn.kind != CdnKind::Cloudfront {
            return Err(Error::PurgeFailed(format!(
                "the CloudFront purger does not handle CDN kind {:?} (distribution {})",
                cdn.kind, cdn.distribution_id
            )));
        }
        if cdn.paths.is_empty() {
            return Err(Error::InvalidInput(format!(
                "purge of {} names no paths",
                cdn.distribution_id
            )));
        }
        if let Some(bad) = cdn.paths.iter().find(|p| !p.starts_with('/')) {
            return Err(Error::InvalidInput(format!(
                "purge of {}: path \"{}\" does not start with /",
                cdn.distribution_id,
                bad.escape_default()
            )));
        }
        let paths = normalized(&cdn.paths);
        let reference = Self::caller_reference(cdn, token);
        let batch = InvalidationBatch::builder()
            .paths(
                Paths::builder()
                    .quantity(paths.len() as i32)
                    .set_items(Some(paths))
                    .build()
                    .map_err(|e| Error::PurgeFailed(format!("invalidation paths: {e}")))?,
            )
            .caller_reference(&reference)
            .build()
            .map_err(|e| Error::PurgeFailed(format!("invalidation batch: {e}")))?;
        let out = self
            .client
            .create_invalidation()
            .distribution_id(&cdn.distribution_id)
            .invalidation_batch(batch)
            .send()
            .await
            .map_err(|e| {
                let f = sdk_failure(&e);
                Error::PurgeFailed(format!(
                    "invalidation of {}: {}{}",
                    cdn.distribution_id,
                    f.detail,
                    if f.transient {
                        " (temporary; retrying may succeed)"
                    } else {
                        ""
                    }
                ))
            })?;
        let id = out
            .invalidation()
            .map(|i| i.id().to_string())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Error::PurgeFailed(format!(
                    "CloudFront returned no invalidation for {}",
                    cdn.distribution_id
                ))
            })?;
        tracing::info!(distribution = %cdn.distribution_id, invalidation = %id, caller_reference = %reference, "CloudFront invalidation created");
        Ok(id)
    }
}

#[async_trait]
impl CdnPurger for CloudFrontPurger {
    async fn purge(&self, cdn: &Cdn) -> Result<String, Error> {
        self.purge_with_token(cdn, &self.window_token()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use std::sync::Mutex;

    struct At(Mutex<DateTime<Utc>>);

    impl Clock for At {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn cdn(paths: &[&str]) -> Cdn {
        Cdn {
            kind: CdnKind::Cloudfront,
            distribution_id: "E2QWRUHAPOMQZL".into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn caller_references_depend_on_distribution_paths_and_token_only() {
        let r = CloudFrontPurger::caller_reference(&cdn(&["/a", "/b/*"]), "exec-1");
        assert!(r.starts_with("certops-") && r.len() == 40, "{r}");
        assert_eq!(
            r,
            CloudFrontPurger::caller_reference(&cdn(&["/b/*", "/a", "/a"]), "exec-1")
        );
        assert_ne!(
            r,
            CloudFrontPurger::caller_reference(&cdn(&["/a", "/b/*"]), "exec-2")
        );
        assert_ne!(
            r,
            CloudFrontPurger::caller_reference(&cdn(&["/a"]), "exec-1")
        );
        let mut other = cdn(&["/a", "/b/*"]);
        other.distribution_id = "E1DOCSDEV00001".into();
        assert_ne!(r, CloudFrontPurger::caller_reference(&other, "exec-1"));
        // Path boundaries count: ["/ab"] is not ["/a", "b"].
        assert_ne!(
            CloudFrontPurger::caller_reference(&cdn(&["/ab"]), "t"),
            CloudFrontPurger::caller_reference(&cdn(&["/a", "b"]), "t")
        );
    }

    #[test]
    fn the_window_token_is_stable_within_a_window_and_changes_after_it() {
        let conf = aws_sdk_cloudfront::Config::builder()
            .behavior_version(aws_sdk_cloudfront::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudfront::config::Region::new("us-east-1"))
            .build();
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let clock = Arc::new(At(Mutex::new(start)));
        let purger =
            CloudFrontPurger::new(aws_sdk_cloudfront::Client::from_conf(conf), clock.clone());
        let first = purger.window_token();
        *clock.0.lock().unwrap() = start + chrono::Duration::seconds(599);
        assert_eq!(purger.window_token(), first);
        *clock.0.lock().unwrap() = start + chrono::Duration::seconds(600);
        assert_ne!(purger.window_token(), first);
    }
}
