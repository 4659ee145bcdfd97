//! What each console page shows, as plain serializable data read from the
//! stack (engine, Store, ticket book, chat inbox, inventory). The HTML pages
//! render these, and `Accept: application/json` returns them unchanged, so
//! scripts never scrape HTML. Everything leaving here is redacted.

use super::graph::{self, PathTaken};
use super::redact::redacted;
use super::scan_log::{self, ScanRun};
use certops_asl::{ExecutionInfo, ExecutionStatus, HistoryEvent};
use certops_core::ports::{Itsm, Table, Ticket};
use certops_core::workflow::WorkflowState;
use certops_core::{AuditRecord, Error};
use certops_embedded::Stack;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// Executions per page.
pub const PER_PAGE: usize = 25;

/// One row of the Executions page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRow {
    /// Execution name (the trigger's idempotency key).
    pub name: String,
    /// Execution ARN.
    pub arn: String,
    /// RUNNING, SUCCEEDED, FAILED, …
    pub status: String,
    /// Start.
    pub started: DateTime<Utc>,
    /// Stop, if stopped.
    pub stopped: Option<DateTime<Utc>>,
    /// Duration so far, ms.
    pub duration_ms: i64,
    /// The ITSM record.
    pub ticket: Option<String>,
    /// The certificate object (or the CI when it resolved to none).
    pub certificate: Option<String>,
    /// pre-approved / normal / emergency / blocked, plus fallback when the fallback certificate was used.
    pub path: Option<String>,
    /// Outcome in one line.
    pub outcome: String,
    /// Whether it waits for an approval now.
    pub waiting_for_approval: bool,
}

/// The Executions page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionList {
    /// Rows of this page, newest first.
    pub executions: Vec<ExecutionRow>,
    /// Matching executions in all pages.
    pub total: usize,
    /// This page, from 1.
    pub page: usize,
    /// Number of pages.
    pub pages: usize,
    /// The status filter applied.
    pub status: Option<String>,
    /// The search applied.
    pub q: Option<String>,
}

fn ms_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The workflow state as last carried (output when finished, else the newest event that carried it).
pub fn workflow_state(info: &ExecutionInfo, events: &[HistoryEvent]) -> Option<WorkflowState> {
    let parse = |v: &Value| -> Option<WorkflowState> {
        let v = match v {
            Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
            other => other.clone(),
        };
        serde_json::from_value::<WorkflowState>(v).ok()
    };
    if let Some(s) = info.output.as_ref().and_then(parse) {
        return Some(s);
    }
    events
        .iter()
        .rev()
        .find_map(|e| {
            let d = e.details_value()?;
            d.get("output")
                .or_else(|| d.get("input"))
                .and_then(parse)
                .filter(|s| s.validation.is_some())
        })
        .or_else(|| parse(&info.meta.input))
}

/// Summarises an execution for the list.
pub fn row(stack: &Stack, info: &ExecutionInfo, pending: &[String]) -> ExecutionRow {
    let events = stack
        .engine
        .history(&info.meta.execution_arn)
        .unwrap_or_default();
    let state = workflow_state(info, &events);
    let now = Utc::now().timestamp_millis();
    let stop = info.stop_ms;
    let (mut ticket, mut certificate, mut path) = (None, None, None);
    if let Some(s) = &state {
        ticket = s.trigger.ticket_number().map(str::to_string);
        certificate = Some(s.trigger.ci().to_string());
        if let Some(v) = &s.validation {
            ticket = Some(v.ticket.clone());
            certificate = v
                .plan
                .as_ref()
                .map(|p| p.cert_id.clone())
                .or(v.report.cert_id.clone())
                .or(certificate);
            let fallback = s.renewal.as_ref().is_some_and(|r| r.source == "fallback");
            path = Some(format!(
                "{}{}",
                v.path.as_str(),
                if fallback { " + fallback" } else { "" }
            ));
        }
    }
    let waiting = pending.iter().any(|e| e == &info.meta.execution_arn);
    let outcome = match (&info.status, &info.error) {
        (ExecutionStatus::Running, _) if waiting => "waiting for approval".to_string(),
        (_, Some(e)) => format!("{} ({e})", info.status.as_str()),
        (s, None) => s.as_str().to_string(),
    };
    ExecutionRow {
        name: info.meta.name.clone(),
        arn: info.meta.execution_arn.clone(),
        status: info.status.as_str().to_string(),
        started: ms_time(info.meta.start_ms),
        stopped: stop.map(ms_time),
        duration_ms: stop.unwrap_or(now) - info.meta.start_ms,
        ticket,
        certificate,
        path,
        outcome,
        waiting_for_approval: waiting,
    }
}

/// Executions waiting for an approval now (pending cards' executions).
async fn waiting_executions(stack: &Stack) -> Vec<String> {
    let mut out = Vec::new();
    for card in stack.adapters.chat.pending_cards().unwrap_or_default() {
        if let Ok(Some(r)) = stack
            .deps
            .store
            .get(Table::Approvals, &card.approval_id)
            .await
        {
            if r["status"] == "pending" {
                if let Some(e) = r["execution"].as_str() {
                    out.push(e.to_string());
                }
            }
        }
    }
    out
}

/// The Executions page: filter by status, search by ticket, certificate or name; newest first.
pub async fn executions(
    stack: &Stack,
    status: Option<&str>,
    q: Option<&str>,
    page: usize,
) -> ExecutionList {
    let pending = waiting_executions(stack).await;
    let mut all = stack.engine.list_executions(Some(&stack.state_machine_arn));
    all.sort_by(|a, b| {
        b.meta
            .start_ms
            .cmp(&a.meta.start_ms)
            .then(b.meta.name.cmp(&a.meta.name))
    });
    let status = status.map(str::trim).filter(|s| !s.is_empty());
    let q = q.map(str::trim).filter(|s| !s.is_empty());
    let needle = q.map(str::to_lowercase);
    let rows: Vec<ExecutionRow> = all
        .iter()
        .filter(|i| status.is_none_or(|s| i.status.as_str().eq_ignore_ascii_case(s)))
        .map(|i| row(stack, i, &pending))
        .filter(|r| {
            needle.as_ref().is_none_or(|n| {
                [Some(&r.name), r.ticket.as_ref(), r.certificate.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|f| f.to_lowercase().contains(n))
            })
        })
        .collect();
    let total = rows.len();
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = page.clamp(1, pages);
    ExecutionList {
        executions: rows
            .into_iter()
            .skip((page - 1) * PER_PAGE)
            .take(PER_PAGE)
            .collect(),
        total,
        page,
        pages,
        status: status.map(str::to_string),
        q: q.map(str::to_string),
    }
}

/// One history event as `GetExecutionHistory` returns it, plus the state it belongs to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// The state the event happened in (for the graph's cross-reference).
    pub state: Option<String>,
    /// The event, AWS's JSON shape, redacted.
    pub event: Value,
}

/// The audit chain of an execution and its verification.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    /// Records in order.
    pub records: Vec<AuditRecord>,
    /// Whether the hash chain verifies.
    pub verified: bool,
    /// The break, if any.
    pub problem: Option<String>,
}

/// The One-execution page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDetail {
    /// The summary row.
    pub execution: ExecutionRow,
    /// Error and cause when failed.
    pub error: Option<String>,
    /// Cause.
    pub cause: Option<String>,
    /// The path through the graph.
    pub path: PathTaken,
    /// History events, oldest first.
    pub events: Vec<EventView>,
    /// The audit chain.
    pub audit: AuditView,
    /// The ITSM record.
    pub ticket: Option<Ticket>,
    /// Where the evidence bundle downloads from.
    pub evidence_url: String,
}

/// Finds an execution by name (or ARN).
pub fn find(stack: &Stack, key: &str) -> Option<ExecutionInfo> {
    stack
        .engine
        .list_executions(Some(&stack.state_machine_arn))
        .into_iter()
        .find(|i| i.meta.name == key || i.meta.execution_arn == key)
}

/// The audit chain (records are keyed by execution ARN; by name as a fallback), verified
/// against its anchored head.
pub async fn audit(stack: &Stack, info: &ExecutionInfo) -> Result<AuditView, Error> {
    let mut key = info.meta.execution_arn.clone();
    let mut records = stack.deps.store.audit(&key).await?;
    if records.is_empty() {
        let by_name = stack.deps.store.audit(&info.meta.name).await?;
        if !by_name.is_empty() {
            key = info.meta.name.clone();
            records = by_name;
        }
    }
    // Checked against the anchored head, with the data directory's audit key.
    let head = stack.deps.store.audit_head(&key).await?;
    let check = certops_adapters::audit_key(&stack.adapters.data_dir)
        .and_then(|k| certops_core::verify_anchored(&key, &records, head.as_ref(), &k));
    let records = records
        .into_iter()
        .map(|mut r| {
            r.summary = redacted(r.summary);
            r
        })
        .collect();
    Ok(AuditView {
        records,
        verified: check.is_ok(),
        problem: check.err().map(|e| e.to_string()),
    })
}

/// The One-execution page's data.
pub async fn execution(
    stack: &Stack,
    info: &ExecutionInfo,
    evidence_url: String,
) -> Result<ExecutionDetail, Error> {
    let events = stack
        .engine
        .history(&info.meta.execution_arn)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let pending = waiting_executions(stack).await;
    let summary = row(stack, info, &pending);
    let running = info.status == ExecutionStatus::Running;
    let path = graph::path_taken(&events, running, Utc::now().timestamp_millis());
    let mut current: Option<String> = None;
    let views = events
        .iter()
        .map(|e| {
            if e.kind.as_str().ends_with("StateEntered") {
                current = e
                    .details_value()
                    .and_then(|d| d["name"].as_str().map(str::to_string));
            }
            EventView {
                state: current.clone(),
                event: redacted(e.to_aws_json()),
            }
        })
        .collect();
    let ticket = match &summary.ticket {
        Some(t) => stack.adapters.tickets.get(t).await?,
        None => None,
    };
    Ok(ExecutionDetail {
        audit: audit(stack, info).await?,
        error: info.error.clone(),
        cause: info.cause.clone(),
        execution: summary,
        path,
        events: views,
        ticket,
        evidence_url,
    })
}

/// The evidence bundle: the execution, its final state, the ticket with its
/// evidence attachments, the audit chain with its verification.
pub async fn evidence(stack: &Stack, info: &ExecutionInfo) -> Result<Value, Error> {
    let events = stack
        .engine
        .history(&info.meta.execution_arn)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let state = workflow_state(info, &events);
    let pending = waiting_executions(stack).await;
    let summary = row(stack, info, &pending);
    let ticket = match &summary.ticket {
        Some(t) => stack.adapters.tickets.get(t).await?,
        None => None,
    };
    let audit = audit(stack, info).await?;
    Ok(redacted(serde_json::json!({
        "kind": "certops-evidence-bundle",
        "generatedAt": Utc::now(),
        "execution": summary,
        "error": info.error,
        "cause": info.cause,
        "state": state,
        "ticket": ticket,
        "audit": audit,
        "history": events.iter().map(|e| e.to_aws_json()).collect::<Vec<_>>(),
    })))
}

/// What is served now at one endpoint (latest scan).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointProbe {
    /// `host:port` and SNI.
    pub endpoint: String,
    /// When probed.
    pub observed_at: Option<DateTime<Utc>>,
    /// Classification of each answering address (`ok`, `expired`, …).
    pub status: Option<String>,
    /// Served leaf fingerprint.
    pub fingerprint: Option<String>,
    /// Served leaf notAfter.
    pub not_after: Option<DateTime<Utc>>,
    /// Whether the chain verified.
    pub chain_valid: Option<bool>,
    /// Why it could not be probed.
    pub error: Option<String>,
}

/// One row of the Certificates page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRow {
    /// Inventory id.
    pub id: String,
    /// CI.
    pub ci: String,
    /// Common name.
    pub common_name: String,
    /// SANs.
    pub sans: Vec<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Environment.
    pub environment: String,
    /// Issuer name and method.
    pub issuer: String,
    /// Target ids.
    pub targets: Vec<String>,
    /// Earliest served expiry at the latest scan.
    pub expires_at: Option<DateTime<Utc>>,
    /// Days to that expiry (negative when expired).
    pub days_to_expiry: Option<i64>,
    /// When the latest scan probed it.
    pub scanned_at: Option<DateTime<Utc>>,
    /// The expiry the latest execution verified as served, when no scan saw one.
    pub last_verified_expiry: Option<DateTime<Utc>>,
    /// Each endpoint's last probe.
    pub endpoints: Vec<EndpointProbe>,
}

/// The Certificates page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificates {
    /// When the page was computed.
    pub now: DateTime<Utc>,
    /// One row per inventory object.
    pub certificates: Vec<CertificateRow>,
}

/// The Certificates page's data: inventory, latest observations, last verified expiry.
pub async fn certificates(stack: &Stack) -> Result<Certificates, Error> {
    let now = Utc::now();
    // The newest verified expiry per certificate, from finished executions.
    let mut verified: std::collections::HashMap<String, (i64, DateTime<Utc>)> =
        std::collections::HashMap::new();
    for info in stack.engine.list_executions(Some(&stack.state_machine_arn)) {
        let Some(out) = info.output.as_ref() else {
            continue;
        };
        let Ok(s) = serde_json::from_value::<WorkflowState>(out.clone()) else {
            continue;
        };
        let (Some(v), Some(cert)) = (
            s.verification.as_ref(),
            s.validation.as_ref().and_then(|x| x.report.cert_id.clone()),
        ) else {
            continue;
        };
        let e = verified.entry(cert).or_insert((i64::MIN, v.not_after));
        if info.meta.start_ms > e.0 {
            *e = (info.meta.start_ms, v.not_after);
        }
    }
    let mut rows = Vec::new();
    for cert in &stack.deps.config.inventory.certificates {
        let mut endpoints = Vec::new();
        let mut expires: Option<DateTime<Utc>> = None;
        let mut scanned: Option<DateTime<Utc>> = None;
        for ep in &cert.endpoints {
            let key = certops_fn_scan::observation_key(&cert.id, ep);
            let record = stack
                .deps
                .store
                .get(Table::Observations, &key)
                .await?
                .and_then(|v| serde_json::from_value::<certops_fn_scan::ObservationRecord>(v).ok());
            let name = format!("{}:{} ({})", ep.host, ep.port, ep.sni);
            match record {
                None => endpoints.push(EndpointProbe {
                    endpoint: name,
                    observed_at: None,
                    status: None,
                    fingerprint: None,
                    not_after: None,
                    chain_valid: None,
                    error: None,
                }),
                Some(r) => {
                    scanned = scanned.max(Some(r.observed_at));
                    let first = r.observations.iter().min_by_key(|o| o.not_after);
                    if let Some(o) = first {
                        expires = Some(expires.map_or(o.not_after, |e| e.min(o.not_after)));
                    }
                    endpoints.push(EndpointProbe {
                        endpoint: name,
                        observed_at: Some(r.observed_at),
                        status: first.map(|o| o.status.clone()),
                        fingerprint: first.map(|o| o.fingerprint.clone()),
                        not_after: first.map(|o| o.not_after),
                        chain_valid: first.map(|o| o.chain_valid),
                        error: r.error.map(|e| format!("{}: {}", e.name, e.message)),
                    })
                }
            }
        }
        rows.push(CertificateRow {
            id: cert.id.clone(),
            ci: cert.ci.clone(),
            common_name: cert.common_name.clone(),
            sans: cert.sans.iter().cloned().collect(),
            owner: cert.service_owner.clone(),
            environment: cert.environment.as_str().to_string(),
            issuer: format!(
                "{} ({})",
                cert.issuer.name,
                serde_json::to_value(cert.issuer.method)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
            targets: cert.targets.iter().map(|t| t.id.clone()).collect(),
            expires_at: expires,
            days_to_expiry: expires.map(|e| (e - now).num_days()),
            scanned_at: scanned,
            last_verified_expiry: verified.get(&cert.id).map(|v| v.1),
            endpoints,
        });
    }
    Ok(Certificates {
        now,
        certificates: rows,
    })
}

/// The Scans page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scans {
    /// Recent scheduled scans, newest first.
    pub scans: Vec<ScanRun>,
}

/// The Scans page's data.
pub async fn scans(stack: &Stack) -> Result<Scans, Error> {
    Ok(Scans {
        scans: scan_log::recent(stack.deps.store.as_ref()).await?,
    })
}

/// One approval waiting for the signed-in person.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    /// The approval id.
    pub approval_id: String,
    /// The execution.
    pub execution: String,
    /// Its name (for the link).
    pub execution_name: Option<String>,
    /// Ticket.
    pub ticket: String,
    /// Path (normal / emergency) and whether it is the fallback plan.
    pub path: String,
    /// Fallback plan?
    pub fallback: bool,
    /// Certificate.
    pub cert: String,
    /// One-line summary.
    pub summary: String,
    /// Plan hash being approved.
    pub plan_hash: String,
    /// Who asked.
    pub requested_by: String,
    /// Who may approve.
    pub approvers: Vec<String>,
    /// When the request expires.
    pub expires_at: DateTime<Utc>,
    /// The plan (targets, SANs, environment, issuer path, …).
    pub plan: Option<Value>,
    /// The change window of the plan's environment, from the policy.
    pub window: Option<String>,
    /// What is served now, from the latest scan (per endpoint).
    pub served_now: Vec<EndpointProbe>,
    /// What changes: (field, now, after).
    pub changes: Vec<Change>,
}

/// One difference between what is served and what the plan does.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// What.
    pub field: String,
    /// Now.
    pub now: String,
    /// After the change.
    pub after: String,
}

/// The Approvals page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approvals {
    /// The signed-in person.
    pub user: String,
    /// What waits for them.
    pub pending: Vec<PendingApproval>,
}

/// The Approvals page's data for `user`.
pub async fn approvals(stack: &Stack, user: &str) -> Result<Approvals, Error> {
    let certs = certificates(stack).await?;
    let mut pending = Vec::new();
    for card in stack.adapters.chat.pending_cards()? {
        if !card.approvers.iter().any(|a| a.eq_ignore_ascii_case(user)) {
            continue;
        }
        let Some(record) = stack
            .deps
            .store
            .get(Table::Approvals, &card.approval_id)
            .await?
        else {
            continue;
        };
        if record["status"] != "pending" {
            continue;
        }
        let execution = record["execution"].as_str().unwrap_or_default().to_string();
        let fallback = record["fallback"].as_bool().unwrap_or(false);
        let info = find(stack, &execution);
        let state = info.as_ref().and_then(|i| {
            let events = stack
                .engine
                .history(&i.meta.execution_arn)
                .unwrap_or_default();
            workflow_state(i, &events)
        });
        let plan = state
            .as_ref()
            .and_then(|s| s.validation.as_ref())
            .and_then(|v| {
                if fallback {
                    v.fallback_plan.clone()
                } else {
                    v.plan.clone()
                }
            });
        let cert_id = record["request"]["certId"]
            .as_str()
            .or(record["request"]["cert_id"].as_str())
            .map(str::to_string)
            .or(plan.as_ref().map(|p| p.cert_id.clone()));
        let row = cert_id
            .as_ref()
            .and_then(|id| certs.certificates.iter().find(|c| &c.id == id));
        let served_now = row.map(|r| r.endpoints.clone()).unwrap_or_default();
        let window = plan.as_ref().and_then(|p| {
            stack
                .deps
                .config
                .policy
                .windows
                .get(&p.environment)
                .map(|w| {
                    format!(
                        "{} {}–{} ({})",
                        w.days
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        w.start.format("%H:%M"),
                        w.end.format("%H:%M"),
                        w.timezone
                    )
                })
        });
        let mut changes = Vec::new();
        if let (Some(p), Some(r)) = (&plan, row) {
            let served_fp = r
                .endpoints
                .iter()
                .filter_map(|e| e.fingerprint.clone())
                .next();
            changes.push(Change {
                field: "served certificate".into(),
                now: served_fp
                    .map(|f| format!("leaf {}…", &f[..f.len().min(16)]))
                    .unwrap_or_else(|| "unknown (no successful scan)".into()),
                after: if p.use_fallback {
                    format!(
                        "fallback certificate {}",
                        p.fallback_cert.clone().unwrap_or_default()
                    )
                } else {
                    format!(
                        "a new certificate from {} ({:?})",
                        p.issuer.name, p.issuer.method
                    )
                },
            });
            changes.push(Change {
                field: "expiry".into(),
                now: r
                    .expires_at
                    .map(|e| e.to_rfc3339())
                    .unwrap_or_else(|| "unknown".into()),
                after: "the issuer's new validity (checked by Verify)".into(),
            });
            changes.push(Change {
                field: "subject names".into(),
                now: r.sans.join(", "),
                after: p.sans.iter().cloned().collect::<Vec<_>>().join(", "),
            });
            changes.push(Change {
                field: "targets reloaded".into(),
                now: "-".into(),
                after: p
                    .targets
                    .iter()
                    .map(|t| t.id.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
            if let Some(cdn) = &p.cdn {
                changes.push(Change {
                    field: "CDN purge".into(),
                    now: "-".into(),
                    after: format!("{} {}", cdn.distribution_id, cdn.paths.join(" ")),
                });
            }
        }
        pending.push(PendingApproval {
            approval_id: card.approval_id.clone(),
            execution_name: info.as_ref().map(|i| i.meta.name.clone()),
            execution,
            ticket: card.ticket.clone(),
            path: card.path.clone(),
            fallback,
            cert: card.cert.clone(),
            summary: card.summary.clone(),
            plan_hash: card.plan_hash.clone(),
            requested_by: card.requested_by.clone(),
            approvers: card.approvers.clone(),
            expires_at: card.expires_at,
            plan: plan
                .and_then(|p| serde_json::to_value(p).ok())
                .map(redacted),
            window,
            served_now,
            changes,
        });
    }
    Ok(Approvals {
        user: user.to_string(),
        pending,
    })
}
