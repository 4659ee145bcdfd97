//! `verify`: success means served. An outside TLS handshake on every endpoint
//! and every address must see the new leaf (fingerprint), the new expiry and
//! a valid chain. The old certificate still being served is propagation in
//! progress while the policy's `[verify]` schedule leaves time: the step returns
//! `served: false` with the wait, and the state machine waits and verifies again.
//! After the last attempt it is `NotYetServed`, and the change is rolled back;
//! anything else wrong is `VerificationFailed` at once.

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
    let attempt = event
        .state
        .verification
        .as_ref()
        .filter(|v| !v.served)
        .map_or(0, |v| v.attempt)
        + 1;
    let schedule = &deps.config.policy.verify;
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
            "after {attempt} of {} verification(s), {} address(es) still serve another certificate: {}",
            schedule.max_attempts,
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
    // Still the old certificate, and time left: wait and verify again.
    let wait = match &verdict {
        Err(Error::NotYetServed(_)) => schedule.wait_after(attempt),
        _ => None,
    };
    let result = match (&verdict, wait) {
        (Ok(()), _) => "served".to_string(),
        (Err(_), Some(w)) => format!("not yet served; verifying again in {w} s"),
        (Err(e), None) => e.name().to_string(),
    };
    record_audit(
        deps,
        &event.execution,
        AuditKind::Action,
        ACTOR,
        json!({"action": "verify", "planHash": hash, "attempt": attempt, "expected": {"fingerprint": renewal.fingerprint, "notAfter": renewal.not_after},
               "observations": observations, "result": result}),
    )
    .await?;
    if let Some(wait_seconds) = wait {
        return Ok(VerificationOutput {
            observations,
            fingerprint: renewal.fingerprint.clone(),
            not_after: renewal.not_after,
            served: false,
            attempt,
            wait_seconds,
        });
    }
    verdict?;
    Ok(VerificationOutput {
        observations,
        fingerprint: renewal.fingerprint.clone(),
        not_after: renewal.not_after,
        served: true,
        attempt,
        wait_seconds: 0,
    })
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests;
