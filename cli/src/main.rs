//! `certops`: the governed certificate-renewal layer's command line.
//!
//! Every command shares one data directory (`./.certops/` by default,
//! `--data-dir` or `CERTOPS_DATA_DIR` to move it), so `certops history` sees
//! what `certops serve` or `certops run` did.

mod data_dir;
mod history;
mod run;
mod serve;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// certops — deterministic, approval-gated, audited certificate renewal.
#[derive(Parser, Debug)]
#[command(name = "certops", version, about, long_about = None)]
struct Cli {
    /// Where state lives (executions, history, audit). Shared by every command.
    #[arg(
        long,
        global = true,
        env = "CERTOPS_DATA_DIR",
        default_value = ".certops"
    )]
    data_dir: PathBuf,

    /// Log level filter (e.g. info, debug, certops_asl=trace).
    #[arg(long, global = true, env = "CERTOPS_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the local stack: a Step Functions-compatible API (AWS JSON 1.0
    /// protocol) on 127.0.0.1, backed by the durable embedded engine.
    Serve(serve::ServeArgs),
    /// Run a state machine definition on the embedded engine and wait for it,
    /// printing the outcome and its execution history.
    Run(run::RunArgs),
    /// Show an execution's history (readable, or AWS's GetExecutionHistory
    /// JSON with --json). Without an execution, list executions.
    History(history::HistoryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::run(&cli.data_dir, a).await,
            Command::Run(a) => run::run(&cli.data_dir, a).await,
            Command::History(a) => history::run(&cli.data_dir, a),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}
