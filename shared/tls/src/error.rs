//! The crate's error type: problems with the caller's input or configuration.
//!
//! A failing *endpoint* is not an error: it is a [`crate::Status`] in a report. These errors
//! say that a probe could not even be set up (a malformed target, an unreadable CA bundle).

use std::path::PathBuf;

/// Everything that can go wrong before a probe starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A target string is not `host`, `host:port` or `host:port@sni`.
    #[error("invalid target {input:?}: {reason}")]
    InvalidTarget {
        /// The text as given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A CA bundle file could not be read.
    #[error("cannot read CA bundle {path}: {source}")]
    CaBundleRead {
        /// The bundle's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CA bundle holds no usable certificate, or a certificate that cannot be a trust anchor.
    #[error("invalid CA bundle {origin}: {reason}")]
    CaBundleInvalid {
        /// Where the bundle came from (a path, or "inline PEM").
        origin: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An expected fingerprint is not 64 hex digits (colons and a `sha256:` prefix allowed).
    #[error("invalid SHA-256 fingerprint {0:?}: expected 64 hex digits")]
    InvalidFingerprint(String),
    /// The prober's settings are out of range.
    #[error("invalid prober configuration: {0}")]
    InvalidConfig(String),
    /// rustls refused the TLS client configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}
