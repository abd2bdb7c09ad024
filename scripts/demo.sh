#!/usr/bin/env bash
# Runs the eventwire hub in dev mode (in-memory, no auth, no Redis) on http://127.0.0.1:8080.
# Usage: scripts/demo.sh [extra eventwire flags]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --locked -p eventwire-server --bin eventwire -- \
  --dev --listen "${EVENTWIRE_LISTEN:-127.0.0.1:8080}" "$@"
