//! Renewal latency benchmark (issue 3): time from trigger to closed ticket for
//! scenario 1 ("cert expires in 7 days") on the embedded default, with the
//! approval given at once. Target: median under 1 second.
//!
//! ```text
//! cargo run --release -p certops-embedded --example renewal_bench -- --runs 30
//! ```
//!
//! One world in a fresh temporary directory, built like `tests/harness/world.rs`:
//! the certificate object `shop-web-prod` (prod, internal PKI, change authority
//! olivia + cab-alice) served by a real in-process TLS endpoint on 127.0.0.1,
//! its fallback certificate from the local CA, policy windows always open, the
//! project's runbook, the system clock, the durable local engine (SQLite) running
//! `statemachines/cert-renewal.asl.json`.
//!
//! Before every run (untimed) the endpoint is put back into scenario 1: a fresh
//! certificate from an unrelated "legacy vendor" CA, expiring in 7 days, is
//! installed and hot-swapped in, and a real outside-in probe produces the scan
//! finding. Each finding therefore has its own expiry and fingerprint, hence its
//! own idempotency key; the per-certificate lock is released when the previous
//! renewal closed its ticket.
//!
//! One timed run: the clock starts right before `stack.trigger(scan finding)`;
//! the harness waits for the approval card (`wait_for_card`, which polls the chat
//! inbox every 10 ms) and approves at once as the service owner (`decide`); it
//! waits for the execution (`stack.wait`) and stops the clock once the
//! execution is SUCCEEDED and the change ticket is Closed. The run is checked:
//! any other outcome aborts the benchmark.
//!
//! Where the time goes is measured in the pipeline, without changing what runs:
//! the stack is opened with `Stack::with_adapters`, then its `Deps` is cloned
//! with the `Prober`, `Issuer`, `Keystore` and `Chat` ports wrapped in timing decorators,
//! and the eight step functions (`stack::FUNCTIONS`) are registered again, under
//! the same names in the stack's shared `FunctionRegistry` (registering a name
//! replaces it), each running the project's handler over the decorated `Deps`
//! inside a timer. `stack.deps` is replaced too, so `trigger` and `decide` run
//! over the same decorated ports.
//!
//! - TLS handshakes: every `Prober::probe` call (validate's look at what is
//!   served, verify's outside-in check) — a rustls handshake to the endpoint plus
//!   chain and name verification — timed by the decorator and summed per run.
//! - Key generation: the renew handler calls `rcgen::KeyPair::generate_for(
//!   &PKCS_ECDSA_P256_SHA256)` directly, through no port, so it cannot be timed
//!   by a decorator. It is measured in isolation: the same call, same rcgen build
//!   (aws-lc-rs), many times in this process; the median times one key per
//!   renewal is its cost in a run. As an in-pipeline cross-check the table also
//!   shows the renew handler's time up to the `Issuer::issue` call (plan hash
//!   check + key generation + CSR), an upper bound of the key generation.
//! - CA signing: every `Issuer::issue` call (the local CA checks the CSR and
//!   signs the leaf).
//! - Keystore: every `Keystore` call (the new bundle is written 0600 and
//!   fsynced, read back, listed by validate).
//! - Approval wait: from the moment `Chat::request_approval` returned (card
//!   posted) until `decide` returned: the harness's poll lag plus the approval
//!   callback. It is the only human-facing part and is near zero here because
//!   approval is given at once — except for `wait_for_card`'s 10 ms polling
//!   interval. `--push-approval` wakes the approver from the `Chat` decorator
//!   the moment the card is posted (as a chat push would), then calls
//!   `wait_for_card` (which finds the card at once) and `decide`.
//! - Time in no step handler and outside the approval wait: the union of the
//!   handler and approval intervals is subtracted from the run (overlaps counted
//!   once): intake, the engine's own work between states, the harness.
//!
//! The world lives in a temporary directory under the system temp dir, or under
//! `--dir PARENT` (SQLite and the keystore fsync, so the filesystem matters).
//!
//! Reports median, p90, min and max over the timed runs (after the warm-up
//! runs) and, for each component, its median time and its median share of the
//! run's trigger→closed time.

use async_trait::async_trait;
use certops_adapters::Embedded;
use certops_asl::{FunctionRegistry, StatesError};
use certops_core::ports::{
    ApprovalCard, Bundle, Chat, Clock, Config, DeployTarget, Deps, IssueRequest, Issuer, Itsm,
    Keystore, Observation, Prober, SecretPem, SystemClock, TicketState,
};
use certops_core::workflow::{StepEvent, WorkflowState};
use certops_core::{
    Endpoint, Error, Inventory, Policy, ReloadMethod, Runbook, ScanFinding, Target, TargetKind,
    Trigger, Verdict,
};
use certops_embedded::demo::Legacy;
use certops_embedded::prober::TlsProber;
use certops_embedded::stack::{Stack, FUNCTIONS};
use chrono::{Duration as TimeDelta, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RUNBOOK: &str = certops_adapters::config_files::RUNBOOK;
const CERT_ID: &str = "shop-web-prod";
const CN: &str = "shop.example.com";
const TARGET: &str = "lb-shop";
const OWNER: &str = "olivia@example.com";

// ---------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------

/// One timed span inside a run.
#[derive(Debug, Clone)]
struct Span {
    what: String,
    start: Instant,
    took: Duration,
}

/// Spans recorded by the decorators and timed handlers (runs are sequential).
#[derive(Default)]
struct Recorder {
    spans: Mutex<Vec<Span>>,
    /// Signalled when an approval card is in the inbox (`--push-approval`).
    card: tokio::sync::Notify,
}

impl Recorder {
    fn record(&self, what: &str, start: Instant) {
        let took = start.elapsed();
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Span {
                what: what.to_string(),
                start,
                took,
            });
    }

    fn take(&self) -> Vec<Span> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

struct TimedProber {
    inner: Arc<dyn Prober>,
    rec: Arc<Recorder>,
}

#[async_trait]
impl Prober for TimedProber {
    async fn probe(
        &self,
        endpoint: &Endpoint,
        extra_roots_pem: Option<&str>,
    ) -> Result<Vec<Observation>, Error> {
        let t = Instant::now();
        let out = self.inner.probe(endpoint, extra_roots_pem).await;
        self.rec.record("probe", t);
        out
    }
}

struct TimedIssuer {
    inner: Arc<dyn Issuer>,
    rec: Arc<Recorder>,
}

#[async_trait]
impl Issuer for TimedIssuer {
    async fn issue(&self, request: &IssueRequest) -> Result<String, Error> {
        let t = Instant::now();
        let out = self.inner.issue(request).await;
        self.rec.record("issue", t);
        out
    }

    async fn trust_anchors_pem(&self) -> Result<Option<String>, Error> {
        let t = Instant::now();
        let out = self.inner.trust_anchors_pem().await;
        self.rec.record("trust-anchors", t);
        out
    }
}

struct TimedKeystore {
    inner: Arc<dyn Keystore>,
    rec: Arc<Recorder>,
}

#[async_trait]
impl Keystore for TimedKeystore {
    async fn put_bundle(&self, name: &str, bundle: Bundle) -> Result<String, Error> {
        let t = Instant::now();
        let out = self.inner.put_bundle(name, bundle).await;
        self.rec.record("keystore", t);
        out
    }

    async fn get_bundle(&self, reference: &str) -> Result<Bundle, Error> {
        let t = Instant::now();
        let out = self.inner.get_bundle(reference).await;
        self.rec.record("keystore", t);
        out
    }

    async fn exists(&self, reference: &str) -> Result<bool, Error> {
        let t = Instant::now();
        let out = self.inner.exists(reference).await;
        self.rec.record("keystore", t);
        out
    }

    async fn references(&self) -> Result<Vec<String>, Error> {
        let t = Instant::now();
        let out = self.inner.references().await;
        self.rec.record("keystore", t);
        out
    }
}

struct TimedChat {
    inner: Arc<dyn Chat>,
    rec: Arc<Recorder>,
}

#[async_trait]
impl Chat for TimedChat {
    async fn request_approval(&self, card: &ApprovalCard) -> Result<(), Error> {
        let t = Instant::now();
        let out = self.inner.request_approval(card).await;
        // The span's end is the moment the card is in the inbox.
        self.rec.record("card-posted", t);
        self.rec.card.notify_one();
        out
    }

    async fn notify(&self, to: &str, text: &str) -> Result<(), Error> {
        self.inner.notify(to, text).await
    }
}

fn lambda_error(e: &Error) -> StatesError {
    StatesError::new(
        e.name(),
        json!({"errorType": e.name(), "errorMessage": e.to_string()}).to_string(),
    )
}

/// Registers a step handler exactly as `Stack::with_adapters` does, inside a timer.
fn register_timed<F, Fut, O>(
    reg: &FunctionRegistry,
    rec: &Arc<Recorder>,
    name: &'static str,
    deps: &Deps,
    f: F,
) where
    F: Fn(Deps, StepEvent) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<O, Error>> + Send + 'static,
    O: Serialize,
{
    let deps = deps.clone();
    let rec = rec.clone();
    reg.register(name, move |payload: Value| {
        let deps = deps.clone();
        let f = f.clone();
        let rec = rec.clone();
        async move {
            let t = Instant::now();
            let out = async {
                let event: StepEvent = serde_json::from_value(payload)
                    .map_err(|e| lambda_error(&Error::InvalidInput(format!("step event: {e}"))))?;
                let out = f(deps, event).await.map_err(|e| lambda_error(&e))?;
                serde_json::to_value(out)
                    .map_err(|e| lambda_error(&Error::InvalidInput(e.to_string())))
            }
            .await;
            rec.record(name, t);
            out
        }
    });
}

/// Wraps the stack's ports in timing decorators and re-registers every step function over them.
fn instrument(stack: &mut Stack, rec: &Arc<Recorder>) -> Result<(), Error> {
    let mut deps = stack.deps.clone();
    deps.prober = Arc::new(TimedProber {
        inner: deps.prober.clone(),
        rec: rec.clone(),
    });
    deps.issuer = Arc::new(TimedIssuer {
        inner: deps.issuer.clone(),
        rec: rec.clone(),
    });
    deps.keystore = Arc::new(TimedKeystore {
        inner: deps.keystore.clone(),
        rec: rec.clone(),
    });
    deps.chat = Arc::new(TimedChat {
        inner: deps.chat.clone(),
        rec: rec.clone(),
    });
    let reg = &stack.functions;
    register_timed(reg, rec, "certops-validate", &deps, |d, e| async move {
        certops_fn_validate::handle(&d, e).await
    });
    register_timed(
        reg,
        rec,
        "certops-approval-request",
        &deps,
        |d, e| async move { certops_fn_approval_request::handle(&d, e).await },
    );
    register_timed(reg, rec, "certops-renew", &deps, |d, e| async move {
        certops_fn_renew::handle(&d, e).await
    });
    register_timed(reg, rec, "certops-deploy", &deps, |d, e| async move {
        certops_fn_deploy::handle(&d, e).await
    });
    register_timed(reg, rec, "certops-purge", &deps, |d, e| async move {
        certops_fn_purge::handle(&d, e).await
    });
    register_timed(reg, rec, "certops-verify", &deps, |d, e| async move {
        certops_fn_verify::handle(&d, e).await
    });
    register_timed(reg, rec, "certops-itsm-update", &deps, |d, e| async move {
        certops_fn_itsm_update::handle(&d, e).await
    });
    register_timed(reg, rec, "certops-rollback", &deps, |d, e| async move {
        certops_fn_rollback::handle(&d, e).await
    });
    // Every step function the definition names must now be a timed one.
    const TIMED: &[&str] = &[
        "certops-validate",
        "certops-approval-request",
        "certops-renew",
        "certops-deploy",
        "certops-purge",
        "certops-verify",
        "certops-itsm-update",
        "certops-rollback",
    ];
    for (_, name) in FUNCTIONS {
        if !TIMED.contains(name) {
            return Err(Error::InvalidInput(format!(
                "step function {name} is not instrumented by the benchmark"
            )));
        }
    }
    stack.deps = deps;
    Ok(())
}

// ---------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------

fn rc(e: rcgen::Error) -> Error {
    Error::InvalidInput(format!("certificate generation: {e}"))
}

/// A leaf for `CN` expiring 7 days from now, with its key, from the demo's legacy CA.
fn expiring_in_7_days(legacy: &Legacy) -> Result<(String, String), Error> {
    legacy.cert(CN, Utc::now() + TimeDelta::days(7))
}

struct World {
    stack: Stack,
    legacy: Legacy,
    endpoint: Endpoint,
    target: Target,
    scanner: TlsProber,
}

async fn build_world(dir: &Path, rec: &Arc<Recorder>) -> Result<World, Error> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapters = Embedded::open(dir, clock.clone())?;
    let legacy = Legacy::new()?;
    let (chain, key) = expiring_in_7_days(&legacy)?;
    let current = adapters
        .keystore
        .put_bundle(
            "current/shop-0",
            Bundle {
                chain_pem: chain,
                key: SecretPem::new(key),
            },
        )
        .await?;
    // The fallback certificate, pre-provisioned from the internal PKI.
    let fallback = adapters
        .provision_fallback("fallback/shop", CERT_ID, &[CN])
        .await?;
    let addr = adapters.endpoints.start(TARGET, &current).await?;
    let inventory = certops_adapters::fixtures::LocalCertificate::new(CERT_ID, CN, addr.port())
        .owner(OWNER)
        .target(TARGET)
        .fallback(&fallback)
        .toml();
    let config = Config {
        inventory: Inventory::from_toml_str(&inventory)?,
        policy: Policy::from_toml_str(
            &certops_adapters::fixtures::OpenPolicy::new("bench-1").toml(),
        )?,
        runbook: Runbook::from_toml_str(RUNBOOK)?,
        default_oncall: certops_core::ports::DEFAULT_ONCALL.into(),
        integrations: certops_core::integrations::Integrations::none(),
    };
    let mut stack =
        Stack::with_adapters(dir, adapters, config, clock, Duration::from_secs(3)).await?;
    instrument(&mut stack, rec)?;
    Ok(World {
        stack,
        legacy,
        endpoint: Endpoint {
            host: "127.0.0.1".into(),
            port: addr.port(),
            sni: CN.into(),
        },
        target: Target {
            kind: TargetKind::Local,
            id: TARGET.into(),
            reload: ReloadMethod::HotSwap,
        },
        scanner: TlsProber::new(Duration::from_secs(3))?,
    })
}

impl World {
    /// Untimed: puts a fresh 7-day certificate on the endpoint and scans it.
    async fn reset(&self, i: usize) -> Result<ScanFinding, Error> {
        let (chain, key) = expiring_in_7_days(&self.legacy)?;
        let reference = self
            .stack
            .adapters
            .keystore
            .put_bundle(
                &format!("current/shop-{}", i + 1),
                Bundle {
                    chain_pem: chain,
                    key: SecretPem::new(key),
                },
            )
            .await?;
        let endpoints = &self.stack.adapters.endpoints;
        endpoints.deploy(&self.target, &reference).await?;
        endpoints.reload(&self.target).await?;
        let obs = self.scanner.probe(&self.endpoint, None).await?;
        let first = obs
            .first()
            .ok_or_else(|| Error::VerificationFailed("the endpoint served nothing".into()))?;
        Ok(ScanFinding {
            ci: CERT_ID.into(),
            observed_expiry: first.not_after,
            observed_fingerprint: Some(first.fingerprint.clone()),
        })
    }
}

// ---------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------

/// Everything measured in one run, in milliseconds.
#[derive(Debug, Clone, Default)]
struct Sample {
    total: f64,
    /// Sequential phases (they add up to `total`).
    phases: BTreeMap<&'static str, f64>,
    /// Components inside the run (not exclusive of each other).
    parts: BTreeMap<String, f64>,
    probes: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn one_run(world: &World, rec: &Recorder, i: usize, push: bool) -> Result<Sample, Error> {
    let finding = world.reset(i).await?;
    let stack = &world.stack;
    rec.take();

    let t0 = Instant::now();
    let started = stack.trigger(Trigger::Scan(finding)).await?;
    if push {
        // An approver told the moment the card lands (as a chat push would), instead of
        // `wait_for_card`'s 10 ms polling; `wait_for_card` then finds it at once.
        tokio::time::timeout(Duration::from_secs(30), rec.card.notified())
            .await
            .map_err(|_| Error::Transient("no approval card within 30 s".into()))?;
    }
    let approval_id = stack
        .wait_for_card(&started.execution, Duration::from_secs(30))
        .await?;
    let t_seen = Instant::now();
    stack
        .decide(certops_fn_approval_callback::Callback {
            approval_id,
            approver: OWNER.into(),
            verdict: Verdict::Approve,
            comment: Some("approved at once (bench)".into()),
        })
        .await?;
    let t_decided = Instant::now();
    let info = stack
        .wait(&started.execution, Duration::from_secs(60))
        .await?;
    let t_done = Instant::now();
    if info.status.as_str() != "SUCCEEDED" {
        return Err(Error::InvalidInput(format!(
            "{} ended {} ({:?})",
            started.execution,
            info.status.as_str(),
            info.error
        )));
    }
    let state: WorkflowState = info
        .output
        .clone()
        .and_then(|o| serde_json::from_value(o).ok())
        .ok_or_else(|| Error::InvalidInput("execution output is not a workflow state".into()))?;
    let ticket = state
        .validation
        .as_ref()
        .map(|v| v.ticket.clone())
        .ok_or_else(|| Error::InvalidInput("no ticket in the execution output".into()))?;
    let closed = stack
        .adapters
        .tickets
        .get(&ticket)
        .await?
        .map(|t| t.state == TicketState::Closed)
        .unwrap_or(false);
    let t_end = Instant::now();
    if !closed {
        return Err(Error::InvalidInput(format!(
            "ticket {ticket} is not Closed"
        )));
    }
    if state.approval.as_ref().map(|a| a.approver.as_str()) != Some(OWNER) {
        return Err(Error::InvalidInput("the approval was not recorded".into()));
    }

    let spans = rec.take();
    // The card is in the inbox by the end of `request_approval`; the poller may see it a
    // hair earlier, so the boundary is whichever came first.
    let card_posted = spans
        .iter()
        .find(|s| s.what == "card-posted")
        .map(|s| (s.start + s.took).min(t_seen))
        .ok_or_else(|| Error::InvalidInput("no approval card was posted".into()))?;
    let mut s = Sample {
        total: ms(t_end - t0),
        ..Sample::default()
    };
    s.phases
        .insert("1 trigger -> card posted", ms(card_posted - t0));
    s.phases.insert(
        "2 card posted -> card seen by approver",
        ms(t_seen - card_posted),
    );
    s.phases
        .insert("3 card seen -> decide returned", ms(t_decided - t_seen));
    s.phases
        .insert("4 decided -> execution SUCCEEDED", ms(t_done - t_decided));
    s.phases
        .insert("5 SUCCEEDED -> ticket Closed checked", ms(t_end - t_done));
    for sp in &spans {
        *s.parts.entry(sp.what.clone()).or_default() += ms(sp.took);
    }
    s.probes = spans.iter().filter(|x| x.what == "probe").count();
    // Time in neither a step handler nor the approval wait: intake, the engine's own
    // work between states, the harness. Union of intervals, so overlaps count once.
    let mut covered: Vec<(Instant, Instant)> = spans
        .iter()
        .filter(|x| FUNCTIONS.iter().any(|(_, f)| *f == x.what))
        .map(|x| (x.start.max(t0), (x.start + x.took).min(t_end)))
        .chain(std::iter::once((card_posted, t_decided)))
        .filter(|(a, b)| a < b)
        .collect();
    covered.sort();
    let mut busy = Duration::ZERO;
    let mut cur: Option<(Instant, Instant)> = None;
    for (a, b) in covered {
        cur = match cur {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                busy += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((ca, cb)) = cur {
        busy += cb - ca;
    }
    s.parts
        .insert("rest".into(), ms((t_end - t0).saturating_sub(busy)));
    s.parts.insert(
        "approval wait (card posted -> decided)".into(),
        ms(t_decided - card_posted),
    );
    // Renew handler start -> Issuer::issue start: plan check + key generation + CSR.
    let renew = spans.iter().find(|x| x.what == "certops-renew");
    let issue = spans.iter().find(|x| x.what == "issue");
    if let (Some(r), Some(is)) = (renew, issue) {
        s.parts.insert(
            "renew up to issue (plan+keygen+CSR)".into(),
            ms(is.start.saturating_duration_since(r.start)),
        );
    }
    Ok(s)
}

// ---------------------------------------------------------------------------
// Statistics and report
// ---------------------------------------------------------------------------

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn median(v: &[f64]) -> f64 {
    let v = sorted(v.to_vec());
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile.
fn pct(v: &[f64], p: f64) -> f64 {
    let v = sorted(v.to_vec());
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The isolated cost of the renew handler's key generation, `samples` times.
fn keygen_isolated(samples: usize) -> Result<Vec<f64>, Error> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rc)?;
        out.push(ms(t.elapsed()));
        std::hint::black_box(key);
    }
    Ok(out)
}

struct Args {
    runs: usize,
    warmup: usize,
    keygen_samples: usize,
    raw: bool,
    push: bool,
    dir: Option<std::path::PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        runs: 30,
        warmup: 3,
        keygen_samples: 1000,
        raw: false,
        push: false,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--runs" => a.runs = num("--runs")?.max(1),
            "--warmup" => a.warmup = num("--warmup")?,
            "--keygen-samples" => a.keygen_samples = num("--keygen-samples")?.max(1),
            "--raw" => a.raw = true,
            "--push-approval" => a.push = true,
            "--dir" => {
                a.dir = Some(
                    it.next()
                        .ok_or("--dir needs a directory")?
                        .into(),
                )
            }
            "-h" | "--help" => {
                return Err(
                    "usage: renewal_bench [--runs N (30)] [--warmup W (3)] [--keygen-samples K (1000)] [--raw] [--push-approval] [--dir PARENT (system temp)]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn line(label: &str, v: &[f64], totals: &[f64]) {
    let shares: Vec<f64> = v.iter().zip(totals).map(|(x, t)| 100.0 * x / t).collect();
    println!(
        "  {label:<44} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7.1}%",
        median(v),
        pct(v, 90.0),
        sorted(v.to_vec()).first().copied().unwrap_or(f64::NAN),
        sorted(v.to_vec()).last().copied().unwrap_or(f64::NAN),
        median(&shares)
    );
}

fn report(a: &Args, samples: &[Sample], keygen: &[f64]) -> bool {
    let totals: Vec<f64> = samples.iter().map(|s| s.total).collect();
    let col = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
    let part = |name: &str| col(&|s: &Sample| s.parts.get(name).copied().unwrap_or(0.0));
    let keygen_med = median(keygen);
    let header = |title: &str| {
        println!(
            "  {title:<44} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "median", "p90", "min", "max", "share"
        )
    };

    println!();
    println!(
        "renewal latency: scenario 1 (cert expires in 7 days, internal PKI, owner approves at once), embedded default"
    );
    println!(
        "{} timed runs after {} warm-up runs; one world, endpoint reset to a fresh 7-day cert before each run (untimed); times in ms",
        samples.len(),
        a.warmup
    );
    println!(
        "approver: {}",
        if a.push {
            "woken the moment the card is posted (--push-approval), then wait_for_card + decide"
        } else {
            "wait_for_card (polls the inbox every 10 ms) + decide"
        }
    );
    println!();
    header("trigger -> ticket Closed");
    line("total", &totals, &totals);
    println!();
    header("phases (sequential, add up to the total)");
    let names: Vec<&'static str> = samples
        .first()
        .map(|s| s.phases.keys().copied().collect())
        .unwrap_or_default();
    for n in names {
        line(
            n,
            &col(&|s: &Sample| s.phases.get(n).copied().unwrap_or(0.0)),
            &totals,
        );
    }
    println!();
    header("components inside the run");
    let probes = samples.first().map(|s| s.probes).unwrap_or(0);
    line(
        "(a) key generation, 1 x ECDSA P-256 [isolated]",
        &vec![keygen_med; samples.len()],
        &totals,
    );
    line(
        &format!("(b) TLS handshakes (prober), {probes} per run"),
        &part("probe"),
        &totals,
    );
    line("CA signing (Issuer::issue)", &part("issue"), &totals);
    line(
        "approval wait (card posted -> decided)",
        &part("approval wait (card posted -> decided)"),
        &totals,
    );
    line(
        "renew up to issue (plan+keygen+CSR)",
        &part("renew up to issue (plan+keygen+CSR)"),
        &totals,
    );
    line(
        "keystore (put/get/list bundles, fsync)",
        &part("keystore"),
        &totals,
    );
    line(
        "issuer trust anchors (validate, verify)",
        &part("trust-anchors"),
        &totals,
    );
    println!();
    header("step handlers (Lambda functions, inclusive)");
    let mut handler_sum = vec![0.0; samples.len()];
    for (_, name) in FUNCTIONS {
        let v = part(name);
        if v.iter().all(|x| *x == 0.0) {
            continue;
        }
        for (acc, x) in handler_sum.iter_mut().zip(&v) {
            *acc += x;
        }
        line(name, &v, &totals);
    }
    line("all step handlers", &handler_sum, &totals);
    line(
        "in no handler, not approval wait (union)",
        &part("rest"),
        &totals,
    );
    println!();
    println!(
        "key generation, isolated: rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256) x {}: median {:.3} ms, p90 {:.3} ms, min {:.3}, max {:.3}",
        keygen.len(),
        keygen_med,
        pct(keygen, 90.0),
        sorted(keygen.to_vec()).first().copied().unwrap_or(f64::NAN),
        sorted(keygen.to_vec()).last().copied().unwrap_or(f64::NAN),
    );
    let med = median(&totals);
    let pass = med < 1000.0;
    println!();
    println!(
        "target: median trigger -> closed < 1000 ms: {} (median {:.1} ms, p90 {:.1} ms)",
        if pass { "PASS" } else { "FAIL" },
        med,
        pct(&totals, 90.0)
    );
    if a.raw {
        println!();
        println!("per run (ms): total, phases 1-5, probe, issue, handlers");
        for (i, s) in samples.iter().enumerate() {
            let ph: Vec<String> = s.phases.values().map(|v| format!("{v:.2}")).collect();
            println!(
                "  {:>3} {:>8.2}  [{}]  probe {:.2}  issue {:.2}  handlers {:.2}",
                i + 1,
                s.total,
                ph.join(", "),
                s.parts.get("probe").copied().unwrap_or(0.0),
                s.parts.get("issue").copied().unwrap_or(0.0),
                handler_sum[i]
            );
        }
    }
    pass
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        let dir = match &a.dir {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .map_err(|e| Error::InvalidInput(format!("temporary directory: {e}")))?;
        let rec = Arc::new(Recorder::default());
        eprintln!("building the world in {}", dir.path().display());
        let world = build_world(dir.path(), &rec).await?;
        let mut samples = Vec::new();
        for i in 0..a.warmup + a.runs {
            let s = one_run(&world, &rec, i, a.push).await?;
            let tag = if i < a.warmup { "warm-up" } else { "run" };
            eprintln!("{tag} {:>3}: {:.1} ms", i + 1, s.total);
            if i >= a.warmup {
                samples.push(s);
            }
        }
        eprintln!("timing key generation in isolation...");
        let keygen = keygen_isolated(a.keygen_samples)?;
        drop(world);
        Ok::<_, Error>((samples, keygen))
    });
    match result {
        Ok((samples, keygen)) => {
            if !report(&a, &samples, &keygen) {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {}: {e}", e.name());
            std::process::exit(1);
        }
    }
}
