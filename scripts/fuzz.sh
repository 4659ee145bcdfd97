#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (see fuzz/fuzz_targets/), each for a
# time or a number of inputs, and prints per target the executions run and
# whether it crashed. Exits non-zero when any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/fuzz.sh [--time SECONDS | --runs N] [--target NAME]... [--list]

Builds every fuzz target in fuzz/ with `cargo +nightly fuzz build`, then runs
each over its committed corpus (fuzz/corpus/NAME/, read only: new inputs go to
a temporary directory) plus new inputs libFuzzer derives from it.

  --time SECONDS  run each target this long (default 60)
  --runs N        run each target for N inputs instead (corpus included); the
                  test command (scripts/test-all.sh) uses this as a regression
  --target NAME   only this target (repeatable); default: every target
  --list          print the targets and exit
  -h, --help      this text

Per target it prints the executions run (libFuzzer's
stat::number_of_executed_units) and OK or CRASH; a crashing input is kept in
fuzz/artifacts/NAME/ (reproduce with
`cargo +nightly fuzz run -s none -a NAME FILE` in fuzz/). The
exit status is 1 when any target crashed, 2 on a usage or build error.

Needs the nightly toolchain and cargo-fuzz; both are installed when missing
(rustup toolchain install nightly; cargo install cargo-fuzz --locked).
Respects CARGO_TARGET_DIR.
EOF
}

die() { echo "fuzz.sh: $*" >&2; exit 2; }

mode="time"
amount=60
targets=()
list=0
while [ $# -gt 0 ]; do
  case "$1" in
    --time) [ $# -ge 2 ] || die "--time needs SECONDS"; mode="time"; amount="$2"; shift 2 ;;
    --runs) [ $# -ge 2 ] || die "--runs needs N"; mode="runs"; amount="$2"; shift 2 ;;
    --target) [ $# -ge 2 ] || die "--target needs NAME"; targets+=("$2"); shift 2 ;;
    --list) list=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
[[ "$amount" =~ ^[1-9][0-9]*$ ]] || die "--time/--runs needs a positive whole number, got '$amount'"

all=()
for f in fuzz/fuzz_targets/*.rs; do all+=("$(basename "$f" .rs)"); done
if [ "$list" -eq 1 ]; then printf '%s\n' "${all[@]}"; exit 0; fi
if [ ${#targets[@]} -eq 0 ]; then
  targets=("${all[@]}")
else
  for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_targets/$t.rs" ] || die "no target '$t' (targets: ${all[*]})"
  done
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "==> installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal || die "could not install the nightly toolchain"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked || die "could not install cargo-fuzz"
fi

# No AddressSanitizer: certops' crates forbid unsafe code, so what ASan would find there shows as a panic
# anyway, and without it the targets build in a fraction of the time and run faster.
# Debug assertions stay on: an arithmetic overflow in a parser is a crash found.
fuzz_flags=(--sanitizer none --debug-assertions)
echo "==> building fuzz targets ($(cargo fuzz --version 2>/dev/null), nightly, ${fuzz_flags[*]})"
(cd fuzz && cargo +nightly fuzz build "${fuzz_flags[@]}") || die "the fuzz targets do not build"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
crashed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/corpus/$t"
  if [ "$mode" = "time" ]; then limit="-max_total_time=$amount"; else limit="-runs=$amount"; fi
  echo "==> fuzzing $t ($mode $amount)"
  log="$work/$t.log"
  set +e
  # New inputs go to $work/$t (first directory); the committed corpus is only read.
  (cd fuzz && cargo +nightly fuzz run "${fuzz_flags[@]}" "$t" "$work/$t" "corpus/$t" -- \
      "$limit" -timeout=20 -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  [ -n "$execs" ] || execs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)"
  [ -n "$execs" ] || execs="$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)"
  secs="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)"
  if [ "$rc" -eq 0 ]; then
    result="OK"
  else
    result="CRASH"
    crashed+=("$t")
    echo "---- $t: libFuzzer exited $rc; the end of its log:" >&2
    grep -A2 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)|Test unit written to' "$log" | head -30 >&2 || true
  fi
  summary+=("$(printf '%-18s %12s executions %6ss  %s' "$t" "${execs:-?}" "${secs:-?}" "$result")")
  echo "    ${summary[-1]}"
done

echo "==> fuzz summary ($mode $amount per target)"
printf '    %s\n' "${summary[@]}"
if [ ${#crashed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashed: ${crashed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
