//! `certops approve|reject`: a decision through the approval-callback handler and its checks.

use crate::data_dir;
use crate::stack_config::{open_stack, ConfigArgs};
use crate::trigger::report_progress;
use anyhow::Result;
use certops_core::Verdict;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

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
pub async fn run(data: &Path, args: DecideArgs, verdict: Verdict) -> Result<u8> {
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
