#!/usr/bin/env bash
# Scan benchmark: our prober vs Prometheus blackbox_exporter vs `openssl s_client`.
#
# Serves N (default 2000) local TLS endpoints on 127.0.0.1 (one port each, distinct names,
# ECDSA P-256 leaf + intermediate) from a server pinned to core 0, then scans them all with
# each scanner pinned to core 1, every scanner verifying the chain to the bench root:
#   - ours:      the certops-tls prober (release build), concurrency CONC (default 1000),
#                ROUNDS passes (default 3), a fresh prober each pass
#   - blackbox:  blackbox_exporter, tcp prober with tls: true, driven at the same concurrency
#                by a load client pinned to core 0 (not counted), ROUNDS passes
#   - openssl:   one `openssl s_client` process per endpoint, OPENSSL_CONC (default 16) at once
# Prints endpoints per second, handshakes per scanner CPU-second (user+sys of the scanner's
# processes), peak RSS, and ratios ours/peer; exits 1 if a target is missed:
#   >= 3x blackbox handshakes per CPU-second, >= 1500 handshakes per CPU-second,
#   < 100 MB peak RSS at concurrency 1000.
# Loopback only; every wait is bounded.
set -euo pipefail

N=${N:-2000}
CONC=${CONC:-1000}
OPENSSL_CONC=${OPENSSL_CONC:-16}
ROUNDS=${ROUNDS:-3}   # passes over the N endpoints for ours and blackbox (openssl: one pass)
BB_PORT=${BB_PORT:-19115}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need prometheus-blackbox-exporter || ! need openssl || ! [ -x /usr/bin/time ] || ! need taskset || ! need curl; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-blackbox-exporter openssl time util-linux curl >/dev/null
fi

if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=0; SCANNER_CPU=1; else SERVER_CPU=0; SCANNER_CPU=0; echo "warning: one core only; server and scanner share it" >&2; fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

echo "building (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p certops-tls --example scan_bench)
BIN=$CARGO_TARGET_DIR/release/examples/scan_bench
TCK=$(getconf CLK_TCK)

WORK=$(mktemp -d)
SERVER_PID=""; BB_PID=""
cleanup() {
  [ -n "$BB_PID" ] && kill "$BB_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { # wait_for DESCRIPTION COMMAND...: up to 60 s
  local what=$1; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2; exit 1
}

echo "starting $N endpoints on core $SERVER_CPU..." >&2
taskset -c "$SERVER_CPU" "$BIN" serve "$WORK" "$N" & SERVER_PID=$!
wait_for "the bench server" test -e "$WORK/ready"

# --- ours -------------------------------------------------------------------------------
echo "scanning with certops-tls (concurrency $CONC)..." >&2
/usr/bin/time -f "%e %U %S %M" -o "$WORK/ours.time" \
  taskset -c "$SCANNER_CPU" "$BIN" scan "$WORK/targets.txt" "$WORK/root.pem" "$CONC" "$ROUNDS" > "$WORK/ours.out"
read -r OURS_WALL OURS_U OURS_S OURS_RSS < "$WORK/ours.time"
OURS_OK=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' "$WORK/ours.out")
OURS_N=$(sed -n 's/^endpoints=\([0-9]*\).*/\1/p' "$WORK/ours.out")

# --- blackbox_exporter ----------------------------------------------------------------
cat > "$WORK/blackbox.yml" <<YML
modules:
  tls_connect:
    prober: tcp
    timeout: 10s
    tcp:
      tls: true
      tls_config:
        ca_file: $WORK/root.pem
YML
echo "scanning with blackbox_exporter (concurrency $CONC)..." >&2
taskset -c "$SCANNER_CPU" prometheus-blackbox-exporter --config.file="$WORK/blackbox.yml" \
  --web.listen-address="127.0.0.1:$BB_PORT" > "$WORK/blackbox.log" 2>&1 & BB_PID=$!
wait_for "blackbox_exporter" curl -sf "http://127.0.0.1:$BB_PORT/metrics"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
BB_T0=$(cpu_ticks "$BB_PID")
taskset -c "$SERVER_CPU" "$BIN" bb-load "127.0.0.1:$BB_PORT" "$WORK/targets.txt" "$CONC" "$ROUNDS" > "$WORK/bb.out"
BB_T1=$(cpu_ticks "$BB_PID")
BB_RSS=$(awk '/^VmHWM:/ {print $2}' "/proc/$BB_PID/status")
BB_WALL=$(sed -n 's/.*wall_s=\([0-9.]*\).*/\1/p' "$WORK/bb.out")
BB_OK=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' "$WORK/bb.out")
BB_N=$(sed -n 's/^endpoints=\([0-9]*\).*/\1/p' "$WORK/bb.out")
kill "$BB_PID"; wait "$BB_PID" 2>/dev/null || true; BB_PID=""

# --- openssl s_client ---------------------------------------------------------------------
echo "scanning with openssl s_client ($OPENSSL_CONC processes at once)..." >&2
/usr/bin/time -f "%e %U %S %M" -o "$WORK/openssl.time" \
  taskset -c "$SCANNER_CPU" xargs -P "$OPENSSL_CONC" -L 1 \
  openssl s_client -CAfile "$WORK/root.pem" -verify_return_error -brief \
  < "$WORK/openssl.args" > "$WORK/openssl.out" 2>&1 || true
read -r OS_WALL OS_U OS_S OS_RSS < "$WORK/openssl.time"
OS_OK=$(grep -c '^Verification: OK' "$WORK/openssl.out" || true)

# --- report -------------------------------------------------------------------------------
awk -v n="$N" -v rounds="$ROUNDS" -v on="$OURS_N" -v bn="$BB_N" -v conc="$CONC" -v oconc="$OPENSSL_CONC" -v tck="$TCK" \
    -v ow="$OURS_WALL" -v ou="$OURS_U" -v os="$OURS_S" -v orss="$OURS_RSS" -v ook="$OURS_OK" \
    -v bw="$BB_WALL" -v bcpu="$((BB_T1 - BB_T0))" -v brss="$BB_RSS" -v bok="$BB_OK" \
    -v sw="$OS_WALL" -v su="$OS_U" -v ss="$OS_S" -v srss="$OS_RSS" -v sok="$OS_OK" '
BEGIN {
  ocpu = ou + os; bc = bcpu / tck; scpu = su + ss
  ohs = ook / ocpu; bhs = bok / bc; shs = sok / scpu
  printf "scan benchmark: %d TLS endpoints on 127.0.0.1 (ECDSA P-256 leaf + intermediate), chain verified by every scanner\n", n
  printf "certops-tls and blackbox_exporter: %d passes each (%d handshakes); openssl: one pass\n\n", rounds, n * rounds
  printf "%-34s %11s %8s %8s %12s %9s\n", "scanner", "ok", "wall s", "CPU s", "hs / CPU-s", "peak MB"
  printf "%-34s %5d/%-5d %8.2f %8.2f %12.0f %9.1f\n", "certops-tls (conc " conc ")", ook, on, ow, ocpu, ohs, orss / 1024
  printf "%-34s %5d/%-5d %8.2f %8.2f %12.0f %9.1f\n", "blackbox_exporter (conc " conc ")", bok, bn, bw, bc, bhs, brss / 1024
  printf "%-34s %5d/%-5d %8.2f %8.2f %12.0f %9.1f\n", "openssl s_client (" oconc " procs)", sok, n, sw, scpu, shs, srss / 1024
  printf "\nendpoints per second: certops-tls %.0f, blackbox_exporter %.0f, openssl %.0f\n", ook / ow, bok / bw, sok / sw
  printf "ratios ours/blackbox: endpoints/s %.2fx, handshakes/CPU-s %.2fx, peak RSS %.2fx\n", (ook / ow) / (bok / bw), ohs / bhs, orss / brss
  printf "ratios ours/openssl:  endpoints/s %.2fx, handshakes/CPU-s %.2fx, peak RSS %.2fx (openssl: largest single process)\n", (ook / ow) / (sok / sw), ohs / shs, orss / srss
  fail = 0
  printf "\ntargets:\n"
  r = (ohs >= 3 * bhs);     printf "  >= 3x blackbox handshakes per CPU-second: %s (%.2fx)\n", r ? "PASS" : "FAIL", ohs / bhs; fail += !r
  r = (ohs >= 1500);        printf "  >= 1500 handshakes per CPU-second:        %s (%.0f)\n", r ? "PASS" : "FAIL", ohs; fail += !r
  r = (orss < 100 * 1024);  printf "  < 100 MB RSS at concurrency %d:         %s (%.1f MB)\n", conc, r ? "PASS" : "FAIL", orss / 1024; fail += !r
  r = (ook == on && on == n * rounds); printf "  every endpoint ok:                        %s (%d/%d)\n", r ? "PASS" : "FAIL", ook, n * rounds; fail += !r
  exit fail ? 1 : 0
}'
