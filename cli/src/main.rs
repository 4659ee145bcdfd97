//! `certops`: the governed certificate-renewal layer's command line.
//!
//! Every command shares one data directory (`./.certops/` by default,
//! `--data-dir` or `CERTOPS_DATA_DIR` to move it), so `certops history` sees
//! what `certops serve` or `certops run` did.
//!
//! One module per command (`demo`, `plan`, `decide`, `audit`, `run`, `trigger`, `scan`,
//! `history`, `keystore`, `serve`), the stack they open (`stack_config`), the local API's
//! SigV4 principals (`api_auth`), the chat routes and the web console (`console`).

/// `println!` that ends the process quietly when stdout is closed (`certops history | head`).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

// mimalloc: the engine allocates many small JSON values per state transition;
// glibc's allocator spent over half of the engine's time in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api_auth;
mod audit;
mod chat_routes;
mod console;
mod data_dir;
mod decide;
mod demo;
mod history;
mod keystore;
mod plan;
mod run;
mod scan;
mod schedule;
mod serve;
mod stack_config;
mod tls;
mod trigger;

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
    /// Probe TLS endpoints (every address of each name) and classify what
    /// they serve: expiry, chain, name, key strength. Nagios exit codes:
    /// 0 ok, 1 warning, 2 critical, 3 unknown.
    Scan(scan::ScanArgs),
    /// Run the embedded stack through every scenario: a planned renewal, an
    /// expired certificate (P1), rate limiting, a rollback, a failing CDN
    /// purge and an unknown CI. Exit 0 only if every scenario ends as expected.
    Demo(demo::DemoArgs),
    /// Dry run: the validation checks and the exact plan with its hash for a
    /// trigger. Nothing is executed.
    Plan(plan::PlanArgs),
    /// Approve a pending change (the local stand-in for the Teams card),
    /// through the same callback handler and its checks.
    Approve(decide::DecideArgs),
    /// Reject a pending change.
    Reject(decide::DecideArgs),
    /// Check the audit trail's hash chain (`audit verify`) or print it (`audit show`).
    Audit(audit::AuditArgs),
    /// Manage the data directory's keystore: `keystore import NAME --cert F --key F` puts a
    /// certificate + key bundle (e.g. the fallback certificate) in it.
    Keystore(keystore::KeystoreArgs),
    /// Manage web console accounts (`user add NAME` reads the password from the terminal or stdin).
    User(console::accounts::UserArgs),
    /// Print the local Step Functions API's SigV4 credentials as an AWS CLI
    /// profile (generated on first use in <data-dir>/api-credentials.json, 0600).
    Credentials(CredentialsArgs),
}

/// Options of `certops credentials`.
#[derive(clap::Args, Debug)]
struct CredentialsArgs {
    /// The principal: `operator` (default) or `approval-callback`.
    #[arg(long, default_value = api_auth::OPERATOR)]
    principal: String,
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
            Command::Scan(a) => scan::run(a).await.map(|c| u8::try_from(c).unwrap_or(3)),
            Command::Demo(a) => demo::run(&cli.data_dir, a).await,
            Command::Plan(a) => plan::run(&cli.data_dir, a).await,
            Command::Approve(a) => {
                decide::run(&cli.data_dir, a, certops_core::Verdict::Approve).await
            }
            Command::Reject(a) => {
                decide::run(&cli.data_dir, a, certops_core::Verdict::Reject).await
            }
            Command::Audit(a) => audit::run(&cli.data_dir, a).await,
            Command::Credentials(a) => api_auth::print(&cli.data_dir, &a.principal),
            Command::User(a) => console::accounts::run(&cli.data_dir, a),
            Command::Keystore(a) => keystore::run(&cli.data_dir, a).await,
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
