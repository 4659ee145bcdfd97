//! `approval-request`: the `.waitForTaskToken` step. Records an approval
//! request bound to the plan hash (the task token sealed, never in clear),
//! posts the approval card to chat with an approval id (never the token), and
//! notes the request in the ticket. The execution then waits until the
//! approval callback completes the task, or its time-out fires.
//!
//! Being recorded and being delivered are tracked apart: the record carries
//! `delivered = {note, audit}`, each set once that part is done, and the card is
//! posted last, by every run of the step while the approval is pending; so a step
//! retried after the ticket note, the audit record or the card failed does the
//! missing parts instead of skipping them all.

use certops_core::ports::{ApprovalCard, Deps, Table, TicketUpdate};
use certops_core::workflow::{record_audit, StepEvent};
use certops_core::{ApprovalRequest, AuditKind, Error};
use serde::{Deserialize, Serialize};
use serde_json::json;

const ACTOR: &str = "step:approval-request";

/// What the step returns (Step Functions records it as TaskSubmitted output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requested {
    /// The approval id approvers act on.
    pub approval_id: String,
}

pub use certops_core::approval_id;

/// Sets `delivered.<part>` on the approval record (a compare-and-swap, retried when the
/// record moved meanwhile, e.g. a token refresh or a decision).
async fn mark_delivered(deps: &Deps, id: &str, part: &str) -> Result<(), Error> {
    for _ in 0..8 {
        let Some(current) = deps.store.get(Table::Approvals, id).await? else {
            return Err(Error::InvalidInput(format!("approval {id} vanished")));
        };
        if current["delivered"][part] == json!(true) {
            return Ok(());
        }
        let mut next = current.clone();
        next["delivered"][part] = json!(true);
        if deps
            .store
            .compare_and_swap(Table::Approvals, id, Some(&current), &next)
            .await?
        {
            return Ok(());
        }
    }
    Err(Error::Transient(format!(
        "approval {id}: could not note {part} as delivered"
    )))
}

/// Requests approval for the execution's plan (or its fallback plan).
pub async fn handle(deps: &Deps, event: StepEvent) -> Result<Requested, Error> {
    let cfg = &deps.config;
    let token = event
        .task_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::InvalidInput("approval-request needs the task token ($$.Task.Token)".into())
        })?;
    let fallback = event.is_fallback();
    let v = event.state.validation()?;
    let (plan, hash) = if fallback {
        (v.fallback_plan.as_ref(), v.fallback_plan_hash.as_ref())
    } else {
        (v.plan.as_ref(), v.plan_hash.as_ref())
    };
    let (Some(plan), Some(hash)) = (plan, hash) else {
        return Err(Error::InvalidInput(
            "no plan to approve on this path".into(),
        ));
    };
    let cert = cfg.inventory.get(&plan.cert_id).ok_or_else(|| {
        Error::InvalidInput(format!(
            "certificate object {} is not in the inventory",
            plan.cert_id
        ))
    })?;
    let now = deps.clock.now();
    let requested_by = event.state.trigger.requested_by().to_string();
    let request = ApprovalRequest::new(
        &event.execution,
        plan,
        cert,
        &cfg.policy,
        &requested_by,
        now,
    )?;
    let id = approval_id(&event.execution, hash);
    let report = certops_core::workflow::report_for(
        &v.report,
        certops_core::workflow::fallback_path(cfg, cert, fallback),
    );
    let record = json!({
        "request": request,
        "sealedToken": deps.sealer.seal(token)?,
        "status": "pending",
        "ticket": v.ticket,
        "execution": event.execution,
        "fallback": fallback,
        "report": report,
        "planTicket": plan.ticket,
        "planChange": plan.change,
        "delivered": {"note": false, "audit": false},
    });
    let fresh = deps
        .store
        .put_if_absent(Table::Approvals, &id, &record)
        .await?;
    let mut stored = record;
    if !fresh {
        // A retried step: the new token replaces the old one.
        if let Some(mut existing) = deps.store.get(Table::Approvals, &id).await? {
            if existing["status"] == "pending" {
                let before = existing.clone();
                existing["sealedToken"] = json!(deps.sealer.seal(token)?);
                deps.store
                    .compare_and_swap(Table::Approvals, &id, Some(&before), &existing)
                    .await?;
            }
            stored = existing;
        }
    }
    // What is still to deliver. A record from before delivery was tracked (no `delivered`)
    // was delivered in full by the step that wrote it.
    let pending = stored["status"] == "pending";
    let todo = |part: &str| {
        pending && stored.get("delivered").is_some() && stored["delivered"][part] != json!(true)
    };
    let (write_note, write_audit) = (todo("note"), todo("audit"));
    let post_card = pending;
    let card = ApprovalCard {
        approval_id: id.clone(),
        ticket: v.ticket.clone(),
        path: request.path.as_str().to_string(),
        cert: format!("{} ({})", cert.id, cert.common_name),
        summary: format!(
            "{} {} on {} target(s){}; runbook {} {}",
            if fallback {
                "Install the fallback certificate for"
            } else {
                "Renew"
            },
            cert.common_name,
            plan.targets.len(),
            plan.cdn
                .as_ref()
                .map(|c| format!(", purge CDN {}", c.distribution_id))
                .unwrap_or_default(),
            plan.runbook.id,
            plan.runbook.version
        ),
        plan_hash: hash.clone(),
        approvers: request.approvers.clone(),
        requested_by: requested_by.clone(),
        expires_at: request.expires_at,
    };
    if write_note {
        deps.itsm
            .update(
                &v.ticket,
                ACTOR,
                TicketUpdate {
                    work_note: Some(format!(
                        "Approval {} requested ({} change) from {}; plan hash {}; expires {}.",
                        id,
                        request.path.as_str(),
                        request.approvers.join(", "),
                        hash,
                        request.expires_at.to_rfc3339()
                    )),
                    ..TicketUpdate::default()
                },
            )
            .await?;
        mark_delivered(deps, &id, "note").await?;
    }
    if write_audit {
        record_audit(
            deps,
            &event.execution,
            AuditKind::Approval,
            ACTOR,
            json!({"requested": id, "path": request.path, "planHash": hash, "approvers": request.approvers, "expiresAt": request.expires_at}),
        )
        .await?;
        mark_delivered(deps, &id, "audit").await?;
    }
    // The card goes out last, so once an approver can act this step has nothing left to
    // do (a decision may complete the task at once). While the approval is pending, every
    // run of the step posts it: a run fails only before the card went out.
    if post_card {
        deps.chat.request_approval(&card).await?;
    }
    Ok(Requested { approval_id: id })
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests;
