//! `certops run`: run a definition on the embedded engine and wait for it.

use crate::data_dir;
use crate::history::print_history;
use anyhow::{bail, Context, Result};
use certops_asl::definition::substitute;
use certops_asl::{
    Engine, EngineError, EngineOptions, ExecutionStatus, FunctionRegistry, Storage, TokioClock,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Options of `certops run`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["definition", "trigger"])))]
pub struct RunArgs {
    /// Start the governed renewal workflow from a trigger: a scan finding
    /// (`{"ci", "observed_expiry", …}`) or a ServiceNow-shaped ticket record.
    #[arg(long)]
    trigger: Option<PathBuf>,
    #[command(flatten)]
    config: crate::stack_config::ConfigArgs,
    /// Run any state machine definition (ASL JSON) on the embedded engine.
    #[arg(long)]
    definition: Option<PathBuf>,
    /// Execution input as JSON text, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Execution name (the idempotency key). Generated when omitted.
    #[arg(long)]
    name: Option<String>,
    /// State machine name. Defaults to the definition file's stem.
    #[arg(long)]
    machine_name: Option<String>,
    /// A DefinitionSubstitutions entry, KEY=VALUE (repeatable).
    #[arg(long = "sub", value_name = "KEY=VALUE")]
    substitutions: Vec<String>,
    /// Give up waiting after this long (the execution keeps its state).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print one JSON document (summary and AWS-shaped history) for scripts.
    #[arg(long)]
    json: bool,
}

fn read_input(s: &str) -> Result<Value> {
    let text = match s.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading input file {path}"))?
        }
        None => s.to_string(),
    };
    serde_json::from_str(&text).context("--input is not valid JSON")
}

/// Runs the command; exit code 0 when the execution succeeded, 1 otherwise.
pub async fn run(dir: &Path, args: RunArgs) -> Result<u8> {
    if let Some(trigger) = &args.trigger {
        return crate::trigger::run_trigger(dir, trigger, &args.config, args.json, args.timeout)
            .await;
    }
    let Some(definition_path) = args.definition.clone() else {
        bail!("give --trigger FILE or --definition FILE");
    };
    let text = std::fs::read_to_string(&definition_path)
        .with_context(|| format!("reading definition {}", definition_path.display()))?;
    let mut subs = HashMap::new();
    for s in &args.substitutions {
        let Some((k, v)) = s.split_once('=') else {
            bail!("--sub expects KEY=VALUE, got '{s}'");
        };
        subs.insert(k.to_string(), v.to_string());
    }
    let definition = substitute(&text, &subs)
        .map_err(|e| anyhow::anyhow!("{}: {e}", definition_path.display()))?;
    let input = read_input(&args.input)?;
    let machine_name = match &args.machine_name {
        Some(n) => n.clone(),
        None => definition_path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.trim_end_matches(".asl").to_string())
            .unwrap_or_else(|| "local".into()),
    };
    let _lock = data_dir::lock(dir)?;
    let opts = EngineOptions {
        storage: Storage::Sqlite(data_dir::state_db(dir)),
        ..EngineOptions::default()
    };
    let engine = Engine::open(
        opts,
        Arc::new(FunctionRegistry::with_builtins()),
        Arc::new(TokioClock::system()),
    )
    .context("opening the engine state")?;
    let arn = engine.state_machine_arn(&machine_name);
    match engine.create_state_machine(&machine_name, &definition, certops_asl::DEFAULT_ROLE_ARN) {
        Ok(_) => {}
        Err(EngineError::StateMachineAlreadyExists(_)) => {
            engine.update_state_machine(&arn, Some(&definition), None)?;
        }
        Err(EngineError::InvalidDefinition(m)) => bail!(
            "{} is not a valid definition: {m}",
            definition_path.display()
        ),
        Err(e) => return Err(e.into()),
    }
    let started = engine.start_execution(&arn, args.name.as_deref(), input)?;
    let exec_arn = started.meta.execution_arn.clone();
    if !args.json {
        eprintln!("started {exec_arn}");
    }
    let done = match tokio::time::timeout(args.timeout, engine.wait_for(&exec_arn)).await {
        Ok(r) => r?,
        Err(_) => bail!(
            "still running after {}; it resumes with `certops serve --data-dir {}`",
            humantime::format_duration(args.timeout),
            dir.display()
        ),
    };
    let history = engine.history(&exec_arn)?;
    if args.json {
        let doc = json!({
            "executionArn": exec_arn,
            "status": done.status.as_str(),
            "output": done.output,
            "error": done.error,
            "cause": done.cause,
            "transitions": done.transitions,
            "events": history.iter().map(|e| e.to_aws_json()).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_history(&history);
        outln!();
        outln!("execution  {exec_arn}");
        outln!("status     {}", done.status.as_str());
        if let Some(o) = &done.output {
            outln!("output     {o}");
        }
        if let Some(e) = &done.error {
            outln!("error      {e}");
        }
        if let Some(c) = &done.cause {
            outln!("cause      {c}");
        }
    }
    Ok(if done.status == ExecutionStatus::Succeeded {
        0
    } else {
        1
    })
}
