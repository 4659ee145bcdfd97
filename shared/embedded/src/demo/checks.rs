//! What every scenario checks with: a scan of the endpoint, the certificate it serves, the
//! execution's outcome and last state, approvals and ticket states, recorded as problems
//! of a [`Run`] rather than stopping at the first.

use super::ScenarioResult;
use crate::prober::TlsProber;
use crate::stack::Stack;
use certops_core::ports::{Prober, TicketState};
use certops_core::workflow::WorkflowState;
use certops_core::{Endpoint, Error, ScanFinding, Trigger, Verdict};
use chrono::{DateTime, Utc};
use std::time::Duration;

pub(super) struct Run {
    pub(super) r: ScenarioResult,
    pub(super) started: std::time::Instant,
}

impl Run {
    pub(super) fn new(name: &str, expected: &str) -> Run {
        Run {
            r: ScenarioResult {
                name: name.into(),
                expected: expected.into(),
                ok: false,
                problems: Vec::new(),
                execution: None,
                status: "not started".into(),
                ticket: None,
                ticket_state: None,
                path: None,
                approver: None,
                expiry_before: None,
                expiry_after: None,
                served_fingerprint: None,
                elapsed_ms: 0,
            },
            started: std::time::Instant::now(),
        }
    }

    /// Records a problem unless `got` is `want`.
    pub(super) fn expect(&mut self, what: &str, got: Option<String>, want: &str) {
        if got.as_deref() != Some(want) {
            self.r.problems.push(format!("{what} {got:?}, want {want}"));
        }
    }

    pub(super) fn check(&mut self, cond: bool, what: impl Into<String>) {
        if !cond {
            self.r.problems.push(what.into());
        }
    }

    pub(super) fn finish(mut self) -> ScenarioResult {
        self.r.elapsed_ms = self.started.elapsed().as_millis();
        self.r.ok = self.r.problems.is_empty();
        self.r
    }

    pub(super) fn fail(mut self, e: Error) -> ScenarioResult {
        self.r.problems.push(format!("{}: {e}", e.name()));
        self.finish()
    }
}

pub(super) async fn scan(
    prober: &TlsProber,
    ep: &Endpoint,
    ci: &str,
) -> Result<ScanFinding, Error> {
    let obs = prober.probe(ep, None).await?;
    let first = obs.first().ok_or_else(|| {
        Error::VerificationFailed(format!("{}:{} served nothing", ep.host, ep.port))
    })?;
    Ok(ScanFinding {
        ci: ci.into(),
        observed_expiry: first.not_after,
        observed_fingerprint: Some(first.fingerprint.clone()),
    })
}

pub(super) async fn served(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
) -> Option<(String, DateTime<Utc>)> {
    let roots = certops_core::ports::Issuer::trust_anchors_pem(stack.adapters.ca.as_ref())
        .await
        .ok()
        .flatten();
    let obs = prober.probe(ep, roots.as_deref()).await.ok()?;
    obs.first().map(|o| (o.fingerprint.clone(), o.not_after))
}

/// Collects the common facts of a finished execution into the result.
pub(super) async fn collect(
    stack: &Stack,
    run: &mut Run,
    execution: &str,
    prober: &TlsProber,
    ep: &Endpoint,
) {
    run.r.execution = Some(execution.to_string());
    if let Ok(info) = stack.engine.describe_execution(execution) {
        run.r.status = match &info.error {
            Some(e) => format!("{} ({e})", info.status.as_str()),
            None => info.status.as_str().to_string(),
        };
        let state: Option<WorkflowState> = info
            .output
            .clone()
            .and_then(|o| serde_json::from_value(o).ok())
            .or_else(|| last_state(stack, execution));
        if let Some(s) = state {
            if let Some(v) = &s.validation {
                run.r.ticket = Some(v.ticket.clone());
                run.r.path = Some(v.path.as_str().to_string());
                run.r.expiry_before = v.expiry_before;
            }
            run.r.approver = s
                .fallback_approval
                .as_ref()
                .or(s.approval.as_ref())
                .map(|a| a.approver.clone());
        }
    }
    if let Some(t) = &run.r.ticket {
        if let Ok(Some(ticket)) = stack.deps.itsm.get(t).await {
            run.r.ticket_state = Some(format!("{:?}", ticket.state));
        }
    }
    if let Some((fp, exp)) = served(stack, prober, ep).await {
        run.r.served_fingerprint = Some(fp);
        run.r.expiry_after = Some(exp);
    }
}

/// The state as of the last history event that carried it (for failed executions).
pub(super) fn last_state(stack: &Stack, execution: &str) -> Option<WorkflowState> {
    let history = stack.engine.history(execution).ok()?;
    history.iter().rev().find_map(|e| {
        let d = e.details_value()?;
        let text = d.get("output").or_else(|| d.get("input"))?.as_str()?;
        serde_json::from_str::<WorkflowState>(text)
            .ok()
            .filter(|s| s.validation.is_some())
    })
}

pub(super) async fn approve(stack: &Stack, execution: &str, who: &str) -> Result<(), Error> {
    let id = stack
        .wait_for_card(execution, Duration::from_secs(30))
        .await?;
    stack
        .decide(certops_fn_approval_callback::Callback {
            approval_id: id,
            approver: who.into(),
            verdict: Verdict::Approve,
            comment: Some("approved in demo".into()),
        })
        .await?;
    Ok(())
}

/// The daily-scan path: probe the endpoint as the scan does, start the
/// workflow from the finding, approve as `approver` once the card appears
/// (`None` for a pre-approved change) and wait for the execution to end.
pub(super) async fn scan_and_run(
    stack: &Stack,
    prober: &TlsProber,
    ep: &Endpoint,
    ci: &str,
    approver: Option<&str>,
) -> Result<String, Error> {
    let finding = scan(prober, ep, ci).await?;
    let started = stack.trigger(Trigger::Scan(finding)).await?;
    if let Some(who) = approver {
        approve(stack, &started.execution, who).await?;
    }
    stack
        .wait(&started.execution, Duration::from_secs(120))
        .await?;
    Ok(started.execution)
}

pub(super) async fn ticket_state(stack: &Stack, number: Option<&String>) -> Option<TicketState> {
    stack
        .deps
        .itsm
        .get(number?)
        .await
        .ok()
        .flatten()
        .map(|t| t.state)
}

pub(super) async fn served_fingerprints(
    stack: &Stack,
    endpoints: &[Endpoint],
) -> Vec<Option<String>> {
    let prober = match TlsProber::new(Duration::from_secs(3)) {
        Ok(p) => p,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for ep in endpoints {
        out.push(served(stack, &prober, ep).await.map(|s| s.0));
    }
    out
}
