//! Authenticating the Bot Connector's calls to the bot endpoint: every activity carries
//! `Authorization: Bearer <JWT>`, which must be
//!
//! - signed with RS256/RS384/RS512 (nothing else: no `none`, no HMAC over a public key)
//!   by a key in the configured OpenID metadata's JWK set, found by `kid`;
//! - issued by the configured issuer (`https://api.botframework.com`) to the bot's app id
//!   (`aud`), inside `exp`/`nbf` with five minutes of clock skew;
//! - signed by a key whose `endorsements` contain the activity's channel (`msteams`), and
//!   carry a `serviceurl` claim equal to the activity's `serviceUrl`, so a token minted
//!   for one channel or service cannot authorise a reply address of the caller's choosing.
//!
//! A token that fails any of these is 401 (or 403 for a valid token used out of place),
//! and nothing of the activity is acted on.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::openid_keys::OpenIdKeys;
use crate::InboundError;

/// The Bot Framework's public OpenID metadata.
pub const BOT_FRAMEWORK_METADATA_URL: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";
/// The issuer of tokens the Bot Connector sends to bots.
pub const BOT_FRAMEWORK_ISSUER: &str = "https://api.botframework.com";
/// Allowed clock skew on `exp` and `nbf`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Validates Bot Connector tokens for one bot.
#[derive(Debug)]
pub struct BotAuthenticator {
    keys: OpenIdKeys,
    app_id: String,
    issuer: String,
    channel: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    serviceurl: Option<String>,
}

impl BotAuthenticator {
    /// Tokens for bot `app_id`, issued by `issuer`, signed by keys from `keys` endorsed for
    /// `channel` (`msteams`).
    pub fn new(keys: OpenIdKeys, app_id: &str, issuer: &str, channel: &str) -> BotAuthenticator {
        // One crypto backend for the process: aws-lc-rs, whatever other crates enable.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        BotAuthenticator {
            keys,
            app_id: app_id.to_string(),
            issuer: issuer.to_string(),
            channel: channel.to_string(),
        }
    }

    /// Checks `authorization` (the header's value) for an activity that says it came from
    /// `service_url` on `channel_id`.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        service_url: &str,
        channel_id: &str,
    ) -> Result<(), InboundError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| InboundError::unauthorized("no bearer token"))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| InboundError::unauthorized(format!("unreadable token header: {e}")))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
        ) {
            return Err(InboundError::unauthorized(format!(
                "token algorithm {:?} is not RS256/RS384/RS512",
                header.alg
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| InboundError::unauthorized("token header has no kid"))?;
        let (jwk, _metadata) = self.keys.key(kid).await?;
        let (Some(n), Some(e)) = (jwk.n.as_deref(), jwk.e.as_deref()) else {
            return Err(InboundError::unauthorized(
                "signing key has no RSA components",
            ));
        };
        let key = DecodingKey::from_rsa_components(n, e)
            .map_err(|e| InboundError::unauthorized(format!("signing key unusable: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = CLOCK_SKEW.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[self.app_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| InboundError::unauthorized(format!("token refused: {e}")))?;
        // A valid token, but is it valid for this activity?
        if channel_id != self.channel || !jwk.endorsements.iter().any(|c| c == &self.channel) {
            return Err(InboundError::forbidden(format!(
                "the signing key is not endorsed for channel \"{}\"",
                self.channel
            )));
        }
        if data.claims.serviceurl.as_deref() != Some(service_url) {
            return Err(InboundError::forbidden(
                "the token's serviceurl claim does not match the activity's serviceUrl",
            ));
        }
        Ok(())
    }
}
