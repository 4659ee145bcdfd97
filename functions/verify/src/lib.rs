//! `verify`: success means served. An outside TLS handshake on every endpoint
//! and every address must see the new leaf (fingerprint), the new expiry and
//! a valid chain. The old certificate still being served is `NotYetServed`
//! (retried for propagation); anything else is `VerificationFailed`.

use certops_core::ports::{Deps, Observation};
use certops_core::workflow::{
    observe_endpoints, plan_in_force, record_audit, StepEvent, VerificationOutput,
};
use certops_core::{AuditKind, Error};
use serde_json::json;

const ACTOR: &str = "step:verify";

/// Verifies one execution's change from outside.
pub async fn handle(deps: &Deps, event: StepEvent) -> Result<VerificationOutput, Error> {
    let (plan, hash) = plan_in_force(&deps.config, &event.state, event.state.on_fallback_path())?;
    let renewal = event
        .state
        .renewal
        .as_ref()
        .ok_or_else(|| Error::InvalidInput("nothing to verify: no renewal output".into()))?;
    let observations = observe_endpoints(deps, &plan.endpoints).await?;
    let stale: Vec<&Observation> = observations
        .iter()
        .filter(|o| o.fingerprint != renewal.fingerprint)
        .collect();
    let broken: Vec<&Observation> = observations
        .iter()
        .filter(|o| {
            o.fingerprint == renewal.fingerprint
                && (!o.chain_valid || o.not_after != renewal.not_after)
        })
        .collect();
    let verdict = if !broken.is_empty() {
        Err(Error::VerificationFailed(format!(
            "{} address(es) serve the new leaf with an invalid chain or wrong expiry: {}",
            broken.len(),
            broken
                .iter()
                .map(|o| format!("{} ({})", o.address, o.status))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    } else if !stale.is_empty() {
        Err(Error::NotYetServed(format!(
            "{} address(es) still serve another certificate: {}",
            stale.len(),
            stale
                .iter()
                .map(|o| format!(
                    "{} serves {}",
                    o.address,
                    &o.fingerprint[..16.min(o.fingerprint.len())]
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    } else {
        Ok(())
    };
    record_audit(
        deps,
        &event.execution,
        AuditKind::Action,
        ACTOR,
        json!({"action": "verify", "planHash": hash, "expected": {"fingerprint": renewal.fingerprint, "notAfter": renewal.not_after},
               "observations": observations, "result": match &verdict { Ok(()) => "served".to_string(), Err(e) => e.name().to_string() }}),
    )
    .await?;
    verdict?;
    Ok(VerificationOutput {
        observations,
        fingerprint: renewal.fingerprint.clone(),
        not_after: renewal.not_after,
    })
}
