//! The data contract between the renewal state machine and its step functions.
//!
//! Every step receives a [`StepEvent`]: the execution id, optional action or
//! mode, the task token for callback steps, and the execution's
//! [`WorkflowState`] — the accumulated outputs of earlier steps, exactly as
//! `statemachines/cert-renewal.asl.json` lays them out (`$.validation`,
//! `$.approval`, `$.renewal`, …). Executing steps call [`plan_in_force`], which
//! rebuilds the plan from the *current* inventory and runbook and refuses with
//! [`Error::PlanDrift`] when it no longer hashes to what was approved.

use crate::inventory::{Endpoint, Target};
use crate::policy::ApprovalPath;
use crate::ports::{Config, Observation, Table};
use crate::validation::{Trigger, ValidationReport};
use crate::{verify_plan_hash, Error, Plan};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a step function receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepEvent {
    /// The execution id (`$$.Execution.Id`).
    pub execution: String,
    /// For `itsm-update`: what to record (`blocked`, `approved`, `not-approved`,
    /// `mitigating`, `rolled-back`, `rollback-failed`, `failed`, `close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// For `approval-request` and `renew`: `fallback` on the fallback-certificate path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The task token of a `.waitForTaskToken` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
    /// The execution's state so far.
    pub state: WorkflowState,
}

impl StepEvent {
    /// Whether the step runs on the fallback-certificate path.
    pub fn is_fallback(&self) -> bool {
        self.mode.as_deref() == Some("fallback")
    }
}

/// The `{"Error", "Cause"}` object a Catch writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaughtError {
    /// Error name.
    #[serde(rename = "Error")]
    pub error: String,
    /// Cause.
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// The execution's accumulated state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowState {
    /// The trigger (scan finding or ticket).
    pub trigger: Trigger,
    /// The trigger's idempotency key (also the execution name).
    pub idempotency_key: String,
    /// When intake received it.
    pub received_at: DateTime<Utc>,
    /// Output of `validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationOutput>,
    /// The approval decision (normal / emergency path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalOutcome>,
    /// The approval of the fallback-certificate plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_approval: Option<ApprovalOutcome>,
    /// Output of `renew` (or of the fallback path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<RenewalOutput>,
    /// Output of `deploy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentOutput>,
    /// Output of `purge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<PurgeOutput>,
    /// Output of `verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationOutput>,
    /// Output of `rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackOutput>,
    /// Why approval did not happen (rejected, expired, timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_error: Option<CaughtError>,
    /// Why renewal failed (rate limited, issuer down) — the fallback path was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_error: Option<CaughtError>,
    /// Why deploy failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_error: Option<CaughtError>,
    /// Why the CDN purge failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_error: Option<CaughtError>,
    /// Why verification failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<CaughtError>,
    /// Why rollback failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_error: Option<CaughtError>,
    /// Why a step failed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<CaughtError>,
    /// Outputs of `itsm-update` steps, by action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Value>,
}

/// What `validate` decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationOutput {
    /// The approval path (`blocked`, `pre-approved`, `normal`, `emergency`).
    pub path: ApprovalPath,
    /// Every check with its reason.
    pub report: ValidationReport,
    /// The ITSM record this execution works on (change or incident).
    pub ticket: String,
    /// The change number (same as `ticket` for changes; for incidents, none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// The plan (absent when blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    /// The plan if renewal must switch to the fallback certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_plan: Option<Plan>,
    /// Its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_plan_hash: Option<String>,
    /// Whether a standard change already covers switching to the fallback.
    pub fallback_pre_approved: bool,
    /// Approval wait for this path, seconds (the state machine's task time-out).
    pub approval_timeout_seconds: u64,
    /// Approval wait for the fallback plan (emergency), seconds.
    pub fallback_approval_timeout_seconds: u64,
    /// The certificate's expiry before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_before: Option<DateTime<Utc>>,
    /// The fingerprint served before the change, if observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_before: Option<String>,
}

/// An approval decision as the callback reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalOutcome {
    /// The approval id.
    pub approval_id: String,
    /// Who approved.
    pub approver: String,
    /// When.
    pub decided_at: DateTime<Utc>,
    /// The plan hash approved.
    pub plan_hash: String,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A renewed (or fallback) certificate, by reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalOutput {
    /// Keystore reference of the bundle (never the key).
    pub bundle_ref: String,
    /// SHA-256 fingerprint of the leaf, hex.
    pub fingerprint: String,
    /// Leaf notAfter.
    pub not_after: DateTime<Utc>,
    /// Leaf serial, hex.
    pub serial: String,
    /// `internal-pki`, `acme`, `fallback`.
    pub source: String,
    /// The plan hash it was executed under.
    pub plan_hash: String,
}

/// One target's deployment record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetDeployment {
    /// The target.
    pub target: Target,
    /// What it served before (last-known-good), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_good: Option<String>,
    /// Whether the new bundle was installed and reloaded.
    pub deployed: bool,
}

/// What `deploy` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentOutput {
    /// The bundle deployed.
    pub bundle_ref: String,
    /// Per target.
    pub targets: Vec<TargetDeployment>,
}

/// What `purge` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeOutput {
    /// Invalidation id, or `none` when the certificate object has no CDN.
    pub invalidation_id: String,
}

/// What `verify` observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationOutput {
    /// Every endpoint and address probed.
    pub observations: Vec<Observation>,
    /// The fingerprint every one of them served.
    pub fingerprint: String,
    /// The expiry they served.
    pub not_after: DateTime<Utc>,
    /// Whether every address served the new leaf. `false` while propagation time remains:
    /// the state machine waits `wait_seconds` and verifies again (the policy's `[verify]`).
    #[serde(default = "served_by_default")]
    pub served: bool,
    /// Which verification this was (1-based).
    #[serde(default)]
    pub attempt: u32,
    /// The wait before the next verification, seconds (when not yet served).
    #[serde(default)]
    pub wait_seconds: u64,
}

fn served_by_default() -> bool {
    true
}

/// What `rollback` restored and saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackOutput {
    /// Targets restored to their last-known-good bundle.
    pub restored: Vec<TargetDeployment>,
    /// What the endpoints serve after rollback.
    pub observations: Vec<Observation>,
}

impl WorkflowState {
    /// The validation output, or an error naming the missing step.
    pub fn validation(&self) -> Result<&ValidationOutput, Error> {
        self.validation.as_ref().ok_or_else(|| {
            Error::InvalidInput("the execution state has no validation output yet".into())
        })
    }

    /// Whether the execution switched to the fallback certificate.
    pub fn on_fallback_path(&self) -> bool {
        self.renew_error.is_some()
    }

    /// The endpoints the plan verifies.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.validation
            .as_ref()
            .and_then(|v| v.plan.as_ref())
            .map(|p| p.endpoints.clone())
            .unwrap_or_default()
    }
}

/// The plan this execution may execute now, and the hash that authorised it.
///
/// Rebuilds the plan from the current inventory and runbook (so an inventory
/// or runbook edited after approval is caught), checks that the execution's
/// stored plan is unchanged, and that both hash to the approved hash: the
/// approver's decision for normal and emergency paths, the validated hash for
/// pre-approved standard changes. Any mismatch is [`Error::PlanDrift`].
pub fn plan_in_force(
    config: &Config,
    state: &WorkflowState,
    fallback: bool,
) -> Result<(Plan, String), Error> {
    let v = state.validation()?;
    let (stored, stored_hash, approval, pre_approved) = if fallback {
        (
            v.fallback_plan.as_ref(),
            v.fallback_plan_hash.as_ref(),
            state.fallback_approval.as_ref(),
            v.fallback_pre_approved,
        )
    } else {
        (
            v.plan.as_ref(),
            v.plan_hash.as_ref(),
            state.approval.as_ref(),
            v.path == ApprovalPath::PreApproved,
        )
    };
    let (Some(stored), Some(stored_hash)) = (stored, stored_hash) else {
        return Err(Error::InvalidInput(
            "the execution state holds no plan for this path".into(),
        ));
    };
    let approved_hash = match approval {
        Some(a) => a.plan_hash.clone(),
        None if pre_approved => stored_hash.clone(),
        None => {
            return Err(Error::InvalidInput(
                "the plan was never approved; refusing to execute it".into(),
            ))
        }
    };
    verify_plan_hash(stored, &approved_hash)?;
    let cert_id = v.report.cert_id.as_deref().ok_or_else(|| {
        Error::InvalidInput("the validation report names no certificate object".into())
    })?;
    let cert = config
        .inventory
        .get(cert_id)
        .ok_or_else(|| Error::PlanDrift {
            expected: approved_hash.clone(),
            actual: format!("certificate object {cert_id} is no longer in the inventory"),
        })?;
    let report = report_for(&v.report, fallback_path(config, cert, fallback));
    let rebuilt = Plan::build(
        config.runbook.reference(),
        cert,
        &report,
        v.ticket_for_plan(),
        v.change.as_deref(),
    )?
    .with_connections(&config.inventory);
    verify_plan_hash(&rebuilt, &approved_hash)?;
    Ok((rebuilt, approved_hash))
}

impl ValidationOutput {
    /// The ticket number the plan carries (the triggering ticket for ticket triggers).
    pub fn ticket_for_plan(&self) -> Option<&str> {
        self.plan.as_ref().and_then(|p| p.ticket.as_deref())
    }
}

/// The report a plan is built from on a path: the validated report, or, for
/// the fallback path, the same report switched to the fallback certificate.
pub fn report_for(report: &ValidationReport, path: Option<ApprovalPath>) -> ValidationReport {
    match path {
        None => report.clone(),
        Some(p) => {
            let mut r = report.clone();
            r.use_fallback = true;
            r.approval_path = p;
            r
        }
    }
}

/// The approval path of the fallback plan (`None` when not on the fallback path):
/// pre-approved when a standard change covers the fallback, else emergency.
pub fn fallback_path(
    config: &Config,
    cert: &crate::CertObject,
    fallback: bool,
) -> Option<ApprovalPath> {
    if !fallback {
        return None;
    }
    Some(if config.policy.standard_change_for(cert, true).is_some() {
        ApprovalPath::PreApproved
    } else {
        ApprovalPath::Emergency
    })
}

/// The Store record of a policy pre-approval (a standard change): written by
/// `validate` from the policy it trusts, so the executing steps check every
/// path the same way, whether a person or a standard change approved it.
pub fn pre_approval_record(
    execution: &str,
    cert_id: &str,
    plan_hash: &str,
    standard_change: &str,
) -> Value {
    serde_json::json!({
        "execution": execution,
        "status": "approved",
        "preApproved": true,
        "standardChange": standard_change,
        "request": {"certId": cert_id, "planHash": plan_hash},
        "decision": {"approver": format!("policy:{standard_change}"), "verdict": "approve"},
    })
}

/// Defence in depth for every executing step (renew, deploy, the fallback
/// path): the Store must hold an approval of `plan_hash` for `execution`,
/// granted by an authorised approver other than the requester (or recorded as a
/// policy pre-approval by `validate`), and it must be spent by this execution
/// (marked on first use with a conditional write; a retry of the same execution
/// passes, any other is refused). The execution's state (task outputs) is not
/// trusted: a forged `SendTaskSuccess` output alone moves nothing.
pub async fn require_approval(
    deps: &crate::ports::Deps,
    execution: &str,
    plan_hash: &str,
) -> Result<(), Error> {
    let id = crate::approval_id(execution, plan_hash);
    let refuse = |why: String| Err(Error::ApprovalMissing(format!("approval {id}: {why}")));
    for _ in 0..5 {
        let Some(record) = deps.store.get(Table::Approvals, &id).await? else {
            return refuse(format!(
                "none recorded for plan {plan_hash} in this execution; refusing to execute"
            ));
        };
        if record["execution"].as_str() != Some(execution) {
            return refuse("belongs to another execution".into());
        }
        if record["status"] != "approved" {
            return refuse(format!(
                "is {}, not approved",
                record["status"].as_str().unwrap_or("unreadable")
            ));
        }
        let approver = record["decision"]["approver"].as_str().unwrap_or_default();
        if record["preApproved"] == true {
            let Some(std_change) = record["standardChange"].as_str() else {
                return refuse("pre-approval names no standard change".into());
            };
            if record["request"]["planHash"].as_str() != Some(plan_hash) {
                return refuse("pre-approval is for another plan".into());
            }
            let cert_id = record["request"]["certId"].as_str().unwrap_or_default();
            let cert = deps.config.inventory.get(cert_id);
            let covered = cert.is_some_and(|c| {
                [false, true].iter().any(|fb| {
                    deps.config
                        .policy
                        .standard_change_for(c, *fb)
                        .is_some_and(|r| r.name == std_change)
                })
            });
            if !covered {
                return refuse(format!(
                    "standard change {std_change} no longer covers {cert_id}"
                ));
            }
        } else {
            let request: crate::ApprovalRequest = serde_json::from_value(record["request"].clone())
                .map_err(|e| Error::ApprovalMissing(format!("approval {id} is unreadable: {e}")))?;
            if !request.plan_hash.eq_ignore_ascii_case(plan_hash) {
                return refuse("approves another plan".into());
            }
            if record["decision"]["verdict"] != "approve" {
                return refuse("was not an approval".into());
            }
            let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
            if approver.trim().is_empty() || same(approver, &request.requested_by) {
                return refuse(format!("granted by the requester ({approver})"));
            }
            if !request.approvers.iter().any(|a| same(a, approver)) {
                return refuse(format!("{approver} is not an authorised approver"));
            }
        }
        match record["spentBy"].as_str() {
            Some(e) if e == execution => return Ok(()),
            Some(other) => return refuse(format!("already spent by {other}")),
            None => {
                let mut spent = record.clone();
                spent["spentBy"] = Value::String(execution.to_string());
                if deps
                    .store
                    .compare_and_swap(Table::Approvals, &id, Some(&record), &spent)
                    .await?
                {
                    return Ok(());
                }
            }
        }
    }
    Err(Error::Transient(format!(
        "approval {id} changed concurrently while being spent"
    )))
}

/// Appends an audit record for `execution` through the store port, stamped
/// with the clock and the running runbook's version. Anything that looks like a
/// secret is replaced by `[REDACTED]` first (see [`crate::redact`]).
pub async fn record_audit(
    deps: &crate::ports::Deps,
    execution: &str,
    kind: crate::AuditKind,
    actor: &str,
    summary: Value,
) -> Result<crate::AuditRecord, Error> {
    // Secret-looking text (a token pasted into a comment, a key in a response) is
    // redacted on the way in, so recording never fails on content and a refusal
    // always leaves its trace.
    let actor = if crate::audit::find_secret(actor).is_some() {
        crate::audit::REDACTED.to_string()
    } else {
        actor.to_string()
    };
    let entry = crate::AuditEntry {
        at: deps.clock.now(),
        kind,
        actor,
        summary: crate::redact(&summary),
        runbook_version: deps.config.runbook.reference().version,
    };
    deps.store.append_audit(execution, entry).await
}

/// What a certificate chain's leaf says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeafFacts {
    /// SHA-256 of the leaf DER, lowercase hex.
    pub fingerprint: String,
    /// notAfter.
    pub not_after: DateTime<Utc>,
    /// Serial, lowercase hex.
    pub serial: String,
    /// Subject.
    pub subject: String,
}

/// Parses the first certificate of a PEM chain.
pub fn leaf_facts(chain_pem: &str) -> Result<LeafFacts, Error> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| Error::InvalidInput(format!("certificate chain is not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| Error::InvalidInput(format!("leaf certificate does not parse: {e}")))?;
    let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| Error::InvalidInput("leaf notAfter is out of range".into()))?;
    Ok(LeafFacts {
        fingerprint: crate::canonical::sha256_hex(&pem.contents),
        not_after,
        serial: cert.raw_serial_as_string().replace(':', "").to_lowercase(),
        subject: cert.subject().to_string(),
    })
}

/// The store key of a target's last-known-good snapshot within an execution
/// (written by `deploy`, read by `rollback`).
pub fn snapshot_key(execution: &str, target_id: &str) -> String {
    format!("{execution}#{target_id}")
}

/// Probes every endpoint from outside, trusting the issuer's anchors as well
/// as the default roots. An endpoint that answers on no address is a
/// [`Error::VerificationFailed`].
pub async fn observe_endpoints(
    deps: &crate::ports::Deps,
    endpoints: &[Endpoint],
) -> Result<Vec<Observation>, Error> {
    let roots = deps.issuer.trust_anchors_pem().await?;
    let mut all = Vec::new();
    for ep in endpoints {
        let obs = deps.prober.probe(ep, roots.as_deref()).await?;
        if obs.is_empty() {
            return Err(Error::VerificationFailed(format!(
                "{}:{} answered on no address",
                ep.host, ep.port
            )));
        }
        all.extend(obs);
    }
    Ok(all)
}
