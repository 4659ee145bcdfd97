//! The embedded runtime's stand-in for the EventBridge schedule: runs the
//! expiry scan on an interval and hands every finding on the intake queue to
//! the intake handler — the same path the scan and intake Lambdas take on AWS.

use crate::console::scan_log::{self, ScanRun, StartedWorkflow};
use certops_core::{ScanFinding, Trigger};
use certops_embedded::Stack;
use std::sync::Arc;
use std::time::Duration;

/// One scan: probe the inventory, then start (or find) an execution per finding.
/// The run (findings, workflows started) is kept for the console's Scans page.
pub async fn scan_once(stack: &Stack) -> Result<(usize, usize), certops_core::Error> {
    let started_at = stack.deps.clock.now();
    let mut run = ScanRun {
        started_at,
        finished_at: started_at,
        objects: 0,
        observations: 0,
        findings: Vec::new(),
        workflows: Vec::new(),
        error: None,
    };
    let result = scan_and_start(stack, &mut run).await;
    run.finished_at = stack.deps.clock.now();
    run.error = result.as_ref().err().map(|e| format!("{}: {e}", e.name()));
    if let Err(e) = scan_log::record(stack.deps.store.as_ref(), &run).await {
        tracing::warn!(error = %e, "scan run not recorded for the console");
    }
    result
}

async fn scan_and_start(
    stack: &Stack,
    run: &mut ScanRun,
) -> Result<(usize, usize), certops_core::Error> {
    let summary = certops_fn_scan::run_scan(&stack.deps).await?;
    run.objects = summary.objects;
    run.observations = summary.observations;
    let mut started = 0;
    loop {
        let batch = stack
            .deps
            .queue
            .receive("intake", 10, Duration::from_secs(60))
            .await?;
        if batch.is_empty() {
            break;
        }
        for m in batch {
            match serde_json::from_value::<ScanFinding>(m.body.clone()) {
                Ok(f) => match stack.trigger(Trigger::Scan(f.clone())).await {
                    Ok(s) => {
                        started += usize::from(!s.duplicate);
                        run.workflows.push(StartedWorkflow {
                            ci: f.ci.clone(),
                            execution: s.execution.clone(),
                            duplicate: s.duplicate,
                        });
                        run.findings.push(f);
                        stack.deps.queue.delete("intake", &m.receipt).await?;
                    }
                    // Left on the queue: redelivered, then dead-lettered after its limit.
                    Err(e) => {
                        run.findings.push(f);
                        tracing::warn!(message = %m.id, error = %e, "finding not started")
                    }
                },
                Err(e) => {
                    tracing::warn!(message = %m.id, error = %e, "unreadable finding left for the dead-letter queue")
                }
            }
        }
    }
    tracing::info!(findings = summary.findings, started, "expiry scan done");
    Ok((summary.findings, started))
}

/// Starts the scheduler on the server's runtime (so executions a scan starts
/// keep running between scans); `None` when the interval is zero.
pub fn start(stack: Arc<Stack>, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
    if every.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = scan_once(&stack).await {
                tracing::error!(error = %e, "expiry scan failed");
            }
        }
    }))
}
