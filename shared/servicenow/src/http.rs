//! The HTTP side of the adapter: one `reqwest` client (rustls), authentication (Basic, or
//! OAuth 2 at `/oauth_token.do` with the token cached until shortly before `expires_in`
//! and refreshed once on a 401), a timeout on every call, bounded retries, and the mapping
//! of ServiceNow's answers to certops's error names.
//!
//! - 429: waits `Retry-After` (capped), then retries; after the last attempt `Transient`.
//! - 5xx, timeouts, connection failures: jittered exponential back-off, then `Transient`.
//!   A write that may have reached the instance (timeout, 5xx) is not repeated here: the
//!   caller checks whether it landed before trying again (see `itsm.rs`).
//! - 401 (after one token refresh) and 403: `AccessDenied`; 404: `NotFound`; other 4xx:
//!   `InvalidInput`. Each carries ServiceNow's `error.message` and `error.detail`.
//!
//! Credentials live in [`zeroize::Zeroizing`] strings and never appear in an error, a log
//! line or a `Debug` output.

use std::time::{Duration, Instant};

use base64::Engine as _;
use certops_core::Error;
use rand::Rng as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use zeroize::Zeroizing;

/// How the adapter signs in.
pub enum Credentials {
    /// HTTP Basic with an integration user.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Zeroizing<String>,
    },
    /// OAuth 2 password grant (`grant_type=password`).
    OAuthPassword {
        /// Application registry client id.
        client_id: String,
        /// Client secret.
        client_secret: Zeroizing<String>,
        /// User name.
        username: String,
        /// Password.
        password: Zeroizing<String>,
    },
    /// OAuth 2 client-credentials grant.
    OAuthClientCredentials {
        /// Application registry client id.
        client_id: String,
        /// Client secret.
        client_secret: Zeroizing<String>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Credentials::Basic { .. } => "Basic",
            Credentials::OAuthPassword { .. } => "OAuthPassword",
            Credentials::OAuthClientCredentials { .. } => "OAuthClientCredentials",
        };
        write!(f, "Credentials::{kind}([REDACTED])")
    }
}

/// Retry and timeout limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per call (first try included).
    pub max_attempts: u32,
    /// The longest `Retry-After` honoured; a longer one ends the call as `Transient`.
    pub max_retry_after: Duration,
    /// First back-off step; doubled per attempt, with full jitter.
    pub backoff: Duration,
}

struct CachedToken {
    token: Zeroizing<String>,
    /// Renew after this instant (shortly before `expires_in`).
    renew_at: Instant,
}

/// A response body and status.
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Transient(format!(
                "ServiceNow answered {} with a body that is not JSON ({} at line {} column {})",
                self.status,
                match e.classify() {
                    serde_json::error::Category::Eof => "truncated",
                    _ => "malformed",
                },
                e.line(),
                e.column()
            ))
        })
    }
}

/// A request to make.
pub struct Call<'a> {
    /// Method.
    pub method: Method,
    /// Path under the instance (`/api/now/table/incident`).
    pub path: String,
    /// Query pairs.
    pub query: Vec<(&'a str, String)>,
    /// JSON body.
    pub json: Option<Value>,
    /// Raw body and its content type (attachments).
    pub raw: Option<(Vec<u8>, String)>,
    /// Whether the call may be repeated after it possibly reached the instance.
    pub idempotent: bool,
}

impl<'a> Call<'a> {
    /// A GET.
    pub fn get(path: impl Into<String>, query: Vec<(&'a str, String)>) -> Call<'a> {
        Call {
            method: Method::GET,
            path: path.into(),
            query,
            json: None,
            raw: None,
            idempotent: true,
        }
    }

    /// A write with a JSON body (not repeated once it may have landed).
    pub fn write(method: Method, path: impl Into<String>, json: Value) -> Call<'a> {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            json: Some(json),
            raw: None,
            idempotent: false,
        }
    }
}

/// The instance's HTTP client.
pub struct Http {
    client: reqwest::Client,
    base: String,
    credentials: Credentials,
    limits: Limits,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// ServiceNow's `{"error":{"message","detail"}}`, as one line.
fn servicenow_error(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let text = |x: &Value| match x {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    match (text(&e["message"]), text(&e["detail"])) {
        (Some(m), Some(d)) => format!("{m}: {d}"),
        (Some(m), None) => m,
        _ => match (text(&v["error"]), text(&v["error_description"])) {
            (Some(a), Some(b)) => format!("{a}: {b}"),
            _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

impl Http {
    /// A client for the instance at `base` (`https://example.service-now.com`).
    pub fn new(base: &str, credentials: Credentials, limits: Limits) -> Result<Http, Error> {
        let client = reqwest::Client::builder()
            .timeout(limits.timeout)
            .connect_timeout(limits.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("certops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidInput(format!("building the ServiceNow client: {e}")))?;
        Ok(Http {
            client,
            base: base.trim_end_matches('/').to_string(),
            credentials,
            limits,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The instance URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.limits.backoff.saturating_mul(1 << attempt.min(6));
        let ms = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }

    /// A bearer token from the cache, or a new one.
    async fn bearer(&self, force: bool) -> Result<Option<Zeroizing<String>>, Error> {
        let form: Vec<(&str, &str)> = match &self.credentials {
            Credentials::Basic { .. } => return Ok(None),
            Credentials::OAuthPassword {
                client_id,
                client_secret,
                username,
                password,
            } => vec![
                ("grant_type", "password"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("username", username),
                ("password", password),
            ],
            Credentials::OAuthClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret),
            ],
        };
        let mut cached = self.token.lock().await;
        if !force {
            if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
                return Ok(Some(t.token.clone()));
            }
        }
        let mut last = String::new();
        for attempt in 0..self.limits.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            let sent = self
                .client
                .post(format!("{}/oauth_token.do", self.base))
                .form(&form)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = format!("token request failed: {}", without_url(&e));
                    continue;
                }
            };
            let status = resp.status();
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                last = format!("token endpoint answered {status}");
                continue;
            }
            if !status.is_success() {
                return Err(Error::AccessDenied(format!(
                    "ServiceNow refused the OAuth token request ({status}): {}",
                    servicenow_error(&body)
                )));
            }
            let v: Value = serde_json::from_slice(&body)
                .map_err(|_| Error::Transient("the OAuth token response is not JSON".into()))?;
            let token = v["access_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Error::Transient("the OAuth token response has no access_token".into())
                })?;
            let expires_in = v["expires_in"]
                .as_u64()
                .or_else(|| v["expires_in"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(1800);
            // Renew a minute early (or at 90 % of a short lifetime).
            let margin = (expires_in / 10).clamp(1, 60);
            let t = CachedToken {
                token: Zeroizing::new(token.to_string()),
                renew_at: Instant::now() + Duration::from_secs(expires_in.saturating_sub(margin)),
            };
            let out = t.token.clone();
            *cached = Some(t);
            return Ok(Some(out));
        }
        Err(Error::Transient(format!(
            "no OAuth token from ServiceNow after {} attempts: {last}",
            self.limits.max_attempts
        )))
    }

    fn authorize(
        &self,
        req: reqwest::RequestBuilder,
        bearer: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match (&self.credentials, bearer) {
            (Credentials::Basic { username, password }, _) => {
                let pair = Zeroizing::new(format!("{username}:{}", password.as_str()));
                let enc = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()),
                );
                req.header("authorization", format!("Basic {}", enc.as_str()))
            }
            (_, Some(t)) => req.bearer_auth(t),
            _ => req,
        }
    }

    /// Makes one call with the retry policy; returns a 2xx answer or the mapped error.
    pub async fn send(&self, call: &Call<'_>) -> Result<Answer, Error> {
        let what = format!("{} {}", call.method, call.path);
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let bearer = self.bearer(false).await?;
            let mut req = self
                .client
                .request(call.method.clone(), format!("{}{}", self.base, call.path))
                .header("accept", "application/json")
                .query(&call.query);
            req = self.authorize(req, bearer.as_ref().map(|t| t.as_str()));
            if let Some(j) = &call.json {
                req = req.json(j);
            }
            if let Some((bytes, ctype)) = &call.raw {
                req = req
                    .header("content-type", ctype.as_str())
                    .body(bytes.clone());
            }
            let last = attempt >= self.limits.max_attempts;
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    // A request that never connected did not land; one that timed out may have.
                    let may_have_landed = !e.is_connect();
                    let msg = format!("ServiceNow {what}: {}", without_url(&e));
                    if last || (may_have_landed && !call.idempotent) {
                        return Err(Error::Transient(msg));
                    }
                    tracing::warn!(call = %what, attempt, "ServiceNow unreachable; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = match resp.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    let msg = format!("ServiceNow {what}: reading the answer: {}", without_url(&e));
                    if last || !call.idempotent {
                        return Err(Error::Transient(msg));
                    }
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            if status.is_success() {
                return Ok(Answer {
                    status,
                    body,
                    headers,
                });
            }
            let detail = servicenow_error(&body);
            if status != StatusCode::UNAUTHORIZED {
                // The token was accepted: a later 401 (it expired during a long wait) earns
                // a fresh refresh; only two 401s in a row mean the credentials are wrong.
                refreshed = false;
            }
            match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    // A refused request did not land: safe to repeat, writes included.
                    let wait = headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or_else(|| self.backoff(attempt));
                    if last || wait > self.limits.max_retry_after {
                        return Err(Error::Transient(format!(
                            "ServiceNow {what} rate limited (429, Retry-After {}s): {detail}",
                            wait.as_secs()
                        )));
                    }
                    tracing::warn!(call = %what, attempt, wait_s = wait.as_secs(), "ServiceNow rate limit; waiting");
                    tokio::time::sleep(wait).await;
                }
                StatusCode::UNAUTHORIZED if bearer.is_some() && !refreshed => {
                    // The token expired or was revoked early: refresh once.
                    refreshed = true;
                    attempt -= 1;
                    self.bearer(true).await?;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(Error::AccessDenied(format!(
                        "ServiceNow {what} ({status}): {detail}"
                    )))
                }
                StatusCode::NOT_FOUND => {
                    return Err(Error::NotFound(format!(
                        "ServiceNow {what} (404): {detail}"
                    )))
                }
                s if s.is_server_error() => {
                    if last || !call.idempotent {
                        return Err(Error::Transient(format!(
                            "ServiceNow {what} ({status}): {detail}"
                        )));
                    }
                    tracing::warn!(call = %what, attempt, %status, "ServiceNow error; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "ServiceNow {what} ({status}): {detail}"
                    )))
                }
            }
        }
    }

    /// A call whose answer is JSON.
    pub async fn json(&self, call: &Call<'_>) -> Result<Value, Error> {
        self.send(call).await?.json()
    }
}

/// A reqwest error's text without its URL (the query may name records; never credentials,
/// but the shorter message reads better in a ticket or an execution history).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    let mut src = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servicenow_error_bodies_read_as_message_and_detail() {
        let b = br#"{"error":{"message":"No Record found","detail":"Record doesn't exist"},"status":"failure"}"#;
        assert_eq!(servicenow_error(b), "No Record found: Record doesn't exist");
        let b = br#"{"error":{"message":"Invalid table x","detail":null},"status":"failure"}"#;
        assert_eq!(servicenow_error(b), "Invalid table x");
        assert_eq!(servicenow_error(b"<html>"), "<html>");
    }

    #[test]
    fn credentials_never_print() {
        let c = Credentials::Basic {
            username: "svc".into(),
            password: Zeroizing::new("hunter2-secret".into()),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
