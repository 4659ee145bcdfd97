//! The Bot Framework's side of Microsoft Teams, on loopback, as Microsoft's "Authentication
//! with the Bot Connector API" and "Send and receive messages" documents describe it:
//!
//! - `GET /v1/.well-known/openidconfiguration`: OpenID metadata (`issuer`
//!   `https://api.botframework.com`, `jwks_uri`, `id_token_signing_alg_values_supported`);
//! - `GET /v1/.well-known/keys`: the JWK set, RSA keys with `kid`, `x5t`, `n`, `e` and
//!   `endorsements` (the channels a key signs for);
//! - `POST /botframework.com/oauth2/v2.0/token`: client credentials
//!   (`grant_type=client_credentials`, `client_id`, `client_secret`,
//!   `scope=https://api.botframework.com/.default`) → `{token_type, expires_in, access_token}`;
//!   wrong credentials are `400`/`401` with an `error` as Entra ID answers;
//! - the Bot Connector under the service URL `{base}/teams/`:
//!   `POST /v3/conversations/{id}/activities` (send) and `PUT …/activities/{activityId}`
//!   (update), bearer token required (`401` otherwise), unknown conversation `404`
//!   `ConversationNotFound`, unknown activity `404` `ActivityNotFound`, answers a
//!   `ResourceResponse` `{"id"}`. Every call is recorded.
//!
//! It also plays the channel: [`BotFramework::token`] signs the JWT the Bot Connector sends
//! with each activity, with knobs for every way a token can be wrong. The RSA keys are
//! generated when the emulator starts; nothing is read from disk.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::Mac;
use serde_json::{json, Value};

use super::Served;

/// The issuer the Bot Connector's tokens carry.
pub const ISSUER: &str = "https://api.botframework.com";
/// The bot's app id in the tests.
pub const APP_ID: &str = "5e1f0c2a-7b7d-4c55-9d8e-0b0f1c2d3e4f";
/// The conversation (the change authority's channel) the emulator knows.
pub const CONVERSATION: &str = "19:cab-channel@thread.tacv2";

/// One signing key.
struct SigningKey {
    kid: String,
    pair: RsaKeyPair,
    endorsements: Vec<String>,
    published: bool,
}

/// Which key signs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Published, endorsed for `msteams`.
    Teams,
    /// Published, endorsed only for `webchat`.
    WebchatOnly,
    /// Never published in the JWKS.
    Unpublished,
}

/// How the token the channel sends is made; [`TokenSpec::valid`] is what Teams sends.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `exp` relative to now, seconds.
    pub exp_in: i64,
    /// `nbf` relative to now, seconds.
    pub nbf_in: i64,
    /// `serviceurl`.
    pub service_url: String,
    /// Signing key.
    pub key: Key,
    /// `alg`: `RS256`, `none` (no signature) or `HS256` (HMAC keyed with the public key).
    pub alg: &'static str,
}

/// A recorded call to the Bot Connector.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorCall {
    /// `POST` or `PUT`.
    pub method: &'static str,
    /// The conversation id.
    pub conversation: String,
    /// The activity id (assigned on POST, given on PUT).
    pub activity_id: String,
    /// The activity sent.
    pub activity: Value,
}

#[derive(Default)]
struct Recorded {
    calls: Vec<ConnectorCall>,
    activities: HashMap<String, Value>,
    issued: HashSet<String>,
    token_requests: usize,
    metadata_fetches: usize,
    jwks_fetches: usize,
    next: u64,
}

struct Inner {
    keys: Vec<SigningKey>,
    client_secret: String,
    base: Mutex<String>,
    rec: Mutex<Recorded>,
}

/// The running emulator.
pub struct BotFramework {
    inner: Arc<Inner>,
    served: Served,
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

impl BotFramework {
    /// Starts the emulator; the bot's client secret is `client_secret`.
    pub async fn start(client_secret: &str) -> BotFramework {
        let key = |kid: &str, endorsements: &[&str], published: bool| SigningKey {
            kid: kid.into(),
            pair: RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
            endorsements: endorsements.iter().map(|s| s.to_string()).collect(),
            published,
        };
        let inner = Arc::new(Inner {
            keys: vec![
                key("teams-2026", &["msteams", "skype"], true),
                key("webchat-2026", &["webchat"], true),
                key("rogue-1", &["msteams"], false),
            ],
            client_secret: client_secret.into(),
            base: Mutex::new(String::new()),
            rec: Mutex::new(Recorded::default()),
        });
        let app = Router::new()
            .route("/v1/.well-known/openidconfiguration", get(metadata))
            .route("/v1/.well-known/keys", get(jwks))
            .route("/botframework.com/oauth2/v2.0/token", post(token_endpoint))
            .route(
                "/teams/v3/conversations/{conv}/activities",
                post(send_activity),
            )
            .route(
                "/teams/v3/conversations/{conv}/activities/{id}",
                axum::routing::put(update_activity),
            )
            .with_state(inner.clone());
        let served = Served::start(app).await;
        *inner.base.lock().expect("lock") = served.base();
        BotFramework { inner, served }
    }

    /// The OpenID metadata URL.
    pub fn metadata_url(&self) -> String {
        format!("{}/v1/.well-known/openidconfiguration", self.served.base())
    }

    /// The client-credentials token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/botframework.com/oauth2/v2.0/token", self.served.base())
    }

    /// The Bot Connector service URL (what activities carry as `serviceUrl`).
    pub fn service_url(&self) -> String {
        format!("{}/teams/", self.served.base())
    }

    /// Every call to the Bot Connector so far.
    pub fn calls(&self) -> Vec<ConnectorCall> {
        self.inner.rec.lock().expect("lock").calls.clone()
    }

    /// How many bot tokens were issued, and how often metadata and keys were fetched.
    pub fn counts(&self) -> (usize, usize, usize) {
        let r = self.inner.rec.lock().expect("lock");
        (r.token_requests, r.metadata_fetches, r.jwks_fetches)
    }

    /// The valid token for an activity from `service_url`.
    pub fn valid(&self, service_url: &str) -> TokenSpec {
        TokenSpec {
            issuer: ISSUER.into(),
            audience: APP_ID.into(),
            exp_in: 3600,
            nbf_in: -60,
            service_url: service_url.into(),
            key: Key::Teams,
            alg: "RS256",
        }
    }

    /// Signs a token as the Bot Connector would (or as an attacker would, per `spec`).
    pub fn token(&self, spec: &TokenSpec) -> String {
        let key = match spec.key {
            Key::Teams => &self.inner.keys[0],
            Key::WebchatOnly => &self.inner.keys[1],
            Key::Unpublished => &self.inner.keys[2],
        };
        let now = chrono::Utc::now().timestamp();
        let header = json!({"alg": spec.alg, "typ": "JWT", "kid": key.kid, "x5t": key.kid});
        let claims = json!({
            "serviceurl": spec.service_url,
            "nbf": now + spec.nbf_in,
            "exp": now + spec.exp_in,
            "iss": spec.issuer,
            "aud": spec.audience,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match spec.alg {
            "none" => Vec::new(),
            "HS256" => {
                // The classic confusion attack: HMAC keyed with the published public key.
                let public = key.pair.public_key().as_ref().to_vec();
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public).expect("hmac");
                mac.update(signing_input.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut sig = vec![0u8; key.pair.public_modulus_len()];
                key.pair
                    .sign(
                        &RSA_PKCS1_SHA256,
                        &SystemRandom::new(),
                        signing_input.as_bytes(),
                        &mut sig,
                    )
                    .expect("sign");
                sig
            }
        };
        format!("{signing_input}.{}", b64(&signature))
    }
}

async fn metadata(State(s): State<Arc<Inner>>) -> Json<Value> {
    s.rec.lock().expect("lock").metadata_fetches += 1;
    let base = s.base.lock().expect("lock").clone();
    Json(json!({
        "issuer": ISSUER,
        "authorization_endpoint": "https://invalid.botframework.com",
        "jwks_uri": format!("{base}/v1/.well-known/keys"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    }))
}

async fn jwks(State(s): State<Arc<Inner>>) -> Json<Value> {
    s.rec.lock().expect("lock").jwks_fetches += 1;
    let keys: Vec<Value> = s
        .keys
        .iter()
        .filter(|k| k.published)
        .map(|k| {
            let public = k.pair.public_key();
            json!({
                "kty": "RSA",
                "use": "sig",
                "kid": k.kid,
                "x5t": k.kid,
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
                "endorsements": k.endorsements,
            })
        })
        .collect();
    Json(json!({"keys": keys}))
}

async fn token_endpoint(State(s): State<Arc<Inner>>, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "client_credentials" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type", "error_description": "AADSTS70003"})),
        )
            .into_response();
    }
    if get("client_id") != APP_ID || get("client_secret") != s.client_secret {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})),
        )
            .into_response();
    }
    if get("scope") != "https://api.botframework.com/.default" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_scope", "error_description": "AADSTS70011"})),
        )
            .into_response();
    }
    let mut rec = s.rec.lock().expect("lock");
    rec.token_requests += 1;
    rec.next += 1;
    let token = format!("bot-token-{}-{}", rec.next, uuid_like());
    rec.issued.insert(token.clone());
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}))
        .into_response()
}

fn uuid_like() -> String {
    let mut b = [0u8; 12];
    aws_lc_rs::rand::fill(&mut b).expect("rand");
    hex::encode(b)
}

fn connector_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn authorised(s: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| s.rec.lock().expect("lock").issued.contains(t))
        .unwrap_or(false)
}

fn check_activity(activity: &Value) -> Result<(), Box<Response>> {
    if activity["type"] != "message" {
        return Err(Box::new(connector_error(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "Activity type must be message",
        )));
    }
    let attachments = activity["attachments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if attachments.is_empty() && !activity["text"].is_string() {
        return Err(Box::new(connector_error(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            "Activity has neither text nor attachments",
        )));
    }
    for a in attachments {
        if a["contentType"] == "application/vnd.microsoft.card.adaptive"
            && (a["content"]["type"] != "AdaptiveCard"
                || a["content"]["version"].as_str().is_none())
        {
            return Err(Box::new(connector_error(
                StatusCode::BAD_REQUEST,
                "BadArgument",
                "Adaptive card content is malformed",
            )));
        }
    }
    // Teams limits a message to about 28 KB.
    if activity.to_string().len() > 28 * 1024 {
        return Err(Box::new(connector_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "MessageSizeTooBig",
            "Message size too large",
        )));
    }
    Ok(())
}

async fn send_activity(
    State(s): State<Arc<Inner>>,
    Path(conv): Path<String>,
    headers: HeaderMap,
    Json(activity): Json<Value>,
) -> Response {
    if !authorised(&s, &headers) {
        return connector_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Authorization has been denied for this request.",
        );
    }
    if conv != CONVERSATION {
        return connector_error(
            StatusCode::NOT_FOUND,
            "ConversationNotFound",
            "Conversation not found.",
        );
    }
    if let Err(r) = check_activity(&activity) {
        return *r;
    }
    let mut rec = s.rec.lock().expect("lock");
    rec.next += 1;
    let id = format!("1:{}", 1_700_000_000_000u64 + rec.next);
    rec.activities.insert(id.clone(), activity.clone());
    rec.calls.push(ConnectorCall {
        method: "POST",
        conversation: conv,
        activity_id: id.clone(),
        activity,
    });
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

async fn update_activity(
    State(s): State<Arc<Inner>>,
    Path((conv, id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(activity): Json<Value>,
) -> Response {
    if !authorised(&s, &headers) {
        return connector_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Authorization has been denied for this request.",
        );
    }
    if conv != CONVERSATION {
        return connector_error(
            StatusCode::NOT_FOUND,
            "ConversationNotFound",
            "Conversation not found.",
        );
    }
    if let Err(r) = check_activity(&activity) {
        return *r;
    }
    let mut rec = s.rec.lock().expect("lock");
    if !rec.activities.contains_key(&id) {
        return connector_error(
            StatusCode::NOT_FOUND,
            "ActivityNotFound",
            "Activity not found.",
        );
    }
    rec.activities.insert(id.clone(), activity.clone());
    rec.calls.push(ConnectorCall {
        method: "PUT",
        conversation: conv,
        activity_id: id.clone(),
        activity,
    });
    Json(json!({"id": id})).into_response()
}
