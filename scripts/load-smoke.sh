#!/usr/bin/env bash
# Small versions of every eventwire-load subcommand against a fresh debug hub, each for a few
# seconds with at most a couple of hundred connections. Checks are about correctness (no
# duplicated or lost event, silent sockets closed within a generous bound, the hub answering
# while they are open), not about wall-clock speed. The full-size runs are in docs/LOAD.md.
# Usage: scripts/load-smoke.sh   (EVENTWIRE_HUB_BIN=/path/to/eventwire: test that hub binary
#        instead of building the workspace's debug hub)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if [[ -n "${EVENTWIRE_HUB_BIN:-}" ]]; then
  echo "==> building eventwire-load (debug); hub: $EVENTWIRE_HUB_BIN"
  cargo build --locked -q -p eventwire-load --bin eventwire-load
  HUB_BIN="$EVENTWIRE_HUB_BIN"
else
  echo "==> building the hub and eventwire-load (debug)"
  cargo build --locked -q -p eventwire-server --bin eventwire -p eventwire-load --bin eventwire-load
  HUB_BIN="$TARGET_DIR/debug/eventwire"
fi
LOAD="$TARGET_DIR/debug/eventwire-load"

WORK="$(mktemp -d)"
HUB_PID=""
stop_hub() {
  if [[ -n "$HUB_PID" ]] && kill -0 "$HUB_PID" 2>/dev/null; then
    kill "$HUB_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$HUB_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$HUB_PID" 2>/dev/null || true
    wait "$HUB_PID" 2>/dev/null || true
  fi
  HUB_PID=""
}
cleanup() {
  stop_hub
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a hub on a free port with the given extra flags; sets HUB_PID and HUB.
start_hub() {
  stop_hub
  "$HUB_BIN" --dev --listen 127.0.0.1:0 --heartbeat-secs 1 "$@" >"$WORK/hub.log" 2>&1 &
  HUB_PID=$!
  HUB=""
  for _ in $(seq 100); do
    HUB="$(sed -n 's|^listening on http://||p' "$WORK/hub.log" | head -n1)"
    [[ -n "$HUB" ]] && break
    kill -0 "$HUB_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$HUB" ]]; then
    echo "the hub did not start:" >&2
    cat "$WORK/hub.log" >&2
    exit 1
  fi
}

FAILED=()
# Runs one subcommand against a fresh hub: run NAME -- LOAD-ARGS... (@HUB_PID@ is replaced
# by the new hub's process id).
run() {
  local name="$1"
  shift 2
  start_hub
  local args=("${@//@HUB_PID@/$HUB_PID}")
  echo
  echo "==> $name: eventwire-load ${args[*]}"
  if timeout --kill-after=5 150 "$LOAD" --hub "$HUB" "${args[@]}" >"$WORK/$name.json"; then
    :
  else
    FAILED+=("$name")
  fi
  cat "$WORK/$name.json"
  if ! kill -0 "$HUB_PID" 2>/dev/null; then
    echo "the hub died during $name:" >&2
    tail -n 20 "$WORK/hub.log" >&2
    FAILED+=("$name (hub died)")
  fi
}

run connect -- connect --count 200 --concurrency 200
run storm -- storm --streams 200 --rate 50 --duration 8 --drop-every-ms 300-2000 --settle-secs 20
run storm-mix -- storm --streams 100 --rate 50 --duration 5 --targets mix --topics 4 --settle-secs 20
run batch -- batch --streams 100 --hub-pid @HUB_PID@ --rss-settle-secs 1 --settle-secs 30
run topics -- topics --streams 8 --topics 1000 --history 200 --duration 3
run silent -- silent --count 150 --duration 5 --expect-closed-within 15 --expect-healthy

echo
if ((${#FAILED[@]})); then
  echo "load smoke FAILED: ${FAILED[*]}"
  exit 1
fi
echo "load smoke passed"
