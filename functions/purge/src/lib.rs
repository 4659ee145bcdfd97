//! `purge`: invalidate the CDN paths named in the inventory entry, under the
//! approved plan. Failures are `PurgeFailed`, which the state machine retries
//! with back-off and then routes to on-call with the ticket "Mitigating".

use certops_core::ports::Deps;
use certops_core::workflow::{plan_in_force, record_audit, PurgeOutput, StepEvent};
use certops_core::{AuditKind, Error};
use serde_json::json;

const ACTOR: &str = "step:purge";

/// Purges the CDN for one execution.
pub async fn handle(deps: &Deps, event: StepEvent) -> Result<PurgeOutput, Error> {
    let (plan, hash) = plan_in_force(&deps.config, &event.state, event.state.on_fallback_path())?;
    let Some(cdn) = &plan.cdn else {
        return Ok(PurgeOutput {
            invalidation_id: "none".into(),
        });
    };
    let result = deps.cdn.purge(cdn).await;
    record_audit(
        deps,
        &event.execution,
        AuditKind::Action,
        ACTOR,
        json!({"action": "purge", "planHash": hash, "cdn": cdn,
               "result": match &result { Ok(id) => json!({"invalidationId": id}), Err(e) => json!({"error": e.name(), "message": e.to_string()}) }}),
    )
    .await?;
    let id = result.map_err(|e| match e {
        e @ Error::PurgeFailed(_) => e,
        other => Error::PurgeFailed(other.to_string()),
    })?;
    Ok(PurgeOutput {
        invalidation_id: id,
    })
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests;
