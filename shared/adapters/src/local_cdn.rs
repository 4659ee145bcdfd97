//! [`CdnPurger`] for [`CdnKind::Local`]: an in-process cache in front of the local
//! endpoints.
//!
//! Entries are `(distribution, path) → value` with a generation number that grows with every
//! write, so a test can tell a fresh entry from a stale one. A purge removes the listed paths
//! (a trailing `*` matches a prefix, as CloudFront's `/*` does) and returns an invalidation
//! id. Purges can be made to fail per distribution to drive the workflow's
//! retry-then-notify path.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use certops_core::ports::CdnPurger;
use certops_core::{Cdn, CdnKind, Error};
use serde::{Deserialize, Serialize};

/// A cached value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedEntry {
    /// What is cached.
    pub value: String,
    /// The generation it was written in (strictly increasing across the cache).
    pub generation: u64,
}

/// A purge that succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    /// The invalidation id returned.
    pub id: String,
    /// The distribution.
    pub distribution_id: String,
    /// The paths asked for.
    pub paths: Vec<String>,
    /// How many cached entries were removed.
    pub removed: usize,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<(String, String), CachedEntry>,
    generation: u64,
    failing: HashSet<String>,
    purges: Vec<PurgeRecord>,
}

/// The in-process CDN cache.
#[derive(Default)]
pub struct LocalCdn {
    state: Mutex<State>,
}

impl std::fmt::Debug for LocalCdn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("LocalCdn")
            .field("entries", &s.entries.len())
            .field("purges", &s.purges.len())
            .finish()
    }
}

fn matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

impl LocalCdn {
    /// An empty cache.
    pub fn new() -> LocalCdn {
        LocalCdn::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Caches `value` for `path` of `distribution_id` and returns its generation.
    pub fn put(&self, distribution_id: &str, path: &str, value: &str) -> u64 {
        let mut s = self.lock();
        s.generation += 1;
        let generation = s.generation;
        s.entries.insert(
            (distribution_id.to_string(), path.to_string()),
            CachedEntry {
                value: value.to_string(),
                generation,
            },
        );
        generation
    }

    /// What is cached for `path`, if anything.
    pub fn get(&self, distribution_id: &str, path: &str) -> Option<CachedEntry> {
        self.lock()
            .entries
            .get(&(distribution_id.to_string(), path.to_string()))
            .cloned()
    }

    /// Makes purges of `distribution_id` fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, distribution_id: &str, failing: bool) {
        let mut s = self.lock();
        if failing {
            s.failing.insert(distribution_id.to_string());
        } else {
            s.failing.remove(distribution_id);
        }
    }

    /// Every successful purge, oldest first.
    pub fn purges(&self) -> Vec<PurgeRecord> {
        self.lock().purges.clone()
    }
}

#[async_trait]
impl CdnPurger for LocalCdn {
    async fn purge(&self, cdn: &Cdn) -> Result<String, Error> {
        if cdn.kind != CdnKind::Local {
            return Err(Error::PurgeFailed(format!(
                "no adapter for CDN kind {:?} in the embedded runtime (distribution {})",
                cdn.kind, cdn.distribution_id
            )));
        }
        if cdn.paths.is_empty() {
            return Err(Error::InvalidInput(format!(
                "purge of {} names no paths",
                cdn.distribution_id
            )));
        }
        let mut s = self.lock();
        if s.failing.contains(&cdn.distribution_id) {
            return Err(Error::PurgeFailed(format!(
                "injected purge failure on {}",
                cdn.distribution_id
            )));
        }
        let before = s.entries.len();
        s.entries.retain(|(dist, path), _| {
            dist != &cdn.distribution_id || !cdn.paths.iter().any(|p| matches(p, path))
        });
        let removed = before - s.entries.len();
        let id = format!("local-inv-{:06}", s.purges.len() + 1);
        s.purges.push(PurgeRecord {
            id: id.clone(),
            distribution_id: cdn.distribution_id.clone(),
            paths: cdn.paths.clone(),
            removed,
        });
        tracing::info!(distribution = %cdn.distribution_id, %id, removed, "local CDN purged");
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdn(paths: &[&str]) -> Cdn {
        Cdn {
            kind: CdnKind::Local,
            distribution_id: "shop-cdn".into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn purge_clears_listed_paths_and_records_it() {
        let c = LocalCdn::new();
        let g1 = c.put("shop-cdn", "/index.html", "v1");
        c.put("shop-cdn", "/static/app.js", "v1");
        c.put("shop-cdn", "/keep", "v1");
        c.put("other-cdn", "/index.html", "v1");
        assert!(c.put("shop-cdn", "/index.html", "v2") > g1);
        let id = c.purge(&cdn(&["/index.html", "/static/*"])).await.unwrap();
        assert_eq!(id, "local-inv-000001");
        assert_eq!(c.get("shop-cdn", "/index.html"), None);
        assert_eq!(c.get("shop-cdn", "/static/app.js"), None);
        assert_eq!(c.get("shop-cdn", "/keep").unwrap().value, "v1");
        assert!(c.get("other-cdn", "/index.html").is_some());
        let purges = c.purges();
        assert_eq!(purges.len(), 1);
        assert_eq!(purges[0].removed, 2);
        assert_eq!(c.purge(&cdn(&["/*"])).await.unwrap(), "local-inv-000002");
        assert_eq!(c.get("shop-cdn", "/keep"), None);
    }

    #[tokio::test]
    async fn failing_distributions_and_other_kinds_are_purge_failed() {
        let c = LocalCdn::new();
        c.put("shop-cdn", "/index.html", "v1");
        c.set_failing("shop-cdn", true);
        assert_eq!(
            c.purge(&cdn(&["/*"])).await.unwrap_err().name(),
            "PurgeFailed"
        );
        assert!(c.get("shop-cdn", "/index.html").is_some(), "nothing purged");
        assert!(c.purges().is_empty());
        c.set_failing("shop-cdn", false);
        c.purge(&cdn(&["/*"])).await.unwrap();
        let mut cf = cdn(&["/*"]);
        cf.kind = CdnKind::Cloudfront;
        assert_eq!(c.purge(&cf).await.unwrap_err().name(), "PurgeFailed");
        assert_eq!(c.purge(&cdn(&[])).await.unwrap_err().name(), "InvalidInput");
    }
}
