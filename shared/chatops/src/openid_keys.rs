//! The Bot Framework's signing keys: OpenID metadata (`issuer`, `jwks_uri`) and the JWK set
//! it points to, fetched from a configurable URL and cached.
//!
//! The key set is our own type because the Bot Framework adds `endorsements` to each key
//! (the channels the key may sign for) and `jsonwebtoken`'s JWK set drops that field.
//! Refreshing is bounded: the cache is refetched when older than `max_age`, or when a token
//! names an unknown `kid`, but never more often than once per `min_refresh` — a stream of
//! tokens with made-up key ids cannot turn certops into a load generator.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::InboundError;

/// OpenID Connect discovery document, the fields certops reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OpenIdMetadata {
    /// The issuer tokens must carry.
    pub issuer: String,
    /// Where the signing keys are.
    pub jwks_uri: String,
    /// Signing algorithms the issuer uses.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// One signing key as the Bot Framework publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Jwk {
    /// Key type; only `RSA` keys are used.
    pub kty: String,
    /// Key id, matched against the token header's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// Intended use (`sig`), when given.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent, base64url.
    #[serde(default)]
    pub e: Option<String>,
    /// The channels (`msteams`, `webchat`, …) this key may sign for.
    #[serde(default)]
    pub endorsements: Vec<String>,
}

/// A JWK set with endorsements kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

struct Cached {
    metadata: Option<OpenIdMetadata>,
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// The cached metadata and keys of one OpenID issuer.
pub struct OpenIdKeys {
    metadata_url: String,
    http: reqwest::Client,
    max_age: Duration,
    min_refresh: Duration,
    cache: Mutex<Cached>,
}

impl std::fmt::Debug for OpenIdKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenIdKeys")
            .field("metadata_url", &self.metadata_url)
            .finish()
    }
}

impl OpenIdKeys {
    /// Keys from the metadata at `metadata_url`, refetched after `max_age` and at most once
    /// per `min_refresh` when a token names an unknown key.
    pub fn new(
        metadata_url: &str,
        http: reqwest::Client,
        max_age: Duration,
        min_refresh: Duration,
    ) -> OpenIdKeys {
        OpenIdKeys {
            metadata_url: metadata_url.to_string(),
            http,
            max_age,
            min_refresh,
            cache: Mutex::new(Cached {
                metadata: None,
                keys: Vec::new(),
                fetched_at: None,
                last_attempt: None,
            }),
        }
    }

    /// The RSA key with id `kid` and the metadata it came with. Unknown after a (bounded)
    /// refresh: 401.
    pub async fn key(&self, kid: &str) -> Result<(Jwk, OpenIdMetadata), InboundError> {
        let mut cache = self.cache.lock().await;
        let stale = cache
            .fetched_at
            .map(|t| t.elapsed() > self.max_age)
            .unwrap_or(true);
        if stale {
            self.refresh(&mut cache).await;
        }
        if let Some(found) = find(&cache, kid) {
            return Ok(found);
        }
        // An unknown kid may be a rotated key: refresh, but not more often than allowed.
        if !stale {
            self.refresh(&mut cache).await;
            if let Some(found) = find(&cache, kid) {
                return Ok(found);
            }
        }
        if cache.metadata.is_none() {
            return Err(InboundError::unavailable(
                "the token issuer's OpenID metadata could not be fetched",
            ));
        }
        Err(InboundError::unauthorized(
            "the token's kid names no known signing key",
        ))
    }

    async fn refresh(&self, cache: &mut Cached) {
        if cache
            .last_attempt
            .map(|t| t.elapsed() < self.min_refresh)
            .unwrap_or(false)
        {
            return;
        }
        cache.last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok((metadata, set)) => {
                cache.metadata = Some(metadata);
                cache.keys = set.keys;
                cache.fetched_at = Some(Instant::now());
            }
            // Keep serving the keys we have; the next attempt comes after min_refresh.
            Err(e) => {
                tracing::warn!(url = %self.metadata_url, "refreshing signing keys failed: {e}")
            }
        }
    }

    async fn fetch(&self) -> Result<(OpenIdMetadata, JwkSet), String> {
        let metadata: OpenIdMetadata = self.get_json(&self.metadata_url).await?;
        let set: JwkSet = self.get_json(&metadata.jwks_uri).await?;
        Ok((metadata, set))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        resp.json::<T>()
            .await
            .map_err(|e| format!("GET {url}: unreadable JSON: {e}"))
    }
}

fn find(cache: &Cached, kid: &str) -> Option<(Jwk, OpenIdMetadata)> {
    let metadata = cache.metadata.clone()?;
    cache
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == Some(kid) && k.kty == "RSA")
        .map(|k| (k.clone(), metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endorsements_survive_parsing() {
        let set: JwkSet = serde_json::from_str(
            r#"{"keys":[{"kty":"RSA","use":"sig","kid":"k1","x5t":"k1","n":"AQAB","e":"AQAB",
                "x5c":["MII"],"endorsements":["msteams","webchat"]},{"kty":"RSA","kid":"k2","n":"AQAB","e":"AQAB"}]}"#,
        )
        .expect("set");
        assert_eq!(set.keys[0].endorsements, ["msteams", "webchat"]);
        assert!(set.keys[1].endorsements.is_empty());
    }
}
