//! The governed-renewal commands: `demo`, `run --trigger`, `plan`,
//! `approve`/`reject` and `audit verify`, all over the embedded stack in the
//! shared data directory.

use crate::data_dir;
use anyhow::{bail, Context, Result};
use certops_core::ports::{Clock, SystemClock};
use certops_core::{ScanFinding, Trigger, Verdict};
use certops_embedded::{ConfigFiles, Stack, StackOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Options shared by the commands that open the stack.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Directory holding inventory.toml, policy.toml and cert-renewal.runbook.toml.
    /// Defaults to <data-dir>/config when present (the demo writes one), else ./runbooks.
    #[arg(long)]
    config_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// The configuration files to use, or `None` for the built-in example files.
    fn files(&self, data: &Path) -> Option<ConfigFiles> {
        match &self.config_dir {
            Some(d) => Some(ConfigFiles::in_dir(d)),
            None if data.join("config").is_dir() => Some(ConfigFiles::in_dir(&data.join("config"))),
            None if Path::new("runbooks/inventory.toml").is_file() => {
                Some(ConfigFiles::in_dir(Path::new("runbooks")))
            }
            None => None,
        }
    }

    /// Loads the configuration (the built-in example files when none are found).
    pub fn load(&self, data: &Path) -> Result<certops_core::ports::Config> {
        match self.files(data) {
            Some(files) => files.load().with_context(|| {
                format!(
                    "loading configuration from {}",
                    files.inventory.parent().unwrap_or(Path::new(".")).display()
                )
            }),
            None => certops_embedded::example_config()
                .map_err(|e| anyhow::anyhow!("built-in example configuration: {e}")),
        }
    }
}

/// Opens the embedded stack over the data directory.
pub async fn open_stack(data: &Path, cfg: &ConfigArgs) -> Result<Stack> {
    let config = cfg.load(data)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Stack::open(StackOptions {
        data_dir: data.to_path_buf(),
        config,
        clock,
        probe_timeout: Duration::from_secs(3),
    })
    .await
    .context("opening the embedded stack")
}

/// `certops demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Print one JSON document for scripts.
    #[arg(long)]
    json: bool,
    /// Keep the data directory's previous contents (by default the demo starts from a clean <data-dir>/demo-*).
    #[arg(long)]
    reuse: bool,
}

/// Runs the demo; exit 0 only if every scenario ended as expected.
pub async fn demo(data: &Path, args: DemoArgs) -> Result<u8> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let _lock = data_dir::lock(data)?;
    let dir = data.join("demo");
    if dir.exists() && !args.reuse {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let quiet = args.json;
    let progress = move |m: &str| {
        if !quiet {
            eprintln!("==> {m}");
        }
    };
    let report = certops_embedded::demo::run(&dir, &progress)
        .await
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.name()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!();
        for s in &report.scenarios {
            outln!("{} {}", if s.ok { "PASS" } else { "FAIL" }, s.name);
            outln!("     expected  {}", s.expected);
            outln!("     outcome   {}   ({} ms)", s.status, s.elapsed_ms);
            outln!(
                "     ticket    {} [{}]   path {}   approver {}",
                s.ticket.as_deref().unwrap_or("-"),
                s.ticket_state.as_deref().unwrap_or("-"),
                s.path.as_deref().unwrap_or("-"),
                s.approver.as_deref().unwrap_or("-")
            );
            outln!(
                "     expiry    {} -> {}",
                s.expiry_before
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "-".into()),
                s.expiry_after
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "-".into())
            );
            outln!(
                "     served    {}",
                s.served_fingerprint
                    .as_deref()
                    .map(|f| &f[..f.len().min(32)])
                    .unwrap_or("-")
            );
            if let Some(e) = &s.execution {
                outln!(
                    "     history   certops --data-dir {} history {e}",
                    dir.display()
                );
            }
            for p in &s.problems {
                outln!("     PROBLEM   {p}");
            }
        }
        outln!();
        outln!(
            "{} of {} scenarios ended as expected. Audit: certops --data-dir {} audit verify",
            report.scenarios.iter().filter(|s| s.ok).count(),
            report.scenarios.len(),
            dir.display()
        );
    }
    Ok(if report.all_ok() { 0 } else { 1 })
}

fn read_trigger(path: &Path) -> Result<Trigger> {
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
async fn report_progress(
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
                .get("approvals", &c.approval_id)
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

/// `certops approve|reject`.
#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    /// The approval id from the card (APR-…).
    approval: String,
    /// The approver's identity (as the Teams card would authenticate it).
    #[arg(long = "as")]
    identity: String,
    /// A comment for the record.
    #[arg(long)]
    comment: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArgs,
}

/// Applies a decision through the approval-callback handler and its checks.
pub async fn decide(data: &Path, args: DecideArgs, verdict: Verdict) -> Result<u8> {
    let _lock = data_dir::lock(data)?;
    let stack = open_stack(data, &args.config).await?;
    let decided = stack
        .decide(certops_fn_approval_callback::Callback {
            approval_id: args.approval.clone(),
            approver: args.identity.clone(),
            verdict,
            comment: args.comment.clone(),
        })
        .await;
    match decided {
        Ok(d) => {
            if !args.json {
                eprintln!("{} {} as {}", d.status, d.approval_id, args.identity);
            }
            report_progress(
                &stack,
                &d.execution,
                args.json,
                Duration::from_secs(120),
                data,
            )
            .await
        }
        Err(e) => {
            if args.json {
                outln!("{}", json!({"error": e.name(), "message": e.to_string()}));
            } else {
                eprintln!("refused: {} ({})", e, e.name());
            }
            Ok(2)
        }
    }
}

/// `certops plan --trigger`: validation and the exact plan, nothing executed.
pub async fn plan(data: &Path, trigger: &Path, cfg: &ConfigArgs, json_out: bool) -> Result<u8> {
    let trigger = read_trigger(trigger)?;
    let config = cfg.load(data)?;
    let now = chrono::Utc::now();
    let facts = certops_core::Facts::default();
    let report = certops_core::validate(&config.inventory, &config.policy, &trigger, &facts, now);
    let plan = config
        .inventory
        .find_by_ci(trigger.ci())
        .filter(|_| !report.is_blocked())
        .map(|cert| {
            certops_core::Plan::build(
                config.runbook.reference(),
                cert,
                &report,
                trigger.ticket_number(),
                None,
            )
            .map(|p| p.with_connections(&config.inventory))
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let doc = json!({
        "path": report.approval_path.as_str(),
        "checks": report.checks,
        "plan": plan,
        "planHash": plan.as_ref().map(|p| p.hash()),
        "executionName": trigger.idempotency_key(),
    });
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        outln!("approval path  {}", report.approval_path.as_str());
        for c in &report.checks {
            outln!(
                "  {:<8} {:<22} {}",
                format!("{:?}", c.status).to_lowercase(),
                format!("{:?}", c.name),
                c.reason
            );
        }
        match &plan {
            Some(p) => {
                outln!("plan hash      {}", p.hash());
                outln!("plan           {}", p.canonical_json());
            }
            None => outln!("no plan: the change is blocked"),
        }
    }
    Ok(if report.is_blocked() { 1 } else { 0 })
}

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
pub async fn audit(data: &Path, args: AuditArgs) -> Result<u8> {
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
