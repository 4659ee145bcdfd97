//! Trust stores: the roots a presented chain is verified against.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::Error;

/// A set of trust anchors, cheap to clone and share between probes.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    anchors: Arc<Vec<TrustAnchor<'static>>>,
}

impl TrustStore {
    /// A store with no anchors: every chain is untrusted until roots are added.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The Mozilla root program, as shipped by `webpki-roots`.
    pub fn webpki_roots() -> Self {
        Self {
            anchors: Arc::new(webpki_roots::TLS_SERVER_ROOTS.to_vec()),
        }
    }

    /// The anchors, for webpki.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// How many anchors the store holds.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// True when the store holds no anchor.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Adds one DER certificate as a trust anchor.
    pub fn add_der(&mut self, der: &[u8], origin: &str) -> Result<(), Error> {
        let cert = CertificateDer::from(der);
        let anchor =
            webpki::anchor_from_trusted_cert(&cert).map_err(|e| Error::CaBundleInvalid {
                origin: origin.to_owned(),
                reason: format!("certificate cannot be a trust anchor: {e}"),
            })?;
        Arc::make_mut(&mut self.anchors).push(anchor.to_owned());
        Ok(())
    }

    /// Adds every certificate of a PEM bundle; fails if it holds none.
    pub fn add_pem(&mut self, pem: &[u8], origin: &str) -> Result<usize, Error> {
        let mut reader = pem;
        let mut added = 0;
        for item in rustls_pemfile::certs(&mut reader) {
            let der = item.map_err(|e| Error::CaBundleInvalid {
                origin: origin.to_owned(),
                reason: format!("malformed PEM: {e}"),
            })?;
            self.add_der(&der, origin)?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::CaBundleInvalid {
                origin: origin.to_owned(),
                reason: "no CERTIFICATE block found".to_owned(),
            });
        }
        Ok(added)
    }

    /// Adds every certificate of a PEM file.
    pub fn add_pem_file(&mut self, path: &Path) -> Result<usize, Error> {
        let pem = std::fs::read(path).map_err(|source| Error::CaBundleRead {
            path: path.to_owned(),
            source,
        })?;
        self.add_pem(&pem, &path.display().to_string())
    }

    /// This store plus every anchor of `other` (for per-endpoint bundles on top of a run's).
    pub fn merged(&self, other: &TrustStore) -> TrustStore {
        let mut anchors = Vec::with_capacity(self.len() + other.len());
        anchors.extend(self.anchors.iter().cloned());
        anchors.extend(other.anchors.iter().cloned());
        TrustStore {
            anchors: Arc::new(anchors),
        }
    }
}
