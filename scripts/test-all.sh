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

echo "==> installing test dependencies (npm: asl-validator)"
npm install --prefix tests/node --no-audit --no-fund --loglevel=error
test -x tests/node/node_modules/.bin/asl-validator || { echo "asl-validator is required by the definition tests and could not be installed" >&2; exit 1; }

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
