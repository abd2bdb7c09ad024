#!/usr/bin/env bash
# Runs the hub's cargo-fuzz targets (server/fuzz): the publish body, the query string, the
# Last-Event-ID and the frame encoder round trip (checked by eventsource-stream).
#   scripts/fuzz.sh            each target for 30 s (what scripts/test.sh runs)
#   scripts/fuzz.sh 600        each target for 10 minutes
#   scripts/fuzz.sh 600 query  one target
# Installs cargo-fuzz if missing, and uses the pinned nightly of scripts/wasm-toolchain.sh
# (cargo fuzz needs a nightly for its sanitizer flags). Corpora stay in server/fuzz/corpus
# (gitignored); each run prints libFuzzer's execution count.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${1:-30}"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(publish_body query last_event_id frame_roundtrip)

# shellcheck source=scripts/wasm-toolchain.sh
source "$ROOT/scripts/wasm-toolchain.sh"
NIGHTLY="$(wasm_toolchain)"
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$NIGHTLY" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz (about 2 minutes)" >&2
  cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

cd "$ROOT/server"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/fuzz"
for target in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "[fuzz] $target for ${SECONDS_EACH}s" >&2
  log="$(mktemp)"
  if ! cargo "+$NIGHTLY" fuzz run "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    rm -f "$log"
    echo "[fuzz] $target FAILED" >&2
    exit 1
  fi
  execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')"
  echo "[fuzz] $target: $execs executions in ${SECONDS_EACH}s, no failure"
  rm -f "$log"
done
