//! `rollback`: redeploy each touched target's last-known-good certificate,
//! reload, and revalidate from outside that the old certificate is served
//! again. Snapshots come from the deploy step's conditional writes, so a
//! deploy that failed half-way is rolled back too.
//!
//! A touched target without a last-known-good (nothing certops can restore, e.g. an ACM
//! certificate certops never imported: ACM cannot export an imported key) fails the
//! rollback loudly ([`Error::RollbackFailed`], naming it): reporting `RolledBack` having
//! restored nothing would hide a changed certificate. A snapshot that is a certificate ARN
//! (a listener's original certificate) is restored by pointing the listener back at it and
//! revalidated against the fingerprint served before the change.

use certops_core::ports::{Deps, Table};
use certops_core::workflow::{
    leaf_facts, observe_endpoints, record_audit, snapshot_key, RollbackOutput, StepEvent,
    TargetDeployment,
};
use certops_core::{AuditKind, Error, Target};
use serde_json::json;

const ACTOR: &str = "step:rollback";

/// Restores last-known-good for one execution.
pub async fn handle(deps: &Deps, event: StepEvent) -> Result<RollbackOutput, Error> {
    let exec = event.execution.as_str();
    let plan = event
        .state
        .validation()?
        .plan
        .clone()
        .ok_or_else(|| Error::InvalidInput("nothing to roll back: no plan".into()))?;
    let mut restored = Vec::new();
    let mut expected = Vec::new();
    for target in &plan.targets {
        let Some(snapshot) = deps
            .store
            .get(Table::Deployments, &snapshot_key(exec, &target.id))
            .await?
        else {
            continue; // never touched
        };
        let t: Target =
            serde_json::from_value(snapshot["target"].clone()).unwrap_or_else(|_| target.clone());
        let Some(lkg) = snapshot["lastKnownGood"].as_str().map(str::to_string) else {
            record_audit(
                deps,
                exec,
                AuditKind::Action,
                ACTOR,
                json!({"action": "restore+reload", "target": t, "result": "no last-known-good"}),
            )
            .await?;
            return Err(Error::RollbackFailed(format!(
                "{}: no last-known-good to restore (certops did not know what it served \
                 before the change); restore it by hand",
                t.id
            )));
        };
        let (result, evidence) = deps.targets.deploy_and_reload(&t, &lkg).await;
        record_audit(
            deps,
            exec,
            AuditKind::Action,
            ACTOR,
            json!({"action": "restore+reload", "target": t, "bundleRef": lkg,
                   "result": match &result { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
                   "evidence": target_evidence(evidence)}),
        )
        .await?;
        result.map_err(|e| Error::RollbackFailed(format!("{}: {e}", t.id)))?;
        match deps.keystore.get_bundle(&lkg).await {
            Ok(bundle) => expected.push(leaf_facts(&bundle.chain_pem)?.fingerprint),
            // A certificate ARN snapshot: what was served before is what to see again.
            Err(_) => match event.state.validation()?.fingerprint_before.clone() {
                Some(f) => expected.push(f),
                None => {
                    return Err(Error::RollbackFailed(format!(
                        "{}: restored {lkg}, but no fingerprint from before the change \
                         to revalidate against",
                        t.id
                    )))
                }
            },
        }
        restored.push(TargetDeployment {
            target: t,
            last_known_good: Some(lkg),
            deployed: true,
        });
    }
    let observations = observe_endpoints(deps, &plan.endpoints).await?;
    let wrong: Vec<String> = observations
        .iter()
        .filter(|o| !expected.is_empty() && !expected.contains(&o.fingerprint))
        .map(|o| o.address.clone())
        .collect();
    record_audit(
        deps,
        exec,
        AuditKind::Action,
        ACTOR,
        json!({"action": "revalidate", "observations": observations, "wrong": wrong}),
    )
    .await?;
    if !wrong.is_empty() {
        return Err(Error::RollbackFailed(format!(
            "after rollback these addresses do not serve the last-known-good certificate: {}",
            wrong.join(", ")
        )));
    }
    Ok(RollbackOutput {
        restored,
        observations,
    })
}

/// What the target adapter reported about this call (command output, Runtime API
/// answers), redacted again here; `null` when it reports nothing.
fn target_evidence(evidence: Option<serde_json::Value>) -> serde_json::Value {
    evidence
        .map(|v| certops_core::audit::redact(&v))
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests;
