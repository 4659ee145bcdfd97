#!/usr/bin/env bash
# Renewal latency benchmark (issue 3): trigger -> closed ticket for scenario 1
# ("cert expires in 7 days", internal PKI, owner approves at once) on the
# embedded default. Target: median < 1 s.
#
#   bench/renewal/run.sh                 # 30 timed runs after 3 warm-up runs
#   RUNS=100 bench/renewal/run.sh --raw  # extra arguments go to the example
#
# Knobs (environment): RUNS (30), WARMUP (3), KEYGEN_SAMPLES (1000) isolated
# key generations, CPU (1 on machines with 2+ cores, so a benchmark pinned to
# core 0 does not interfere; "" = no pinning), DIR (system temp dir) parent of
# the world's temporary data directory.
#
# What is measured and how: bench/renewal/README.md and the header of
# bench/renewal/renewal_bench.rs. Prints the table on stdout and
# exits 1 when the target is missed or a run does not end as scenario 1 should.
# Loopback only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
runs="${RUNS:-30}"
warmup="${WARMUP:-3}"
keygen="${KEYGEN_SAMPLES:-1000}"
if [ -z "${CPU+x}" ]; then
  if [ "$(nproc)" -ge 2 ]; then CPU=1; else CPU=""; fi
fi

echo "building (release)..." >&2
(cd "$root" && cargo build --release -q -p certops-embedded --example renewal_bench)
bin="$CARGO_TARGET_DIR/release/examples/renewal_bench"

args=(--runs "$runs" --warmup "$warmup" --keygen-samples "$keygen")
[ -n "${DIR:-}" ] && args+=(--dir "$DIR")

pin=()
if [ -n "$CPU" ] && command -v taskset >/dev/null 2>&1; then
  pin=(taskset -c "$CPU")
  echo "pinned to core $CPU" >&2
fi

exec "${pin[@]}" "$bin" "${args[@]}" "$@"
