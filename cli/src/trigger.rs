//! `certops run --trigger`: reading a trigger file (a scan finding, a ServiceNow record or a
//! certops trigger), starting the governed workflow, and reporting its progress until it ends
//! or waits for an approval (also used by `approve`/`reject`).

use crate::data_dir;
use crate::stack_config::{open_stack, ConfigArgs};
use anyhow::{Context, Result};
use certops_core::ports::Table;
use certops_core::{ScanFinding, Trigger};
use certops_embedded::Stack;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub(crate) fn read_trigger(path: &Path) -> Result<Trigger> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading trigger {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if v.get("source").is_some() {
        return serde_json::from_value(v).context("not a certops trigger");
    }
    if v.get("observed_expiry").is_some() {
        let f: ScanFinding = serde_json::from_value(v).context("not a scan finding")?;
        return Ok(Trigger::Scan(f));
    }
    let record = v.get("record").unwrap_or(&v);
    certops_fn_intake::trigger_from_servicenow(record).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `certops run --trigger`.
pub async fn run_trigger(
    data: &Path,
    trigger: &Path,
    cfg: &ConfigArgs,
    json_out: bool,
    wait: Duration,
) -> Result<u8> {
    let trigger = read_trigger(trigger)?;
    let _lock = data_dir::lock(data)?;
    let stack = open_stack(data, cfg).await?;
    let started = stack
        .trigger(trigger)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !json_out {
        eprintln!(
            "{} {}",
            if started.duplicate {
                "already started:"
            } else {
                "started"
            },
            started.execution
        );
    }
    report_progress(&stack, &started.execution, json_out, wait, data).await
}

/// Waits until the execution finishes or waits for an approval, then reports.
pub(crate) async fn report_progress(
    stack: &Stack,
    execution: &str,
    json_out: bool,
    wait: Duration,
    data: &Path,
) -> Result<u8> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let info = stack.engine.describe_execution(execution)?;
        let cards = stack
            .adapters
            .chat
            .pending_cards()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut waiting = None;
        for c in cards {
            if let Some(r) = stack
                .deps
                .store
                .get(Table::Approvals, &c.approval_id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                if r["execution"] == json!(execution) && r["status"] == "pending" {
                    waiting = Some(c);
                    break;
                }
            }
        }
        if info.status != certops_asl::ExecutionStatus::Running
            || waiting.is_some()
            || tokio::time::Instant::now() > deadline
        {
            let doc = json!({
                "execution": execution,
                "status": info.status.as_str(),
                "error": info.error,
                "cause": info.cause,
                "waitingForApproval": waiting,
                "output": info.output,
            });
            if json_out {
                outln!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                outln!("execution  {execution}");
                outln!("status     {}", info.status.as_str());
                if let Some(e) = &info.error {
                    outln!("error      {e}: {}", info.cause.clone().unwrap_or_default());
                }
                if let Some(c) = &waiting {
                    outln!(
                        "waiting    approval {} ({} change for {}), plan hash {}",
                        c.approval_id,
                        c.path,
                        c.cert,
                        c.plan_hash
                    );
                    outln!("approvers  {}", c.approvers.join(", "));
                    outln!(
                        "decide     certops --data-dir {} approve {} --as IDENTITY   (or: reject {} --as IDENTITY --comment WHY)",
                        data.display(),
                        c.approval_id,
                        c.approval_id
                    );
                }
            }
            return Ok(match info.status {
                certops_asl::ExecutionStatus::Succeeded => 0,
                certops_asl::ExecutionStatus::Running => 0,
                _ => 1,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
