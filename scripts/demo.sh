#!/usr/bin/env bash
# Runs the demo: the eventwire hub in dev mode (in memory, no auth, no Redis) serving the client
# page and the admin dashboard, on http://127.0.0.1:8080/client and /admin.
# Builds the npm package the pages use first (installing the wasm toolchain when missing).
# Usage: scripts/demo.sh [extra eventwire flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-npm.sh
LISTEN="${EVENTWIRE_LISTEN:-127.0.0.1:8080}"
echo "demo: open http://$LISTEN/client (as many tabs as you like) and http://$LISTEN/admin"
exec cargo run --release --locked -p eventwire-server --bin eventwire -- \
  --dev --listen "$LISTEN" --demo demo --npm-dir npm "$@"
