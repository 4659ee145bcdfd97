//! A generic authenticated REST purge, for CDNs with a purge API: one request to the
//! configured URL with `{"distribution": …, "paths": […]}`, the token (read from its secret
//! reference at the moment of the call) in the configured header, and success only on the
//! expected status. The token never appears in an error, a log line or the audit.

use std::sync::Arc;
use std::time::Duration;

use certops_core::integrations::SecretResolver;
use certops_core::inventory::RestPurgeConnection;
use certops_core::{Cdn, Error};
use serde_json::{json, Value};

/// Purges through a REST API.
pub struct RestPurger {
    http: reqwest::Client,
    secrets: Arc<dyn SecretResolver>,
}

fn failed(cdn: &Cdn, msg: impl std::fmt::Display) -> Error {
    Error::PurgeFailed(format!("REST purge {}: {msg}", cdn.distribution_id))
}

impl RestPurger {
    /// A purger resolving tokens through `secrets`.
    pub fn new(secrets: Arc<dyn SecretResolver>) -> Result<RestPurger, Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Error::InvalidInput(format!("HTTP client: {e}")))?;
        Ok(RestPurger { http, secrets })
    }

    /// Purges; returns the API's `id` if it answers with one, else a new id.
    pub async fn purge(&self, cdn: &Cdn, conn: &RestPurgeConnection) -> Result<String, Error> {
        if cdn.paths.is_empty() {
            return Err(Error::InvalidInput(format!(
                "purge of {} names no paths",
                cdn.distribution_id
            )));
        }
        let token = self
            .secrets
            .resolve(&conn.token)
            .await
            .map_err(|e| failed(cdn, e))?;
        let value = zeroize::Zeroizing::new(format!("{}{}", conn.token_prefix, token.as_str()));
        let mut header = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
            failed(
                cdn,
                format!("the token from {} is not a valid header value", conn.token),
            )
        })?;
        header.set_sensitive(true);
        let method =
            reqwest::Method::from_bytes(conn.method.as_bytes()).map_err(|e| failed(cdn, e))?;
        let resp = self
            .http
            .request(method.clone(), &conn.url)
            .timeout(Duration::from_secs(conn.timeout_seconds))
            .header(conn.header.as_str(), header)
            .json(&json!({"distribution": cdn.distribution_id, "paths": cdn.paths}))
            .send()
            .await
            // reqwest's error names the URL, never a header.
            .map_err(|e| failed(cdn, format!("{method} {}: {e}", conn.url)))?;
        let status = resp.status().as_u16();
        if status != conn.expected_status {
            return Err(failed(
                cdn,
                format!(
                    "{method} {} answered {status}, expected {}",
                    conn.url, conn.expected_status
                ),
            ));
        }
        let body: Option<Value> = resp.json().await.ok();
        let id = body
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| format!("rest-{}", uuid::Uuid::new_v4()));
        Ok(id)
    }
}
