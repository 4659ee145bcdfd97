//! `certops audit verify|show`: every execution's audit chain checked against its anchored
//! head, or one execution's records printed.

use crate::data_dir;
use anyhow::{bail, Result};
use serde_json::json;
use std::path::Path;

/// The executions in the engine's state that ran Validate to its end (ARNs): each must have
/// an audit chain. None when there is no engine state yet.
fn executions_past_validate(data: &Path) -> Result<std::collections::BTreeSet<String>> {
    let db = data_dir::state_db(data);
    let mut out = std::collections::BTreeSet::new();
    if !db.exists() {
        return Ok(out);
    }
    let engine = certops_asl::store::SqliteStore::open(&db)?;
    for (execution, _) in engine.executions()? {
        let arn = execution.meta.execution_arn;
        let ran = engine.history(&arn)?.iter().any(|ev| {
            ev.kind == certops_asl::EventType::TaskStateExited
                && ev.details_value().is_some_and(|d| d["name"] == "Validate")
        });
        if ran {
            out.insert(arn);
        }
    }
    Ok(out)
}

/// `certops audit verify`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AuditCommand {
    /// Check every execution's audit chain (or one execution's) against its anchored head:
    /// names the first bad record, a missing tail, a missing chain or a head not made with
    /// the data directory's audit key. An execution the engine ran past Validate (which
    /// records the trigger) must have a chain. Non-zero exit on any break.
    Verify {
        /// Execution id; all executions when omitted.
        execution: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an execution's audit records.
    Show {
        /// Execution id.
        execution: String,
    },
}

/// Runs an audit command.
pub async fn run(data: &Path, args: AuditArgs) -> Result<u8> {
    let db = data.join("certops.db");
    if !db.exists() {
        bail!(
            "no audit records in {} (run `certops demo` or `certops run --trigger` first)",
            data.display()
        );
    }
    let key = certops_adapters::audit_key(data).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = certops_adapters::SqliteStore::new(
        certops_adapters::LocalDb::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?,
        key.clone(),
    );
    use certops_core::ports::Store;
    match args.command {
        AuditCommand::Show { execution } => {
            let records = store
                .audit(&execution)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            outln!("{}", serde_json::to_string_pretty(&records)?);
            Ok(0)
        }
        AuditCommand::Verify { execution, json } => {
            let past_validate = executions_past_validate(data)?;
            let executions = match execution {
                Some(e) => vec![e],
                None => {
                    let mut all: std::collections::BTreeSet<String> = store
                        .audited_executions()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .into_iter()
                        .collect();
                    all.extend(past_validate.iter().cloned());
                    all.into_iter().collect()
                }
            };
            let mut results = Vec::new();
            for e in &executions {
                let records = store.audit(e).await;
                let head = store.audit_head(e).await;
                let (count, verdict) = match (records, head) {
                    (Ok(records), Ok(head)) => {
                        let verdict =
                            if records.is_empty() && head.is_none() && past_validate.contains(e) {
                                Err(certops_core::Error::ChainBreak {
                                    seq: 0,
                                    reason:
                                        "missing chain: the execution ran Validate, which records \
                                         its trigger, and no record or head of it is stored"
                                            .into(),
                                })
                            } else {
                                certops_core::verify_anchored(e, &records, head.as_ref(), &key)
                            };
                        (records.len(), verdict)
                    }
                    (Err(err), _) | (_, Err(err)) => (0, Err(err)),
                };
                results.push(
                    json!({"execution": e, "records": count, "ok": verdict.is_ok(),
                    "break": verdict.as_ref().err().map(|x| x.to_string())}),
                );
            }
            let broken = results.iter().filter(|r| r["ok"] == false).count();
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"executions": results, "broken": broken})
                    )?
                );
            } else {
                for r in &results {
                    outln!(
                        "{} {} ({} records){}",
                        if r["ok"] == true { "ok    " } else { "BROKEN" },
                        r["execution"].as_str().unwrap_or_default(),
                        r["records"],
                        r["break"]
                            .as_str()
                            .map(|b| format!(": {b}"))
                            .unwrap_or_default()
                    );
                }
                outln!("{} execution(s) checked, {} broken", results.len(), broken);
            }
            Ok(if broken == 0 && !results.is_empty() {
                0
            } else {
                1
            })
        }
    }
}
