//! Serializable results: one [`EndpointReport`] per address, one [`TargetReport`] per target.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::certificate::CertSummary;
use crate::Status;

/// The presented chain, as analysed.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// How many certificates the server sent (leaf included).
    pub presented: usize,
    /// The certificates kept for analysis (at most [`crate::MAX_KEPT_CERTS`]), leaf first.
    pub certificates: Vec<CertSummary>,
    /// Whether each presented certificate is issued by the next one.
    pub ordered: bool,
    /// Whether the leaf's issuer was presented or is a trust anchor (no missing link).
    pub complete: bool,
    /// Subjects along the verified path, leaf first, trust anchor last; empty if unverified.
    pub verified_path: Vec<String>,
}

/// The result of probing one address of a target.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    /// The target as written (`host:port[@sni]`).
    pub target: String,
    /// Server name sent and verified.
    pub sni: String,
    /// The address connected to; absent when the name did not resolve.
    pub address: Option<SocketAddr>,
    /// The classification.
    pub status: Status,
    /// Why, in words, when not `ok`.
    pub detail: Option<String>,
    /// The leaf certificate, if one was presented and parsed.
    pub leaf: Option<CertSummary>,
    /// Whole days until the effective expiry: the verified chain's when it verified,
    /// otherwise the leaf's.
    pub days_left: Option<i64>,
    /// The earliest notAfter among all presented certificates (may be an unused
    /// cross-signed certificate: informational, never alarming on its own).
    pub earliest_presented_expiry: Option<DateTime<Utc>>,
    /// The earliest notAfter along the verified path (leaf and intermediates used).
    pub verified_chain_expiry: Option<DateTime<Utc>>,
    /// The presented chain.
    pub chain: Option<ChainReport>,
    /// Whether the server stapled an OCSP response.
    pub ocsp_stapled: Option<bool>,
    /// Negotiated protocol, e.g. `TLSv1_3`.
    pub protocol: Option<String>,
    /// Negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: Option<String>,
    /// Negotiated key exchange group, e.g. `X25519`.
    pub key_exchange: Option<String>,
    /// Wall time of the last attempt, in milliseconds.
    pub elapsed_ms: u64,
    /// Attempts made (1 + retries used).
    pub attempts: u32,
}

impl EndpointReport {
    pub(crate) fn failed(
        target: String,
        sni: String,
        address: Option<SocketAddr>,
        status: Status,
        detail: String,
    ) -> Self {
        Self {
            target,
            sni,
            address,
            status,
            detail: Some(detail),
            leaf: None,
            days_left: None,
            earliest_presented_expiry: None,
            verified_chain_expiry: None,
            chain: None,
            ocsp_stapled: None,
            protocol: None,
            cipher_suite: None,
            key_exchange: None,
            elapsed_ms: 0,
            attempts: 1,
        }
    }

    /// The SHA-256 fingerprint of the served leaf, if any.
    pub fn leaf_fingerprint(&self) -> Option<&str> {
        self.leaf.as_ref().map(|l| l.sha256.as_str())
    }
}

/// All addresses of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target as written.
    pub target: String,
    /// Server name sent and verified.
    pub sni: String,
    /// The worst status over all addresses.
    pub status: Status,
    /// Whether every address served the same leaf.
    pub consistent: bool,
    /// One report per address (one without address if resolution failed).
    pub endpoints: Vec<EndpointReport>,
}

impl TargetReport {
    pub(crate) fn from_endpoints(
        target: String,
        sni: String,
        endpoints: Vec<EndpointReport>,
    ) -> Self {
        let status = endpoints
            .iter()
            .map(|e| e.status)
            .max_by_key(|s| s.rank())
            .unwrap_or(Status::DnsFailure);
        let mut leaves = endpoints.iter().map(|e| e.leaf_fingerprint());
        let first = leaves.next().flatten();
        let consistent = leaves.all(|l| l == first);
        Self {
            target,
            sni,
            status,
            consistent,
            endpoints,
        }
    }

    /// The smallest `days_left` over the addresses.
    pub fn min_days_left(&self) -> Option<i64> {
        self.endpoints.iter().filter_map(|e| e.days_left).min()
    }
}
