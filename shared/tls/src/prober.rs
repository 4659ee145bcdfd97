//! The prober: resolve, handshake with every address under a deadline, verify, classify.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use futures::stream::{self, Stream, StreamExt};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use x509_parser::prelude::FromDer;

use crate::certificate::{self, ParsedCert};
use crate::handshake::{self, Captured, Handshake};
use crate::report::{ChainReport, EndpointReport, TargetReport};
use crate::signature_cache::CachingAlgorithm;
use crate::status::{classify, days_until, ChainVerdict, Facts};
use crate::{Error, Status, Target, TrustStore};

/// How a scan behaves. Build with [`ProberConfig::default`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// Hard deadline of one attempt at one target: DNS, connect, handshake and read of every
    /// address together. With retries, a target may take `(retries + 1) × timeout` plus
    /// backoff.
    pub timeout: Duration,
    /// Targets probed at once (each target probes its addresses in parallel).
    pub concurrency: usize,
    /// Extra attempts for transient failures (timeout, refused, DNS, handshake failure).
    pub retries: u32,
    /// Pause between attempts.
    pub retry_backoff: Duration,
    /// A verified chain expiring within this many days is `expiring`.
    pub warn_days: i64,
    /// Roots for every target (per-target bundles are added on top).
    pub trust: TrustStore,
    /// Fixed "now" for classification; `None` reads the system clock at each probe.
    pub now: Option<SystemTime>,
}

impl Default for ProberConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            concurrency: 64,
            retries: 0,
            retry_backoff: Duration::from_millis(200),
            warn_days: 30,
            trust: TrustStore::webpki_roots(),
            now: None,
        }
    }
}

/// One thing to probe: a target, optionally with its own extra roots or pinned addresses.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    /// Where to connect and which name to ask for.
    pub target: Target,
    /// Extra trust anchors for this target only, added to the run's.
    pub extra_trust: Option<TrustStore>,
    /// Addresses to probe instead of resolving the host (nodes pinned by an inventory).
    pub addresses: Option<Vec<SocketAddr>>,
}

impl From<Target> for ProbeRequest {
    fn from(target: Target) -> Self {
        Self {
            target,
            extra_trust: None,
            addresses: None,
        }
    }
}

/// A configured prober; cheap to clone, safe to share between tasks.
#[derive(Debug, Clone)]
pub struct Prober {
    config: Arc<ProberConfig>,
    provider: Arc<CryptoProvider>,
    /// Chain-verification algorithms, memoising successful certificate signatures.
    chain_algs: Arc<Vec<CachingAlgorithm>>,
}

impl Prober {
    /// Validates the configuration and prepares the TLS provider.
    pub fn new(config: ProberConfig) -> Result<Self, Error> {
        if config.timeout.is_zero() {
            return Err(Error::InvalidConfig("timeout must be positive".into()));
        }
        if config.concurrency == 0 {
            return Err(Error::InvalidConfig(
                "concurrency must be at least 1".into(),
            ));
        }
        let provider = handshake::crypto_provider();
        let chain_algs = Arc::new(CachingAlgorithm::wrap_all(
            provider.signature_verification_algorithms.all,
        ));
        Ok(Self {
            config: Arc::new(config),
            provider,
            chain_algs,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ProberConfig {
        &self.config
    }

    /// Probes every address of one target; never fails, every problem is a [`Status`].
    ///
    /// One attempt (DNS, then every address in parallel) is bounded by `timeout`; when an
    /// address ends in a transient status and retries remain, the whole target is tried
    /// again after `retry_backoff`.
    pub async fn probe(&self, request: impl Into<ProbeRequest>) -> TargetReport {
        let request = request.into();
        let trust = match &request.extra_trust {
            Some(extra) => self.config.trust.merged(extra),
            None => self.config.trust.clone(),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut report = self.probe_once(&request, &trust).await;
            for e in &mut report.endpoints {
                e.attempts = attempt;
            }
            let transient = report.endpoints.iter().any(|e| e.status.is_transient());
            if !transient || attempt > self.config.retries {
                return report;
            }
            tokio::time::sleep(self.config.retry_backoff).await;
        }
    }

    /// Probes many targets with bounded concurrency; reports arrive as they complete.
    pub fn scan<I>(&self, requests: I) -> impl Stream<Item = TargetReport> + '_
    where
        I: IntoIterator,
        I::Item: Into<ProbeRequest>,
        I::IntoIter: 'static,
    {
        stream::iter(requests)
            .map(move |r| self.probe(r))
            .buffer_unordered(self.config.concurrency)
    }

    async fn probe_once(&self, request: &ProbeRequest, trust: &TrustStore) -> TargetReport {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.config.timeout);
        let target = &request.target;
        let name = target.to_string();
        let sni = target.sni.clone();
        let addresses = match self.addresses(request, deadline).await {
            Ok(a) => a,
            Err((status, detail)) => {
                let mut report =
                    EndpointReport::failed(name.clone(), sni.clone(), None, status, detail);
                report.elapsed_ms = millis(started.elapsed());
                return TargetReport::from_endpoints(name, sni, vec![report]);
            }
        };
        let probes = addresses
            .into_iter()
            .map(|addr| self.probe_address(target, &name, addr, trust, deadline));
        let endpoints = futures::future::join_all(probes).await;
        TargetReport::from_endpoints(name, sni, endpoints)
    }

    async fn addresses(
        &self,
        request: &ProbeRequest,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<SocketAddr>, (Status, String)> {
        if let Some(addrs) = &request.addresses {
            if addrs.is_empty() {
                return Err((Status::DnsFailure, "no address to probe".to_owned()));
            }
            return Ok(addrs.clone());
        }
        let t = &request.target;
        if let Some(ip) = t.ip_literal() {
            return Ok(vec![SocketAddr::new(ip, t.port)]);
        }
        let lookup = tokio::net::lookup_host((t.host.as_str(), t.port));
        match tokio::time::timeout_at(deadline, lookup).await {
            Ok(Ok(addrs)) => {
                let mut addrs: Vec<SocketAddr> = addrs.collect();
                addrs.sort();
                addrs.dedup();
                if addrs.is_empty() {
                    Err((Status::DnsFailure, format!("{} has no address", t.host)))
                } else {
                    Ok(addrs)
                }
            }
            Ok(Err(e)) => Err((Status::DnsFailure, format!("resolving {}: {e}", t.host))),
            Err(_) => Err((
                Status::Timeout,
                format!(
                    "resolving {} took longer than {:?}",
                    t.host, self.config.timeout
                ),
            )),
        }
    }

    async fn probe_address(
        &self,
        target: &Target,
        name: &str,
        addr: SocketAddr,
        trust: &TrustStore,
        deadline: tokio::time::Instant,
    ) -> EndpointReport {
        let started = Instant::now();
        let hs = tokio::time::timeout_at(
            deadline,
            handshake::handshake(&self.provider, addr, target.server_name()),
        )
        .await;
        let mut report = match hs {
            Ok(hs) => self.analyse(target, name, addr, trust, hs),
            Err(_) => EndpointReport::failed(
                name.to_owned(),
                target.sni.clone(),
                Some(addr),
                Status::Timeout,
                format!("no complete handshake within {:?}", self.config.timeout),
            ),
        };
        report.elapsed_ms = millis(started.elapsed());
        tracing::debug!(
            target = name,
            address = %addr,
            status = %report.status,
            elapsed_ms = report.elapsed_ms,
            "probed"
        );
        report
    }

    fn now(&self) -> SystemTime {
        self.config.now.unwrap_or_else(SystemTime::now)
    }

    fn analyse(
        &self,
        target: &Target,
        name: &str,
        addr: SocketAddr,
        trust: &TrustStore,
        hs: Handshake,
    ) -> EndpointReport {
        let mut report = EndpointReport::failed(
            name.to_owned(),
            target.sni.clone(),
            Some(addr),
            Status::HandshakeFailure,
            String::new(),
        );
        report.detail = None;
        report.protocol = hs.protocol;
        report.cipher_suite = hs.cipher_suite;
        report.key_exchange = hs.key_exchange;
        let Some(captured) = hs.captured else {
            let (status, detail) = hs.failure.unwrap_or((
                Status::HandshakeFailure,
                "no certificate captured".to_owned(),
            ));
            report.status = status;
            report.detail = Some(detail);
            return report;
        };
        report.ocsp_stapled = Some(captured.ocsp_stapled);
        let analysis = analyse_chain(
            &captured,
            &target.server_name(),
            trust,
            self.now(),
            self.config.warn_days,
            &self
                .chain_algs
                .iter()
                .map(|a| a as &dyn rustls_pki_types::SignatureVerificationAlgorithm)
                .collect::<Vec<_>>(),
        );
        report.leaf = analysis.leaf;
        report.days_left = analysis.days_left;
        report.earliest_presented_expiry = analysis.earliest_presented_expiry;
        report.verified_chain_expiry = analysis.verified_chain_expiry;
        report.chain = analysis.chain;
        report.status = analysis.status;
        report.detail = analysis.detail;
        if let Some((status, detail)) = hs.failure {
            // The chain was captured but the handshake then failed (typically the server's
            // signature could not be verified). A weak key explains that; otherwise the
            // endpoint is broken at the TLS level.
            if report.status != Status::Weak {
                report.status = status;
                report.detail = Some(detail);
            }
        }
        report
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) struct ChainAnalysis {
    pub status: Status,
    pub detail: Option<String>,
    pub leaf: Option<certificate::CertSummary>,
    pub days_left: Option<i64>,
    pub earliest_presented_expiry: Option<DateTime<Utc>>,
    pub verified_chain_expiry: Option<DateTime<Utc>>,
    pub chain: Option<ChainReport>,
}

fn verdict_from_webpki(e: &webpki::Error) -> ChainVerdict {
    let text = format!("chain verification: {e:?}");
    match e {
        webpki::Error::CertExpired { .. } => ChainVerdict::Expired(text),
        webpki::Error::CertNotValidYet { .. } => ChainVerdict::NotYetValid(text),
        webpki::Error::UnknownIssuer => ChainVerdict::UnknownIssuer(text),
        _ => ChainVerdict::Invalid(text),
    }
}

pub(crate) fn analyse_chain(
    captured: &Captured,
    server_name: &ServerName<'_>,
    trust: &TrustStore,
    now: SystemTime,
    warn_days: i64,
    algs: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm],
) -> ChainAnalysis {
    let now_utc: DateTime<Utc> = now.into();
    let mut out = ChainAnalysis {
        status: Status::HandshakeFailure,
        detail: None,
        leaf: None,
        days_left: None,
        earliest_presented_expiry: None,
        verified_chain_expiry: None,
        chain: None,
    };
    let parsed: Vec<Result<ParsedCert, String>> = captured
        .chain
        .iter()
        .map(|c| certificate::parse(c))
        .collect();
    let leaf = match parsed.first() {
        Some(Ok(p)) => p.clone(),
        Some(Err(e)) => {
            out.status = Status::Untrusted;
            out.detail = Some(format!("leaf certificate does not parse: {e}"));
            return out;
        }
        None => {
            out.detail = Some("server presented no certificate".into());
            return out;
        }
    };
    let ok_certs: Vec<&ParsedCert> = parsed.iter().filter_map(|p| p.as_ref().ok()).collect();
    out.earliest_presented_expiry = ok_certs.iter().map(|p| p.summary.not_after).min();
    let ordered = parsed.windows(2).all(|w| match (&w[0], &w[1]) {
        (Ok(a), Ok(b)) => a.raw_issuer == b.raw_subject,
        _ => false,
    });
    let leaf_issuer_presented = ok_certs
        .iter()
        .skip(1)
        .any(|p| p.raw_subject == leaf.raw_issuer);

    let ee_der = &captured.chain[0];
    let intermediates: &[CertificateDer<'static>] = &captured.chain[1..];
    let unix = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let (verdict, name_ok, verified_path) = match webpki::EndEntityCert::try_from(ee_der) {
        Err(e) => (
            ChainVerdict::Invalid(format!("leaf rejected by webpki: {e:?}")),
            false,
            Vec::new(),
        ),
        Ok(ee) => {
            let name_ok = ee.verify_is_valid_for_subject_name(server_name).is_ok();
            match ee.verify_for_usage(
                algs,
                trust.anchors(),
                intermediates,
                unix,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            ) {
                Ok(path) => {
                    let mut not_after = leaf.summary.not_after;
                    let mut subjects = vec![leaf.summary.subject.clone()];
                    for cert in path.intermediate_certificates() {
                        if let Ok(p) = certificate::parse(cert.der().as_ref()) {
                            not_after = not_after.min(p.summary.not_after);
                            subjects.push(p.summary.subject);
                        }
                    }
                    let anchor_subject = x509_parser::x509::X509Name::from_der(&wrap_sequence(
                        path.anchor().subject.as_ref(),
                    ))
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_else(|_| "trust anchor".into());
                    subjects.push(anchor_subject);
                    (ChainVerdict::Verified { not_after }, name_ok, subjects)
                }
                Err(e) => (verdict_from_webpki(&e), name_ok, Vec::new()),
            }
        }
    };
    let issuer_contents = der_contents(&leaf.raw_issuer);
    let leaf_issuer_is_anchor = trust
        .anchors()
        .iter()
        .any(|a| a.subject.as_ref() == issuer_contents);
    if let ChainVerdict::Verified { not_after } = verdict {
        out.verified_chain_expiry = Some(not_after);
        out.days_left = Some(days_until(now_utc, not_after));
    } else {
        out.days_left = Some(days_until(now_utc, leaf.summary.not_after));
    }
    let weakness = ok_certs.iter().find_map(|p| p.summary.weakness());
    let truncated_from = (captured.presented > captured.chain.len()).then_some(captured.presented);
    let facts = Facts {
        now: now_utc,
        leaf: &leaf.summary,
        chain: verdict,
        name_ok,
        leaf_issuer_presented: leaf_issuer_presented || leaf_issuer_is_anchor,
        truncated_from,
        weakness,
        warn_days,
    };
    let (status, detail) = classify(&facts);
    out.status = status;
    out.detail = detail;
    out.chain = Some(ChainReport {
        presented: captured.presented,
        certificates: ok_certs.iter().map(|p| p.summary.clone()).collect(),
        ordered,
        complete: leaf.summary.self_issued || leaf_issuer_presented || leaf_issuer_is_anchor,
        verified_path,
    });
    out.leaf = Some(leaf.summary);
    out
}

/// The contents of a DER TLV (webpki keeps a Name without its SEQUENCE header).
fn der_contents(tlv: &[u8]) -> &[u8] {
    let Some(&first_len) = tlv.get(1) else {
        return &[];
    };
    let header = if first_len < 0x80 {
        2
    } else {
        2 + usize::from(first_len & 0x7f)
    };
    tlv.get(header..).unwrap_or(&[])
}

/// Wraps Name contents back into a DER SEQUENCE so x509-parser can read them.
fn wrap_sequence(contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = vec![0x30];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_headers_round_trip() {
        for len in [0usize, 5, 127, 128, 300, 70_000] {
            let contents = vec![7u8; len];
            let wrapped = wrap_sequence(&contents);
            assert_eq!(der_contents(&wrapped), contents.as_slice());
        }
        assert_eq!(der_contents(&[0x30]), &[] as &[u8]);
    }
}
