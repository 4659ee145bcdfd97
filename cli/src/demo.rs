//! `certops demo`: every scenario on a fresh embedded stack, as a table or one JSON document.

use crate::data_dir;
use anyhow::{Context, Result};
use std::path::Path;

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
pub async fn run(data: &Path, args: DemoArgs) -> Result<u8> {
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
