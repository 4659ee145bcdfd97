//! ACME challenge solvers: put the answer where the CA will look, and take it away again.
//!
//! - [`WebrootSolver`] (HTTP-01): the key authorization goes into
//!   `<webroot>/.well-known/acme-challenge/<token>`, a directory the termination point serves
//!   on port 80 (nginx `root`/`alias`, or any web server).
//! - [`DnsUpdateSolver`] (DNS-01, embedded default): a DNS update endpoint that takes
//!   `POST /set-txt` and `POST /clear-txt` with `{"host": "_acme-challenge.<name>.", "value": …}`
//!   (the protocol of pebble-challtestsrv's management API, easy to front any DNS server with).
//! - [`Route53Solver`] (DNS-01 on AWS): UPSERT the TXT record, wait until the change is
//!   INSYNC, DELETE it afterwards.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use certops_core::Error;
use instant_acme::ChallengeType;

/// What the CA expects for one identifier.
#[derive(Clone)]
pub struct Answer {
    /// The identifier (a DNS name; `*.` already stripped for DNS-01 record names).
    pub name: String,
    /// The challenge token.
    pub token: String,
    /// The key authorization (HTTP-01 body).
    pub key_authorization: String,
    /// base64url(SHA-256(key authorization)) (DNS-01 TXT value).
    pub dns_value: String,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A way of answering one kind of ACME challenge.
#[async_trait]
pub trait ChallengeSolver: Send + Sync {
    /// The challenge type this solver answers.
    fn challenge_type(&self) -> ChallengeType;
    /// Publishes the answer; returns once the CA can see it.
    async fn present(&self, answer: &Answer) -> Result<(), Error>;
    /// Removes the answer (called after validation, whatever its outcome).
    async fn clean_up(&self, answer: &Answer) -> Result<(), Error>;
    /// A short description for tickets and logs (`http-01 webroot /srv/www`).
    fn describe(&self) -> String;
}

/// HTTP-01 through a webroot directory.
#[derive(Debug, Clone)]
pub struct WebrootSolver {
    webroot: PathBuf,
}

impl WebrootSolver {
    /// A solver writing under `webroot` (which must be absolute).
    pub fn new(webroot: impl Into<PathBuf>) -> Result<WebrootSolver, Error> {
        let webroot = webroot.into();
        if !webroot.is_absolute() {
            return Err(Error::InvalidInput(format!(
                "webroot {} must be an absolute path",
                webroot.display()
            )));
        }
        Ok(WebrootSolver { webroot })
    }

    fn path(&self, token: &str) -> Result<PathBuf, Error> {
        // RFC 8555 §8.3: the token is base64url; anything else could climb out of the webroot.
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::IssuanceFailed(
                "the CA sent a challenge token that is not base64url".into(),
            ));
        }
        Ok(self
            .webroot
            .join(".well-known")
            .join("acme-challenge")
            .join(token))
    }
}

#[async_trait]
impl ChallengeSolver for WebrootSolver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    async fn present(&self, answer: &Answer) -> Result<(), Error> {
        let path = self.path(&answer.token)?;
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::IssuanceFailed(format!("creating {}: {e}", dir.display())))?;
        tokio::fs::write(&path, answer.key_authorization.as_bytes())
            .await
            .map_err(|e| Error::IssuanceFailed(format!("writing {}: {e}", path.display())))
    }

    async fn clean_up(&self, answer: &Answer) -> Result<(), Error> {
        let path = self.path(&answer.token)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Transient(format!(
                "removing {}: {e}",
                path.display()
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("http-01 webroot {}", self.webroot.display())
    }
}

fn record_name(name: &str) -> String {
    format!(
        "_acme-challenge.{}.",
        name.trim_start_matches("*.").trim_end_matches('.')
    )
}

/// DNS-01 through a DNS update endpoint.
#[derive(Debug, Clone)]
pub struct DnsUpdateSolver {
    base: String,
    client: reqwest::Client,
}

impl DnsUpdateSolver {
    /// A solver posting to `base` (e.g. `http://127.0.0.1:8055`).
    pub fn new(base: &str, client: reqwest::Client) -> DnsUpdateSolver {
        DnsUpdateSolver {
            base: base.trim_end_matches('/').to_string(),
            client,
        }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<(), Error> {
        let url = format!("{}/{path}", self.base);
        let rsp = self
            .client
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::IssuanceFailed(format!("DNS update endpoint {url}: {e}")))?;
        if !rsp.status().is_success() {
            return Err(Error::IssuanceFailed(format!(
                "DNS update endpoint {url} answered {}",
                rsp.status()
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl ChallengeSolver for DnsUpdateSolver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    async fn present(&self, answer: &Answer) -> Result<(), Error> {
        self.post(
            "set-txt",
            serde_json::json!({"host": record_name(&answer.name), "value": answer.dns_value}),
        )
        .await
    }

    async fn clean_up(&self, answer: &Answer) -> Result<(), Error> {
        self.post(
            "clear-txt",
            serde_json::json!({"host": record_name(&answer.name)}),
        )
        .await
    }

    fn describe(&self) -> String {
        format!("dns-01 via update endpoint {}", self.base)
    }
}

/// DNS-01 through Route 53.
#[derive(Debug, Clone)]
pub struct Route53Solver {
    client: aws_sdk_route53::Client,
    hosted_zone_id: String,
    timeout: Duration,
}

impl Route53Solver {
    /// A solver writing into `hosted_zone_id`, waiting up to `timeout` for INSYNC.
    pub fn new(
        client: aws_sdk_route53::Client,
        hosted_zone_id: &str,
        timeout: Duration,
    ) -> Route53Solver {
        Route53Solver {
            client,
            hosted_zone_id: hosted_zone_id.to_string(),
            timeout,
        }
    }

    fn change(action: ChangeAction, answer: &Answer) -> Result<Change, Error> {
        let built = |e: aws_sdk_route53::error::BuildError| {
            Error::IssuanceFailed(format!("Route 53 change: {e}"))
        };
        let record = ResourceRecordSet::builder()
            .name(record_name(&answer.name))
            .r#type(RrType::Txt)
            .ttl(60)
            .resource_records(
                ResourceRecord::builder()
                    .value(format!("\"{}\"", answer.dns_value))
                    .build()
                    .map_err(built)?,
            )
            .build()
            .map_err(built)?;
        Change::builder()
            .action(action)
            .resource_record_set(record)
            .build()
            .map_err(built)
    }

    async fn apply(&self, action: ChangeAction, answer: &Answer) -> Result<String, Error> {
        let batch = ChangeBatch::builder()
            .changes(Self::change(action, answer)?)
            .comment("certops ACME DNS-01")
            .build()
            .map_err(|e| Error::IssuanceFailed(format!("Route 53 change batch: {e}")))?;
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(&self.hosted_zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| {
                Error::IssuanceFailed(format!(
                    "Route 53 ChangeResourceRecordSets in {}: {}",
                    self.hosted_zone_id,
                    aws_sdk_route53::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(out
            .change_info()
            .map(|c| c.id().to_string())
            .unwrap_or_default())
    }
}

#[async_trait]
impl ChallengeSolver for Route53Solver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    async fn present(&self, answer: &Answer) -> Result<(), Error> {
        let id = self.apply(ChangeAction::Upsert, answer).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut delay = Duration::from_millis(200);
        loop {
            let status = self
                .client
                .get_change()
                .id(&id)
                .send()
                .await
                .map_err(|e| {
                    Error::IssuanceFailed(format!(
                        "Route 53 GetChange {id}: {}",
                        aws_sdk_route53::error::DisplayErrorContext(&e)
                    ))
                })?
                .change_info()
                .map(|c| c.status().clone());
            if status == Some(ChangeStatus::Insync) {
                return Ok(());
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(Error::IssuanceFailed(format!(
                    "Route 53 change {id} not INSYNC within {}s",
                    self.timeout.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn clean_up(&self, answer: &Answer) -> Result<(), Error> {
        self.apply(ChangeAction::Delete, answer).await.map(|_| ())
    }

    fn describe(&self) -> String {
        format!("dns-01 via Route 53 zone {}", self.hosted_zone_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(token: &str) -> Answer {
        Answer {
            name: "*.example.com".into(),
            token: token.into(),
            key_authorization: format!("{token}.thumb"),
            dns_value: "digest".into(),
        }
    }

    #[tokio::test]
    async fn webroot_writes_and_removes_the_token_file() {
        let dir = std::env::temp_dir().join(format!("certops-webroot-{}", std::process::id()));
        let solver = WebrootSolver::new(&dir).unwrap();
        let a = answer("tok_en-1");
        solver.present(&a).await.unwrap();
        let path = dir.join(".well-known/acme-challenge/tok_en-1");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tok_en-1.thumb");
        solver.clean_up(&a).await.unwrap();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn webroot_refuses_a_token_that_climbs_out() {
        let solver = WebrootSolver::new("/tmp/certops-none").unwrap();
        let e = solver
            .present(&answer("../../etc/passwd"))
            .await
            .unwrap_err();
        assert_eq!(e.name(), "IssuanceFailed");
        assert!(WebrootSolver::new("relative").is_err());
    }

    #[test]
    fn dns_record_names_drop_the_wildcard() {
        assert_eq!(record_name("*.example.com"), "_acme-challenge.example.com.");
        assert_eq!(
            record_name("www.example.com."),
            "_acme-challenge.www.example.com."
        );
    }
}
