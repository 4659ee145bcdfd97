//! `certops history`: read an execution's history from the data directory.

use crate::data_dir;
use anyhow::{bail, Result};
use certops_asl::machine::Execution;
use certops_asl::store::SqliteStore;
use certops_asl::HistoryEvent;
use serde_json::{json, Value};
use std::path::Path;

/// Options of `certops history`.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Execution ARN or name. Omit to list executions.
    execution: Option<String>,
    /// Print AWS's GetExecutionHistory JSON (`{"events": [...]}`).
    #[arg(long)]
    json: bool,
    /// Newest event first.
    #[arg(long)]
    reverse: bool,
}

fn one_line(v: &Value, max: usize) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Prints a readable history table.
pub fn print_history(events: &[HistoryEvent]) {
    let start = events.first().map(|e| e.timestamp_ms).unwrap_or(0);
    outln!(
        "{:>4} {:>4} {:>9}  {:<26} DETAILS",
        "ID",
        "PREV",
        "T+MS",
        "TYPE"
    );
    for e in events {
        let d = e.details_value().unwrap_or(Value::Null);
        let mut parts = Vec::new();
        for k in ["name", "resource", "error", "index", "length"] {
            if let Some(v) = d.get(k) {
                parts.push(format!("{k}={}", one_line(v, 60)));
            }
        }
        if let Some(c) = d
            .get("cause")
            .filter(|c| c.as_str().is_some_and(|s| !s.is_empty()))
        {
            parts.push(format!("cause={}", one_line(c, 80)));
        }
        for k in ["output", "input"] {
            if let Some(v) = d.get(k) {
                parts.push(format!("{k}={}", one_line(v, 80)));
                break;
            }
        }
        outln!(
            "{:>4} {:>4} {:>9}  {:<26} {}",
            e.id,
            e.previous_event_id,
            e.timestamp_ms - start,
            e.kind.as_str(),
            parts.join("  ")
        );
    }
}

fn find<'a>(execs: &'a [(Execution, String)], key: &str) -> Result<&'a Execution> {
    if let Some((e, _)) = execs.iter().find(|(e, _)| e.meta.execution_arn == key) {
        return Ok(e);
    }
    let matches: Vec<&Execution> = execs
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e.meta.name == key)
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no execution named or with ARN '{key}' (run `certops history` to list them)"),
        many => bail!(
            "'{key}' names {} executions; give the ARN: {}",
            many.len(),
            many.iter()
                .map(|e| e.meta.execution_arn.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the command.
pub fn run(dir: &Path, args: HistoryArgs) -> Result<u8> {
    let db = data_dir::state_db(dir);
    if !db.exists() {
        bail!("no certops state in {} yet (run `certops serve` or `certops run` first, or pass --data-dir)", dir.display());
    }
    let store = SqliteStore::open(&db)?;
    let execs = store.executions()?;
    let Some(key) = args.execution else {
        if args.json {
            let list: Vec<Value> = execs
                .iter()
                .map(|(e, _)| json!({"executionArn": e.meta.execution_arn, "name": e.meta.name, "status": e.status.as_str(), "startDate": e.meta.start_ms as f64 / 1000.0}))
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({"executions": list}))?
            );
        } else {
            outln!("{:<10} {:<24} EXECUTION", "STATUS", "STARTED");
            for (e, _) in execs.iter().rev() {
                let started = chrono::DateTime::from_timestamp_millis(e.meta.start_ms)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                outln!(
                    "{:<10} {:<24} {}",
                    e.status.as_str(),
                    started,
                    e.meta.execution_arn
                );
            }
        }
        return Ok(0);
    };
    let exec = find(&execs, &key)?;
    let mut events = store.history(&exec.meta.execution_arn)?;
    if args.reverse {
        events.reverse();
    }
    if args.json {
        let doc = json!({"events": events.iter().map(|e| e.to_aws_json()).collect::<Vec<_>>()});
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        outln!("{}  {}", exec.status.as_str(), exec.meta.execution_arn);
        print_history(&events);
    }
    Ok(0)
}
