#!/usr/bin/env bash
# Runs the demo: the eventwire hub in dev mode (in memory, no auth, no Redis) serving the client
# page and the admin dashboard, on http://127.0.0.1:8080/client and /admin.
#
# Builds only what the demo needs, with stable Rust and Node, skipping what is already there:
#   - the npm package the pages use (scripts/build-npm.sh: `npm ci` of npm/'s dev dependencies,
#     then tsc and terser). Its wasm is committed (npm/wasm/), so neither the nightly nor
#     wasm-bindgen-cli is needed; scripts/build-client-wasm.sh regenerates it after a change to
#     client-wasm/;
#   - the hub, in the `demo` cargo profile (unoptimised, no debug info: compiles fast, and a
#     demo's handful of clients never needs more), in the background while the package builds.
# Prints the URLs once the hub listens. Ctrl-C stops it.
# Usage: scripts/demo.sh [extra eventwire flags]   (EVENTWIRE_LISTEN=host:port, default 127.0.0.1:8080)
#        scripts/demo.sh --build-only   builds the above and exits (scripts/cluster.sh runs that hub)
set -euo pipefail
BUILD_ONLY=0
if [[ "${1:-}" == "--build-only" ]]; then BUILD_ONLY=1; fi
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LISTEN="${EVENTWIRE_LISTEN:-127.0.0.1:8080}"
HUB_LOG="$TARGET_DIR/demo-hub-build.log"

log() { printf '[demo] %s\n' "$*" >&2; }

mkdir -p "$TARGET_DIR"
log "building the hub in the background (cargo --profile demo; log: $HUB_LOG)"
cargo build --locked --profile demo -p eventwire-server --bin eventwire >"$HUB_LOG" 2>&1 &
hub_build=$!
trap 'kill "$hub_build" 2>/dev/null || true' EXIT

bash scripts/build-npm.sh

if ! wait "$hub_build"; then
  tail -n 40 "$HUB_LOG" >&2
  log "the hub did not build (full log: $HUB_LOG)"
  exit 1
fi
trap - EXIT
log "hub built"
if [[ "$BUILD_ONLY" == 1 ]]; then exit 0; fi

# The hub prints "listening on http://ADDR" on stdout once its socket is bound; the URLs are
# printed then, not before (a port already in use ends the script with the hub's error).
"$TARGET_DIR/demo/eventwire" --dev --listen "$LISTEN" --demo demo --npm-dir npm "$@" |
  while IFS= read -r line; do
    printf '%s\n' "$line"
    if [[ "$line" =~ listening\ on\ (http://[^[:space:]]+) ]]; then
      url="${BASH_REMATCH[1]}"
      printf '\ndemo: open %s/client (as many tabs as you like) and %s/admin\n\n' "$url" "$url"
    fi
  done
