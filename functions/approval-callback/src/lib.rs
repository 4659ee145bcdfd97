//! `approval-callback`: an approver's decision, from the Teams/Slack card
//! callback or the local `certops approve|reject`. Enforces separation of
//! duties (requester ≠ approver, approver in the change authority or ECAB),
//! the approval's expiry and its binding to the current plan hash, and spends
//! the approval exactly once (conditional write) before completing the
//! workflow's waiting task.
//!
//! Over HTTP ([`handle_http`], used by the Lambda and by `certops serve`) the
//! callback must be signed with the approval-callback secret (separate from the
//! ServiceNow webhook's) over `"{timestamp}.{approvalId}.{body}"`; the approval
//! id in the path (or the body) is what is signed, and a body naming another
//! approval is refused.
//!
//! Deciding and delivering are kept apart: the spent record carries
//! `delivery = "pending"` and what to send, and only a delivered decision is
//! `"delivered"`. If completing the task fails for a reason that may pass
//! (throttling, Step Functions unreachable: `Transient`, HTTP 503), the same
//! approver's retry re-sends the recorded decision instead of being told the
//! approval was used; if the task is gone (`TaskTimedOut`, `InvalidToken`: a
//! `Conflict`, HTTP 409) the delivery is `"ended"`. [`handle_http`] answers
//! with 200/400/401/403/409/503, never a Lambda error (a 500).

use certops_core::ports::{Deps, Table};
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
    )?
    .with_connections(&deps.config.inventory);
    Ok(plan.hash())
}

/// Sets the approval record's `delivery` to `state`. The record may have been touched
/// since it was spent (a chat adapter notes the card it updated), so the current record
/// is read and swapped, a few times if writers race.
async fn mark_delivery(deps: &Deps, id: &str, state: &str) -> Result<(), Error> {
    for _ in 0..5 {
        let Some(current) = deps.store.get(Table::Approvals, id).await? else {
            return Err(Error::Conflict(format!(
                "approval {id} vanished while delivering"
            )));
        };
        if current["delivery"] == json!(state) {
            return Ok(());
        }
        let mut next = current.clone();
        next["delivery"] = json!(state);
        if deps
            .store
            .compare_and_swap(Table::Approvals, id, Some(&current), &next)
            .await?
        {
            return Ok(());
        }
    }
    Err(Error::Transient(format!(
        "approval {id}: could not record its delivery as {state}; writers kept racing"
    )))
}

/// Completes the waiting task with the decision recorded in `spent`, then marks the
/// delivery `delivered`; a task that no longer waits marks it `ended` (a `Conflict`); any
/// other failure leaves it `pending` for the approver's retry.
async fn deliver(deps: &Deps, id: &str, spent: &Value, actor: &str) -> Result<(), Error> {
    let token = deps
        .sealer
        .open(spent["sealedToken"].as_str().unwrap_or_default())?;
    let sent = if spent["status"] == "approved" {
        deps.workflow.send_success(&token, &spent["outcome"]).await
    } else {
        deps.workflow
            .send_failure(
                &token,
                spent["failure"]["error"]
                    .as_str()
                    .unwrap_or("ApprovalRejected"),
                spent["failure"]["cause"].as_str().unwrap_or_default(),
            )
            .await
    };
    match sent {
        Ok(()) => {
            mark_delivery(deps, id, "delivered").await?;
            Ok(())
        }
        Err(Error::Conflict(why)) => {
            mark_delivery(deps, id, "ended").await?;
            record_audit(
                deps,
                spent["execution"].as_str().unwrap_or_default(),
                AuditKind::Approval,
                actor,
                json!({"approvalId": id, "delivery": "ended", "reason": why}),
            )
            .await?;
            Err(Error::Conflict(format!(
                "approval {id}: the waiting task ended before the decision reached it ({why})"
            )))
        }
        Err(e) => Err(e),
    }
}

/// An HTTP answer: status code and JSON body.
pub type HttpAnswer = (u16, Value);

/// The HTTP status a decision's outcome is answered with ([`Error::http_status`]): 503
/// for what a retry may fix (the decision is then re-sent, see [`handle`]).
pub fn http_status(result: &Result<Decided, Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(e) => e.http_status(),
    }
}

/// Handles a callback delivered through API Gateway (HTTP API): the body as sent (base64
/// when API Gateway says so; one that does not decode is a 400), the approval id from the
/// `{id}` path parameter, the timestamp and signature headers, then [`handle_http`]. The
/// answer is always an HTTP answer (JSON), never a Lambda error that API Gateway turns
/// into a 500.
pub async fn handle_api_gateway(
    deps: &Deps,
    secret: &[u8],
    req: &aws_lambda_events::apigw::ApiGatewayV2httpRequest,
) -> aws_lambda_events::apigw::ApiGatewayV2httpResponse {
    use base64::Engine as _;
    let raw = match (&req.body, req.is_base64_encoded) {
        (Some(b), true) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
        (Some(b), false) => Some(b.clone().into_bytes()),
        (None, _) => Some(Vec::new()),
    };
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let (status, body) = match raw {
        Some(raw) => {
            handle_http(
                deps,
                secret,
                req.path_parameters.get("id").map(String::as_str),
                header(certops_core::signature::TIMESTAMP_HEADER),
                header(certops_core::signature::HEADER),
                &raw,
            )
            .await
        }
        None => (
            400,
            json!({"error": "InvalidInput", "message": "body is not base64"}),
        ),
    };
    let mut out = aws_lambda_events::apigw::ApiGatewayV2httpResponse {
        status_code: i64::from(status),
        body: Some(aws_lambda_events::encodings::Body::Text(body.to_string())),
        ..Default::default()
    };
    if let Ok(v) = "application/json".parse() {
        out.headers.insert("content-type", v);
    }
    out
}

/// Handles a signed callback as it arrives over HTTP. `path_id` is the approval
/// id from the URL (`/approvals/{id}`), `None` where the route carries it only in
/// the body (`/approvals/teams`); `timestamp` and `signature` are the
/// `x-certops-timestamp` and `x-certops-signature` header values; `body` the exact bytes.
pub async fn handle_http(
    deps: &Deps,
    secret: &[u8],
    path_id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> HttpAnswer {
    let refuse = |status: u16, error: &str, message: String| {
        (status, json!({"error": error, "message": message}))
    };
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let body_id = parsed
        .as_ref()
        .and_then(|v| v.get("approvalId"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = match (path_id, body_id.as_deref()) {
        (Some(p), Some(b)) if p != b => {
            return refuse(
                400,
                "InvalidInput",
                format!("the path names approval {p} but the body names {b}; refusing"),
            )
        }
        (Some(p), _) => p,
        (None, Some(b)) => b,
        (None, None) => return refuse(400, "InvalidInput", "no approval id".into()),
    }
    .to_string();
    let id = id.as_str();
    let now = deps.clock.now().timestamp();
    if let Err(e) =
        certops_core::signature::verify_approval(secret, id, body, timestamp, signature, now)
    {
        return refuse(e.http_status(), e.name(), e.to_string());
    }
    let Some(v) = parsed else {
        return refuse(400, "InvalidInput", "body is not JSON".into());
    };
    let verdict = match v["verdict"].as_str() {
        Some("approve") => Verdict::Approve,
        Some("reject") => Verdict::Reject,
        _ => {
            return refuse(
                400,
                "InvalidInput",
                "verdict must be \"approve\" or \"reject\"".into(),
            )
        }
    };
    let Some(approver) = v["approver"].as_str().filter(|a| !a.trim().is_empty()) else {
        return refuse(400, "InvalidInput", "approver is required".into());
    };
    let cb = Callback {
        approval_id: id.to_string(),
        approver: approver.to_string(),
        verdict,
        comment: v["comment"].as_str().map(str::to_string),
    };
    match handle(deps, cb).await {
        Ok(d) => (200, serde_json::to_value(d).unwrap_or_default()),
        Err(e) => (
            e.http_status(),
            json!({"error": e.name(), "message": e.to_string()}),
        ),
    }
}

/// Applies a decision.
pub async fn handle(deps: &Deps, mut cb: Callback) -> Result<Decided, Error> {
    // A comment is recorded in the audit and the ticket: never a secret.
    cb.comment = cb
        .comment
        .map(|c| match certops_core::redact(&Value::String(c)) {
            Value::String(s) => s,
            _ => certops_core::audit::REDACTED.to_string(),
        });
    let actor = format!("approver:{}", cb.approver.trim());
    let record = deps
        .store
        .get(Table::Approvals, &cb.approval_id)
        .await?
        .ok_or_else(|| Error::InvalidInput(format!("no approval {}", cb.approval_id)))?;
    let execution = record["execution"].as_str().unwrap_or_default().to_string();
    if record["status"] != "pending"
        && record["delivery"] == "pending"
        && record["decision"]["approver"] == json!(cb.approver.trim())
    {
        // Decided, but the waiting task was never told: send the recorded decision again.
        deliver(deps, &cb.approval_id, &record, &actor).await?;
        return match record["status"].as_str() {
            Some(status @ ("approved" | "rejected")) => Ok(Decided {
                approval_id: cb.approval_id,
                status: status.to_string(),
                execution,
            }),
            other => Err(Error::Conflict(format!(
                "approval {} ended {}",
                cb.approval_id,
                other.unwrap_or("?")
            ))),
        };
    }
    if record["status"] != "pending" {
        let e = Error::Conflict(format!(
            "approval {} was already used ({}); an approval is single-use",
            cb.approval_id,
            record["status"].as_str().unwrap_or("?")
        ));
        record_audit(
            deps,
            &execution,
            AuditKind::Approval,
            &actor,
            json!({"refused": e.name(), "reason": e.to_string(), "attempt": {"approvalId": cb.approval_id, "approver": cb.approver, "verdict": cb.verdict, "comment": cb.comment}}),
        )
        .await?;
        return Err(e);
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
    // Everything that can fail is checked before the approval is spent.
    deps.sealer
        .open(record["sealedToken"].as_str().unwrap_or_default())?;
    // Spend the approval exactly once, with what to deliver.
    let mut spent = record.clone();
    spent["status"] = json!(status);
    spent["decision"] = summary.clone();
    spent["delivery"] = json!("pending");
    match &result {
        Ok(()) => {
            let out = ApprovalOutcome {
                approval_id: cb.approval_id.clone(),
                approver: decision.approver.clone(),
                decided_at: now,
                plan_hash: request.plan_hash.clone(),
                comment: cb.comment.clone(),
            };
            spent["outcome"] =
                serde_json::to_value(&out).map_err(|e| Error::InvalidInput(e.to_string()))?;
        }
        Err(e) => spent["failure"] = json!({"error": e.name(), "cause": e.to_string()}),
    }
    if !deps
        .store
        .compare_and_swap(Table::Approvals, &cb.approval_id, Some(&record), &spent)
        .await?
    {
        return Err(Error::Conflict(format!(
            "approval {} was decided concurrently; an approval is single-use",
            cb.approval_id
        )));
    }
    record_audit(
        deps,
        &execution,
        AuditKind::Approval,
        &actor,
        json!({"decision": status, "detail": summary}),
    )
    .await?;
    match deliver(deps, &cb.approval_id, &spent, &actor).await {
        Ok(()) => {}
        // After the task itself timed out the token is gone; the late decision is
        // still answered (ApprovalExpired) and audited above.
        Err(Error::Conflict(_)) if status == "expired" => {}
        Err(e) => return Err(e),
    }
    match result {
        Ok(()) | Err(Error::ApprovalRejected { .. }) => Ok(Decided {
            approval_id: cb.approval_id,
            status: status.to_string(),
            execution,
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "../../validate/src/test_world.rs"]
mod test_world;

#[cfg(test)]
mod tests;
