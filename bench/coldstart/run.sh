#!/usr/bin/env bash
# Cold-start benchmark of the certops Lambda functions, beside a hello-world
# `lambda_runtime` peer measured in the same run.
#
# Builds every function binary (certops-<name>) and the harness natively for
# this machine's x86_64 (release profile, panic=abort as scripts/build-lambda.sh
# builds the Lambda zips; the arm64 zips cannot run here), then runs the
# harness: a local Lambda Runtime API on a free 127.0.0.1 port that starts each
# binary with the environment Lambda sets, hands it one representative first
# event, and reports init time, first-invocation latency and peak RSS
# (median / p90 over RUNS runs, default 20) against the targets
# (median init < 15 ms, peak RSS < 30 MiB). Exits 1 if a function misses one.
#
# With --backend aws the functions start with CERTOPS_BACKEND=aws against a
# moto server on loopback (tables, queues, state machine and secrets created
# first; the configuration secret is read at init): init only, the figure
# Lambda sees. Needs moto_server and python3 with boto3 (moto[server]).
#
# Usage: bash bench/coldstart/run.sh [harness options]
#   e.g. --backend aws, --runs 50, --json, --functions scan,intake, --env KEY=VALUE,
#        --fn-env renew:KEY=VALUE, --memory 256, --keep   (see --help)
# Loopback only: endpoints in the bench inventory and the Step Functions calls
# (AWS_ENDPOINT_URL) point at 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

for a in "$@"; do
  if [ "$a" = "-h" ] || [ "$a" = "--help" ]; then
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
    echo
    exec cargo run --quiet --release -p certops-bench-coldstart --bin coldstart -- --help
  fi
done

pkgs=()
for manifest in functions/*/Cargo.toml; do
  pkgs+=(-p "$(sed -n 's/^name = "\(certops-fn-[a-z-]*\)"$/\1/p' "$manifest" | head -n1)")
done

# The Lambda zips are built with panic = "abort" (see scripts/build-lambda.sh);
# measure the same code here. The functions build on their own, as in
# build-lambda.sh, so the harness's dependency features do not reach them.
export CARGO_PROFILE_RELEASE_PANIC=abort
echo "==> building $((${#pkgs[@]} / 2)) functions (release, panic=abort, $(uname -m))" >&2
cargo build --release --quiet "${pkgs[@]}" \
  || { echo "coldstart: the release build of the functions failed" >&2; exit 2; }
echo "==> building the harness and the hello-world peer" >&2
cargo build --release --quiet -p certops-bench-coldstart \
  || { echo "coldstart: the release build of the harness failed" >&2; exit 2; }

bin_dir="$CARGO_TARGET_DIR/release"
echo "==> running (binaries in $bin_dir)" >&2
exec "$bin_dir/coldstart" --bin-dir "$bin_dir" "$@"
