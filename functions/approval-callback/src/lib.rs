//! `approval-callback`: an approver's decision, from the Teams/Slack card
//! callback or the local `certops approve|reject`. Enforces separation of
//! duties (requester ≠ approver, approver in the change authority or ECAB),
//! the approval's expiry and its binding to the current plan hash, and spends
//! the approval exactly once (conditional write) before completing the
//! workflow's waiting task.

use certops_core::ports::Deps;
use certops_core::workflow::{record_audit, ApprovalOutcome};
use certops_core::{
    check_decision, ApprovalDecision, ApprovalRequest, AuditKind, Error, Plan, ValidationReport,
    Verdict,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A decision as it arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    /// The approval id from the card.
    pub approval_id: String,
    /// Who decided (the authenticated identity from Teams/Slack, or `--as`).
    pub approver: String,
    /// Approve or reject.
    pub verdict: Verdict,
    /// Optional comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What the caller is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    /// The approval id.
    pub approval_id: String,
    /// `approved`, `rejected` or `expired`.
    pub status: String,
    /// The execution it completed.
    pub execution: String,
}

fn current_plan_hash(deps: &Deps, record: &Value) -> Result<String, Error> {
    let req: ApprovalRequest = serde_json::from_value(record["request"].clone())
        .map_err(|e| Error::InvalidInput(format!("approval record is unreadable: {e}")))?;
    let report: ValidationReport = serde_json::from_value(record["report"].clone())
        .map_err(|e| Error::InvalidInput(format!("approval record is unreadable: {e}")))?;
    let Some(cert) = deps.config.inventory.get(&req.cert_id) else {
        return Ok(format!(
            "certificate object {} removed from the inventory",
            req.cert_id
        ));
    };
    let plan = Plan::build(
        deps.config.runbook.reference(),
        cert,
        &report,
        record["planTicket"].as_str(),
        record["planChange"].as_str(),
    )?;
    Ok(plan.hash())
}

/// Applies a decision.
pub async fn handle(deps: &Deps, cb: Callback) -> Result<Decided, Error> {
    let actor = format!("approver:{}", cb.approver.trim());
    let record = deps
        .store
        .get("approvals", &cb.approval_id)
        .await?
        .ok_or_else(|| Error::InvalidInput(format!("no approval {}", cb.approval_id)))?;
    let execution = record["execution"].as_str().unwrap_or_default().to_string();
    if record["status"] != "pending" {
        return Err(Error::Conflict(format!(
            "approval {} was already used ({}); an approval is single-use",
            cb.approval_id,
            record["status"].as_str().unwrap_or("?")
        )));
    }
    let request: ApprovalRequest = serde_json::from_value(record["request"].clone())
        .map_err(|e| Error::InvalidInput(format!("approval record is unreadable: {e}")))?;
    let now = deps.clock.now();
    let decision = ApprovalDecision {
        approver: cb.approver.trim().to_string(),
        decided_at: now,
        plan_hash: request.plan_hash.clone(),
        verdict: cb.verdict,
        comment: cb.comment.clone(),
    };
    let current = current_plan_hash(deps, &record)?;
    let outcome = check_decision(&request, &decision, &current);
    let summary = json!({"approvalId": cb.approval_id, "approver": decision.approver, "verdict": cb.verdict, "decidedAt": now, "comment": cb.comment});
    // Refusals that leave the request open for a legitimate approver.
    if let Err(e @ (Error::SelfApproval { .. } | Error::NotInChangeAuthority { .. })) = &outcome {
        record_audit(
            deps,
            &execution,
            AuditKind::Approval,
            &actor,
            json!({"refused": e.name(), "reason": e.to_string(), "attempt": summary}),
        )
        .await?;
        return Err(e.clone());
    }
    let (status, result) = match outcome {
        Ok(()) => ("approved", Ok(())),
        Err(e @ Error::ApprovalRejected { .. }) => ("rejected", Err(e)),
        Err(e @ Error::ApprovalExpired { .. }) => ("expired", Err(e)),
        Err(e) => ("refused", Err(e)),
    };
    // Spend the approval exactly once.
    let mut spent = record.clone();
    spent["status"] = json!(status);
    spent["decision"] = summary.clone();
    if !deps
        .store
        .compare_and_swap("approvals", &cb.approval_id, Some(&record), &spent)
        .await?
    {
        return Err(Error::Conflict(format!(
            "approval {} was decided concurrently; an approval is single-use",
            cb.approval_id
        )));
    }
    let token = deps
        .sealer
        .open(record["sealedToken"].as_str().unwrap_or_default())?;
    match &result {
        Ok(()) => {
            let out = ApprovalOutcome {
                approval_id: cb.approval_id.clone(),
                approver: decision.approver.clone(),
                decided_at: now,
                plan_hash: request.plan_hash.clone(),
                comment: cb.comment.clone(),
            };
            let v = serde_json::to_value(&out).map_err(|e| Error::InvalidInput(e.to_string()))?;
            deps.workflow.send_success(&token, &v).await?;
        }
        Err(e) => {
            let sent = deps
                .workflow
                .send_failure(&token, e.name(), &e.to_string())
                .await;
            // A click after the approval expired may also come after the task
            // timed out: the answer is still "expired", and it is audited.
            if let (Err(x), false) = (sent, matches!(e, Error::ApprovalExpired { .. })) {
                return Err(x);
            }
        }
    }
    record_audit(
        deps,
        &execution,
        AuditKind::Approval,
        &actor,
        json!({"decision": status, "detail": summary}),
    )
    .await?;
    match result {
        Ok(()) | Err(Error::ApprovalRejected { .. }) => Ok(Decided {
            approval_id: cb.approval_id,
            status: status.to_string(),
            execution,
        }),
        Err(e) => Err(e),
    }
}
