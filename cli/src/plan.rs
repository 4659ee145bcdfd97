//! `certops plan --trigger`: the validation checks and the exact plan with its hash for a
//! trigger; nothing is executed.

use crate::stack_config::ConfigArgs;
use crate::trigger::read_trigger;
use anyhow::Result;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Options of `certops plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// A scan finding or ServiceNow-shaped ticket record (JSON).
    #[arg(long)]
    trigger: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `certops plan --trigger`: validation and the exact plan, nothing executed.
pub async fn run(data: &Path, args: PlanArgs) -> Result<u8> {
    let json_out = args.json;
    let trigger = read_trigger(&args.trigger)?;
    let config = args.config.load(data)?;
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
