#!/usr/bin/env bash
# Installs what the client-wasm build and browser tests need, skipping anything already there:
#   - the wasm32-unknown-unknown Rust target (rustup)
#   - the pinned nightly of the client's release build (scripts/wasm-toolchain.sh), minimal
#     profile, with rust-src and the wasm target (rustup; about 30 s)
#   - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock (cargo install)
#   - wasm-pack, which runs the browser tests (cargo install; about 3 minutes)
#   - Debian's chromium + chromium-driver (apt-get)
#   - binaryen@132.0.0 (wasm-opt) and playwright-core from npm, into .tools/npm (gitignored)
# (terser, which minifies the JS, is one of npm/'s dev dependencies, pinned by its lockfile.)
#
# With --build-only (scripts/build-client-wasm.sh), only what rebuilds the committed wasm in
# npm/wasm/: the pinned nightly, wasm-bindgen-cli and binaryen; no wasm target for stable,
# wasm-pack, Chromium or playwright-core, which only the tests need. The demo and the npm
# package need none of this: they use the committed wasm.
#
# Never use Debian's binaryen: its wasm-opt (108) produces modules that break at load.
# Prints nothing but progress; safe to run again (warm runs take a second or two).
set -euo pipefail

BUILD_ONLY=0
if [[ "${1:-}" == "--build-only" ]]; then BUILD_ONLY=1; fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BINARYEN_VERSION="132.0.0"
PLAYWRIGHT_VERSION="1.64.1"

log() { printf '[install-tools] %s\n' "$*" >&2; }

# 1. wasm target
if [[ "$BUILD_ONLY" == 0 ]] && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 1b. the release build's nightly, with the sources of core/alloc (for -Z build-std)
# shellcheck source=scripts/wasm-toolchain.sh
source "$ROOT/scripts/wasm-toolchain.sh"
NIGHTLY="$(wasm_toolchain)"
if ! rustup run "$NIGHTLY" rustc --print sysroot >/dev/null 2>&1; then
  log "installing rust $NIGHTLY (minimal, rust-src, wasm32-unknown-unknown)"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src \
    --target wasm32-unknown-unknown
fi
if [[ ! -d "$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/src/rust/library" ]]; then
  rustup component add rust-src --toolchain "$NIGHTLY"
fi
if ! rustup target list --installed --toolchain "$NIGHTLY" | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown --toolchain "$NIGHTLY"
fi

# 2. wasm-bindgen-cli, same version as the wasm-bindgen crate in Cargo.lock
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")"
if [[ -z "$WB_VERSION" ]]; then
  log "cannot find wasm-bindgen in Cargo.lock"; exit 1
fi
have_wb="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have_wb" != "$WB_VERSION" ]]; then
  log "installing wasm-bindgen-cli $WB_VERSION (found: ${have_wb:-none}); takes a few minutes"
  # --locked can fail when a locked dependency is missing from the registry mirror.
  cargo install wasm-bindgen-cli --version "=$WB_VERSION" --locked \
    || cargo install wasm-bindgen-cli --version "=$WB_VERSION" --force
fi

# 2b. wasm-pack (`wasm-pack test --headless --chrome`; run with --mode no-install, so it uses
# the wasm-bindgen-cli above and the chromedriver below and downloads nothing)
WASM_PACK_VERSION="0.15.1"
have_wp="$(wasm-pack --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$BUILD_ONLY" == 0 && "$have_wp" != "$WASM_PACK_VERSION" ]]; then
  log "installing wasm-pack $WASM_PACK_VERSION (found: ${have_wp:-none}); takes a few minutes"
  cargo install wasm-pack --version "=$WASM_PACK_VERSION" --locked \
    || cargo install wasm-pack --version "=$WASM_PACK_VERSION" --force
fi

# 3. Chromium + chromedriver from Debian
if [[ "$BUILD_ONLY" == 0 ]] && [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
  log "installing chromium + chromium-driver from Debian"
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

# 4. npm tools into .tools/npm
NPM_DIR="$TOOLS/npm"
need_npm=0
[[ -x "$NPM_DIR/node_modules/.bin/wasm-opt" ]] || need_npm=1
[[ "$(node -p "require('$NPM_DIR/node_modules/binaryen/package.json').version" 2>/dev/null || true)" == "$BINARYEN_VERSION" ]] || need_npm=1
[[ "$BUILD_ONLY" == 1 || "$(node -p "require('$NPM_DIR/node_modules/playwright-core/package.json').version" 2>/dev/null || true)" == "$PLAYWRIGHT_VERSION" ]] || need_npm=1
NPM_PACKAGES=("binaryen@$BINARYEN_VERSION")
if [[ "$BUILD_ONLY" == 0 ]]; then NPM_PACKAGES+=("playwright-core@$PLAYWRIGHT_VERSION"); fi
if [[ "$need_npm" == 1 ]]; then
  log "installing ${NPM_PACKAGES[*]} into .tools/npm"
  mkdir -p "$NPM_DIR"
  [[ -f "$NPM_DIR/package.json" ]] || echo '{"name":"eventwire-tools","private":true}' > "$NPM_DIR/package.json"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >/dev/null
fi

if [[ "$BUILD_ONLY" == 1 ]]; then
  log "ok (build tools only): wasm-bindgen $WB_VERSION, $NIGHTLY, wasm-opt $("$NPM_DIR/node_modules/.bin/wasm-opt" --version 2>/dev/null | head -1)"
  exit 0
fi
log "ok: wasm-bindgen $WB_VERSION, wasm-pack $WASM_PACK_VERSION, $(/usr/bin/chromium --version 2>/dev/null | head -1), wasm-opt $("$NPM_DIR/node_modules/.bin/wasm-opt" --version 2>/dev/null | head -1)"
