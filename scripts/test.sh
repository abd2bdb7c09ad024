#!/usr/bin/env bash
# Runs every eventwire test. Installs what it needs on a bare machine (wasm target,
# wasm-bindgen CLI, Chromium + chromedriver, binaryen and playwright-core from npm, npm
# packages, cargo-fuzz, cargo-deny, redis-server, nginx-light + nchan) and skips what is
# already there.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

step() { printf '\n==> %s\n' "$*"; }

# A fresh clone's run leaves a few GB of build output under the target directory. A full disk
# shows up much later as a linker's "Bus error", so say it here.
mkdir -p "$TARGET_DIR"
avail_mb=$(df -Pm "$TARGET_DIR" | awk 'NR==2 {print $4}')
echo "free space for $TARGET_DIR: ${avail_mb} MB"
if (( avail_mb < 6000 )); then
  echo "WARNING: under 6 GB free; a first run may run out of disk while linking" >&2
fi
# Incremental state only pays off on the next build of the same tree; CI's fresh clone never
# has one, and skipping it saves disk and a little time.
if [[ -n "${CI:-}" ]]; then
  export CARGO_INCREMENTAL=0
fi

step "toolchain components"
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

step "services: redis-server (the cluster tests start their own on a free port)"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
redis-server --version

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test: hub (black-box over real sockets, three instances over Redis), client logic (native), chaos proxy"
cargo test --workspace --locked

step "hub under load and faults: small storms and floods with eventwire-load (docs/LOAD.md)"
bash scripts/load-smoke.sh

step "fuzz: publish body, query, Last-Event-ID, frame round trip (30 s each)"
bash scripts/fuzz.sh 30

step "supply chain: cargo deny (licences, bans, sources; advisories with a local advisory-db), npm audit"
bash scripts/audit.sh

step "benchmark smoke: eventwire, nchan and node through eventwire-load bench, 100 connections, every event checked (installs nginx-light + nchan)"
bash scripts/bench.sh --quick

step "committed wasm: npm/wasm/ is byte for byte what client-wasm/ builds (pinned nightly, wasm-bindgen, binaryen, terser)"
# The demo and the npm package use the committed build (no nightly or wasm-bindgen-cli there),
# so it must be exactly what the sources give.
REBUILT="$(mktemp -d)"
bash scripts/build-client-wasm.sh "$REBUILT"
if ! diff -r "$ROOT/npm/wasm" "$REBUILT" >/dev/null; then
  diff -rq "$ROOT/npm/wasm" "$REBUILT" >&2 || true
  echo "ERROR: npm/wasm/ is not what client-wasm/ builds. Regenerate it with" >&2
  echo "         bash scripts/build-client-wasm.sh" >&2
  echo "       and commit npm/wasm/ with the change." >&2
  rm -rf "$REBUILT"
  exit 1
fi
rm -rf "$REBUILT"
echo "npm/wasm/ matches a rebuild from source"

step "client SDK in headless Chromium against the real hub, release build, size, smoke test"
bash scripts/test-client-wasm.sh

step "npm package: pack, tsc --noEmit, fresh Vite + React app, plain page, hooks in Chromium"
cargo build --locked -p eventwire-server --bin eventwire
bash scripts/build-npm.sh
(cd npm && node_modules/.bin/tsc --noEmit -p tsconfig.json)
EVENTWIRE_HUB_BIN="$TARGET_DIR/debug/eventwire" node --test tests/npm/npm.test.mjs

step "browser benchmark smoke: 2,000 events via raw EventSource, the SDK and reconnecting-eventsource in Chromium, each checked"
EVENTWIRE_HUB_BIN="$TARGET_DIR/debug/eventwire" bash scripts/bench-browser.sh --quick

step "demo pages end to end in Chromium (admin -> client, broadcast, drop + replay, hub restart)"
EVENTWIRE_HUB_BIN="$TARGET_DIR/debug/eventwire" node --test tests/e2e/demo.test.mjs

step "three instances over Redis behind nginx: the demo page survives its instance's kill (installs nginx-light)"
EVENTWIRE_HUB_BIN="$TARGET_DIR/debug/eventwire" node --test tests/cluster/cluster.test.mjs

echo
echo "all eventwire tests passed"
