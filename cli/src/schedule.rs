//! The embedded runtime's stand-in for the EventBridge schedule: runs the
//! expiry scan on an interval and hands every finding on the intake queue to
//! the intake handler — the same path the scan and intake Lambdas take on AWS.

use certops_core::{ScanFinding, Trigger};
use certops_embedded::Stack;
use std::sync::Arc;
use std::time::Duration;

/// One scan: probe the inventory, then start (or find) an execution per finding.
pub async fn scan_once(stack: &Stack) -> Result<(usize, usize), certops_core::Error> {
    let summary = certops_fn_scan::run_scan(&stack.deps).await?;
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
                Ok(f) => match stack.trigger(Trigger::Scan(f)).await {
                    Ok(s) => {
                        started += usize::from(!s.duplicate);
                        stack.deps.queue.delete("intake", &m.receipt).await?;
                    }
                    // Left on the queue: redelivered, then dead-lettered after its limit.
                    Err(e) => tracing::warn!(message = %m.id, error = %e, "finding not started"),
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

/// A running scheduler; dropping it does not stop it, [`Scheduler::stop`] does.
pub struct Scheduler {
    stop: std::sync::mpsc::Sender<()>,
}

impl Scheduler {
    /// Stops the scheduler after its current scan.
    pub fn abort(&self) {
        let _ = self.stop.send(());
    }
}

/// Starts the scheduler on its own thread; `None` when the interval is zero.
pub fn start(stack: Arc<Stack>, every: Duration) -> Option<Scheduler> {
    if every.is_zero() {
        return None;
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("certops-scheduler".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "scheduler runtime failed to start");
                    return;
                }
            };
            loop {
                if let Err(e) = rt.block_on(scan_once(&stack)) {
                    tracing::error!(error = %e, "expiry scan failed");
                }
                match stopped.recv_timeout(every) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return,
                }
            }
        });
    match spawned {
        Ok(_) => Some(Scheduler { stop }),
        Err(e) => {
            tracing::error!(error = %e, "scheduler thread failed to start");
            None
        }
    }
}
