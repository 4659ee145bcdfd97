//! Engine benchmark: how fast `certops-asl` runs state machines, and how much
//! memory it needs to hold many executions that wait for callbacks.
//!
//! Driven by `bench/asl/run.sh`, which runs the same definitions through the
//! Node.js peer `aws-local-stepfunctions` (`bench/asl/peer.mjs`) and prints
//! the side-by-side table. Subcommands:
//!
//! * `defs --out DIR [--pass-states N] [--loop-iters N] [--map-items N]`:
//!   writes the benchmark definitions, their inputs, the expected outputs and
//!   expected transition counts (`DIR/manifest.json`), so both engines run
//!   exactly the same JSON.
//! * `throughput --defs DIR --storage memory|sqlite [--reps N] [--warmup N]
//!   [--engine fresh|shared] [--only ID[,ID…]]`: for each scenario (a Pass
//!   chain, a Choice
//!   loop driven by `States.MathAdd`, an inline Map), runs `warmup + reps`
//!   executions one after another, each timed from `start_execution` to
//!   `wait_for` returning. By default every execution gets a fresh engine
//!   (opened, and the previous one dropped, outside the timing), as the
//!   peer's `run()` starts from nothing; `--engine shared` keeps one engine
//!   for all of them, so earlier executions' history stays resident. History
//!   is recorded (in memory, or in a SQLite file in a temporary directory).
//!   One JSON line per scenario: median / min / max wall time per execution
//!   and state transitions per second (transitions = states entered, which is
//!   `ExecutionInfo::transitions`; checked against the manifest and against
//!   the number of `…StateEntered` events in the recorded history).
//!   `--only pass_chain` runs just the named scenarios (for profiling, e.g.
//!   under `valgrind --tool=callgrind` with `--reps 3 --warmup 0`).
//! * `waiters --defs DIR --storage memory|sqlite [--count N]`: starts N
//!   executions of a one-Task definition
//!   (`arn:aws:states:::lambda:invoke.waitForTaskToken`) whose invoker
//!   returns `{}` at once and keeps the task token, so every execution sits
//!   waiting for `SendTaskSuccess`. Reports VmRSS / VmHWM from
//!   `/proc/self/status` once all N wait (and the baseline before the
//!   engine opened), then sends `SendTaskSuccess` to every token and checks
//!   that every execution succeeded with the callback's output.
//! * `report --results DIR --defs DIR`: reads the JSON lines the other
//!   subcommands (and the peer) wrote and prints the comparison table.
//!
//! `--storage sqlite:PATH` uses (and keeps) the given database file instead
//! of a temporary one, for inspecting what was stored.
//!
//! Run everything on one core (`taskset -c 0`) for per-core figures; the
//! engine is driven on a current-thread tokio runtime.

// The same allocator the certops binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use certops_asl::{
    BoxFuture, Engine, EngineOptions, ExecutionStatus, StatesError, Storage, TaskInvoker,
    TaskRequest, TokioClock, DEFAULT_ROLE_ARN,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

const TPS_TARGET: f64 = 200_000.0;
const RATIO_TARGET: f64 = 10.0;
const MEMORY_TARGET_MB: f64 = 50.0;

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let mut opts = HashMap::new();
    while let Some(k) = args.next() {
        let Some(key) = k.strip_prefix("--") else {
            return Err(format!("unexpected argument '{k}'").into());
        };
        let v = args
            .next()
            .ok_or_else(|| format!("--{key} needs a value"))?;
        opts.insert(key.to_string(), v);
    }
    let get = |k: &str| opts.get(k).cloned();
    let num = |k: &str, d: u64| -> Res<u64> {
        match opts.get(k) {
            Some(v) => Ok(v.parse().map_err(|e| format!("--{k} {v}: {e}"))?),
            None => Ok(d),
        }
    };
    let dir = |k: &str| -> Res<PathBuf> {
        Ok(PathBuf::from(
            get(k).ok_or_else(|| format!("--{k} DIR is required"))?,
        ))
    };
    match cmd.as_str() {
        "defs" => write_defs(
            &dir("out")?,
            num("pass-states", 1_000)?,
            num("loop-iters", 10_000)?,
            num("map-items", 10_000)?,
        ),
        "throughput" => {
            let storage = get("storage").unwrap_or_else(|| "memory".into());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let fresh = match get("engine").as_deref() {
                None | Some("fresh") => true,
                Some("shared") => false,
                Some(other) => return Err(format!("--engine fresh|shared, not '{other}'").into()),
            };
            let only: Option<Vec<String>> =
                get("only").map(|s| s.split(',').map(str::to_string).collect());
            rt.block_on(throughput(
                &dir("defs")?,
                &storage,
                num("reps", 7)?,
                num("warmup", 1)?,
                fresh,
                only.as_deref(),
            ))
        }
        "waiters" => {
            let storage = get("storage").unwrap_or_else(|| "memory".into());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(waiters(&dir("defs")?, &storage, num("count", 10_000)?))
        }
        "report" => report(&dir("results")?, &dir("defs")?),
        _ => Err("usage: engine_bench defs|throughput|waiters|report [--key value]... (see the file header)".into()),
    }
}

// ---------------------------------------------------------------- definitions

fn write_json(path: &Path, v: &Value) -> Res<()> {
    fs::write(path, serde_json::to_string_pretty(v)? + "\n")?;
    Ok(())
}

fn write_defs(out: &Path, pass_states: u64, loop_iters: u64, map_items: u64) -> Res<()> {
    if pass_states == 0 || loop_iters == 0 || map_items == 0 {
        return Err("sizes must be at least 1".into());
    }
    fs::create_dir_all(out)?;
    let mut scenarios = Vec::new();

    // 1. A chain of Pass states; each adds its step number and the previous one under $.last.
    let width = pass_states.to_string().len();
    let name = |i: u64| format!("Step{i:0width$}");
    let mut states = serde_json::Map::new();
    for i in 0..pass_states {
        let mut st = json!({
            "Type": "Pass",
            "Parameters": {"step": i, "prev.$": "$.last.step"},
            "ResultPath": "$.last",
        });
        if i + 1 == pass_states {
            st["End"] = json!(true);
        } else {
            st["Next"] = json!(name(i + 1));
        }
        states.insert(name(i), st);
    }
    let def = json!({
        "Comment": format!("certops bench: a chain of {pass_states} Pass states"),
        "StartAt": name(0),
        "States": states,
    });
    let payload = json!({"id": "bench", "tags": ["a", "b", "c"]});
    scenarios.push(scenario(
        out,
        "pass_chain",
        &format!("Pass chain ({pass_states} states)"),
        &def,
        &json!({"last": {"step": -1}, "payload": payload}),
        &json!({"last": {"step": pass_states - 1, "prev": pass_states as i64 - 2}, "payload": payload}),
        pass_states,
    )?);

    // 2. A Choice loop: a Pass increments $.counter.value with States.MathAdd until it reaches N.
    let def = json!({
        "Comment": format!("certops bench: a Choice loop of {loop_iters} iterations"),
        "StartAt": "Increment",
        "States": {
            "Increment": {
                "Type": "Pass",
                "Parameters": {"value.$": "States.MathAdd($.counter.value, 1)"},
                "ResultPath": "$.counter",
                "Next": "Check",
            },
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.counter.value", "NumericLessThan": loop_iters, "Next": "Increment"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    });
    scenarios.push(scenario(
        out,
        "choice_loop",
        &format!("Choice loop ({loop_iters} iterations)"),
        &def,
        &json!({"counter": {"value": 0}}),
        &json!({"counter": {"value": loop_iters}}),
        2 * loop_iters + 1,
    )?);

    // 3. An inline Map whose iterations are each one Pass.
    let def = json!({
        "Comment": format!("certops bench: an inline Map over {map_items} items"),
        "StartAt": "FanOut",
        "States": {
            "FanOut": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Item",
                    "States": {"Item": {"Type": "Pass", "Parameters": {"item.$": "$.id"}, "End": true}},
                },
                "ResultPath": "$.results",
                "End": true,
            },
        },
    });
    // Items are objects, not bare numbers: the peer cannot apply a path to a
    // scalar input ('$' on the item 0 fails with "does not point to a value").
    let items: Vec<Value> = (0..map_items).map(|i| json!({"id": i})).collect();
    let results: Vec<Value> = (0..map_items).map(|i| json!({"item": i})).collect();
    let mut map = scenario(
        out,
        "inline_map",
        &format!("Inline Map ({map_items} items)"),
        &def,
        &json!({"items": items}),
        &json!({"items": items, "results": results}),
        map_items + 1,
    )?;
    map["note"] = json!(
        "items are {\"id\": n} objects and each iteration's Pass reads $.id, because the peer cannot evaluate a path \
         against a bare-number item (same for both engines); MaxConcurrency is unset, so the peer runs 40 iterations \
         at a time (its default) and ours all at once"
    );
    scenarios.push(map);

    // 4. One Task that waits for a callback.
    let def = json!({
        "Comment": "certops bench: one Task waiting for SendTaskSuccess",
        "StartAt": "AwaitCallback",
        "States": {
            "AwaitCallback": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {
                    "FunctionName": "certops-bench-callback-sink",
                    "Payload": {"token.$": "$$.Task.Token", "n.$": "$.n"},
                },
                "ResultPath": "$.callback",
                "End": true,
            },
        },
    });
    write_json(&out.join("waiter.asl.json"), &def)?;

    write_json(
        &out.join("manifest.json"),
        &json!({
            "sizes": {"pass_states": pass_states, "loop_iters": loop_iters, "map_items": map_items},
            "scenarios": scenarios,
            "waiter": {"definition": "waiter.asl.json", "state": "AwaitCallback"},
        }),
    )?;
    println!(
        "wrote {} scenario definitions and the waiter definition to {}",
        3,
        out.display()
    );
    Ok(())
}

fn scenario(
    out: &Path,
    id: &str,
    title: &str,
    def: &Value,
    input: &Value,
    expected: &Value,
    transitions: u64,
) -> Res<Value> {
    let (d, i, e) = (
        format!("{id}.asl.json"),
        format!("{id}.input.json"),
        format!("{id}.expected.json"),
    );
    write_json(&out.join(&d), def)?;
    write_json(&out.join(&i), input)?;
    write_json(&out.join(&e), expected)?;
    Ok(json!({
        "id": id,
        "title": title,
        "definition": d,
        "input": i,
        "expected_output": e,
        "expected_transitions": transitions,
    }))
}

fn read_json(path: &Path) -> Res<Value> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn field<'a>(v: &'a Value, k: &str) -> Res<&'a str> {
    v[k].as_str()
        .ok_or_else(|| format!("manifest: '{k}' is missing").into())
}

// ---------------------------------------------------------------- engine set-up

fn open_engine(
    storage: &str,
    invoker: Arc<dyn TaskInvoker>,
) -> Res<(Engine, Option<tempfile::TempDir>)> {
    let (storage, dir) = match storage {
        "memory" => (Storage::Memory, None),
        // A given file (kept afterwards, for inspection).
        s if s.starts_with("sqlite:") => {
            (Storage::Sqlite(PathBuf::from(&s["sqlite:".len()..])), None)
        }
        "sqlite" => {
            let dir = tempfile::Builder::new()
                .prefix("certops-asl-bench")
                .tempdir()?;
            (Storage::Sqlite(dir.path().join("engine.sqlite")), Some(dir))
        }
        other => return Err(format!("--storage must be memory or sqlite, not '{other}'").into()),
    };
    let engine = Engine::open(
        EngineOptions {
            storage,
            seed: Some(7),
            // The Choice loop (10000 iterations, ~40,000 events) and the Map
            // (10000 items) exceed AWS's 25,000-event history quota, which the
            // peer does not have: lift ours so both engines do the same work.
            // Yielding every `transitions_per_slice` transitions stays on.
            max_history_events: u64::MAX,
            ..EngineOptions::default()
        },
        invoker,
        Arc::new(TokioClock::system()),
    )?;
    Ok((engine, dir))
}

/// CPU time of this thread (the engine runs on a current-thread runtime), in
/// nanoseconds, from `/proc/thread-self/schedstat`: unlike wall time, it does
/// not grow while other processes hold the core.
///
/// The kernel brings a running thread's figure up to date only at a tick or a
/// scheduler call, so yield first (`sched_yield` updates it); the yield is
/// outside the timed region.
fn thread_cpu_ns() -> Res<u64> {
    std::thread::yield_now();
    let s = fs::read_to_string("/proc/thread-self/schedstat")?;
    Ok(s.split_whitespace()
        .next()
        .ok_or("empty schedstat")?
        .parse()?)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------- throughput

async fn throughput(
    defs: &Path,
    storage: &str,
    reps: u64,
    warmup: u64,
    fresh: bool,
    only: Option<&[String]>,
) -> Res<()> {
    if reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    let manifest = read_json(&defs.join("manifest.json"))?;
    // The engine (and its SQLite file) in use; with `fresh`, a new one for every execution.
    let mut current: Option<(Engine, Option<tempfile::TempDir>)> = None;
    let scenarios = manifest["scenarios"]
        .as_array()
        .ok_or("manifest: no scenarios")?;
    for sc in scenarios {
        let id = field(sc, "id")?;
        if only.is_some_and(|o| !o.iter().any(|x| x == id)) {
            continue;
        }
        let definition = fs::read_to_string(defs.join(field(sc, "definition")?))?;
        let input = read_json(&defs.join(field(sc, "input")?))?;
        let expected = read_json(&defs.join(field(sc, "expected_output")?))?;
        let expected_transitions = sc["expected_transitions"]
            .as_u64()
            .ok_or("manifest: expected_transitions")?;
        let mut times = Vec::new();
        let mut cpu_times = Vec::new();
        let mut history_entered = None;
        for r in 0..warmup + reps {
            if fresh {
                current = None; // drop the previous engine outside the timing
            }
            let (engine, dir) = match current.take() {
                Some(c) => c,
                None => open_engine(storage, Arc::new(certops_asl::NoTasks))?,
            };
            // Idempotent: an existing machine with the same definition is returned.
            let sm = engine.create_state_machine(
                &format!("bench-{id}"),
                &definition,
                DEFAULT_ROLE_ARN,
            )?;
            let input = input.clone();
            let cpu0 = thread_cpu_ns()?;
            let t0 = Instant::now();
            let started = engine.start_execution(&sm.arn, Some(&format!("{id}-{r}")), input)?;
            let done = engine.wait_for(&started.meta.execution_arn).await?;
            let secs = t0.elapsed().as_secs_f64();
            let cpu_secs = (thread_cpu_ns()? - cpu0) as f64 / 1e9;
            if done.status != ExecutionStatus::Succeeded {
                return Err(format!(
                    "{id}: execution ended {:?}: {:?} {:?}",
                    done.status, done.error, done.cause
                )
                .into());
            }
            if done.output.as_ref() != Some(&expected) {
                return Err(format!(
                    "{id}: output differs from {}",
                    field(sc, "expected_output")?
                )
                .into());
            }
            if done.transitions != expected_transitions {
                return Err(format!(
                    "{id}: {} transitions, expected {expected_transitions}",
                    done.transitions
                )
                .into());
            }
            if r == 0 {
                let h = engine.history(&started.meta.execution_arn)?;
                let entered = h
                    .iter()
                    .filter(|e| e.kind.as_str().ends_with("StateEntered"))
                    .count() as u64;
                if entered != expected_transitions {
                    return Err(format!("{id}: history has {entered} StateEntered events, expected {expected_transitions}").into());
                }
                history_entered = Some(h.len());
            }
            if r >= warmup {
                times.push(secs);
                cpu_times.push(cpu_secs);
            }
            current = Some((engine, dir));
        }
        let in_order: Vec<f64> = times.iter().map(|t| (t * 1e5).round() / 1e2).collect();
        times.sort_by(f64::total_cmp);
        cpu_times.sort_by(f64::total_cmp);
        let med = median(&times);
        println!(
            "{}",
            json!({
                "side": "ours",
                "storage": storage,
                "scenario": id,
                "title": sc["title"],
                "reps": reps,
                "warmup": warmup,
                "median_ms": med * 1e3,
                "min_ms": times[0] * 1e3,
                "max_ms": times[times.len() - 1] * 1e3,
                "transitions": expected_transitions,
                "transitions_per_sec": expected_transitions as f64 / med,
                "cpu_median_ms": median(&cpu_times) * 1e3,
                "cpu_min_ms": cpu_times[0] * 1e3,
                "history_events": history_entered,
                "output_checked": true,
                "engine": if fresh { "fresh engine per execution" } else { "one engine for all executions" },
                "times_ms": in_order,
            })
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- waiters

/// Answers every Task at once with `{}` and keeps the task token; the
/// `.waitForTaskToken` execution then waits for `SendTaskSuccess`.
struct CallbackSink {
    tokens: Arc<Mutex<Vec<(String, Value)>>>,
}

impl TaskInvoker for CallbackSink {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<Result<Value, StatesError>> {
        let tokens = self.tokens.clone();
        Box::pin(async move {
            if let Some(t) = request.task_token {
                // `payload` is the Lambda payload (the Parameters' `Payload`).
                let n = request.payload["n"].clone();
                tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((t, n));
            }
            Ok(json!({}))
        })
    }
}

fn proc_status_kb(key: &str) -> Res<u64> {
    let s = fs::read_to_string("/proc/self/status")?;
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .ok_or_else(|| format!("/proc/self/status has no {key}"))?;
    let kb = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed /proc/self/status")?
        .parse()?;
    Ok(kb)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

async fn waiters(defs: &Path, storage: &str, count: u64) -> Res<()> {
    let manifest = read_json(&defs.join("manifest.json"))?;
    let definition = fs::read_to_string(defs.join(field(&manifest["waiter"], "definition")?))?;
    let base_rss = proc_status_kb("VmRSS:")?;
    let base_hwm = proc_status_kb("VmHWM:")?;
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let (engine, _dir) = open_engine(
        storage,
        Arc::new(CallbackSink {
            tokens: tokens.clone(),
        }),
    )?;
    let sm = engine.create_state_machine("bench-waiter", &definition, DEFAULT_ROLE_ARN)?;

    let t0 = Instant::now();
    let mut arns = Vec::with_capacity(count as usize);
    for i in 0..count {
        let started =
            engine.start_execution(&sm.arn, Some(&format!("waiter-{i}")), json!({"n": i}))?;
        arns.push(started.meta.execution_arn);
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    // The invocations run on spawned tasks; on this current-thread runtime a
    // token is recorded and its TaskSubmitted applied in the same poll.
    let mut spins = 0u64;
    while (tokens.lock().unwrap_or_else(|p| p.into_inner()).len() as u64) < count {
        spins += 1;
        if spins > 10_000_000 {
            return Err("timed out waiting for every task to be invoked".into());
        }
        tokio::task::yield_now().await;
    }
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    let start_secs = t0.elapsed().as_secs_f64();
    let running = engine.running_count() as u64;
    let live = engine.live_tokens() as u64;
    let last_event = engine
        .history(&arns[arns.len() - 1])?
        .last()
        .map(|e| e.kind.as_str().to_string())
        .unwrap_or_default();
    let rss = proc_status_kb("VmRSS:")?;
    let hwm = proc_status_kb("VmHWM:")?;
    if running != count || live != count {
        return Err(format!("expected {count} waiting executions and tokens, found {running} running, {live} tokens").into());
    }

    let toks = std::mem::take(&mut *tokens.lock().unwrap_or_else(|p| p.into_inner()));
    let t1 = Instant::now();
    for (i, (tok, n)) in toks.iter().enumerate() {
        engine.send_task_success(tok, json!({"ok": true, "n": n}))?;
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    let mut succeeded = 0u64;
    let mut first_bad = None;
    for (i, arn) in arns.iter().enumerate() {
        let done = engine.wait_for(arn).await?;
        let want = json!({"n": i, "callback": {"ok": true, "n": i}});
        if done.status == ExecutionStatus::Succeeded && done.output.as_ref() == Some(&want) {
            succeeded += 1;
        } else if first_bad.is_none() {
            first_bad = Some(format!(
                "{arn}: {:?} {:?} {:?} {:?}",
                done.status, done.output, done.error, done.cause
            ));
        }
    }
    let finish_secs = t1.elapsed().as_secs_f64();
    let rss_after = proc_status_kb("VmRSS:")?;
    let hwm_after = proc_status_kb("VmHWM:")?;
    println!(
        "{}",
        json!({
            "side": "ours",
            "storage": storage,
            "count": count,
            "waiting": running,
            "live_tokens": live,
            "last_event_while_waiting": last_event,
            "baseline_rss_mb": mb(base_rss),
            "baseline_hwm_mb": mb(base_hwm),
            "rss_mb": mb(rss),
            "hwm_mb": mb(hwm),
            "rss_after_mb": mb(rss_after),
            "hwm_after_mb": mb(hwm_after),
            "start_secs": start_secs,
            "callback_secs": finish_secs,
            "succeeded": succeeded,
        })
    );
    if succeeded != count {
        return Err(format!(
            "only {succeeded} of {count} executions succeeded after SendTaskSuccess; first other: {}",
            first_bad.unwrap_or_default()
        )
        .into());
    }
    Ok(())
}

// ---------------------------------------------------------------- report

fn read_lines(path: &Path) -> Res<Vec<Value>> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}", path.display()).into()))
        .collect()
}

fn find<'a>(rows: &'a [Value], scenario: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["scenario"] == scenario)
}

fn f(v: &Value, k: &str) -> Option<f64> {
    v[k].as_f64()
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) if ms >= 10.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{ms:.3} ms"),
        None => "n/a".into(),
    }
}

fn fmt_rate(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 1e6 => format!("{:.2} M/s", x / 1e6),
        Some(x) if x >= 1e3 => format!("{:.1} k/s", x / 1e3),
        Some(x) => format!("{x:.0} /s"),
        None => "n/a".into(),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "YES"
    } else {
        "NO"
    }
}

fn fmt_ratio(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.1}x"))
        .unwrap_or_else(|| "n/a".into())
}

fn report(results: &Path, defs: &Path) -> Res<()> {
    let manifest = read_json(&defs.join("manifest.json"))?;
    let mem = read_lines(&results.join("ours-memory.jsonl"))?;
    let sql = read_lines(&results.join("ours-sqlite.jsonl"))?;
    let peer = read_lines(&results.join("peer.jsonl")).unwrap_or_default();
    let w_mem = read_lines(&results.join("waiters-ours-memory.jsonl"))?;
    let w_sql = read_lines(&results.join("waiters-ours-sqlite.jsonl"))?;
    let w_peer = read_lines(&results.join("waiters-peer.jsonl")).unwrap_or_default();

    let head = [
        "scenario",
        "ours (Memory)",
        "ours (SQLite)",
        "peer",
        "ratio ours/peer",
        "target met?",
    ];
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut notes = Vec::new();
    let null = Value::Null;
    for m in &mem {
        let id = m["scenario"].as_str().unwrap_or_default();
        let title = m["title"].as_str().unwrap_or(id);
        let s = find(&sql, id).unwrap_or(&null);
        let p = find(&peer, id).unwrap_or(&null);
        let ratio = |ours: &Value| match (f(p, "median_ms"), f(ours, "median_ms")) {
            (Some(pm), Some(om)) if om > 0.0 => Some(pm / om),
            _ => None,
        };
        let (rm, rs) = (ratio(m), ratio(s));
        let ratio_txt = format!("{} (SQLite {})", fmt_ratio(rm), fmt_ratio(rs));
        rows.push([
            format!("{title}: wall/exec (median)"),
            fmt_ms(f(m, "median_ms")),
            fmt_ms(f(s, "median_ms")),
            fmt_ms(f(p, "median_ms")),
            ratio_txt.clone(),
            match rm {
                Some(r) => format!(
                    "≥{RATIO_TARGET:.0}x peer: {} (SQLite {})",
                    yes(r >= RATIO_TARGET),
                    yes(rs.is_some_and(|x| x >= RATIO_TARGET)),
                ),
                None => "peer n/a".into(),
            },
        ]);
        let cpu_ratio = |ours: &Value| match (f(p, "cpu_median_ms"), f(ours, "cpu_median_ms")) {
            (Some(pm), Some(om)) if om > 0.0 => Some(pm / om),
            _ => None,
        };
        let cpu_cell = |v: &Value| match f(v, "cpu_median_ms") {
            Some(ms) if ms > 0.0 => format!(
                "{} ({})",
                fmt_ms(Some(ms)),
                fmt_rate(m["transitions"].as_f64().map(|t| t / (ms / 1e3)))
            ),
            _ => "n/a".into(),
        };
        let (cm, cs) = (cpu_ratio(m), cpu_ratio(s));
        rows.push([
            format!("{title}: CPU time/exec (median) (transitions per CPU-s)"),
            cpu_cell(m),
            cpu_cell(s),
            cpu_cell(p),
            format!("{} (SQLite {})", fmt_ratio(cm), fmt_ratio(cs)),
            match cm {
                Some(r) => format!(
                    "≥{RATIO_TARGET:.0}x peer (CPU): {} (SQLite {})",
                    yes(r >= RATIO_TARGET),
                    yes(cs.is_some_and(|x| x >= RATIO_TARGET)),
                ),
                None => "peer n/a".into(),
            },
        ]);
        let tps = f(m, "transitions_per_sec");
        rows.push([
            format!("{title}: transitions/s ({} per exec)", m["transitions"]),
            fmt_rate(tps),
            fmt_rate(f(s, "transitions_per_sec")),
            fmt_rate(f(p, "transitions_per_sec")),
            ratio_txt,
            match tps {
                Some(t) => format!(
                    "≥200k/s (Memory): {}",
                    if t >= TPS_TARGET { "YES" } else { "NO" }
                ),
                None => "n/a".into(),
            },
        ]);
        if !p.is_null() && p["transitions"] != m["transitions"] {
            notes.push(format!(
                "{title}: the peer entered {} states, ours {} — transition counts differ",
                p["transitions"], m["transitions"]
            ));
        }
        if let Some(n) = p["note"].as_str() {
            notes.push(format!("{title} (peer): {n}"));
        }
        let in_manifest = manifest["scenarios"]
            .as_array()
            .and_then(|v| v.iter().find(|s| s["id"] == id));
        if let Some(n) = in_manifest.and_then(|s| s["note"].as_str()) {
            notes.push(format!("{title}: {n}"));
        }
    }
    let wm = w_mem.first().unwrap_or(&null);
    let ws = w_sql.first().unwrap_or(&null);
    let wp = w_peer.first().unwrap_or(&null);
    let count = wm["count"].as_u64().unwrap_or(0);
    let fmt_mb = |v: Option<f64>| {
        v.map(|x| format!("{x:.1} MB"))
            .unwrap_or_else(|| "n/a".into())
    };
    for (label, key) in [("VmRSS", "rss_mb"), ("VmHWM", "hwm_mb")] {
        let (om, os) = (f(wm, key), f(ws, key));
        let worst = om.into_iter().chain(os).fold(0.0f64, f64::max);
        rows.push([
            format!("{count} executions waiting for callbacks: {label}"),
            fmt_mb(om),
            fmt_mb(os),
            fmt_mb(f(wp, key)),
            match (f(wp, key), om) {
                (Some(p), Some(o)) if o > 0.0 => format!("{:.2}x less", p / o),
                _ => "n/a".into(),
            },
            format!(
                "<{MEMORY_TARGET_MB:.0} MB: {} (Memory {}, SQLite {})",
                yes(om.is_some() && os.is_some() && worst < MEMORY_TARGET_MB),
                yes(om.is_some_and(|x| x < MEMORY_TARGET_MB)),
                yes(os.is_some_and(|x| x < MEMORY_TARGET_MB)),
            ),
        ]);
    }
    let per_exec = |w: &Value| match (f(w, "rss_mb"), f(w, "baseline_rss_mb"), f(w, "count")) {
        (Some(r), Some(b), Some(n)) if n > 0.0 => format!("{:.1} KB", (r - b) * 1024.0 / n),
        _ => "n/a".into(),
    };
    rows.push([
        format!("{count} waiting: VmRSS growth per execution"),
        per_exec(wm),
        per_exec(ws),
        per_exec(wp),
        String::new(),
        format!(
            "(50 MB / {count} = {:.1} KB)",
            MEMORY_TARGET_MB * 1024.0 / count.max(1) as f64
        ),
    ]);
    rows.push([
        format!("{count} waiting: succeeded after SendTaskSuccess"),
        format!("{}/{}", wm["succeeded"], wm["count"]),
        format!("{}/{}", ws["succeeded"], ws["count"]),
        if wp.is_null() {
            "n/a".into()
        } else {
            format!("{}/{}", wp["succeeded"], wp["count"])
        },
        String::new(),
        format!(
            "all succeeded: {}",
            if wm["succeeded"] == wm["count"]
                && ws["succeeded"] == ws["count"]
                && !wm.is_null()
                && !ws.is_null()
            {
                "YES"
            } else {
                "NO"
            }
        ),
    ]);
    rows.push([
        format!("{count} waiting: start all / callback all"),
        format!(
            "{:.2} s / {:.2} s",
            f(wm, "start_secs").unwrap_or(0.0),
            f(wm, "callback_secs").unwrap_or(0.0)
        ),
        format!(
            "{:.2} s / {:.2} s",
            f(ws, "start_secs").unwrap_or(0.0),
            f(ws, "callback_secs").unwrap_or(0.0)
        ),
        if wp.is_null() {
            "n/a".into()
        } else {
            format!(
                "{:.2} s / {:.2} s",
                f(wp, "start_secs").unwrap_or(0.0),
                f(wp, "callback_secs").unwrap_or(0.0)
            )
        },
        String::new(),
        String::new(),
    ]);

    let mut widths = head.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(&head.map(String::from));
    println!("|{}|", widths.map(|w| "-".repeat(w + 2)).join("|"));
    for r in &rows {
        line(r);
    }
    println!();
    println!(
        "Medians of {} repetitions (ours) / {} (peer) after {} warm-up run(s); ratio = peer wall time / ours (= throughput ratio).",
        mem.first().map(|m| m["reps"].clone()).unwrap_or(Value::Null),
        peer.iter()
            .find(|p| p["scenario"].is_string())
            .map(|p| p["reps"].clone())
            .unwrap_or(Value::Null),
        mem.first().map(|m| m["warmup"].clone()).unwrap_or(Value::Null),
    );
    for m in &mem {
        let id = m["scenario"].as_str().unwrap_or_default();
        let s = find(&sql, id).unwrap_or(&null);
        let p = find(&peer, id).unwrap_or(&null);
        let ratio = match (f(p, "min_ms"), f(m, "min_ms")) {
            (Some(pm), Some(om)) if om > 0.0 => Some(pm / om),
            _ => None,
        };
        let tps = f(m, "min_ms").map(|ms| m["transitions"].as_f64().unwrap_or(0.0) / (ms / 1e3));
        println!(
            "Best of the repetitions (least disturbed by other load), {}: ours {} ({}) / SQLite {} / peer {}: {} the peer.",
            m["title"].as_str().unwrap_or(id),
            fmt_ms(f(m, "min_ms")),
            fmt_rate(tps),
            fmt_ms(f(s, "min_ms")),
            fmt_ms(f(p, "min_ms")),
            fmt_ratio(ratio),
        );
    }
    let shared = read_lines(&results.join("ours-memory-shared.jsonl")).unwrap_or_default();
    if !shared.is_empty() {
        let parts: Vec<String> = shared
            .iter()
            .map(|r| {
                format!(
                    "{} {} ({})",
                    r["scenario"].as_str().unwrap_or("?"),
                    fmt_ms(f(r, "median_ms")),
                    fmt_rate(f(r, "transitions_per_sec"))
                )
            })
            .collect();
        println!(
            "Each timed execution above runs on a fresh engine (like the peer's run()); with ONE engine keeping every earlier execution's history in memory (Memory): {}.",
            parts.join(", ")
        );
    }
    println!(
        "CPU time = the engine thread's time on the CPU (/proc/thread-self/schedstat; the peer: process.cpuUsage(), all its threads); \
         it leaves out time the core spent on other processes, and the time SQLite waits for the disk."
    );
    println!("Transitions = states entered (Map iterations' states included), identical definitions and inputs on both sides; outputs checked against the expected JSON on both sides.");
    for (name, w) in [("Memory", wm), ("SQLite", ws), ("peer", wp)] {
        if !w.is_null() {
            println!(
                "Waiters ({name}): baseline before engine VmRSS {:.1} MB / VmHWM {:.1} MB; after all callbacks VmRSS {:.1} MB / VmHWM {:.1} MB.",
                f(w, "baseline_rss_mb").unwrap_or(0.0),
                f(w, "baseline_hwm_mb").unwrap_or(0.0),
                f(w, "rss_after_mb").unwrap_or(0.0),
                f(w, "hwm_after_mb").unwrap_or(0.0),
            );
        }
    }
    if let Some(meta) = peer.iter().find(|p| p["meta"] == true) {
        println!(
            "Peer: {} on node {} via `new StateMachine(def).run(input).result` (v3 has no startExecution); {}.",
            meta["library"].as_str().unwrap_or("?"),
            meta["node"].as_str().unwrap_or("?"),
            meta["adaptation"].as_str().unwrap_or("no adaptation"),
        );
    }
    if let Some(n) = wp["note"].as_str() {
        notes.push(format!("waiters (peer): {n}"));
    }
    for n in notes {
        println!("Note: {n}");
    }
    Ok(())
}
