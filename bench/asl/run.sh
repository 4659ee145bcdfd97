#!/usr/bin/env bash
# Engine benchmark: certops-asl (shared/asl) against the Node.js peer
# aws-local-stepfunctions, on the same definitions, side by side.
#
#   bench/asl/run.sh
#
# Knobs (environment): REPS (15) timed repetitions per scenario for our engine,
# PEER_REPS (=REPS) for the peer, WARMUP (2) untimed runs first, CPU (0) the
# core everything is pinned to with taskset, WAITERS (10000) executions held
# waiting for callbacks, PASS_STATES (1000), LOOP_ITERS (6000), MAP_ITEMS
# (6000) scenario sizes (kept under AWS's 25,000-event history quota, which the
# engine enforces: 10,000 loop iterations would be 40,004 events and fail).
#
# What is measured and how: see the header of
# bench/asl/engine_bench.rs (Rust side, built as the certops-asl example
# `engine_bench`, declared in shared/asl/Cargo.toml) and bench/asl/peer.mjs.
# Definitions, inputs and expected outputs are generated into bench/asl/defs/,
# raw per-scenario JSON lines go to bench/asl/results/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
reps="${REPS:-15}"
peer_reps="${PEER_REPS:-$reps}"
warmup="${WARMUP:-2}"
cpu="${CPU:-0}"
waiters="${WAITERS:-10000}"
defs="$here/defs"
results="$here/results"

pin=()
if command -v taskset >/dev/null 2>&1; then
  pin=(taskset -c "$cpu")
else
  echo "warning: taskset not found; runs are NOT pinned to one core" >&2
fi
say() { printf '==> %s\n' "$*" >&2; }

say "installing the peer (aws-local-stepfunctions, pinned in package.json)"
(cd "$here" && npm install --no-audit --no-fund --loglevel=error >&2)

say "building the engine benchmark (release)"
(cd "$root" && cargo build --release --quiet -p certops-asl --example engine_bench)
bin="$target/release/examples/engine_bench"

rm -rf "$results"
mkdir -p "$results"
"$bin" defs --out "$defs" --pass-states "${PASS_STATES:-1000}" --loop-iters "${LOOP_ITERS:-6000}" \
  --map-items "${MAP_ITEMS:-6000}" >&2

failed=0
run() { # run OUT CMD...: stdout to results/OUT; a failure is reported, the run goes on.
  local out="$1"
  shift
  say "$out: ${*##*/}"
  if ! "$@" >"$results/$out"; then
    echo "FAILED: $*" >&2
    failed=1
  fi
}

run ours-memory.jsonl "${pin[@]}" "$bin" throughput --defs "$defs" --storage memory --reps "$reps" --warmup "$warmup"
run ours-memory-shared.jsonl "${pin[@]}" "$bin" throughput --defs "$defs" --storage memory --reps "$reps" --warmup "$warmup" --engine shared
run ours-sqlite.jsonl "${pin[@]}" "$bin" throughput --defs "$defs" --storage sqlite --reps "$reps" --warmup "$warmup"
run peer.jsonl "${pin[@]}" node "$here/peer.mjs" throughput --defs "$defs" --reps "$peer_reps" --warmup "$warmup"
run waiters-ours-memory.jsonl "${pin[@]}" "$bin" waiters --defs "$defs" --storage memory --count "$waiters"
run waiters-ours-sqlite.jsonl "${pin[@]}" "$bin" waiters --defs "$defs" --storage sqlite --count "$waiters"
run waiters-peer.jsonl "${pin[@]}" node --expose-gc "$here/peer.mjs" waiters --defs "$defs" --count "$waiters"

echo
echo "certops-asl engine benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; pinned: ${pin[*]:-no}; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "SQLite file on: $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}') (${TMPDIR:-/tmp}), journal_mode=WAL, synchronous=NORMAL"
echo
"$bin" report --results "$results" --defs "$defs" || failed=1
echo "Raw results: $results"
exit "$failed"
