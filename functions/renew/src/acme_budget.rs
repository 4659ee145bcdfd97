//! The renew step's side of the ACME rate-limit ledger ([`certops_core::acme_ledger`]): an
//! order before each ACME attempt, the CA's `Retry-After` after a refusal, an issuance after
//! each certificate. Non-ACME issuers leave the ledger alone.

use certops_core::acme_ledger;
use certops_core::ports::Deps;
use certops_core::{Error, Issuer, RenewalMethod};

fn account(issuer: &Issuer) -> Option<&str> {
    (issuer.method == RenewalMethod::Acme).then_some(issuer.name.as_str())
}

/// Records the new order about to be sent.
pub async fn before_order(deps: &Deps, issuer: &Issuer) -> Result<(), Error> {
    match account(issuer) {
        Some(name) => acme_ledger::record_order(deps.store.as_ref(), name, deps.clock.now()).await,
        None => Ok(()),
    }
}

/// Records the CA's `Retry-After` carried by a rate-limit refusal, so no new order is
/// attempted before it (validation reads it).
pub async fn after_refusal(deps: &Deps, issuer: &Issuer, error: &Error) -> Result<(), Error> {
    if let (Some(name), Error::RateLimited(message)) = (account(issuer), error) {
        if let Some(until) = acme_ledger::parse_retry_after(message) {
            acme_ledger::record_retry_after(deps.store.as_ref(), name, until).await?;
        }
    }
    Ok(())
}

/// Records a certificate issued for the registered domain with `names`.
pub async fn after_issuance(deps: &Deps, issuer: &Issuer, names: &[String]) -> Result<(), Error> {
    match (account(issuer), &issuer.registered_domain) {
        (Some(_), Some(domain)) => {
            acme_ledger::record_issuance(deps.store.as_ref(), domain, names, deps.clock.now()).await
        }
        _ => Ok(()),
    }
}
