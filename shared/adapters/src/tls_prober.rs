//! The [`Prober`] port over the `certops-tls` prober: a real rustls handshake
//! to every address of an endpoint, chain verified with x509-parser/webpki.

use async_trait::async_trait;
use certops_core::ports::{Observation, Prober};
use certops_core::{Endpoint, Error};
use certops_tls::{ProbeRequest, ProberConfig, Target, TrustStore};
use std::time::Duration;

/// Outside-in TLS prober.
pub struct TlsProber {
    inner: certops_tls::Prober,
}

impl TlsProber {
    /// A prober with a per-endpoint deadline.
    pub fn new(timeout: Duration) -> Result<TlsProber, Error> {
        let config = ProberConfig {
            timeout,
            ..ProberConfig::default()
        };
        let inner =
            certops_tls::Prober::new(config).map_err(|e| Error::InvalidInput(e.to_string()))?;
        Ok(TlsProber { inner })
    }
}

#[async_trait]
impl Prober for TlsProber {
    async fn probe(
        &self,
        endpoint: &Endpoint,
        extra_roots_pem: Option<&str>,
    ) -> Result<Vec<Observation>, Error> {
        let target = Target::with_sni(endpoint.host.clone(), endpoint.port, endpoint.sni.clone())
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let extra_trust = match extra_roots_pem {
            Some(pem) => {
                let mut t = TrustStore::empty();
                t.add_pem(pem.as_bytes(), "issuer trust anchors")
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
                Some(t)
            }
            None => None,
        };
        let report = self
            .inner
            .probe(ProbeRequest {
                target,
                extra_trust,
                addresses: None,
            })
            .await;
        let mut out = Vec::new();
        for e in &report.endpoints {
            let Some(leaf) = &e.leaf else {
                let detail = e.detail.clone().unwrap_or_default();
                return Err(if e.status.is_transient() {
                    Error::Transient(format!(
                        "{}:{} {}: {detail}",
                        endpoint.host, endpoint.port, e.status
                    ))
                } else {
                    Error::VerificationFailed(format!(
                        "{}:{} {}: {detail}",
                        endpoint.host, endpoint.port, e.status
                    ))
                });
            };
            out.push(Observation {
                endpoint: endpoint.clone(),
                address: e
                    .address
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| endpoint.host.clone()),
                fingerprint: leaf.sha256.clone(),
                not_after: leaf.not_after,
                chain_valid: e.status.is_valid(),
                status: e.status.as_str().to_string(),
                ari_id: leaf.ari_id.clone(),
            });
        }
        Ok(out)
    }
}
