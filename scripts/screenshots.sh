#!/usr/bin/env bash
# Screenshots of every web console page: runs the console browser test (which
# runs the demo, starts `certops serve` on loopback, signs in and walks every
# page in headless chromium) with SCREENSHOT_DIR set, so each page is saved as
# a PNG. Usage: bash scripts/screenshots.sh [DIR]   (default: target/console-screenshots)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(realpath -m "${1:-target/console-screenshots}")"
mkdir -p "$dir"
command -v node >/dev/null || { echo "node is required" >&2; exit 1; }
test -x /usr/bin/chromium || { echo "chromium (Debian) is required: apt-get install chromium" >&2; exit 1; }
npm install --prefix tests/node --no-audit --no-fund --loglevel=error
cargo build -p certops-cli
SCREENSHOT_DIR="$dir" cargo test -p certops-tests --test console_browser -- --nocapture
echo "screenshots of every console page are in $dir:"
ls -1 "$dir"
