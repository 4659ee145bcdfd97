//! One TLS handshake that captures whatever chain the server presents.
//!
//! The verifier installed here accepts every certificate so that bad chains can be captured
//! and classified; trust is decided afterwards in [`crate::prober`]. Handshake signatures are
//! still checked, so a server must hold the key of the leaf it presents.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Status;

/// At most this many certificates of a presented chain are kept for analysis.
pub const MAX_KEPT_CERTS: usize = 16;
/// At most this many bytes of certificates are kept (rustls already caps one handshake
/// message at 64 KiB).
pub const MAX_KEPT_BYTES: usize = 64 * 1024;

/// The provider: aws-lc-rs, key exchange limited to X25519 and P-256 (no post-quantum
/// hybrid: it would add a kilobyte to every ClientHello for no benefit to a prober).
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![
        rustls::crypto::aws_lc_rs::kx_group::X25519,
        rustls::crypto::aws_lc_rs::kx_group::SECP256R1,
    ];
    // SHA-256 suites first: a prober protects no data, and SHA-384's transcript hashing is
    // the largest non-signature cost of a handshake on CPUs without SHA-512 instructions.
    // Servers that honour the client's order pick these; the others still have every suite.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite().as_str().is_some_and(|n| n.contains("SHA384")));
    Arc::new(provider)
}

/// What the server presented, as seen by the verifier.
#[derive(Debug, Default, Clone)]
pub(crate) struct Captured {
    pub chain: Vec<CertificateDer<'static>>,
    pub presented: usize,
    pub ocsp_stapled: bool,
}

#[derive(Debug)]
struct CapturingVerifier {
    provider: Arc<CryptoProvider>,
    slot: Arc<Mutex<Option<Captured>>>,
}

impl ServerCertVerifier for CapturingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity((1 + intermediates.len()).min(MAX_KEPT_CERTS));
        let mut bytes = 0;
        for cert in std::iter::once(end_entity).chain(intermediates) {
            if chain.len() == MAX_KEPT_CERTS || bytes + cert.len() > MAX_KEPT_BYTES {
                break;
            }
            bytes += cert.len();
            chain.push(cert.clone().into_owned());
        }
        let captured = Captured {
            chain,
            presented: 1 + intermediates.len(),
            ocsp_stapled: !ocsp_response.is_empty(),
        };
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(captured);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A completed (or failed) handshake with one address.
#[derive(Debug)]
pub(crate) struct Handshake {
    pub captured: Option<Captured>,
    pub protocol: Option<String>,
    pub cipher_suite: Option<String>,
    pub key_exchange: Option<String>,
    /// Set when the handshake did not complete.
    pub failure: Option<(Status, String)>,
}

/// Connects to `addr` and handshakes with `sni`. Not time-bounded: the caller wraps it.
pub(crate) async fn handshake(
    provider: &Arc<CryptoProvider>,
    addr: SocketAddr,
    sni: ServerName<'static>,
) -> Handshake {
    let slot = Arc::new(Mutex::new(None));
    let mut result = Handshake {
        captured: None,
        protocol: None,
        cipher_suite: None,
        key_exchange: None,
        failure: None,
    };
    // A config per handshake: the verifier's capture slot is per connection, and no session
    // cache means every probe sees the full chain (a resumed session presents none).
    let config = match ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(e) => {
            result.failure = Some((Status::HandshakeFailure, format!("TLS config: {e}")));
            return result;
        }
    };
    let mut config = config
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CapturingVerifier {
            provider: provider.clone(),
            slot: slot.clone(),
        }))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();

    let tcp = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            result.failure = Some((Status::Refused, format!("connect {addr}: {e}")));
            return result;
        }
    };
    let _ = tcp.set_nodelay(true);
    let outcome = TlsConnector::from(Arc::new(config)).connect(sni, tcp).await;
    result.captured = slot.lock().ok().and_then(|mut s| s.take());
    match outcome {
        Ok(stream) => {
            let (_, conn) = stream.get_ref();
            result.protocol = conn.protocol_version().map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{v:?}"))
            });
            result.cipher_suite = conn.negotiated_cipher_suite().map(|s| {
                let suite = s.suite();
                suite
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{suite:?}"))
            });
            result.key_exchange = conn
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()));
            if result.captured.is_none() {
                result.failure = Some((
                    Status::HandshakeFailure,
                    "server presented no certificate".to_owned(),
                ));
            }
        }
        Err(e) => {
            result.failure = Some((Status::HandshakeFailure, format!("TLS handshake: {e}")));
        }
    }
    result
}
