//! The HTTP client under instant-acme: reqwest with rustls (aws-lc-rs), wrapped so the
//! `Retry-After` of a refusal survives. instant-acme turns an error response into a
//! [`instant_acme::Problem`] and drops its headers; this client notes the `Retry-After` of
//! every 429/503 before handing the response on, so the issuer can report when the CA will
//! accept a new order.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// What the client saw of the CA's refusals.
#[derive(Debug, Default)]
struct Seen {
    retry_after: Option<DateTime<Utc>>,
}

/// A reqwest client speaking for instant-acme.
#[derive(Clone)]
pub struct AcmeHttp {
    client: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
}

impl std::fmt::Debug for AcmeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeHttp").finish_non_exhaustive()
    }
}

impl AcmeHttp {
    /// A client over `client`.
    pub fn new(client: reqwest::Client) -> AcmeHttp {
        AcmeHttp {
            client,
            seen: Arc::new(Mutex::new(Seen::default())),
        }
    }

    /// Takes the `Retry-After` of the last refusal (429 or 503), if one was seen since the
    /// last call.
    pub fn take_retry_after(&self) -> Option<DateTime<Utc>> {
        self.seen.lock().ok().and_then(|mut s| s.retry_after.take())
    }
}

/// Parses a `Retry-After` value (delay-seconds or an HTTP-date) relative to `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        let secs = secs.min(366 * 86_400);
        return chrono::TimeDelta::from_std(Duration::from_secs(secs))
            .ok()
            .map(|d| now + d);
    }
    DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let seen = self.seen.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(never) => match never {},
            };
            let rsp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let status = rsp.status();
            if status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::SERVICE_UNAVAILABLE
            {
                let at = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                if let Ok(mut s) = seen.lock() {
                    s.retry_after = at;
                }
            }
            let mut builder = http::Response::builder().status(status);
            if let Some(h) = builder.headers_mut() {
                *h = rsp.headers().clone();
            }
            let bytes = rsp
                .bytes()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let response = builder
                .body(Full::new(bytes))
                .map_err(instant_acme::Error::Http)?;
            Ok(BytesResponse::from(response))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + chrono::TimeDelta::seconds(120))
        );
        assert_eq!(
            parse_retry_after("Mon, 07 Dec 2026 09:00:00 GMT", now),
            Some(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap())
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
