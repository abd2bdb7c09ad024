#!/usr/bin/env bash
# Regenerates the committed wasm of the npm package, npm/wasm/ (eventwire_client_bg.wasm, its
# JS glue eventwire_client.js and eventwire_client.d.ts), from client-wasm/:
#
#   bash scripts/build-client-wasm.sh          # writes npm/wasm/; commit it with the sources
#   bash scripts/build-client-wasm.sh DIR      # writes DIR instead (tests, the CI check)
#
# The files are committed so that the demo and the npm package build with stable Rust and
# Node alone (no nightly, no wasm-bindgen-cli: see scripts/demo.sh). scripts/test.sh rebuilds
# them into a temporary directory and fails unless they are byte for byte the committed ones,
# so the build is reproducible: every tool pinned (the nightly in wasm-toolchain.sh, the
# wasm-bindgen CLI at Cargo.lock's version, binaryen 132.0.0 by install-tools.sh, terser by
# npm/package-lock.json) and no machine path in the output (`-Z trim-paths`: sources appear
# as `client-wasm/src/...` and `index.crates.io-<hash>/<crate>-<version>/...`, whatever the
# checkout, CARGO_HOME or rustup directory). It installs what it lacks
# (scripts/install-tools.sh --build-only, and npm/'s dev dependencies for terser).
#
# Release build of the client SDK for JavaScript users (no `typed` feature, so no serde):
#   cargo +<pinned nightly> build --release --target wasm32-unknown-unknown -p eventwire-client \
#     --no-default-features --features standalone -Z build-std=core,alloc \
#     with -Cpanic=immediate-abort
#                                 (no std, so no panic/formatting machinery; core/alloc rebuilt
#                                 without panic messages or locations; talc as allocator; see
#                                 client-wasm/Cargo.toml, src/lib.rs and wasm-toolchain.sh;
#                                 -Z trim-paths keeps machine paths out)
#   wasm-bindgen --target web     -> npm/wasm/ (or DIR)
#   scripts/inline-snippets.mjs   moves the JS snippets of `#[wasm_bindgen(inline_js)]`
#                                 (client-wasm/src/browser/core.rs's per-event path) into
#                                 the glue, so the package keeps one JS file for the wasm
#   wasm-opt -Oz --converge       (binaryen 132 from npm; never Debian's binaryen, see
#                                 shared/TOOLCHAIN.md)
#   wasm-opt --minify-imports-and-exports-and-modules, stripping debug info, producers and
#                                 target-features sections (a second run: it must read the
#                                 features from target_features, so that section goes last;
#                                 the sections only matter to wasm-bindgen, which has run)
#   scripts/minify-glue.mjs       renames the imports/exports in the JS glue and in the
#                                 InitOutput type of the .d.ts to match (see below)
#   terser on the JS glue         (same file name and exports; the .d.ts keeps the docs)
# then prints the gzip -9 size (`gzip -9 -n`: no file name or time in the header, as a server
# sends it) of the wasm and of the JS glue, and FAILS when the total is over the budget of
# 20,960 bytes (EVENTWIRE_SIZE_BUDGET overrides it). It was 20,480 until the `EventSource`
# and `shareAcrossTabs` options and the `leader` lifecycle name took the last bytes (20,253
# -> 20,490), then 20,608 until `getTicket` (+163 B: the option, the `ticket_failed` kind and
# error, a provider always called from a promise; 20,490 -> 20,653) went past it by 45 B, so
# it rose by 64 B; then 20,672 until issue 12's hot path (the watchdog's moving deadline:
# +146 B, 20,634 -> 20,780, for 13% less CPU per event) and its direct property getters and
# setters (+73 B, -> 20,853, 17% less), so it rose by 208 B; then 20,880 until the per-event
# JS snippet (the listeners' object made in JS, the type known from the listener, listeners
# called in a try/catch of the snippet: wasm -57 B, glue +148 B, 20,859 -> 20,950, the SDK's
# own work per event about halved in tests/bench-browser/micro.mjs), so it rose by 80 B; what
# governs the package is scripts/build-npm.sh's gate on everything a page loads, which this
# budget stays inside.
#
# What each change bought (total gzip -9 of wasm + JS, measured with this script):
#   44.4 KB  start (dlmalloc, format!/Display everywhere, gloo closures per listener/timer,
#            wasm-bindgen-futures for getToken, wasm-opt -Oz, unminified glue)
#   39.1 KB  no core::fmt on wasm paths: messages from string pieces, integers printed by hand,
#            no str slicing/Vec::remove/RefCell panics (wasm -5.4 KB)
#   36.0 KB  one JS callback per client for every DOM listener and timer (own Listen/Timer
#            handles instead of gloo), promises via `then` instead of wasm-bindgen-futures
#            (wasm -2.9 KB, JS -0.3 KB)
#   33.4 KB  talc instead of dlmalloc (wasm -2.6 KB)
#   33.1 KB  wasm-opt --converge + stripping producers/target-features (-0.35 KB);
#            opt-level "s" measured 1.4 KB larger than "z"
#   31.0 KB  terser on the JS glue (JS 6.0 -> 3.9 KB)
#   28.8 KB  no_std for this build (wasm -2.3 KB)
#   27.9 KB  plain loops instead of iterator adapters (collect into Result, filter_map) and byte
#            searches instead of split_once/contains (no memchr) on wasm paths (wasm -0.95 KB)
#   27.2 KB  `globalThis` read directly instead of `web_sys::window()` (which probes four
#            globals): wasm -0.47 KB, JS -0.2 KB
#   27.4 KB  (28,026 B) the start of the second round, with the features added since
#   26.6 KB  the core speaks JS only: listeners are JS functions (the Rust API wraps its
#            closures), payloads stay JS strings on their way to listeners, the Rust API and
#            its future executor are out of this build (27,239 B)
#   26.1 KB  options read through a `Value` trait, no intermediate value tree (26,685 B)
#   24.9 KB  options driven by one table; value rules checked once, in `Options::validate`;
#            messages without the offending value (no number formatting) (25,547 B)
#   24.2 KB  the machine drives an `Io` trait: no command vectors, no effect queue (24,817 B)
#   22.8 KB  fewer imports (properties through one `Reflect.get`, one `URL` constructor, a
#            plain-object EventSourceInit), dispatch by id snapshot, typed argument checks
#            (23,385 B)
#   21.0 KB  minified wasm import, export and import-module names
#            (`__wbg_addEventListener_847fd86b8c33ec43` from "./eventwire_client_bg.js" -> `o`
#            from "a"): wasm -1.1 KB, JS -0.76 KB (21,522 B).
#            Safe because the old -> new mapping is read from the two modules (the import
#            and export lists before and after the renaming run, in section order) rather
#            than from wasm-opt's printout, and minify-glue.mjs fails the build unless every
#            import is an import-object key exactly once, no old name is left, every
#            `wasm.X` the glue reads is exported, the glue parses and the minified module
#            links against the rewritten import object. The Playwright smoke test
#            (test-client-wasm.sh) and the npm tests load this minified build.
#   20.9 KB  addEventListener shares on()'s path, one non-generic property setter; gzip -n
#            (21,375 B)
#   20.4 KB  a pinned nightly: `-Z build-std` with `-Cpanic=immediate-abort` leaves no panic
#            message, location or integer formatting in the module (20,887 B; the same
#            code on stable with panic=abort: 21,375 B)
#   19.8 KB  byte checks instead of `char` patterns (`ends_with('?')` alone was 0.3 KB of wasm),
#            ASCII whitespace checks (no Unicode table), `Vec::remove` instead of `retain`,
#            one copy of the URL, EventSource types attached without cloning, the hub's
#            `retryMs` sanitised once (20,272 B)
#   19.8 KB  after review fixes: a stale `EventSource` failure is ignored, Unicode spaces are
#            rejected in URLs (listed, no table), array items named by index, listener-method
#            arguments get their own error kind (20,253 B)
#   20.0 KB  the `EventSource` option (one `Reflect.construct` for the global class or the
#            given one), `shareAcrossTabs` checked here, `leader` a lifecycle name (20,490 B)
#   20.2 KB  `getTicket` (a fresh single-use ticket in the URL for every attempt), its
#            `ticket_failed` error kind and typed error with the `cause` (20,653 B)
#   20.2 KB  -Z trim-paths, for a reproducible build: a source path js-sys leaves in the
#            module is now `index.crates.io-<hash>/js-sys-<version>/...`, not under
#            $CARGO_HOME (20,634 B)
#   What is left is the client core itself; `twiggy top` on a build with names (wasm-opt -g)
#   shows no single item above 3.3 KB (createClient, with option parsing inlined).
#
# Size settings are passed with --config for this build only, so the server's release
# profile is untouched: opt-level z, fat LTO, one codegen unit, panic abort (wasm's default).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_TARGET_DIR="$TARGET_DIR"
OUT="${1:-$ROOT/npm/wasm}"
BUDGET="${EVENTWIRE_SIZE_BUDGET:-20960}"
export PATH="$ROOT/.tools/npm/node_modules/.bin:$HOME/.cargo/bin:$PATH"

# The pinned tools, each checked by version (a second or two when all are there): the
# nightly with rust-src, wasm-bindgen-cli, binaryen. terser comes with npm/'s dev dependencies.
bash "$ROOT/scripts/install-tools.sh" --build-only
# shellcheck source=scripts/wasm-toolchain.sh
source "$ROOT/scripts/wasm-toolchain.sh"
WASM_OPT="$ROOT/.tools/npm/node_modules/.bin/wasm-opt"
TERSER="$ROOT/npm/node_modules/.bin/terser"
if [[ ! -x "$TERSER" ]]; then
  (cd "$ROOT/npm" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# A pinned nightly (installed by install-tools.sh with rust-src): it rebuilds core and alloc
# with the `immediate-abort` panic strategy, so no panic message, location or formatting code
# is left in the module (see the size table above). Everything else builds with stable.
TOOLCHAIN="$(wasm_toolchain)"
# The flags go in CARGO_ENCODED_RUSTFLAGS (0x1f-separated), which cargo reads before RUSTFLAGS
# and any config file: a `RUSTFLAGS=-Dwarnings` in the environment must not drop them. The
# caller's own flags are kept, in front. With --target they reach no build script.
SEP=$'\x1f'
ENCODED="${CARGO_ENCODED_RUSTFLAGS:-}"
if [[ -z "$ENCODED" && -n "${RUSTFLAGS:-}" ]]; then
  read -r -a caller_flags <<<"$RUSTFLAGS"
  ENCODED="$(IFS="$SEP"; echo "${caller_flags[*]}")"
fi
ENCODED="${ENCODED:+$ENCODED$SEP}-Zunstable-options$SEP-Cpanic=immediate-abort"
env -u RUSTFLAGS CARGO_ENCODED_RUSTFLAGS="$ENCODED" \
  cargo "+$TOOLCHAIN" build --release --target wasm32-unknown-unknown -p eventwire-client \
  --no-default-features --features standalone \
  -Z build-std=core,alloc \
  -Z trim-paths --config 'profile.release.trim-paths="all"' \
  --config 'profile.release.opt-level="z"' \
  --config 'profile.release.lto=true' \
  --config 'profile.release.codegen-units=1' \
  --config 'profile.release.panic="abort"'

rm -rf "$OUT"
mkdir -p "$OUT"
wasm-bindgen --target web --out-dir "$OUT" \
  "$TARGET_DIR/wasm32-unknown-unknown/release/eventwire_client.wasm"
WASM="$OUT/eventwire_client_bg.wasm"
# The per-event JS snippet (core.rs's `inline_js`) goes into the glue: one JS file still.
node "$ROOT/scripts/inline-snippets.mjs" "$OUT"
"$WASM_OPT" -Oz --converge "$WASM" -o "$WASM.opt"
# Only renames and strips: no optimisation pass runs, so imports and exports keep their order
# (minify-glue.mjs pairs them by position). The levels are -Oz's: the binary writer's own
# StackIR optimisation needs them (without, the code section grows ~60 bytes). wasm-opt prints
# its mapping on stdout; it is not used.
"$WASM_OPT" --minify-imports-and-exports-and-modules \
  --strip-debug --strip-producers --strip-target-features \
  --optimize-level 2 --shrink-level 2 "$WASM.opt" -o "$WASM.min" >/dev/null
node "$ROOT/scripts/minify-glue.mjs" "$WASM.opt" "$WASM.min" \
  "$OUT/eventwire_client.js" "$OUT/eventwire_client.d.ts"
mv "$WASM.min" "$WASM"
# The wasm's own .d.ts lists the old export names; nothing imports the wasm as a module with
# --target web, and the npm package never shipped it, so drop it rather than keep a wrong file.
rm "$WASM.opt" "$OUT/eventwire_client_bg.wasm.d.ts"
# Minify the glue in place (an ES module: top-level names are private, exports keep their
# names). The @ts-self-types comment stays so Deno/JSR still find the .d.ts.
"$TERSER" "$OUT/eventwire_client.js" --module --ecma 2020 --compress passes=2 --mangle \
  --comments '/@ts-self-types/' -o "$OUT/eventwire_client.js.min"
mv "$OUT/eventwire_client.js.min" "$OUT/eventwire_client.js"

gz() { gzip -9 -n -c "$1" | wc -c; }
WASM_RAW=$(wc -c <"$OUT/eventwire_client_bg.wasm")
WASM_GZ=$(gz "$OUT/eventwire_client_bg.wasm")
JS_RAW=$(wc -c <"$OUT/eventwire_client.js")
JS_GZ=$(gz "$OUT/eventwire_client.js")
TOTAL=$((WASM_GZ + JS_GZ))
printf 'eventwire-client release build (%s)\n' "$OUT"
printf '  %-24s %8s bytes  %7s bytes gzip -9\n' "eventwire_client_bg.wasm" "$WASM_RAW" "$WASM_GZ"
printf '  %-24s %8s bytes  %7s bytes gzip -9\n' "eventwire_client.js" "$JS_RAW" "$JS_GZ"
printf '  %-24s %8s        %7s bytes gzip -9 (%s KB; budget %s bytes)\n' "total" "" "$TOTAL" \
  "$(awk "BEGIN { printf \"%.1f\", $TOTAL / 1024 }")" "$BUDGET"
if (( TOTAL > BUDGET )); then
  echo "ERROR: $TOTAL bytes gzip is over the size budget of $BUDGET bytes by $((TOTAL - BUDGET))" >&2
  exit 1
fi
echo "  within budget ($((BUDGET - TOTAL)) bytes to spare)"
