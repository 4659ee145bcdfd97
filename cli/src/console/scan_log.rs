//! The console's record of scheduled scans. The scan itself stores only each
//! endpoint's latest observation; what each scheduled run found and which
//! workflows it started is kept here, through the Store port, in its own
//! table ([`Table::ScanRuns`]), newest first, at most [`KEEP`] runs.

use certops_core::ports::{Store, Table};
use certops_core::{Error, ScanFinding};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The key of the list of recent runs.
pub const RUNS_KEY: &str = "recent";
/// How many runs are kept.
pub const KEEP: usize = 20;

/// A workflow a finding started (or found already running).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedWorkflow {
    /// The certificate's CI.
    pub ci: String,
    /// The execution.
    pub execution: String,
    /// Whether it already existed (an idempotent repeat).
    pub duplicate: bool,
}

/// One scheduled scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanRun {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Certificate objects in the inventory.
    pub objects: usize,
    /// Endpoint observations stored.
    pub observations: usize,
    /// What it found.
    pub findings: Vec<ScanFinding>,
    /// The workflows its findings started.
    pub workflows: Vec<StartedWorkflow>,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Adds a run to the front of the list (conditional writes; a concurrent writer is retried).
pub async fn record(store: &dyn Store, run: &ScanRun) -> Result<(), Error> {
    let entry = serde_json::to_value(run).map_err(|e| Error::InvalidInput(e.to_string()))?;
    for _ in 0..5 {
        let current = store.get(Table::ScanRuns, RUNS_KEY).await?;
        let mut runs: Vec<Value> = current
            .as_ref()
            .and_then(|v| v["runs"].as_array().cloned())
            .unwrap_or_default();
        runs.insert(0, entry.clone());
        runs.truncate(KEEP);
        if store
            .compare_and_swap(
                Table::ScanRuns,
                RUNS_KEY,
                current.as_ref(),
                &json!({"runs": runs}),
            )
            .await?
        {
            return Ok(());
        }
    }
    Err(Error::Conflict(
        "scan log kept changing concurrently".into(),
    ))
}

/// The recent runs, newest first.
pub async fn recent(store: &dyn Store) -> Result<Vec<ScanRun>, Error> {
    let Some(v) = store.get(Table::ScanRuns, RUNS_KEY).await? else {
        return Ok(Vec::new());
    };
    Ok(v["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default())
}
