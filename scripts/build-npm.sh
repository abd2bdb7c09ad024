#!/usr/bin/env bash
# Builds the npm package in npm/: the optimised wasm (scripts/build-client-wasm.sh) into
# npm/wasm/, then the TypeScript layer into npm/dist/. `npm pack` runs this as `prepack`, so a
# fresh checkout packs a complete tarball. Installs npm/'s dev dependencies when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/npm"

if [[ -n "${EVENTWIRE_PREBUILT_WASM:-}" ]]; then
  # For iterating on the TypeScript layer: reuse a finished wasm build (a directory holding
  # build-client-wasm.sh output). CI never sets this.
  rm -rf "$PKG/wasm" && mkdir -p "$PKG/wasm" && cp "$EVENTWIRE_PREBUILT_WASM"/* "$PKG/wasm/"
else
  bash "$ROOT/scripts/build-client-wasm.sh" "$PKG/wasm" >&2
fi

cd "$PKG"
if [[ ! -x node_modules/.bin/tsc ]]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
rm -rf dist
node_modules/.bin/tsc -p tsconfig.json
echo "[build-npm] built npm/dist and npm/wasm" >&2
