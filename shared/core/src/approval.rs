//! Approval rules: separation of duties, change authority, time-outs, binding to the plan.
//!
//! Single use is enforced by the store (a conditional write); everything decidable from the
//! request and the decision alone is decided here.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::inventory::CertObject;
use crate::plan::Plan;
use crate::policy::ApprovalPath;
use crate::policy::Policy;
use crate::Error;

/// How much longer than the approval's own expiry its waiting task lives, so
/// `ApprovalExpired` is reachable: a decision after the expiry is refused with a
/// clear answer and an audit record while the task still waits.
pub const TASK_TIMEOUT_GRACE_SECONDS: u64 = 300;

/// A request for approval of one plan, fixed when it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// The execution asking.
    pub execution: String,
    /// The certificate object the change is for.
    pub cert_id: String,
    /// The hash of the plan to approve.
    pub plan_hash: String,
    /// Normal or emergency.
    pub path: ApprovalPath,
    /// Who asked for the change; may not approve it.
    pub requested_by: String,
    /// When the request was made.
    pub requested_at: DateTime<Utc>,
    /// After this instant the request (and any approval of it) is void.
    pub expires_at: DateTime<Utc>,
    /// The identities allowed to approve, resolved when the request was made.
    pub approvers: Vec<String>,
}

/// How long before the workflow's approval task times out the approval
/// itself expires: a tenth of the time-out, at least 1 s and at most 5 min.
/// The task's time-out (the same policy time-out) starts when the task is
/// scheduled, before the request is made, so an approval that expired at
/// the time-out would never be seen expired: the task would have timed out
/// first and a late click would meet an unknown task token. With the margin a
/// late click meets `ApprovalExpired`, and is answered and audited as such.
pub fn expiry_margin(timeout: TimeDelta) -> TimeDelta {
    (timeout / 10).clamp(TimeDelta::seconds(1), TimeDelta::minutes(5))
}

impl ApprovalRequest {
    /// Builds the request for `plan` on its approval path: the approvers are the
    /// certificate's change authority (normal) or the policy's ECAB (emergency), the expiry
    /// is `now` plus the path's time-out.
    ///
    /// Fails with [`Error::InvalidInput`] for paths that need no approval (`pre-approved`,
    /// `blocked`) or a plan for another certificate object.
    pub fn new(
        execution: &str,
        plan: &Plan,
        cert: &CertObject,
        policy: &Policy,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<ApprovalRequest, Error> {
        if plan.cert_id != cert.id {
            return Err(Error::InvalidInput(format!(
                "plan is for \"{}\", not \"{}\"",
                plan.cert_id, cert.id
            )));
        }
        let path = plan.approval_path;
        let timeout = match path {
            ApprovalPath::Normal | ApprovalPath::Emergency => policy.approval_timeout(path),
            ApprovalPath::PreApproved | ApprovalPath::Blocked => None,
        }
        .ok_or_else(|| Error::InvalidInput(format!("a {path} change is not sent for approval")))?;
        Ok(ApprovalRequest {
            execution: execution.to_string(),
            cert_id: cert.id.clone(),
            plan_hash: plan.hash(),
            path,
            // The person, not the id form: a requester listed in the approver directory
            // under several ids cannot approve under another one.
            requested_by: policy.canonical_identity(requested_by),
            requested_at: now,
            expires_at: now + timeout - expiry_margin(timeout),
            approvers: policy.approvers(cert, path),
        })
    }
}

/// The approval id of an execution's plan: stable for the execution and plan hash, so a
/// retried request reuses it, and an executing step can find the approval that must
/// authorise it from facts it trusts (its execution and the plan it rebuilt) alone.
pub fn approval_id(execution: &str, plan_hash: &str) -> String {
    let digest = crate::canonical::sha256_hex(format!("{execution}\n{plan_hash}").as_bytes());
    format!("APR-{}", &digest[..12].to_uppercase())
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Approved.
    Approve,
    /// Rejected.
    Reject,
}

/// An approver's answer, as received from chat or the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    /// The authenticated identity of the approver.
    pub approver: String,
    /// When the decision was received (stamped by the receiver, not the client).
    pub decided_at: DateTime<Utc>,
    /// The plan hash the approver saw.
    pub plan_hash: String,
    /// Approve or reject.
    pub verdict: Verdict,
    /// Free-text comment; recorded, never interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Identities compare trimmed and case-insensitively: `Alice@Example.com` is `alice@example.com`.
fn same_identity(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Checks `decision` against `request` and the plan as it is now.
///
/// In order: the decision and the current plan must carry the requested plan hash
/// ([`Error::PlanDrift`]); the approver may not be the requester ([`Error::SelfApproval`]);
/// the approver must be one of the request's approvers ([`Error::NotInChangeAuthority`]);
/// the decision must arrive before the request expires ([`Error::ApprovalExpired`]); and it
/// must approve ([`Error::ApprovalRejected`]). A rejection by someone not allowed to approve
/// is refused as such, not treated as a rejection.
pub fn check_decision(
    request: &ApprovalRequest,
    decision: &ApprovalDecision,
    current_plan_hash: &str,
) -> Result<(), Error> {
    if !decision.plan_hash.eq_ignore_ascii_case(&request.plan_hash) {
        return Err(Error::PlanDrift {
            expected: request.plan_hash.clone(),
            actual: decision.plan_hash.clone(),
        });
    }
    if !current_plan_hash.eq_ignore_ascii_case(&request.plan_hash) {
        return Err(Error::PlanDrift {
            expected: request.plan_hash.clone(),
            actual: current_plan_hash.to_string(),
        });
    }
    if decision.approver.trim().is_empty() {
        return Err(Error::InvalidInput("decision has no approver".into()));
    }
    if same_identity(&decision.approver, &request.requested_by) {
        return Err(Error::SelfApproval {
            identity: decision.approver.clone(),
        });
    }
    if !request
        .approvers
        .iter()
        .any(|a| same_identity(a, &decision.approver))
    {
        return Err(Error::NotInChangeAuthority {
            approver: decision.approver.clone(),
            cert_id: request.cert_id.clone(),
        });
    }
    if decision.decided_at > request.expires_at {
        return Err(Error::ApprovalExpired {
            expired_at: request.expires_at.to_rfc3339(),
        });
    }
    if decision.decided_at < request.requested_at {
        return Err(Error::InvalidInput(
            "decision is dated before the request".into(),
        ));
    }
    match decision.verdict {
        Verdict::Approve => Ok(()),
        Verdict::Reject => Err(Error::ApprovalRejected {
            approver: decision.approver.clone(),
            comment: decision.comment.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;
    use crate::plan::tests::sample_plan;
    use chrono::{TimeDelta, TimeZone};

    const INVENTORY: &str = include_str!("../../../runbooks/inventory.toml");
    const POLICY: &str = include_str!("../../../runbooks/policy.toml");

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
    }

    fn setup(path: ApprovalPath) -> (ApprovalRequest, Plan) {
        let inventory = Inventory::from_toml_str(INVENTORY).unwrap();
        let policy = Policy::from_toml_str(POLICY).unwrap();
        let cert = inventory.get("shop-www-prod").unwrap();
        let mut plan = sample_plan();
        plan.approval_path = path;
        let request =
            ApprovalRequest::new("exec-1", &plan, cert, &policy, "dave@example.com", now())
                .unwrap();
        (request, plan)
    }

    fn decision(approver: &str, plan: &Plan, minutes_later: i64) -> ApprovalDecision {
        ApprovalDecision {
            approver: approver.into(),
            decided_at: now() + TimeDelta::minutes(minutes_later),
            plan_hash: plan.hash(),
            verdict: Verdict::Approve,
            comment: None,
        }
    }

    #[test]
    fn the_approval_expires_before_its_task_times_out() {
        for (timeout, margin) in [
            (TimeDelta::seconds(5), TimeDelta::seconds(1)),
            (TimeDelta::minutes(5), TimeDelta::seconds(30)),
            (TimeDelta::minutes(30), TimeDelta::minutes(3)),
            (TimeDelta::days(2), TimeDelta::minutes(5)),
        ] {
            assert_eq!(expiry_margin(timeout), margin);
            assert!(timeout - expiry_margin(timeout) < timeout);
        }
    }

    #[test]
    fn change_authority_member_approves_a_normal_change() {
        let (request, plan) = setup(ApprovalPath::Normal);
        // A day's time-out: the approval expires 5 minutes before the task times out.
        assert_eq!(
            request.expires_at,
            now() + TimeDelta::minutes(1440) - TimeDelta::minutes(5)
        );
        let d = decision("carol@example.com", &plan, 10);
        assert_eq!(check_decision(&request, &d, &plan.hash()), Ok(()));
    }

    #[test]
    fn self_approval_is_refused_whatever_the_case() {
        let (mut request, plan) = setup(ApprovalPath::Normal);
        // Even if the requester were in the change authority.
        request.approvers.push("dave@example.com".into());
        let d = decision("Dave@Example.com", &plan, 10);
        let err = check_decision(&request, &d, &plan.hash()).unwrap_err();
        assert_eq!(err.name(), "SelfApproval");
    }

    #[test]
    fn self_approval_under_another_id_form_is_refused() {
        let inventory = Inventory::from_toml_str(INVENTORY).unwrap();
        let text = format!(
            "{POLICY}\n[[approval.directory]]\nidentity = \"carol@example.com\"\nslack = [\"U0CAROL\"]\n"
        );
        let policy = Policy::from_toml_str(&text).unwrap();
        let cert = inventory.get("shop-www-prod").unwrap();
        let plan = sample_plan();
        // The ticket names the requester by their Slack id; the approval comes as carol.
        let request = ApprovalRequest::new("e", &plan, cert, &policy, "U0CAROL", now()).unwrap();
        assert_eq!(request.requested_by, "carol@example.com");
        let d = decision("carol@example.com", &plan, 10);
        let err = check_decision(&request, &d, &plan.hash()).unwrap_err();
        assert_eq!(err.name(), "SelfApproval");
    }

    #[test]
    fn approver_outside_the_change_authority_is_refused() {
        let (request, plan) = setup(ApprovalPath::Normal);
        let d = decision("mallory@example.com", &plan, 10);
        let err = check_decision(&request, &d, &plan.hash()).unwrap_err();
        assert_eq!(
            err,
            Error::NotInChangeAuthority {
                approver: "mallory@example.com".into(),
                cert_id: "shop-www-prod".into()
            }
        );
    }

    #[test]
    fn emergency_needs_the_ecab_not_the_change_authority() {
        let (request, plan) = setup(ApprovalPath::Emergency);
        let by_authority = decision("carol@example.com", &plan, 5);
        assert_eq!(
            check_decision(&request, &by_authority, &plan.hash())
                .unwrap_err()
                .name(),
            "NotInChangeAuthority"
        );
        let by_ecab = decision("erin@example.com", &plan, 5);
        assert_eq!(check_decision(&request, &by_ecab, &plan.hash()), Ok(()));
    }

    #[test]
    fn expired_approval_is_refused() {
        let (request, plan) = setup(ApprovalPath::Emergency);
        let late = decision("erin@example.com", &plan, 31);
        let err = check_decision(&request, &late, &plan.hash()).unwrap_err();
        assert_eq!(err.name(), "ApprovalExpired");
        // 30 minutes' time-out, expiring 3 minutes before the task would time out.
        assert!(err.to_string().contains("2026-12-01T09:27:00"), "{err}");
    }

    #[test]
    fn decision_is_bound_to_the_plan_hash() {
        let (request, plan) = setup(ApprovalPath::Normal);
        let mut stale = decision("carol@example.com", &plan, 10);
        stale.plan_hash = "0".repeat(64);
        assert_eq!(
            check_decision(&request, &stale, &plan.hash())
                .unwrap_err()
                .name(),
            "PlanDrift"
        );
        let d = decision("carol@example.com", &plan, 10);
        let mut drifted = plan.clone();
        drifted.sans.insert("evil.example.com".into());
        assert_eq!(
            check_decision(&request, &d, &drifted.hash())
                .unwrap_err()
                .name(),
            "PlanDrift"
        );
    }

    #[test]
    fn rejection_is_reported_with_the_comment() {
        let (request, plan) = setup(ApprovalPath::Normal);
        let mut d = decision("carol@example.com", &plan, 10);
        d.verdict = Verdict::Reject;
        d.comment = Some("wait for the release".into());
        assert_eq!(
            check_decision(&request, &d, &plan.hash()),
            Err(Error::ApprovalRejected {
                approver: "carol@example.com".into(),
                comment: Some("wait for the release".into())
            })
        );
    }

    #[test]
    fn pre_approved_and_blocked_plans_are_not_sent_for_approval() {
        let inventory = Inventory::from_toml_str(INVENTORY).unwrap();
        let policy = Policy::from_toml_str(POLICY).unwrap();
        let cert = inventory.get("shop-www-prod").unwrap();
        for path in [ApprovalPath::PreApproved, ApprovalPath::Blocked] {
            let mut plan = sample_plan();
            plan.approval_path = path;
            let err = ApprovalRequest::new("e", &plan, cert, &policy, "dave@example.com", now())
                .unwrap_err();
            assert_eq!(err.name(), "InvalidInput");
        }
    }
}
