//! `deploy`: under the approved plan, snapshot each target's last-known-good
//! certificate (a conditional write, so a retry keeps the first snapshot),
//! install the new bundle and reload — target by target, in inventory order.

use certops_core::ports::{Deps, Table, TicketUpdate};
use certops_core::workflow::{
    plan_in_force, record_audit, require_approval, snapshot_key, DeploymentOutput, StepEvent,
    TargetDeployment,
};
use certops_core::{AuditKind, Error};
use serde_json::json;

const ACTOR: &str = "step:deploy";

/// Deploys the renewed bundle to every target.
pub async fn handle(deps: &Deps, event: StepEvent) -> Result<DeploymentOutput, Error> {
    let (plan, hash) = plan_in_force(&deps.config, &event.state, event.state.on_fallback_path())?;
    if let Err(e) = require_approval(deps, &event.execution, &hash).await {
        record_audit(
            deps,
            &event.execution,
            AuditKind::Action,
            ACTOR,
            json!({"refused": e.name(), "reason": e.to_string(), "planHash": hash}),
        )
        .await?;
        return Err(e);
    }
    let renewal = event
        .state
        .renewal
        .as_ref()
        .ok_or_else(|| Error::InvalidInput("nothing to deploy: no renewal output".into()))?;
    let exec = event.execution.as_str();
    let mut done = Vec::new();
    for target in &plan.targets {
        let current = deps.targets.current(target).await?;
        let snapshot = json!({"target": target, "lastKnownGood": current});
        deps.store
            .put_if_absent(
                Table::Deployments,
                &snapshot_key(exec, &target.id),
                &snapshot,
            )
            .await?;
        let stored = deps
            .store
            .get(Table::Deployments, &snapshot_key(exec, &target.id))
            .await?
            .unwrap_or(snapshot);
        let lkg = stored["lastKnownGood"].as_str().map(str::to_string);
        let (result, evidence) = deps
            .targets
            .deploy_and_reload(target, &renewal.bundle_ref)
            .await;
        record_audit(
            deps,
            exec,
            AuditKind::Action,
            ACTOR,
            json!({"action": "deploy+reload", "planHash": hash, "target": target, "bundleRef": renewal.bundle_ref,
                   "lastKnownGood": lkg, "result": match &result { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
                   "evidence": target_evidence(evidence)}),
        )
        .await?;
        if let Err(e) = result {
            return Err(match e {
                Error::DeployFailed(m) => Error::DeployFailed(format!("{}: {m}", target.id)),
                other => Error::DeployFailed(format!("{}: {other}", target.id)),
            });
        }
        done.push(TargetDeployment {
            target: target.clone(),
            last_known_good: lkg,
            deployed: true,
        });
    }
    let ticket = &event.state.validation()?.ticket;
    let list: Vec<String> = done
        .iter()
        .map(|t| format!("{} ({:?})", t.target.id, t.target.kind))
        .collect();
    deps.itsm
        .update(
            ticket,
            ACTOR,
            TicketUpdate {
                work_note: Some(format!(
                    "Deployed {} and reloaded: {}.",
                    renewal.bundle_ref,
                    list.join(", ")
                )),
                state: Some(certops_core::ports::TicketState::Implement),
                ..TicketUpdate::default()
            },
        )
        .await?;
    Ok(DeploymentOutput {
        bundle_ref: renewal.bundle_ref.clone(),
        targets: done,
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
