// Rewrites wasm-bindgen's JS glue (and its .d.ts) to match a wasm module whose import names,
// export names and import module names were minified by
// `wasm-opt --minify-imports-and-exports-and-modules`. Called by scripts/build-client-wasm.sh
// on the unminified glue, before terser.
//
//   node scripts/minify-glue.mjs <before.wasm> <after.wasm> <glue.js> [<glue.d.ts>]
//
// The mapping comes from the two modules themselves, not from wasm-opt's printed map:
// `WebAssembly.Module.imports()` / `.exports()` list entries in section order, and a wasm-opt
// run that only renames (no optimisation passes) keeps that order, so zipping the lists of the
// module before and after gives old -> new for every import, export and module name.
//
// Rewrites (each old name is replaced only where the glue is known to use it):
//   - keys of the import object built by `__wbg_get_imports()`: `    <old name>: function ...`
//     and the module key `    "./eventwire_client_bg.js": import0,`
//   - reads of the exports object: `wasm.<old name>` (some exports, such as `__abort_handler`,
//     are never read by the glue; that is fine)
//   - the `InitOutput` interface of the .d.ts (what `init()` / `initSync()` return), which
//     lists the export names
//
// Fails (exit 1, every problem listed) unless: each import name is a key exactly once; each
// module key is found; no old import name, old module name or old export access is left; every
// `wasm.X` in the result is an export of the new module; the result parses as an ES module;
// the new module links against the import object the rewritten `__wbg_get_imports()` returns;
// and each new key holds the very shim its old key held. Files are written only when every
// check passed. No dependencies.
import fs from "node:fs";
import vm from "node:vm";
import { spawnSync } from "node:child_process";

const [beforePath, afterPath, gluePath, dtsPath] = process.argv.slice(2);
if (!beforePath || !afterPath || !gluePath) {
  console.error("usage: node scripts/minify-glue.mjs <before.wasm> <after.wasm> <glue.js> [<glue.d.ts>]");
  process.exit(2);
}

const errors = [];
/** Exits with every problem found so far, if there is one. */
function failIfErrors(stage) {
  if (errors.length === 0) return;
  console.error(`minify-glue: ${stage} failed:`);
  for (const e of errors) console.error(`  - ${e}`);
  process.exit(1);
}

// Identifier characters, for word boundaries around names (JS `\b` ignores `$`).
const ID = "[A-Za-z0-9_$]";
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
/** A regex alternation of `names`, longest first. */
const alternation = (names) => [...names].sort((a, b) => b.length - a.length).map(escape).join("|");

// ---- 1. The mapping, from the modules ----------------------------------------------------

const before = new WebAssembly.Module(fs.readFileSync(beforePath));
const after = new WebAssembly.Module(fs.readFileSync(afterPath));
const importsBefore = WebAssembly.Module.imports(before);
const importsAfter = WebAssembly.Module.imports(after);
const exportsBefore = WebAssembly.Module.exports(before);
const exportsAfter = WebAssembly.Module.exports(after);

if (importsBefore.length !== importsAfter.length) {
  errors.push(`${importsBefore.length} imports before minifying, ${importsAfter.length} after`);
}
if (exportsBefore.length !== exportsAfter.length) {
  errors.push(`${exportsBefore.length} exports before minifying, ${exportsAfter.length} after`);
}
failIfErrors("zipping the modules");

/** old module name -> new; old import name -> new; old export name -> new. */
const moduleNames = new Map();
const importNames = new Map();
const exportNames = new Map();

/** Records old -> new in `map`, reporting an old name that would map to two new ones. */
function record(map, what, oldName, newName) {
  if (map.has(oldName) && map.get(oldName) !== newName) {
    const [o, n1, n2] = [oldName, map.get(oldName), newName].map((x) => JSON.stringify(x));
    errors.push(`${what} ${o} maps to both ${n1} and ${n2}`);
  }
  map.set(oldName, newName);
}

const seenImports = new Set();
importsBefore.forEach((b, i) => {
  const a = importsAfter[i];
  if (b.kind !== a.kind) {
    errors.push(`import #${i} ${b.module}.${b.name} is a ${b.kind} before, a ${a.kind} after`);
  }
  const pair = JSON.stringify([b.module, b.name]);
  if (seenImports.has(pair)) errors.push(`import ${b.module}.${b.name} is imported twice`);
  seenImports.add(pair);
  if (!IDENT.test(a.name)) errors.push(`new import name ${JSON.stringify(a.name)} is not a JS identifier`);
  record(moduleNames, "module", b.module, a.module);
  // Import names are keys of one object per module; the glue's are unique across modules
  // (they carry a hash), which the "exactly once" check below enforces.
  record(importNames, "import", b.name, a.name);
});
exportsBefore.forEach((b, i) => {
  const a = exportsAfter[i];
  if (b.kind !== a.kind) errors.push(`export #${i} ${b.name} is a ${b.kind} before, a ${a.kind} after`);
  if (!IDENT.test(a.name)) errors.push(`new export name ${JSON.stringify(a.name)} is not a JS identifier`);
  record(exportNames, "export", b.name, a.name);
});
// One import object per module in the glue: two old modules merged into one new name would
// need their objects merged, which this script does not do.
const newModules = [...moduleNames.values()];
if (new Set(newModules).size !== newModules.length) {
  const pairs = JSON.stringify(Object.fromEntries(moduleNames));
  errors.push(`two import modules got the same new name: ${pairs}`);
}
failIfErrors("zipping the modules");

const changedImports = new Map([...importNames].filter(([o, n]) => o !== n));
const changedExports = new Map([...exportNames].filter(([o, n]) => o !== n));
const changedModules = new Map([...moduleNames].filter(([o, n]) => o !== n));

// ---- 2. The glue -------------------------------------------------------------------------

const glue = fs.readFileSync(gluePath, "utf8");

/** [start, end) of the top-level `function __wbg_get_imports() { ... }` in `js`. */
function importsFunction(js) {
  const start = js.indexOf("\nfunction __wbg_get_imports() {\n");
  const end = start < 0 ? -1 : js.indexOf("\n}\n", start);
  if (end < 0) return null;
  return [start + 1, end + 3];
}

/** Every `X` read as `wasm.X` (the exports object) in `js`. */
function exportReads(js) {
  const reads = js.matchAll(new RegExp(`(?<!${ID}|\\.)wasm\\.([A-Za-z_$]${ID}*)`, "g"));
  return new Set([...reads].map((m) => m[1]));
}

const region = importsFunction(glue);
if (!region) {
  errors.push("no top-level `function __wbg_get_imports() {` ... `}` (did wasm-bindgen change its glue?)");
}
if (new RegExp(`(?<!${ID}|\\.)wasm\\s*(?:\\[|\\?\\.)`).test(glue)) {
  errors.push("the glue reads the exports object as `wasm[...]` or `wasm?.`: only `wasm.NAME` can be rewritten");
}
for (const name of exportReads(glue)) {
  if (!exportNames.has(name)) errors.push(`the glue reads wasm.${name}, which ${beforePath} does not export`);
}
failIfErrors("reading the glue");

// Import keys: at the start of a line inside __wbg_get_imports, followed by `:`.
const [regionStart, regionEnd] = region;
let importsJs = glue.slice(regionStart, regionEnd);
const keyCounts = new Map();
if (changedImports.size > 0) {
  const keyRe = new RegExp(`^([ \\t]*)(${alternation(changedImports.keys())})(?=[ \\t]*:)`, "gm");
  importsJs = importsJs.replace(keyRe, (_, indent, name) => {
    keyCounts.set(name, (keyCounts.get(name) ?? 0) + 1);
    return indent + changedImports.get(name);
  });
}
for (const name of changedImports.keys()) {
  const n = keyCounts.get(name) ?? 0;
  if (n !== 1) {
    errors.push(`import ${name} is a key of the import object ${n} times (expected exactly once)`);
  }
}
// Module keys: `"./eventwire_client_bg.js": import0,` in the returned object.
for (const [oldModule, newModule] of changedModules) {
  const moduleRe = new RegExp(`^([ \\t]*)${escape(JSON.stringify(oldModule))}(?=[ \\t]*:)`, "gm");
  let n = 0;
  importsJs = importsJs.replace(moduleRe, (_, indent) => {
    n += 1;
    return indent + JSON.stringify(newModule);
  });
  if (n !== 1) {
    const what = `module ${JSON.stringify(oldModule)}`;
    errors.push(`${what} is a key of the import object ${n} times (expected exactly once)`);
  }
}
let js = glue.slice(0, regionStart) + importsJs + glue.slice(regionEnd);

// Export reads: `wasm.OLD` -> `wasm.NEW`, whole names only.
const oldReads = alternation(changedExports.keys());
const readRe = new RegExp(`(?<!${ID}|\\.)wasm\\.(${oldReads})(?!${ID})`, "g");
/** `text` with every `wasm.OLD` read renamed. */
const renameReads = (text) =>
  changedExports.size === 0 ? text : text.replace(readRe, (_, name) => `wasm.${changedExports.get(name)}`);
js = renameReads(js);

// ---- 3. Checks on the result -------------------------------------------------------------

// No old import name may survive anywhere (they carry hashes, so any hit is a missed use).
for (const name of changedImports.keys()) {
  if (new RegExp(`(?<!${ID})${escape(name)}(?!${ID})`).test(js)) {
    errors.push(`old import name ${name} still in the glue`);
  }
}
for (const name of changedModules.keys()) {
  if (js.includes(name)) errors.push(`old module name ${JSON.stringify(name)} still in the glue`);
}
// Old export names may survive as the glue's own identifiers (`export function createClient`,
// the JS helper named like the closure-invoke export), but not as a read of an exports object
// nor as a quoted string (a computed read such as `instance.exports["OLD"]`; backquotes are
// left alone, since the doc comments quote names in them).
for (const name of changedExports.keys()) {
  const read = new RegExp(`(?<!${ID}|\\.)(?:wasm|exports)\\s*\\.\\s*${escape(name)}(?!${ID})`);
  const quoted = new RegExp(`(["'])${escape(name)}\\1`);
  if (read.test(js)) errors.push(`old export name ${name} is still read from an exports object`);
  if (quoted.test(js)) errors.push(`old export name ${name} still appears as a string`);
}
const newExportNames = new Set(exportNames.values());
for (const name of exportReads(js)) {
  if (!newExportNames.has(name)) {
    errors.push(`the rewritten glue reads wasm.${name}, which ${afterPath} does not export`);
  }
}
failIfErrors("rewriting the glue");

// Still an ES module (`import.meta` rules out a script parse).
const parse = spawnSync(process.execPath, ["--input-type=module", "--check"], {
  input: js,
  encoding: "utf8",
});
if (parse.status !== 0) errors.push(`the rewritten glue does not parse:\n${parse.stderr}`);
failIfErrors("parsing the rewritten glue");

/**
 * Evaluates `__wbg_get_imports` of `source` on its own, after the snippets inline-snippets.mjs
 * put in the glue (building the object reads those and touches no other part of the glue;
 * its functions run only when the wasm calls them).
 */
function loadImports(source, label) {
  const [s, e] = importsFunction(source);
  const snippets = source.match(/^\/\* snippet \*\/\n[^]*?^\/\* end snippet \*\/\n/gm) ?? [];
  try {
    const code = `${snippets.join("")}${source.slice(s, e)}\n__wbg_get_imports();`;
    return vm.runInNewContext(code, {}, { filename: label });
  } catch (err) {
    errors.push(`${label}: evaluating __wbg_get_imports() threw: ${err}`);
    return undefined;
  }
}

/** Checks that `module` links against `imports`. */
function checkLinks(imports, module, label) {
  const found = errors.length;
  for (const { module: m, name, kind } of WebAssembly.Module.imports(module)) {
    const value = imports?.[m]?.[name];
    if (value === undefined) {
      errors.push(`${label}: no import ${JSON.stringify(m)}.${name}`);
    } else if (kind === "function" && typeof value !== "function") {
      errors.push(`${label}: import ${m}.${name} is not a function`);
    }
  }
  if (errors.length > found) return;
  try {
    // Links the imports; runs no wasm code (wasm-bindgen emits no start section: the glue
    // calls the `__wbindgen_start` export itself).
    new WebAssembly.Instance(module, imports);
  } catch (err) {
    errors.push(`${label}: instantiating failed: ${err}`);
  }
}

const oldImports = loadImports(glue, "original glue");
const newImports = loadImports(js, "rewritten glue");
failIfErrors("evaluating the import objects");
// The unminified pair first: proves the check itself works on what wasm-bindgen produced.
checkLinks(oldImports, before, "original glue + unminified wasm");
checkLinks(newImports, after, "rewritten glue + minified wasm");
// Each new key holds the same shim the old key held (its source, with the export reads
// renamed), so no renamed key was shadowed by another of the same name.
importsBefore.forEach((b, i) => {
  const a = importsAfter[i];
  const oldShim = oldImports?.[b.module]?.[b.name];
  const newShim = newImports?.[a.module]?.[a.name];
  if (typeof oldShim === "function" && renameReads(String(oldShim)) !== String(newShim)) {
    errors.push(`rewritten glue: ${a.module}.${a.name} is not the shim that was ${b.module}.${b.name}`);
  }
});
failIfErrors("linking");

// ---- 4. The .d.ts: `InitOutput` lists the export names -------------------------------------

let dts;
if (dtsPath) {
  dts = fs.readFileSync(dtsPath, "utf8");
  const start = dts.indexOf("\nexport interface InitOutput {\n");
  const end = start < 0 ? -1 : dts.indexOf("\n}\n", start);
  if (end < 0) {
    errors.push(`${dtsPath}: no \`export interface InitOutput {\` ... \`}\` (did wasm-bindgen change it?)`);
  } else {
    let block = dts.slice(start, end);
    if (changedExports.size > 0) {
      const propRe = new RegExp(`^([ \\t]*readonly[ \\t]+)(${oldReads})(?=[ \\t]*:)`, "gm");
      block = block.replace(propRe, (_, prefix, name) => prefix + changedExports.get(name));
    }
    for (const [, name] of block.matchAll(/^[ \t]*readonly[ \t]+([^\s:]+)[ \t]*:/gm)) {
      if (!newExportNames.has(name)) {
        errors.push(`${dtsPath}: InitOutput.${name} is not an export of ${afterPath}`);
      }
    }
    dts = dts.slice(0, start) + block + dts.slice(end);
  }
  failIfErrors("rewriting the .d.ts");
}

// ---- 5. Write ----------------------------------------------------------------------------

fs.writeFileSync(gluePath, js);
if (dtsPath) fs.writeFileSync(dtsPath, dts);
const modules = [...changedModules].map(([o, n]) => `, module ${JSON.stringify(o)} -> ${JSON.stringify(n)}`);
console.error(
  `minify-glue: renamed ${changedImports.size} imports and ${changedExports.size} exports ` +
    `(${exportReads(js).size} read by the glue)${modules.join("")}`,
);
