//! Real issuers behind the `Issuer` port, on both runtimes.
//!
//! - [`acme::AcmeIssuer`]: an ACME CA (RFC 8555) through instant-acme, its HTTP client wrapped
//!   ([`acme_http::AcmeHttp`]) so a refusal's `Retry-After` survives; challenge solvers in
//!   [`solvers`] (HTTP-01 webroot, DNS-01 through an update endpoint or Route 53).
//! - [`vault::VaultPki`]: a HashiCorp Vault / OpenBao PKI secrets engine (`sign/<role>`).
//! - [`private_ca::AwsPrivateCa`]: AWS Private CA.
//! - [`router::IssuerRouter`]: picks one per inventory issuer name from `[issuers.<name>]` in
//!   `integrations.toml` ([`settings`]), keeping the embedded local CA for every other name.
//!
//! The runtime builds the port once with [`router::build`]:
//!
//! ```no_run
//! # async fn wire(config: &certops_core::ports::Config,
//! #               local_ca: std::sync::Arc<dyn certops_core::ports::Issuer>,
//! #               keystore: std::sync::Arc<dyn certops_core::ports::Keystore>,
//! #               secrets: std::sync::Arc<dyn certops_core::integrations::SecretResolver>)
//! #               -> Result<(), certops_core::Error> {
//! let issuer = certops_issuers::router::build(
//!     config,
//!     certops_issuers::router::RouterParts { default: local_ca, keystore, secrets, aws: None },
//! )
//! .await?;
//! # let _ = issuer; Ok(()) }
//! ```

pub mod acme;
pub mod acme_http;
pub mod csr;
pub mod private_ca;
pub mod router;
pub mod settings;
pub mod solvers;
pub mod vault;

pub use acme::{AcmeIssuer, RenewalWindow};
pub use router::{build, IssuerRouter, RouterParts};
