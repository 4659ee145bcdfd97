// Peer side of bench/asl/run.sh: runs the same definitions as
// `bench/asl/engine_bench.rs` through aws-local-stepfunctions
// (`new StateMachine(definition).run(input).result`) and prints one JSON line
// per scenario, in the same shape as the Rust side.
//
//   node peer.mjs throughput --defs DIR [--reps N] [--warmup N]
//   node --expose-gc peer.mjs waiters --defs DIR [--count N]
//
// Adaptations (reported in the output as notes):
// * aws-local-stepfunctions 3.0.0 declares node >= 22 and calls
//   Promise.withResolvers in Task states; on older node a standard polyfill
//   is installed below (it is not on any hot path of the throughput runs).
// * The library API is `run(input).result` (there is no `startExecution`).
// * It has no task tokens: `$$.Task.Token` is supplied per execution through
//   the documented `context` run option, and the Task is overridden with a
//   local handler (`overrides.taskResourceLocalHandlers`) that returns a
//   promise resolved later — the equivalent of SendTaskSuccess.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const polyfilled = typeof Promise.withResolvers !== 'function';
if (polyfilled) {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
const { StateMachine } = await import('aws-local-stepfunctions');

const [cmd, ...rest] = process.argv.slice(2);
const opts = {};
for (let i = 0; i < rest.length; i += 2) {
  if (!rest[i].startsWith('--') || rest[i + 1] === undefined) {
    throw new Error(`bad argument ${rest[i]}`);
  }
  opts[rest[i].slice(2)] = rest[i + 1];
}
const defs = opts.defs ?? 'defs';
const readJson = (name) => JSON.parse(readFileSync(join(defs, name), 'utf8'));
const manifest = readJson('manifest.json');

// Order-insensitive deep equality of JSON values.
function same(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && same(a[k], b[k]));
}

function median(sorted) {
  const n = sorted.length;
  return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

function statusKb(key) {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(key));
  return Number(line.split(/\s+/)[1]);
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

async function throughput() {
  const pkg = JSON.parse(readFileSync(new URL('./node_modules/aws-local-stepfunctions/package.json', import.meta.url), 'utf8'));
  console.log(
    JSON.stringify({
      side: 'peer',
      meta: true,
      library: `${pkg.name}@${pkg.version}`,
      node: process.version,
      adaptation: polyfilled
        ? `it requires node ${pkg.engines?.node}, so Promise.withResolvers is polyfilled (used only by its Task states)`
        : 'no polyfill needed',
    }),
  );
  const reps = Number(opts.reps ?? 7);
  const warmup = Number(opts.warmup ?? 1);
  for (const sc of manifest.scenarios) {
    const definition = readJson(sc.definition);
    const input = readJson(sc.input);
    const expected = readJson(sc.expected_output);
    const c0 = nowMs();
    const sm = new StateMachine(definition); // validates the definition once, like CreateStateMachine
    const constructMs = nowMs() - c0;
    const times = [];
    const cpuTimes = [];
    let entered = null;
    for (let r = 0; r < warmup + reps; r++) {
      const cpu0 = process.cpuUsage();
      const t0 = nowMs();
      const execution = sm.run(input);
      const output = await execution.result;
      const ms = nowMs() - t0;
      const cpu = process.cpuUsage(cpu0);
      if (!same(output, expected)) {
        throw new Error(`${sc.id}: peer output differs from ${sc.expected_output}`);
      }
      if (r === 0) {
        // Count states entered from the execution's event log (outside the timing).
        entered = 0;
        for await (const e of execution.eventLogs) {
          if (e.type === 'StateEntered') entered++;
        }
      }
      if (r >= warmup) {
        times.push(ms);
        cpuTimes.push((cpu.user + cpu.system) / 1000);
      }
    }
    const inOrder = times.map((t) => Math.round(t * 100) / 100);
    times.sort((a, b) => a - b);
    cpuTimes.sort((a, b) => a - b);
    const med = median(times);
    const row = {
      side: 'peer',
      scenario: sc.id,
      title: sc.title,
      reps,
      warmup,
      median_ms: med,
      min_ms: times[0],
      max_ms: times[times.length - 1],
      transitions: sc.expected_transitions,
      transitions_per_sec: sc.expected_transitions / (med / 1000),
      cpu_median_ms: median(cpuTimes),
      cpu_min_ms: cpuTimes[0],
      state_entered_events: entered,
      construct_ms: constructMs,
      output_checked: true,
      times_ms: inOrder,
    };
    if (entered !== sc.expected_transitions) {
      row.note = `the peer's event log showed ${entered} StateEntered events, not ${sc.expected_transitions}; transitions/s uses ${sc.expected_transitions} (its output matched, so it did enter every state)`;
    }
    console.log(JSON.stringify(row));
  }
}

async function waiters() {
  const count = Number(opts.count ?? 10000);
  const definition = readJson(manifest.waiter.definition);
  const stateName = manifest.waiter.state;
  globalThis.gc?.();
  const baseRss = statusKb('VmRSS:');
  const baseHwm = statusKb('VmHWM:');
  const sm = new StateMachine(definition);
  const pending = new Map();
  const overrides = {
    taskResourceLocalHandlers: {
      [stateName]: (params) =>
        new Promise((resolve) => {
          pending.set(params.Payload.token, { resolve, n: params.Payload.n });
        }),
    },
  };
  const t0 = nowMs();
  const results = [];
  for (let i = 0; i < count; i++) {
    const execution = sm.run({ n: i }, { overrides, context: { Task: { Token: `token-${i}` } } });
    results.push(execution.result);
  }
  for (let spins = 0; pending.size < count; spins++) {
    if (spins > 100000) throw new Error('timed out waiting for every task to be invoked');
    await new Promise((r) => setImmediate(r));
  }
  const startSecs = (nowMs() - t0) / 1000;
  globalThis.gc?.();
  const rss = statusKb('VmRSS:');
  const hwm = statusKb('VmHWM:');
  const t1 = nowMs();
  for (const { resolve, n } of pending.values()) resolve({ ok: true, n });
  const outputs = await Promise.allSettled(results);
  let succeeded = 0;
  outputs.forEach((o, i) => {
    if (o.status === 'fulfilled' && same(o.value, { n: i, callback: { ok: true, n: i } })) succeeded++;
  });
  const callbackSecs = (nowMs() - t1) / 1000;
  console.log(
    JSON.stringify({
      side: 'peer',
      count,
      waiting: pending.size,
      baseline_rss_mb: baseRss / 1024,
      baseline_hwm_mb: baseHwm / 1024,
      rss_mb: rss / 1024,
      hwm_mb: hwm / 1024,
      rss_after_mb: statusKb('VmRSS:') / 1024,
      hwm_after_mb: statusKb('VmHWM:') / 1024,
      start_secs: startSecs,
      callback_secs: callbackSecs,
      succeeded,
      note:
        'the peer has no task tokens: $$.Task.Token comes from the `context` run option and the Task is a local handler ' +
        'returning a promise resolved later (its SendTaskSuccess); nothing is persisted. gc() runs before measuring when node has --expose-gc.',
    }),
  );
}

if (cmd === 'throughput') await throughput();
else if (cmd === 'waiters') await waiters();
else throw new Error('usage: node peer.mjs throughput|waiters --defs DIR [...]');
