//! Cold-start benchmark of the certops Lambda functions.
//!
//! Plays the AWS Lambda Runtime API on a free loopback port, starts each
//! function binary with the environment Lambda sets, hands it one
//! representative first event and measures:
//! - init: process spawn → its first `GET /invocation/next`;
//! - first invocation: the event served → `POST …/response` (or `…/error`);
//! - peak RSS: `VmHWM` from `/proc/<pid>/status`, read after the first result
//!   is posted and before the process is killed.
//!
//! Each run gets a fresh copy of a prepared data directory, so every run does
//! the same work.
//!
//! With `--backend aws` the functions start as the SAM template configures them
//! (`CERTOPS_BACKEND=aws`) against a moto server on loopback: DynamoDB tables,
//! queues, a state machine and the secrets (the configuration document, read at
//! init, among them) are created first, and each run measures init only (spawn →
//! first `GET /next`, and peak RSS then), the figure Lambda sees before the first
//! event. A minimal hello-world `lambda_runtime` function (the peer)
//! runs in the same session for a side-by-side ratio.

mod runtime;
mod world;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use runtime::{OutcomeKind, Record, RuntimeApi, STATE_MACHINE_ARN};
use serde::Serialize;
use serde_json::{json, Value};

/// Init target (median), milliseconds.
const INIT_TARGET_MS: f64 = 15.0;
/// Peak RSS target (max over runs), MiB.
const RSS_TARGET_MIB: f64 = 30.0;
/// The peer's name in tables.
const PEER: &str = "hello (peer)";

/// The functions in the order a renewal runs them; each one's prepared data
/// directory is the state the earlier ones left behind.
const CHAIN: &[&str] = &[
    "intake",
    "validate",
    "approval-request",
    "approval-callback",
    "itsm-update",
    "renew",
    "deploy",
    "purge",
    "verify",
    "rollback",
];

#[derive(Parser, Debug)]
#[command(
    name = "coldstart",
    about = "Cold-start benchmark of the certops Lambda functions against a local Lambda Runtime API"
)]
struct Args {
    /// Directory holding the release binaries certops-<name> and coldstart-hello.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Runs per function.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Functions to measure (comma-separated); default: all of functions/ plus the peer.
    #[arg(long, value_delimiter = ',')]
    functions: Vec<String>,
    /// Skip the hello-world peer.
    #[arg(long)]
    no_peer: bool,
    /// Extra environment for every certops function, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Extra environment for one function, NAME:KEY=VALUE (repeatable).
    #[arg(long = "fn-env", value_name = "NAME:KEY=VALUE")]
    fn_env: Vec<String>,
    /// AWS_LAMBDA_FUNCTION_MEMORY_SIZE (MB).
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// Seconds a run may take before it counts as timed out.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Print the results as JSON on stdout (the tables go to stderr).
    #[arg(long)]
    json: bool,
    /// Keep the work directory (data dirs, function logs) and print its path.
    #[arg(long)]
    keep: bool,
    /// Which backend the functions start on: `embedded` (the renewal chain, init and first
    /// invocation) or `aws` (init only, against a moto server on loopback).
    #[arg(long, value_enum, default_value_t = BackendArg::Embedded)]
    backend: BackendArg,
    /// Diagnostics only: start every function under this command (split on
    /// spaces), e.g. "strace -f -tt -o /tmp/init.trace"; timings then include it.
    #[arg(long)]
    wrapper: Option<String>,
}

/// The `--backend` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum BackendArg {
    /// The embedded adapters in a data directory.
    Embedded,
    /// DynamoDB, SQS, Step Functions and Secrets Manager, served by moto.
    Aws,
}

/// What the moto world adds to every function's environment (`--backend aws`).
const AWS_WORLD: &str = include_str!("../moto_world.py");

/// A moto server on a free loopback port, killed on drop.
struct MotoServer {
    child: std::process::Child,
    url: String,
}

impl MotoServer {
    fn start() -> Result<MotoServer, BoxError> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "{bin} did not start ({e}); install it with \
                     `python3 -m pip install 'moto[server]'`"
                )
            })?;
        let server = MotoServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("moto did not listen on 127.0.0.1:{port} within 60 s").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Creates the stack's resources with `config_doc` as the configuration secret; returns
    /// the functions' environment.
    fn world(&self, config_doc: &Path) -> Result<Vec<(String, String)>, BoxError> {
        use std::io::Write;
        let mut child = std::process::Command::new("python3")
            .arg("-")
            .arg(&self.url)
            .arg(config_doc)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("python3 did not start: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("python3 has no stdin")?
            .write_all(AWS_WORLD.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(format!(
                "creating the AWS world in moto failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let env: BTreeMap<String, String> = serde_json::from_slice(&out.stdout)?;
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.push(("AWS_ENDPOINT_URL".into(), self.url.clone()));
        Ok(env)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct Run {
    init_ms: Option<f64>,
    invoke_ms: Option<f64>,
    total_ms: Option<f64>,
    peak_rss_kib: Option<u64>,
    outcome: String,
    error_type: Option<String>,
    error_message: Option<String>,
}

/// Per-function summary.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    function: String,
    event: String,
    runs: usize,
    responses: usize,
    errors: usize,
    init_median_ms: Option<f64>,
    init_p90_ms: Option<f64>,
    invoke_median_ms: Option<f64>,
    invoke_p90_ms: Option<f64>,
    peak_rss_max_mib: Option<f64>,
    init_pass: bool,
    rss_pass: bool,
    first_error: Option<String>,
    samples: Vec<Run>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a function is started with.
struct Target {
    name: String,
    binary: PathBuf,
    event: Value,
    event_label: String,
    env: Vec<(String, String)>,
    /// Prepared data directory copied for every run (none for the peer).
    data: Option<PathBuf>,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

fn split_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Bench {
    api: RuntimeApi,
    args: Args,
    work: PathBuf,
    seq: u64,
    /// `--backend aws`: the moto world's environment; runs measure init only.
    aws_env: Option<Vec<(String, String)>>,
}

impl Bench {
    fn lambda_env(&self, function: &str) -> Vec<(String, String)> {
        let pairs = [
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
            ("LANG", "en_US.UTF-8".to_string()),
            ("TZ", ":UTC".to_string()),
            ("AWS_LAMBDA_RUNTIME_API", self.api.authority()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.args.memory.to_string(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]coldstart".to_string(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_string()),
            ("AWS_REGION", world::REGION.to_string()),
            ("AWS_DEFAULT_REGION", world::REGION.to_string()),
            ("_HANDLER", "bootstrap".to_string()),
            ("LAMBDA_TASK_ROOT", self.args.bin_dir.display().to_string()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_string()),
            ("AWS_ACCESS_KEY_ID", "AKIACOLDSTARTBENCH00".to_string()),
            (
                "AWS_SECRET_ACCESS_KEY",
                "coldstart-bench-dummy-secret-access-key".to_string(),
            ),
            (
                "AWS_SESSION_TOKEN",
                "coldstart-bench-dummy-session".to_string(),
            ),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn certops_env(&self, name: &str) -> Result<Vec<(String, String)>, String> {
        let mut env = self.lambda_env(&format!("certops-{name}"));
        if let Some(aws) = &self.aws_env {
            // As the template sets them: the sealing key only where task tokens are
            // handled, the webhook secret only where signatures are checked.
            env.extend(
                aws.iter()
                    .filter(|(k, _)| match k.as_str() {
                        "CERTOPS_SEALING_KEY_ARN" => {
                            matches!(name, "approval-request" | "approval-callback")
                        }
                        "CERTOPS_WEBHOOK_SECRET_ARN" => {
                            matches!(name, "intake" | "approval-callback")
                        }
                        _ => true,
                    })
                    .cloned(),
            );
            for kv in &self.args.env {
                env.push(split_kv(kv)?);
            }
            return Ok(env);
        }
        env.extend([
            (
                "CERTOPS_CONFIG_DIR".to_string(),
                self.work.join("config").display().to_string(),
            ),
            (
                "CERTOPS_STATE_MACHINE_ARN".to_string(),
                STATE_MACHINE_ARN.to_string(),
            ),
            // Step Functions calls go to the local stub, never off the machine.
            (
                "AWS_ENDPOINT_URL".to_string(),
                format!("http://{}", self.api.authority()),
            ),
        ]);
        if name == "intake" {
            env.push((
                "CERTOPS_WEBHOOK_SECRET".to_string(),
                world::WEBHOOK_SECRET.to_string(),
            ));
        }
        if name == "approval-callback" {
            env.push((
                "CERTOPS_APPROVAL_SECRET".to_string(),
                world::APPROVAL_SECRET.to_string(),
            ));
        }
        for kv in &self.args.env {
            env.push(split_kv(kv)?);
        }
        for spec in &self.args.fn_env {
            let (f, kv) = spec
                .split_once(':')
                .ok_or_else(|| format!("expected NAME:KEY=VALUE, got '{spec}'"))?;
            if f == name {
                env.push(split_kv(kv)?);
            }
        }
        Ok(env)
    }

    /// Starts `binary` with `env`, hands it `event`, measures, kills it.
    async fn run_once(
        &mut self,
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        event: &Value,
        data_dir: Option<&Path>,
    ) -> Result<(Run, Option<Record>), BoxError> {
        self.seq += 1;
        let request_id = format!(
            "{:08x}-c01d-4000-8000-{:012x}",
            std::process::id(),
            self.seq
        );
        let arn = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            world::REGION,
            world::ACCOUNT,
            env.iter()
                .find(|(k, _)| k == "AWS_LAMBDA_FUNCTION_NAME")
                .map(|(_, v)| v.as_str())
                .unwrap_or(name)
        );
        let timeout = Duration::from_secs(self.args.timeout_secs);
        let init_only = self.aws_env.is_some();
        if init_only {
            self.api.arm_idle(&request_id, &arn, timeout);
        } else {
            self.api.arm(&request_id, &arn, event.clone(), timeout);
        }
        let log_path = self
            .work
            .join("logs")
            .join(format!("{name}-{}.log", self.seq));
        let log = fs::File::create(&log_path)?;
        let wrapper: Vec<&str> = self
            .args
            .wrapper
            .as_deref()
            .map(|w| w.split_whitespace().collect())
            .unwrap_or_default();
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(rest).arg(binary);
                c
            }
            None => tokio::process::Command::new(binary),
        };
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(binary.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if let Some(dir) = data_dir {
            cmd.env("CERTOPS_DATA_DIR", dir);
        }
        let spawned = Instant::now();
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let deadline = spawned + timeout;
        let mut exit = None;
        if init_only {
            tokio::select! {
                _ = self.api.wait_init(deadline) => {}
                status = child.wait() => { exit = status.ok(); }
            }
        } else {
            tokio::select! {
                _ = self.api.wait(deadline) => {}
                status = child.wait() => { exit = status.ok(); }
            }
        }
        // The runtime is now idle in its next `GET /next`: its high-water mark is final.
        let peak = vm_hwm_kib(pid);
        let _ = child.start_kill();
        let _ = child.wait().await;
        let record = self.api.disarm();
        let rec = record.clone().unwrap_or(Record {
            first_next: None,
            served: None,
            outcome: None,
            sfn_calls: Vec::new(),
        });
        let init = rec.first_next.map(|t| ms(t - spawned));
        let (outcome, invoke, total, etype, emsg) = match &rec.outcome {
            Some(o) => {
                let invoke = rec.served.map(|s| ms(o.at.saturating_duration_since(s)));
                let total = Some(ms(o.at - spawned));
                let (label, et, em) = match o.kind {
                    OutcomeKind::Response => ("response", None, None),
                    OutcomeKind::Error => (
                        "error",
                        o.body["errorType"].as_str().map(str::to_string),
                        o.body["errorMessage"].as_str().map(str::to_string),
                    ),
                    OutcomeKind::InitError => (
                        "init-error",
                        o.body["errorType"].as_str().map(str::to_string),
                        o.body["errorMessage"].as_str().map(str::to_string),
                    ),
                };
                (label.to_string(), invoke, total, et, em)
            }
            None if init_only && rec.first_next.is_some() => {
                ("init".to_string(), None, None, None, None)
            }
            None => match exit {
                Some(s) => (
                    format!("exited ({s})"),
                    None,
                    None,
                    None,
                    Some(format!("see {}", log_path.display())),
                ),
                None => ("timeout".to_string(), None, None, None, None),
            },
        };
        Ok((
            Run {
                init_ms: init,
                invoke_ms: invoke,
                total_ms: total,
                peak_rss_kib: peak,
                outcome,
                error_type: etype,
                error_message: emsg,
            },
            record,
        ))
    }
}

/// Where a step's output (or its caught error) lands in the execution state,
/// as the state machine's `ResultPath`s put it.
fn merge(state: &mut Value, step: &str, run: &Run, record: &Record) {
    let ok = run.outcome == "response";
    let body = record
        .outcome
        .as_ref()
        .map(|o| o.body.clone())
        .unwrap_or(Value::Null);
    let caught = json!({
        "Error": run.error_type.clone().unwrap_or_else(|| "States.TaskFailed".into()),
        "Cause": run.error_message.clone().unwrap_or_default(),
    });
    let (ok_path, err_path) = match step {
        "validate" => ("validation", "failure"),
        "renew" => ("renewal", "renewError"),
        "deploy" => ("deployment", "deployError"),
        "purge" => ("purge", "purgeError"),
        "verify" => ("verification", "verifyError"),
        "rollback" => ("rollback", "rollbackError"),
        _ => return,
    };
    if ok {
        state[ok_path] = body;
    } else {
        state[err_path] = caught;
    }
}

/// Runs the chain once, in order, on one data directory: each function's
/// prepared directory is a copy taken just before it ran, and its event
/// carries the state the earlier steps produced.
async fn prepare(
    bench: &mut Bench,
    seed: &Path,
    wanted: &[String],
) -> Result<Vec<Target>, BoxError> {
    let bin_dir = bench.args.bin_dir.clone();
    let bin = |n: &str| bin_dir.join(format!("certops-{n}"));
    let snapshots = bench.work.join("snapshots");
    let mut targets = Vec::new();

    let scan_dir = snapshots.join("scan");
    copy_dir(seed, &scan_dir)?;
    if wanted.iter().any(|w| w == "scan") {
        targets.push(Target {
            name: "scan".into(),
            binary: bin("scan"),
            event: world::scheduled_event(),
            event_label: "EventBridge schedule (fan-out of 25 objects)".into(),
            env: bench.certops_env("scan")?,
            data: Some(scan_dir),
        });
    }

    let live = bench.work.join("chain");
    copy_dir(seed, &live)?;
    let mut execution = String::new();
    let mut state = Value::Null;
    let mut approval_id = String::new();
    for &step in CHAIN {
        let (event, label) = match step {
            "intake" => (
                world::intake_event(),
                "SQS batch, one scan finding → StartExecution".to_string(),
            ),
            "validate" => (
                world::step_event(&execution, &state, &[]),
                "state-machine input (scan trigger)".into(),
            ),
            "approval-request" => (
                world::step_event(
                    &execution,
                    &state,
                    &[("taskToken", json!("coldstart-bench-task-token"))],
                ),
                "waitForTaskToken payload after validate".into(),
            ),
            "approval-callback" => (
                world::callback_event(&approval_id),
                "API Gateway v2, signed approve → SendTaskSuccess".into(),
            ),
            "itsm-update" => (
                world::step_event(&execution, &state, &[("action", json!("approved"))]),
                "action=approved after approval".into(),
            ),
            other => (
                world::step_event(&execution, &state, &[]),
                format!("state after the steps before {other}"),
            ),
        };
        let snap = snapshots.join(step);
        copy_dir(&live, &snap)?;
        let env = bench.certops_env(step)?;
        let (run, record) = bench
            .run_once(step, &bin(step), &env, &event, Some(&live))
            .await?;
        let record = record.ok_or("the runtime API lost the invocation record")?;
        eprintln!(
            "prepare {step:<18} {}{}",
            run.outcome,
            run.error_type
                .as_deref()
                .map(|t| format!(" {t}: {}", run.error_message.as_deref().unwrap_or("")))
                .unwrap_or_default()
        );
        if step == "validate" {
            if let Some(o) = &record.outcome {
                let failed: Vec<String> = o.body["report"]["checks"]
                    .as_array()
                    .map(|cs| {
                        cs.iter()
                            .filter(|c| c["status"] != "pass")
                            .map(|c| format!("{}: {}", c["name"], c["reason"]))
                            .collect()
                    })
                    .unwrap_or_default();
                eprintln!(
                    "prepare validate path: {} {}",
                    o.body["path"],
                    failed.join("; ")
                );
            }
        }
        match step {
            "intake" => {
                let start = record
                    .sfn_calls
                    .iter()
                    .find(|c| c.operation == "StartExecution")
                    .ok_or("intake did not call StartExecution; the chain cannot go on")?;
                let input = start.request["input"].as_str().unwrap_or("null");
                state = serde_json::from_str(input)?;
                let name = start.request["name"].as_str().unwrap_or("execution");
                execution =
                    STATE_MACHINE_ARN.replacen(":stateMachine:", ":execution:", 1) + ":" + name;
            }
            "approval-request" => {
                approval_id = record
                    .outcome
                    .as_ref()
                    .and_then(|o| o.body["approvalId"].as_str())
                    .unwrap_or_default()
                    .to_string();
            }
            "approval-callback" => {
                if let Some(c) = record
                    .sfn_calls
                    .iter()
                    .find(|c| c.operation == "SendTaskSuccess")
                {
                    state["approval"] =
                        serde_json::from_str(c.request["output"].as_str().unwrap_or("null"))?;
                }
            }
            _ => merge(&mut state, step, &run, &record),
        }
        if wanted.iter().any(|w| w == step) {
            targets.push(Target {
                name: step.to_string(),
                binary: bin(step),
                event,
                event_label: label,
                env,
                data: Some(snap),
            });
        }
    }
    Ok(targets)
}

fn summarize(t: &Target, samples: Vec<Run>) -> Summary {
    let mut init: Vec<f64> = samples.iter().filter_map(|r| r.init_ms).collect();
    let mut inv: Vec<f64> = samples.iter().filter_map(|r| r.invoke_ms).collect();
    init.sort_by(f64::total_cmp);
    inv.sort_by(f64::total_cmp);
    let rss = samples
        .iter()
        .filter_map(|r| r.peak_rss_kib)
        .max()
        .map(|k| k as f64 / 1024.0);
    let ok = |r: &Run| r.outcome == "response" || r.outcome == "init";
    let responses = samples.iter().filter(|r| ok(r)).count();
    let first_error = samples.iter().find(|r| !ok(r)).map(|r| {
        format!(
            "{}{}{}",
            r.outcome,
            r.error_type
                .as_deref()
                .map(|t| format!(" {t}"))
                .unwrap_or_default(),
            r.error_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )
    });
    let init_median = percentile(&init, 0.5);
    Summary {
        function: t.name.clone(),
        event: t.event_label.clone(),
        runs: samples.len(),
        responses,
        errors: samples.len() - responses,
        init_median_ms: init_median,
        init_p90_ms: percentile(&init, 0.9),
        invoke_median_ms: percentile(&inv, 0.5),
        invoke_p90_ms: percentile(&inv, 0.9),
        peak_rss_max_mib: rss,
        init_pass: init.len() == samples.len() && init_median.is_some_and(|m| m < INIT_TARGET_MS),
        rss_pass: rss.is_some_and(|r| r < RSS_TARGET_MIB),
        first_error,
        samples,
    }
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

fn table(summaries: &[Summary]) -> String {
    let peer = summaries.iter().find(|s| s.function == PEER);
    let mut out = String::new();
    out.push_str(
        "| function | ok/runs | init median ms | init p90 ms | 1st invoke median ms | 1st invoke p90 ms | peak RSS max MiB | init ×peer | RSS ×peer | init < 15 ms | RSS < 30 MiB |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in summaries {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let (ri, rr) = match peer {
            Some(p) if s.function != PEER => (
                ratio(s.init_median_ms, p.init_median_ms),
                ratio(s.peak_rss_max_mib, p.peak_rss_max_mib),
            ),
            _ => ("1.00".into(), "1.00".into()),
        };
        let pf = |b: bool| if b { "pass" } else { "FAIL" };
        out.push_str(&format!(
            "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.function,
            s.responses,
            s.runs,
            fmt(s.init_median_ms, 2),
            fmt(s.init_p90_ms, 2),
            fmt(s.invoke_median_ms, 2),
            fmt(s.invoke_p90_ms, 2),
            fmt(s.peak_rss_max_mib, 1),
            ri,
            rr,
            pf(s.init_pass),
            pf(s.rss_pass),
        ));
    }
    out.push_str("\nFirst events (and any error they returned):\n");
    for s in summaries {
        out.push_str(&format!(
            "- {}: {} — {}\n",
            s.function,
            s.event,
            match &s.first_error {
                None => "every run succeeded (a response, or init done)".to_string(),
                Some(e) => format!("{} of {} runs did not succeed: {e}", s.errors, s.runs),
            }
        ));
    }
    out
}

async fn bench(args: Args) -> Result<bool, BoxError> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let all: Vec<String> = std::iter::once("scan")
        .chain(CHAIN.iter().copied())
        .map(str::to_string)
        .collect();
    let wanted = if args.functions.is_empty() {
        all.clone()
    } else {
        args.functions.clone()
    };
    if let Some(bad) = wanted.iter().find(|w| !all.contains(w)) {
        return Err(format!("unknown function '{bad}' (known: {})", all.join(", ")).into());
    }
    for w in &wanted {
        let b = args.bin_dir.join(format!("certops-{w}"));
        if !b.is_file() {
            return Err(format!("{} is missing; build the functions first", b.display()).into());
        }
    }
    let hello = args.bin_dir.join("coldstart-hello");
    if !args.no_peer && !hello.is_file() {
        return Err(format!("{} is missing; build the peer first", hello.display()).into());
    }

    let tmp = tempfile::Builder::new().prefix("coldstart-").tempdir()?;
    let work = tmp.path().to_path_buf();
    fs::create_dir_all(work.join("logs"))?;
    // A loopback port with nothing listening: probes get "connection refused" at once.
    let probe_port = std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port();
    let seed = work.join("seed");
    world::build(&seed, &work.join("config"), probe_port).await?;

    let api = RuntimeApi::start().await?;
    let backend = args.backend;
    let mut moto = None;
    let aws_env = match backend {
        BackendArg::Embedded => None,
        BackendArg::Aws => {
            let server = MotoServer::start()?;
            let doc = work.join("configuration.json");
            let text = |f: &str| fs::read_to_string(work.join("config").join(f));
            fs::write(
                &doc,
                json!({"inventory": text("inventory.toml")?, "policy": text("policy.toml")?})
                    .to_string(),
            )?;
            let env = server.world(&doc)?;
            moto = Some(server);
            Some(env)
        }
    };
    let mut bench = Bench {
        api,
        args,
        work: work.clone(),
        seq: 0,
        aws_env,
    };
    let mut targets = match backend {
        BackendArg::Embedded => prepare(&mut bench, &seed, &wanted).await?,
        BackendArg::Aws => {
            let mut targets = Vec::new();
            for name in &wanted {
                targets.push(Target {
                    name: name.clone(),
                    binary: bench.args.bin_dir.join(format!("certops-{name}")),
                    event: Value::Null,
                    event_label: "init only: CERTOPS_BACKEND=aws on moto (configuration \
                                  secret read, SDK clients built)"
                        .into(),
                    env: bench.certops_env(name)?,
                    data: Some(seed.clone()),
                });
            }
            targets
        }
    };
    targets.sort_by_key(|t| all.iter().position(|a| *a == t.name));
    if !bench.args.no_peer {
        let env = bench.lambda_env("coldstart-hello");
        targets.push(Target {
            name: PEER.into(),
            binary: hello,
            event: json!({"hello": "world"}),
            event_label: "any JSON; returns hello world".into(),
            env,
            data: None,
        });
    }

    let runs = bench.args.runs;
    let mut samples: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    // Interleave functions round by round so slow drift on a shared machine
    // spreads evenly over all of them.
    for round in 0..runs {
        for t in &targets {
            let dir = match &t.data {
                Some(snap) => {
                    let d = work.join("runs").join(format!("{}-{round}", t.name));
                    copy_dir(snap, &d)?;
                    Some(d)
                }
                None => None,
            };
            let (run, _) = bench
                .run_once(&t.name, &t.binary, &t.env, &t.event, dir.as_deref())
                .await?;
            if let Some(d) = dir {
                let _ = fs::remove_dir_all(d);
            }
            samples.entry(t.name.clone()).or_default().push(run);
        }
        eprintln!("round {}/{runs} done", round + 1);
    }
    let summaries: Vec<Summary> = targets
        .iter()
        .map(|t| summarize(t, samples.remove(&t.name).unwrap_or_default()))
        .collect();
    let text = format!(
        "backend: {}\n\n{}",
        match backend {
            BackendArg::Embedded => "embedded (init and first invocation)",
            BackendArg::Aws => "aws on moto (init only; 1st invoke not measured)",
        },
        table(&summaries)
    );
    drop(moto);
    let pass = summaries
        .iter()
        .filter(|s| s.function != PEER)
        .all(|s| s.init_pass && s.rss_pass);
    if bench.args.json {
        eprintln!("{text}");
        let doc = json!({
            "backend": format!("{backend:?}").to_lowercase(),
            "runsPerFunction": runs,
            "memoryMb": bench.args.memory,
            "targets": {"initMedianMs": INIT_TARGET_MS, "peakRssMib": RSS_TARGET_MIB},
            "rssSource": "VmHWM of /proc/<pid>/status after the first result, before kill",
            "functions": summaries,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{text}");
    }
    if bench.args.keep {
        let kept = tmp.keep();
        eprintln!("work directory kept: {}", kept.display());
    }
    Ok(pass)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("coldstart: at least one function missed a target");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("coldstart: {e}");
            ExitCode::from(2)
        }
    }
}
