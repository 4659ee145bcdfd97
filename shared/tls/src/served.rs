//! "Success means served": check that every address serves an expected leaf.

use std::net::SocketAddr;

use serde::Serialize;

use crate::certificate::normalize_fingerprint;
use crate::report::TargetReport;
use crate::{Error, ProbeRequest, Prober, Status};

/// Evidence that the expected leaf is served, with a valid chain, on every address.
#[derive(Debug, Clone, Serialize)]
pub struct ServedEvidence {
    /// The expected fingerprint (normalised lowercase hex).
    pub fingerprint: String,
    /// The full probe report, for the audit trail.
    pub report: TargetReport,
}

/// Why the expected leaf is not (yet) served everywhere.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServedError {
    /// The expected fingerprint is malformed.
    #[error("{0}")]
    InvalidFingerprint(String),
    /// Some address still serves another leaf (propagation in progress): retry later.
    #[error("not yet served on {stale:?}")]
    NotYetServed {
        /// Addresses serving another certificate, with the fingerprint they serve.
        stale: Vec<(SocketAddr, String)>,
        /// The full probe report.
        report: Box<TargetReport>,
    },
    /// Some address could not be reached or did not complete TLS (timeout, refused, DNS,
    /// handshake): possibly transient.
    #[error("unreachable: {failures:?}")]
    Unreachable {
        /// Addresses (if resolved) and their status.
        failures: Vec<(Option<SocketAddr>, Status)>,
        /// The full probe report.
        report: Box<TargetReport>,
    },
    /// The expected leaf is served but the endpoint is not healthy with it (untrusted chain,
    /// name mismatch, expired …): retrying will not help; roll back.
    #[error("served but invalid: {failures:?}")]
    Invalid {
        /// Addresses and their status.
        failures: Vec<(Option<SocketAddr>, Status)>,
        /// The full probe report.
        report: Box<TargetReport>,
    },
}

impl ServedError {
    /// Whether waiting and probing again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ServedError::NotYetServed { .. } | ServedError::Unreachable { .. }
        )
    }
}

impl From<Error> for ServedError {
    fn from(e: Error) -> Self {
        ServedError::InvalidFingerprint(e.to_string())
    }
}

impl Prober {
    /// Probes every address of `request` and checks that each serves the leaf whose SHA-256
    /// is `expected_sha256` (hex, colons and a `sha256:` prefix allowed) with a valid chain (`ok` or `expiring`).
    ///
    /// Failures are ordered: an invalid served chain first (not retryable), then stale
    /// addresses (retryable), then unreachable ones (retryable).
    pub async fn verify_served(
        &self,
        request: impl Into<ProbeRequest>,
        expected_sha256: &str,
    ) -> Result<ServedEvidence, ServedError> {
        let fingerprint = normalize_fingerprint(expected_sha256)?;
        let report = self.probe(request).await;
        let mut stale = Vec::new();
        let mut unreachable = Vec::new();
        let mut invalid = Vec::new();
        for e in &report.endpoints {
            match e.leaf_fingerprint() {
                Some(fp) if fp == fingerprint => {
                    if !e.status.is_valid() {
                        invalid.push((e.address, e.status));
                    }
                }
                Some(fp) => {
                    if let Some(addr) = e.address {
                        stale.push((addr, fp.to_owned()));
                    }
                }
                None => unreachable.push((e.address, e.status)),
            }
        }
        let report_box = || Box::new(report.clone());
        if !invalid.is_empty() {
            return Err(ServedError::Invalid {
                failures: invalid,
                report: report_box(),
            });
        }
        if !stale.is_empty() {
            return Err(ServedError::NotYetServed {
                stale,
                report: report_box(),
            });
        }
        if !unreachable.is_empty() {
            return Err(ServedError::Unreachable {
                failures: unreachable,
                report: report_box(),
            });
        }
        Ok(ServedEvidence {
            fingerprint,
            report,
        })
    }
}
