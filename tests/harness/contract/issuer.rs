//! The `Issuer` contract: what every issuer adapter (the embedded local CA, ACME, the
//! Vault/OpenBao PKI, AWS Private CA) must do for the renew step.
//!
//! 1. Sign the CSR's key for exactly the requested names, with a chain that verifies to the
//!    issuer's own trust anchors and starts no later than now (the renew step's guardrails).
//! 2. Issue a fresh certificate each time (distinct serials).
//! 3. Refuse a CSR that is not one with a routable error, never a panic.

use certops_core::ports::{IssueRequest, Issuer};
use certops_core::KeyType;

use crate::issuers::setup::{guardrails, key_and_csr};

/// Runs the contract on `port` for certificate object `cert_id` issued by `issuer` with
/// `names` (common name first).
pub async fn issuer(
    port: &dyn Issuer,
    cert_id: &str,
    issuer: &certops_core::Issuer,
    names: &[&str],
) {
    let request = |csr: String| IssueRequest {
        cert_id: cert_id.to_string(),
        issuer: issuer.clone(),
        csr_pem: csr,
        common_name: names[0].to_string(),
        sans: names.iter().map(|n| n.to_string()).collect(),
        replaces: None,
    };
    let mut serials = Vec::new();
    for kind in [KeyType::EcdsaP256, KeyType::Rsa2048] {
        let (key, csr) = key_and_csr(kind, names);
        let req = request(csr);
        let chain = port
            .issue(&req)
            .await
            .unwrap_or_else(|e| panic!("{}: issue ({kind:?}): {e}", issuer.name));
        guardrails(port, &req, &key, &chain)
            .await
            .unwrap_or_else(|e| panic!("{}: guardrails ({kind:?}): {e}", issuer.name));
        serials.push(
            certops_core::workflow::leaf_facts(&chain)
                .expect("leaf facts")
                .serial,
        );
    }
    assert_ne!(
        serials[0], serials[1],
        "{}: the same certificate twice",
        issuer.name
    );

    let bogus = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        "bm90IGEgQ1NS"
    );
    let err = port
        .issue(&request(bogus))
        .await
        .expect_err("a CSR that is not one is refused");
    assert!(
        matches!(err.name(), "InvalidInput" | "IssuanceFailed"),
        "{}: a bad CSR came back as {}: {err}",
        issuer.name,
        err.name()
    );
}
