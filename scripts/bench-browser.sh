#!/usr/bin/env bash
# Browser benchmark (tests/bench-browser/bench.mjs): a page in headless Chromium handles
# 100,000 events from the hub with the browser's EventSource + JSON.parse, with the eventwire
# SDK (the packed npm package, optimised release build) and with reconnecting-eventsource,
# 5 runs each, interleaved; prints the medians, the SDK/raw ratio and the machine's load.
#
# Usage: scripts/bench-browser.sh [--quick] [--rebuild] [bench.mjs options]
#   --quick     2,000 events, 1 run each; still checks every event arrived, in order (for
#               the test command)
#   --rebuild   rebuild npm/dist (scripts/build-npm.sh) even if it is built
#   --mode replay|live|both, --events N, --reps R, --clients raw,sdk,res, --profile,
#   --npm-dir DIR, --compare DIR: see tests/bench-browser/bench.mjs
#
# Installs what it needs and skips what is there: Chromium (Debian's), playwright-core and
# reconnecting-eventsource (pinned, tests/bench-browser/package-lock.json). Builds the release
# hub (cargo; skipped when EVENTWIRE_HUB_BIN names a hub binary) and, when npm/dist is
# missing, the npm package's TypeScript (npm/wasm is committed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH="$ROOT/tests/bench-browser"

rebuild=0
npm_dir=0
args=()
for arg in "$@"; do
  if [[ "$arg" == "--rebuild" ]]; then rebuild=1; else args+=("$arg"); fi
  if [[ "$arg" == --npm-dir* ]]; then npm_dir=1; fi
done

log() { printf '[bench-browser] %s\n' "$*" >&2; }

if [[ ! -x /usr/bin/chromium ]]; then
  log "installing Chromium (Debian)"
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# The pinned versions, installed when a package is missing or at another version.
installed() {
  node -e '
    const dir = process.argv[1];
    const want = require(dir + "/package.json").devDependencies;
    for (const [name, version] of Object.entries(want)) {
      try {
        if (require(`${dir}/node_modules/${name}/package.json`).version !== version) process.exit(1);
      } catch { process.exit(1); }
    }' "$BENCH"
}
if ! installed; then
  log "installing tests/bench-browser's npm packages"
  (cd "$BENCH" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

if [[ -z "${EVENTWIRE_HUB_BIN:-}" ]]; then
  cargo build --release --locked -p eventwire-server --bin eventwire >&2
  export EVENTWIRE_HUB_BIN="$TARGET_DIR/release/eventwire"
fi

# npm/wasm is committed (scripts/build-client-wasm.sh regenerates it); npm/dist is built here
# by scripts/build-npm.sh (TypeScript only) when it is missing.
WASM="$ROOT/npm/wasm/eventwire_client_bg.wasm"
if (( npm_dir && !rebuild )); then
  : # the package measured is another build (--npm-dir)
elif (( rebuild )) || [[ ! -f "$ROOT/npm/dist/index.js" ]]; then
  log "building the npm package (scripts/build-npm.sh)"
  bash scripts/build-npm.sh
else
  if [[ -n "$(find npm/src -newer npm/dist/index.js -print -quit)" ]]; then
    log "warning: npm/src changed since npm/dist was built; --rebuild to measure the change"
  fi
  if [[ -n "$(find client-wasm/src client-wasm/Cargo.toml -newer "$WASM" -print -quit)" ]]; then
    log "warning: client-wasm/ changed since npm/wasm was built; bash scripts/build-client-wasm.sh regenerates it"
  fi
fi

log "$(/usr/bin/chromium --version 2>/dev/null); node $(node --version)"
log "load before: $(uptime)"
node "$BENCH/bench.mjs" "${args[@]}"
log "load after:  $(uptime)"
