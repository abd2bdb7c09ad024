#!/usr/bin/env bash
# Builds the npm package in npm/: the TypeScript layer into npm/dist/, next to the optimised
# wasm, which is committed in npm/wasm/ (scripts/build-client-wasm.sh regenerates it from
# client-wasm/; scripts/test.sh checks it matches the sources). So it needs Node and npm only:
# no Rust. `npm pack` runs this as `prepack`, so a fresh checkout packs a complete tarball.
# Installs npm/'s dev dependencies when missing (`npm ci`: TypeScript, terser, React's types).
# dist/*.js is minified with terser (the .d.ts files keep the docs).
#
# Size gate: everything a page loads for `import ... from "eventwire"` (dist/index.js and the
# modules it imports, the wasm glue, the wasm), each file gzip -9 as a server sends it, must
# total at most 23,980 bytes (EVENTWIRE_NPM_SIZE_BUDGET overrides it); the build fails above.
# That is issue 13's rule: what the package was without tab sharing (21,869 B: issue 10's
# 22,528 B gate, met, plus the `EventSource` option, Node loading and the Vite dev fallback)
# plus at most 1.5 KB (1,536 B) for `shareAcrossTabs`, which measured 1,358 B (its TypeScript
# in dist/client.js, the option and the `leader` name in the wasm); plus 64 B since issue 14's
# `getTicket`, which measured 213 B (23,227 -> 23,440 B: 163 B of wasm and glue, 50 B of
# TypeScript, the typed `error` of `ticket_failed` events also across tabs) and went 35 B past
# the 178 B that were left; plus 211 B for issue 12's hot path (SDK CPU per event, target
# <= 1.15x raw EventSource): the watchdog's moving deadline, +146 B of wasm (23,421 -> 23,567),
# direct property getters and setters instead of Reflect, +73 B of wasm and glue (-> 23,640);
# plus 120 B for replacing a frozen leading tab (issue 13's one gap: a background tab the
# browser froze kept its lock and every tab went without events), which measured 239 B of
# TypeScript (23,556 -> 23,795); plus 100 B for keeping the last event id a JS string until
# it is needed (issue 12: the SDK's own work per event above a bare JSON.parse handler went
# from 1.7-2.3 to 0.9-1.5 µs, tests/bench-browser/micro.mjs), which measured 90 B of wasm
# and glue (-> 23,885); plus 80 B for issue 12's per-event JS snippet (the listeners' object
# made in JS before the event enters wasm, its type known from the listener it came through,
# listeners called in the snippet's own try/catch: the SDK's own work per event above a bare
# JSON.parse handler went from about 1.1 to 0.45 µs in micro.mjs), which measured 91 B
# (23,886 -> 23,977: wasm -57 B, glue +148 B; the snippet is moved into the glue, so no file
# was added).
# The files are found by following the imports from dist/index.js, so a new module counts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/npm"

for file in eventwire_client_bg.wasm eventwire_client.js eventwire_client.d.ts; do
  if [[ ! -f "$PKG/wasm/$file" ]]; then
    echo "[build-npm] ERROR: npm/wasm/$file is missing: it is committed; regenerate it with bash scripts/build-client-wasm.sh" >&2
    exit 1
  fi
done

cd "$PKG"
if [[ ! -x node_modules/.bin/tsc || ! -x node_modules/.bin/terser ]]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
rm -rf dist
node_modules/.bin/tsc -p tsconfig.json
# The licences travel in the tarball (npm/LICENSE-* are copies, gitignored).
cp "$ROOT/LICENSE-MIT" "$ROOT/LICENSE-APACHE" "$PKG/"
# The JS a page loads is minified (the .d.ts files keep the TSDoc) with npm/'s terser, as the
# wasm glue is. ES modules: exports keep their names.
TERSER="$PKG/node_modules/.bin/terser"
for js in dist/*.js; do
  "$TERSER" "$js" --module --ecma 2020 --compress passes=2 --mangle -o "$js.min"
  mv "$js.min" "$js"
done
echo "[build-npm] built npm/dist (npm/wasm is committed)" >&2

BUDGET="${EVENTWIRE_NPM_SIZE_BUDGET:-23980}"
node --input-type=module - "$PKG" "$BUDGET" <<'JS' >&2
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
const [pkg, budget] = process.argv.slice(2);
// The import closure of the main entry: static imports, dynamic imports and
// `new URL("...", import.meta.url)` assets (the wasm).
const seen = new Set();
const todo = [path.join(pkg, "dist/index.js")];
while (todo.length) {
  const file = todo.pop();
  if (seen.has(file)) continue;
  seen.add(file);
  if (!file.endsWith(".js")) continue;
  const text = fs.readFileSync(file, "utf8");
  const refs = /(?:\bfrom\s*|\bimport\s*\(?\s*|new URL\(\s*)["'](\.{1,2}\/[^"']+)["']/g;
  for (const [, ref] of text.matchAll(refs)) todo.push(path.resolve(path.dirname(file), ref));
}
let total = 0;
for (const file of [...seen].sort()) {
  // The gzip command, as build-client-wasm.sh measures (-n: no name or time in the header).
  const gz = execFileSync("gzip", ["-9", "-n", "-c", file], { maxBuffer: 1 << 26 }).length;
  total += gz;
  console.log(`[build-npm]   ${path.relative(pkg, file).padEnd(34)} ${String(gz).padStart(6)} bytes gzip -9`);
}
if (![...seen].some((f) => f.endsWith(".wasm"))) {
  console.log("[build-npm] ERROR: the wasm is not reachable from dist/index.js");
  process.exit(1);
}
console.log(`[build-npm] what a page loads for "eventwire": ${total} bytes gzip -9 (budget ${budget})`);
if (total > Number(budget)) {
  console.log(`[build-npm] ERROR: ${total - budget} bytes over the size budget`);
  process.exit(1);
}
JS
