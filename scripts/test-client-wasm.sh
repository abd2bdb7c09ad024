#!/usr/bin/env bash
# One command for the client SDK (client-wasm/): installs what is missing, builds the hub and
# the chaos proxy, starts them on free ports, then runs
#   1. native tests of the pure modules (with and without the `typed` feature),
#   2. clippy (native and wasm32) and rustfmt --check for the crates this script covers,
#   3. the wasm browser tests in headless Chromium against the real hub (through the proxy),
#      with `wasm-pack test --headless --chrome` (the same tests also run with plain cargo:
#      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner cargo test
#      --target wasm32-unknown-unknown -p eventwire-client --features typed, with the
#      environment this script sets),
#   4. the release build + wasm-opt + gzip size report (scripts/build-client-wasm.sh, into
#      $CARGO_TARGET_DIR/client-wasm-pkg: the committed npm/wasm/ is left alone; scripts/test.sh
#      checks it is what the sources build),
#   5. the Playwright smoke test of that optimised build against the real hub,
#   6. 200 clients of that build (in Node) cut at once: their reconnects must spread over the
#      jitter window; prints the spread.
# The hub runs WITHOUT --heartbeat-event: the browser tests prove the SDK asks for event
# heartbeats itself (heartbeat=event). A second proxy + hub with --queue-capacity 1 serves the
# slow-consumer (`__error`) test.
# Stops every process it started. Exits non-zero on any failure.
#
# Honours CARGO_TARGET_DIR (default: the workspace's target/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_TARGET_DIR="$TARGET_DIR"
WORK="$(mktemp -d)"
PIDS=()

log() { printf '\n==> %s\n' "$*" >&2; }

cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 && -f "$WORK/proxy.err" ]]; then
    echo "--- chaos-proxy / hub log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/proxy.err" >&2 || true
    if [[ -f "$WORK/slow.err" ]]; then
      echo "--- slow-consumer chaos-proxy / hub log (last 20 lines) ---" >&2
      tail -n 20 "$WORK/slow.err" >&2 || true
    fi
  fi
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT INT TERM

# Waits until FILE has a line matching REGEX; prints the first match.
wait_for_line() {
  local file=$1 regex=$2 pid=$3
  for _ in $(seq 1 600); do
    if grep -Eom1 "$regex" "$file" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "process $pid exited early" >&2; cat "$file" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for /$regex/ in $file" >&2
  return 1
}

log "tools"
bash "$ROOT/scripts/install-tools.sh"
export PATH="$ROOT/.tools/npm/node_modules/.bin:$HOME/.cargo/bin:$PATH"

log "build: hub and chaos proxy"
cargo build -p eventwire-server --bin eventwire
cargo build -p chaos-proxy
HUB_BIN="$TARGET_DIR/debug/eventwire"
PROXY_BIN="$TARGET_DIR/debug/chaos-proxy"

log "start: chaos proxy supervising the hub"
"$PROXY_BIN" -- "$HUB_BIN" --dev --listen 127.0.0.1:0 --heartbeat-secs 1 \
  --retry-ms 500 --drain-secs 2 >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
PIDS+=($!)
PROXY_PID=$!
PROXY_URL="$(wait_for_line "$WORK/proxy.out" 'proxy listening on http://[0-9.:]+' "$PROXY_PID" | sed 's/.*on //')"
CONTROL_URL="$(wait_for_line "$WORK/proxy.out" 'control listening on http://[0-9.:]+' "$PROXY_PID" | sed 's/.*on //')"
HUB_URL="$(wait_for_line "$WORK/proxy.out" 'upstream http://[0-9.:]+' "$PROXY_PID" | sed 's/.*upstream //')"
echo "proxy $PROXY_URL, control $CONTROL_URL, hub $HUB_URL" >&2

log "start: a second proxy + hub whose queue holds one event (slow-consumer test)"
"$PROXY_BIN" -- "$HUB_BIN" --dev --listen 127.0.0.1:0 --heartbeat-secs 1 --queue-capacity 1 \
  --retry-ms 500 --drain-secs 2 >"$WORK/slow.out" 2>"$WORK/slow.err" &
PIDS+=($!)
SLOW_PID=$!
SLOW_PROXY_URL="$(wait_for_line "$WORK/slow.out" 'proxy listening on http://[0-9.:]+' "$SLOW_PID" | sed 's/.*on //')"
SLOW_CONTROL_URL="$(wait_for_line "$WORK/slow.out" 'control listening on http://[0-9.:]+' "$SLOW_PID" | sed 's/.*on //')"
echo "slow proxy $SLOW_PROXY_URL, control $SLOW_CONTROL_URL" >&2

log "native tests"
cargo test -p eventwire-client
cargo test -p eventwire-client --features typed

log "lint: rustfmt, clippy (native and wasm32)"
cargo fmt -p eventwire-client -p chaos-proxy -- --check
cargo clippy -p eventwire-client -p chaos-proxy --all-targets -- -D warnings
cargo clippy -p eventwire-client --all-targets --features typed -- -D warnings
cargo clippy -p eventwire-client --all-targets --features typed,standalone --target wasm32-unknown-unknown -- -D warnings
# The JavaScript build's configuration (no std, talc, trapping panic handler): library only,
# since the test harnesses link std.
cargo clippy -p eventwire-client --no-default-features --features standalone \
  --target wasm32-unknown-unknown -- -D warnings

log "wasm browser tests: wasm-pack test --headless --chrome (real hub)"
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$ROOT/client-wasm/webdriver.json"
export WASM_BINDGEN_TEST_TIMEOUT=300
export EVENTWIRE_PROXY_URL="$PROXY_URL" EVENTWIRE_PROXY_CONTROL_URL="$CONTROL_URL"
export EVENTWIRE_SLOW_PROXY_URL="$SLOW_PROXY_URL" EVENTWIRE_SLOW_PROXY_CONTROL_URL="$SLOW_CONTROL_URL"
# A port bound once and closed again: nothing listens there, every connect is refused.
DEAD_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export EVENTWIRE_DEAD_URL="http://127.0.0.1:$DEAD_PORT"
# --mode no-install: use the installed wasm-bindgen-test-runner and chromedriver, download
# nothing. No -q: the runner rejects --quiet.
wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver --mode no-install \
  client-wasm --features typed

log "release build + size"
bash "$ROOT/scripts/build-client-wasm.sh" "$TARGET_DIR/client-wasm-pkg"

log "Playwright smoke test of the optimised build"
HUB_NOW="$(curl -s "$CONTROL_URL/status" | sed -E 's/.*"upstream":"([^"]+)".*/\1/')"
NODE_PATH="$ROOT/.tools/npm/node_modules" node "$ROOT/tests/client-smoke/smoke.mjs" \
  "$TARGET_DIR/client-wasm-pkg" "$HUB_NOW"

log "reconnect spread: 200 clients of the optimised build cut at once (Node's EventSource)"
node --experimental-eventsource --no-warnings "$ROOT/tests/client-smoke/spread.mjs" \
  "$TARGET_DIR/client-wasm-pkg" "$PROXY_URL" "$CONTROL_URL"

log "client-wasm: all passed"
