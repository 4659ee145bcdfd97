//! `itsm-update`: every write to the ITSM record the state machine makes —
//! blocked, approved (approver and time), not approved, mitigating (CDN purge
//! failed: notify on-call), rolled back, rollback failed, failed, and close
//! with evidence. Terminal actions release the per-certificate lock and record
//! the outcome in the audit trail; `release-lock` (after one of those failed for
//! good) only releases the lock and audits it.

use certops_core::ports::{Attachment, Deps, Ticket, TicketKind, TicketState, TicketUpdate};
use certops_core::workflow::{record_audit, StepEvent, WorkflowState};
use certops_core::{AuditKind, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const ACTOR: &str = "step:itsm-update";

async fn release_lock(deps: &Deps, state: &WorkflowState, execution: &str) -> Result<(), Error> {
    let Some(cert_id) = state
        .validation
        .as_ref()
        .and_then(|v| v.report.cert_id.clone())
    else {
        return Ok(());
    };
    certops_core::lease::release(deps.store.as_ref(), &cert_id, execution).await?;
    Ok(())
}

fn oncall(deps: &Deps, state: &WorkflowState) -> String {
    state
        .validation
        .as_ref()
        .and_then(|v| v.report.cert_id.as_deref())
        .and_then(|id| deps.config.inventory.get(id))
        .and_then(|c| c.escalation.first().cloned())
        .unwrap_or_else(|| deps.config.default_oncall.clone())
}

fn caught(e: &Option<certops_core::workflow::CaughtError>) -> String {
    e.as_ref()
        .map(|c| format!("{}: {}", c.error, c.cause))
        .unwrap_or_else(|| "unknown".into())
}

/// Evidence of a completed change: expiry before/after, endpoints touched, served fingerprint.
pub fn evidence(state: &WorkflowState, execution: &str) -> Value {
    let v = state.validation.as_ref();
    json!({
        "execution": execution,
        "ticket": v.map(|v| v.ticket.clone()),
        "certificate": v.and_then(|v| v.report.cert_id.clone()),
        "path": v.map(|v| v.path.as_str()),
        "planHash": state.renewal.as_ref().map(|r| r.plan_hash.clone()),
        "runbook": v.and_then(|v| v.plan.as_ref()).map(|p| json!({"id": p.runbook.id, "version": p.runbook.version, "sha256": p.runbook.sha256})),
        "approval": state.fallback_approval.as_ref().or(state.approval.as_ref()),
        "expiryBefore": v.and_then(|v| v.expiry_before),
        "fingerprintBefore": v.and_then(|v| v.fingerprint_before.clone()),
        "expiryAfter": state.verification.as_ref().map(|x| x.not_after),
        "servedFingerprint": state.verification.as_ref().map(|x| x.fingerprint.clone()),
        "source": state.renewal.as_ref().map(|r| r.source.clone()),
        "targets": state.deployment.as_ref().map(|d| d.targets.iter().map(|t| t.target.id.clone()).collect::<Vec<_>>()),
        "endpoints": state.verification.as_ref().map(|x| x.observations.iter().map(|o| json!({"endpoint": format!("{}:{}", o.endpoint.host, o.endpoint.port), "sni": o.endpoint.sni, "address": o.address, "fingerprint": o.fingerprint, "notAfter": o.not_after, "chainValid": o.chain_valid})).collect::<Vec<_>>()),
        "cdnInvalidation": state.purge.as_ref().map(|p| p.invalidation_id.clone()),
        "cdnPurgeError": state.purge_error.as_ref().map(|e| e.error.clone()),
    })
}

/// What an `itsm-update` state asks for: the `"action"` of its payload in the state machine
/// definition (`statemachines/cert-renewal.asl.json`), spelled as there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Validation blocked the change: nothing was executed.
    Blocked,
    /// The approver and time of the decision (the execution goes on).
    Approved,
    /// Rejected, expired or timed out: nothing was executed.
    NotApproved,
    /// The CDN purge failed for good: on-call is notified, the ticket is "Mitigating"
    /// (the execution goes on).
    Mitigating,
    /// The change was rolled back to last-known-good.
    RolledBack,
    /// The rollback failed: manual action, on-call notified.
    RollbackFailed,
    /// A step failed before anything was deployed.
    Failed,
    /// Verified from outside: close with evidence.
    Close,
    /// A `Record*`/`CloseTicket` step failed for good: release the lock, write nothing.
    ReleaseLock,
}

impl Action {
    /// The action a step event names. A missing or unknown action is
    /// [`Error::InvalidInput`]: the definition and this crate disagree.
    pub fn from_event(event: &StepEvent) -> Result<Action, Error> {
        let name = event.action.as_deref().ok_or_else(|| {
            Error::InvalidInput("itsm-update needs an action; the event names none".into())
        })?;
        serde_json::from_value(Value::String(name.to_string()))
            .map_err(|_| Error::InvalidInput(format!("unknown itsm-update action '{name}'")))
    }

    /// Whether the execution ends with this action: it is then its outcome, and the
    /// per-certificate lock is released.
    fn is_terminal(self) -> bool {
        !matches!(self, Action::Approved | Action::Mitigating)
    }

    /// The outcome the audit trail records.
    fn outcome(self) -> &'static str {
        match self {
            Action::Blocked => "blocked",
            Action::Approved => "approved",
            Action::NotApproved => "not-approved",
            Action::Mitigating => "mitigating",
            Action::RolledBack => "rolled-back",
            Action::RollbackFailed => "rollback-failed",
            Action::Failed => "failed",
            Action::Close => "succeeded",
            Action::ReleaseLock => "recording-failed",
        }
    }
}

/// Applies one ITSM action.
pub async fn handle(deps: &Deps, event: StepEvent) -> Result<Value, Error> {
    let action = Action::from_event(&event)?;
    let state = &event.state;
    let exec = event.execution.as_str();
    if action == Action::ReleaseLock {
        return release_after_failed_recording(deps, state, exec).await;
    }
    let Some(v) = state.validation.as_ref() else {
        return record_without_ticket(deps, state, exec, action).await;
    };
    let ticket = v.ticket.as_str();
    let kind = deps.itsm.get(ticket).await?.map(|t| t.kind);
    let is_incident = kind == Some(TicketKind::Incident);
    let update = ticket_update(deps, state, exec, action, is_incident).await?;
    let t = write_ticket(deps, exec, action, ticket, update).await?;
    record_outcome(deps, state, exec, action, ticket, &t).await?;
    Ok(json!({"action": action, "ticket": ticket, "state": t.state}))
}

/// `release-lock`: a Record*/CloseTicket step failed for good, so the lock must not
/// outlive the execution. No ITSM call here: the ITSM may be what failed.
async fn release_after_failed_recording(
    deps: &Deps,
    state: &WorkflowState,
    exec: &str,
) -> Result<Value, Error> {
    let action = Action::ReleaseLock;
    release_lock(deps, state, exec).await?;
    record_audit(
        deps,
        exec,
        AuditKind::Outcome,
        ACTOR,
        json!({"action": action, "outcome": action.outcome(), "error": state.records.as_ref().and_then(|r| r.get("recordError")).cloned()}),
    )
    .await?;
    Ok(json!({"action": action, "released": true}))
}

/// Validation never produced a ticket: nothing to write to; the audit trail keeps the
/// failure.
async fn record_without_ticket(
    deps: &Deps,
    state: &WorkflowState,
    exec: &str,
    action: Action,
) -> Result<Value, Error> {
    record_audit(
        deps,
        exec,
        AuditKind::Outcome,
        ACTOR,
        json!({"action": action, "failure": state.failure}),
    )
    .await?;
    Ok(json!({"action": action, "ticket": null}))
}

/// The ticket state for an execution that ends without a change: incidents go back to
/// Assess (the problem remains), changes are canceled.
fn nothing_changed(is_incident: bool) -> TicketState {
    if is_incident {
        TicketState::Assess
    } else {
        TicketState::Canceled
    }
}

/// What `action` writes to the ticket, with the on-call notifications it makes.
async fn ticket_update(
    deps: &Deps,
    state: &WorkflowState,
    exec: &str,
    action: Action,
    is_incident: bool,
) -> Result<TicketUpdate, Error> {
    let v = state.validation()?;
    let ticket = v.ticket.as_str();
    let mut update = TicketUpdate::default();
    match action {
        Action::Blocked => {
            let reasons: Vec<String> = v
                .report
                .failures()
                .map(|c| format!("{:?}: {}", c.name, c.reason))
                .collect();
            update.work_note = Some(format!(
                "certops blocked this change; nothing was executed.\n{}",
                reasons.join("\n")
            ));
            update.state = Some(nothing_changed(is_incident));
        }
        Action::Approved => return approved_update(state, is_incident),
        Action::NotApproved => {
            update.work_note = Some(format!(
                "Not approved ({}); nothing was executed.",
                caught(&state.approval_error)
            ));
            update.state = Some(nothing_changed(is_incident));
        }
        Action::Mitigating => {
            let to = oncall(deps, state);
            let text = format!(
                "{ticket}: CDN purge failed after retries ({}). The certificate is deployed; cached content may still be stale. Please purge manually.",
                caught(&state.purge_error)
            );
            deps.chat.notify(&to, &text).await?;
            update.work_note = Some(format!("On-call {to} notified: {text}"));
            update.state = Some(TicketState::Mitigating);
        }
        Action::RolledBack => return rolled_back_update(deps, state, is_incident).await,
        Action::RollbackFailed => {
            let text = format!(
                "{ticket}: ROLLBACK FAILED ({}). Manual action required now.",
                caught(&state.rollback_error)
            );
            deps.chat.notify(&oncall(deps, state), &text).await?;
            update.work_note = Some(text);
            update.state = Some(TicketState::Mitigating);
        }
        Action::Failed => {
            update.work_note = Some(format!(
                "certops stopped before deploying anything: {}.",
                caught(&state.failure)
            ));
            update.state = Some(nothing_changed(is_incident));
        }
        Action::Close => return close_update(deps, state, exec, is_incident).await,
        // `handle` answers release-lock before any ticket is read.
        Action::ReleaseLock => {
            return Err(Error::InvalidInput(
                "release-lock writes nothing to the ticket".into(),
            ))
        }
    }
    Ok(update)
}

/// `approved`: the approver and the time of the decision (of the fallback plan's, when
/// there is one), and the ticket scheduled (a change) or in implementation (an incident).
fn approved_update(state: &WorkflowState, is_incident: bool) -> Result<TicketUpdate, Error> {
    let a = state
        .fallback_approval
        .as_ref()
        .or(state.approval.as_ref())
        .ok_or_else(|| Error::InvalidInput("no approval to record".into()))?;
    Ok(TicketUpdate {
        approved_by: Some(a.approver.clone()),
        approved_at: Some(a.decided_at),
        state: Some(if is_incident {
            TicketState::Implement
        } else {
            TicketState::Scheduled
        }),
        work_note: Some(format!(
            "Approved by {} at {} (approval {}, plan hash {}){}.",
            a.approver,
            a.decided_at.to_rfc3339(),
            a.approval_id,
            a.plan_hash,
            a.comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        )),
        ..TicketUpdate::default()
    })
}

/// `rolled-back`: why, what was restored (with the rollback's evidence attached), and
/// on-call told that the old certificate is served again.
async fn rolled_back_update(
    deps: &Deps,
    state: &WorkflowState,
    is_incident: bool,
) -> Result<TicketUpdate, Error> {
    let ticket = state.validation()?.ticket.as_str();
    let cause = state.verify_error.as_ref().or(state.deploy_error.as_ref());
    let update = TicketUpdate {
        work_note: Some(format!(
            "Change rolled back to last-known-good ({}). Restored: {}.",
            cause
                .map(|c| format!("{}: {}", c.error, c.cause))
                .unwrap_or_default(),
            state
                .rollback
                .as_ref()
                .map(|r| r
                    .restored
                    .iter()
                    .map(|t| t.target.id.clone())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        )),
        attachment: Some(Attachment {
            name: "rollback-evidence.json".into(),
            content: json!({"rollback": state.rollback, "verifyError": state.verify_error, "deployError": state.deploy_error}),
        }),
        state: Some(if is_incident {
            TicketState::Mitigating
        } else {
            TicketState::Canceled
        }),
        ..TicketUpdate::default()
    };
    deps.chat
        .notify(
            &oncall(deps, state),
            &format!("{ticket}: renewal rolled back; the old certificate is served again."),
        )
        .await?;
    Ok(update)
}

/// `close`: the evidence (with the audit chain head as of closing) attached, and the
/// ticket resolved or closed — or left "Mitigating" while a CDN purge is outstanding.
async fn close_update(
    deps: &Deps,
    state: &WorkflowState,
    exec: &str,
    is_incident: bool,
) -> Result<TicketUpdate, Error> {
    let v = state.validation()?;
    let mut ev = evidence(state, exec);
    // The audit chain head as of closing: the evidence names the trail that proves it.
    if let Some(head) = deps.store.audit(exec).await?.last() {
        ev["auditChainHead"] = json!({"seq": head.seq, "hash": head.hash});
    }
    let purge_failed = state.purge_error.is_some();
    Ok(TicketUpdate {
        attachment: Some(Attachment {
            name: "evidence.json".into(),
            content: ev,
        }),
        work_note: Some(format!(
            "Renewal verified from outside: every endpoint serves {} until {}. Expiry before: {}.{}",
            state.verification.as_ref().map(|x| x.fingerprint.clone()).unwrap_or_default(),
            state.verification.as_ref().map(|x| x.not_after.to_rfc3339()).unwrap_or_default(),
            v.expiry_before.map(|e| e.to_rfc3339()).unwrap_or_else(|| "unknown".into()),
            if purge_failed { " CDN purge still outstanding: ticket stays Mitigating." } else { "" }
        )),
        state: Some(if purge_failed {
            TicketState::Mitigating
        } else if is_incident {
            TicketState::Resolved
        } else {
            TicketState::Closed
        }),
        ..TicketUpdate::default()
    })
}

/// Writes `update` to the ticket. A refusal the state machine will not retry (record
/// deleted, access revoked) ends the run: it is audited before the error is returned.
async fn write_ticket(
    deps: &Deps,
    exec: &str,
    action: Action,
    ticket: &str,
    update: TicketUpdate,
) -> Result<Ticket, Error> {
    match deps.itsm.update(ticket, ACTOR, update).await {
        Ok(t) => Ok(t),
        Err(e) => {
            if !e.is_retryable() {
                record_audit(
                    deps,
                    exec,
                    AuditKind::Outcome,
                    ACTOR,
                    json!({"action": action, "ticket": ticket, "outcome": "itsm-update-failed", "error": e.name(), "message": e.to_string()}),
                )
                .await?;
            }
            Err(e)
        }
    }
}

/// Audits what was written (the execution's outcome for a terminal action, an action
/// otherwise) and, for a terminal action, releases the per-certificate lock.
async fn record_outcome(
    deps: &Deps,
    state: &WorkflowState,
    exec: &str,
    action: Action,
    ticket: &str,
    written: &Ticket,
) -> Result<(), Error> {
    let kind = if action.is_terminal() {
        AuditKind::Outcome
    } else {
        AuditKind::Action
    };
    record_audit(
        deps,
        exec,
        kind,
        ACTOR,
        json!({"action": action, "ticket": ticket, "ticketState": written.state, "outcome": action.outcome()}),
    )
    .await?;
    if action.is_terminal() {
        release_lock(deps, state, exec).await?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests;
