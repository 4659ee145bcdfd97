//! certops-tls: probe TLS endpoints, capture what they serve, verify and classify it.
//!
//! ```no_run
//! use certops_tls::{Prober, ProberConfig, Status, Target};
//!
//! # async fn demo() -> Result<(), certops_tls::Error> {
//! let prober = Prober::new(ProberConfig::default())?;
//! let target: Target = "127.0.0.1:8443@shop.example.com".parse()?;
//! let report = prober.probe(target).await;
//! for endpoint in &report.endpoints {
//!     println!("{} {:?} {}", endpoint.target, endpoint.address, endpoint.status);
//! }
//! assert!(report.status == Status::Ok || report.status.severity() > Status::Ok.severity());
//! # Ok(())
//! # }
//! ```
//!
//! How it works: every address the host resolves to gets its own handshake (rustls 0.23 with
//! aws-lc-rs, X25519 / P-256 only) under a hard deadline. The handshake's certificate
//! verifier accepts any chain so that bad ones can be captured; the captured chain is then
//! parsed with x509-parser and verified with webpki against the [`TrustStore`]. Expiry
//! alarms use the *verified path*, so an unused cross-signed certificate with an expired
//! root does not raise a false alarm. The result is a [`Status`] per address.
//!
//! Memory is bounded: rustls caps one handshake message at 64 KiB, and at most
//! [`MAX_KEPT_CERTS`] certificates ([`MAX_KEPT_BYTES`] bytes) of a chain are kept.
//!
//! [`Prober::verify_served`] is the post-change check: the expected leaf on every address.

mod certificate;
mod error;
mod handshake;
mod prober;
mod report;
mod served;
mod signature_cache;
mod status;
mod target;
mod trust;

pub use certificate::{normalize_fingerprint, sha256_hex, CertSummary, MIN_RSA_BITS};
pub use error::Error;
pub use handshake::{MAX_KEPT_BYTES, MAX_KEPT_CERTS};
pub use prober::{ProbeRequest, Prober, ProberConfig};
pub use report::{ChainReport, EndpointReport, TargetReport};
pub use served::{ServedError, ServedEvidence};
pub use status::{days_until, Severity, Status};
pub use target::{Target, DEFAULT_PORT};
pub use trust::TrustStore;
