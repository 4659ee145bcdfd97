#!/usr/bin/env bash
# Builds every Lambda function in functions/ as a deployable zip with
# cargo-lambda (bootstrap binary, Amazon Linux 2023 "provided.al2023" runtime),
# for arm64 (Graviton) by default, and prints each zip's size.
#
# Usage: bash scripts/build-lambda.sh [--x86-64] [--help]
#
# Installs what it needs from PyPI (cargo-lambda, and ziglang, which
# cargo-lambda uses as the cross linker) and the Rust target through rustup.
# Re-running it is safe: installs are skipped when present and cargo rebuilds
# only what changed. The zips land in cargo-lambda's lambda directory,
# ${CARGO_TARGET_DIR:-target}/lambda/certops-<name>/bootstrap.zip.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: bash scripts/build-lambda.sh [--x86-64] [--help]

Builds every function crate in functions/ (binaries certops-<name>) with
`cargo lambda build --release --output-format zip` and prints a table of the
zip sizes and where they are.

Options:
  --x86-64   build for x86_64 Lambda instead of arm64 (Graviton, the default)
  -h, --help show this help

Environment:
  CARGO_TARGET_DIR   cargo's target directory (default: ./target); the zips
                     are in $CARGO_TARGET_DIR/lambda/<bin>/bootstrap.zip
EOF
}

arch=arm64
while [ $# -gt 0 ]; do
  case "$1" in
    --x86-64|--x86_64) arch=x86_64 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-lambda: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

die() { echo "build-lambda: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not on PATH; install Rust with rustup first"
command -v python3 >/dev/null || die "python3 is not on PATH; it is needed to install cargo-lambda and ziglang from PyPI"

# --- tools -------------------------------------------------------------------
if ! command -v cargo-lambda >/dev/null || ! python3 -c 'import ziglang' 2>/dev/null; then
  echo "==> installing cargo-lambda and ziglang (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    cargo-lambda ziglang || die "pip could not install cargo-lambda and ziglang"
  hash -r
fi
command -v cargo-lambda >/dev/null \
  || die "cargo-lambda was installed but is not on PATH (check pip's scripts directory)"
echo "==> $(cargo lambda --version 2>/dev/null || echo cargo-lambda), zig $(python3 -m ziglang version 2>/dev/null || echo '?')"

# --- target ------------------------------------------------------------------
if [ "$arch" = arm64 ]; then
  triple=aarch64-unknown-linux-gnu
  if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    echo "==> adding the Rust target $triple"
    if ! rustup target add "$triple"; then
      echo "build-lambda: WARNING: the Rust target $triple could not be installed;" >&2
      echo "build-lambda: WARNING: falling back to x86_64 — these zips need an x86_64 Lambda architecture." >&2
      arch=x86_64
    fi
  fi
fi
if [ "$arch" = x86_64 ]; then
  triple=x86_64-unknown-linux-gnu
  arch_flag=--x86-64
else
  arch_flag=--arm64
fi

# --- functions ---------------------------------------------------------------
bins=()
pkgs=()
for manifest in functions/*/Cargo.toml; do
  name=$(basename "$(dirname "$manifest")")
  grep -q "^name = \"certops-$name\"" "$manifest" \
    || die "$manifest has no binary certops-$name (every function crate builds one)"
  bins+=("certops-$name")
  pkg=$(sed -n 's/^name = "\(certops-fn-[a-z-]*\)"$/\1/p' "$manifest" | head -n1)
  [ -n "$pkg" ] || die "$manifest has no package name certops-fn-$name"
  pkgs+=(-p "$pkg")
done
[ "${#bins[@]}" -gt 0 ] || die "no function crates found in functions/"

target_dir=${CARGO_TARGET_DIR:-target}
lambda_dir="$target_dir/lambda"

# A panic inside a Lambda handler aborts the process: the sandbox ends, the
# Lambda service starts a fresh one for the next event, and the invoke comes
# back as a routable Runtime.ExitError that Step Functions Retry/Catch can
# handle. Unwinding buys nothing there and costs size. The repository's release
# profile keeps panic = "unwind" because it also builds `certops serve`, where
# one bad request must not end every waiting execution; so abort is set here,
# for these builds only.
export CARGO_PROFILE_RELEASE_PANIC=abort

# Packages, not --bin names: selecting only the function crates keeps other
# workspace members' dependency features (e.g. the benchmark's) out of the zips.
echo "==> cargo lambda build --release $arch_flag --output-format zip (${#bins[@]} functions, panic=abort)"
cargo lambda build --release "$arch_flag" --output-format zip "${pkgs[@]}" \
  || die "cargo lambda build failed (see the output above)"

# --- report ------------------------------------------------------------------
echo
echo "Lambda zips ($arch, $triple, release, panic=abort) in $lambda_dir/:"
printf '| %-28s | %10s | %15s |\n' function "zip (KiB)" "bootstrap (KiB)"
printf '|%s|%s|%s|\n' "------------------------------" "------------" "-----------------"
total=0
missing=0
for b in "${bins[@]}"; do
  zip="$lambda_dir/$b/bootstrap.zip"
  if [ ! -f "$zip" ]; then
    echo "build-lambda: expected $zip but it is missing" >&2
    missing=1
    continue
  fi
  zbytes=$(stat -c %s "$zip")
  ubytes=$(python3 -c 'import sys,zipfile; print(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist()))' "$zip")
  total=$((total + zbytes))
  printf '| %-28s | %10s | %15s |\n' "$b" "$(( (zbytes + 512) / 1024 ))" "$(( (ubytes + 512) / 1024 ))"
done
printf '| %-28s | %10s | %15s |\n' total "$(( (total + 512) / 1024 ))" ""
[ "$missing" -eq 0 ] || die "some zips are missing"
echo
echo "Each zip holds one 'bootstrap' for the provided.al2023 runtime ($arch)."
