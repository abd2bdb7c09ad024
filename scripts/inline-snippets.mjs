// Moves wasm-bindgen's JS snippets (`#[wasm_bindgen(inline_js = ...)]`, written to
// `snippets/<crate>-<hash>/inlineN.js` beside the glue) into the glue itself, and deletes the
// snippets directory: the package keeps one JS file for the wasm (no file to add to npm/'s
// `files`, one gzip stream for the size gates, one request for a page). Called by
// scripts/build-client-wasm.sh on wasm-bindgen's output, before minify-glue.mjs.
//
//   node scripts/inline-snippets.mjs <out dir>
//
// Each `import { a, b } from './snippets/...';` line of the glue becomes the snippet's text
// with its `export` keywords dropped, between `/* snippet */` and `/* end snippet */` (what
// minify-glue.mjs evaluates with the import object). Fails unless every snippet is only
// top-level `export const NAME =` / `export function NAME` declarations with no import, every
// imported name is declared, no declared name is already a top-level name of the glue, and
// no reference to a snippet is left. No dependencies.
import fs from "node:fs";
import path from "node:path";

const [out] = process.argv.slice(2);
if (!out) {
  console.error("usage: node scripts/inline-snippets.mjs <wasm-bindgen out dir>");
  process.exit(2);
}
const gluePath = path.join(out, "eventwire_client.js");
let glue = fs.readFileSync(gluePath, "utf8");
const errors = [];
const importRe = /^import \{ ([\w$, ]+) \} from '(\.\/snippets\/[^']+)';\n/gm;
glue = glue.replace(importRe, (_, names, file) => {
  const text = fs.readFileSync(path.join(out, file), "utf8");
  if (/^\s*import\b/m.test(text)) errors.push(`${file} imports a module`);
  const declared = [...text.matchAll(/^export (?:const|function) ([\w$]+)/gm)].map((m) => m[1]);
  if ((text.match(/\bexport\b/g) ?? []).length !== declared.length) {
    errors.push(`${file}: only \`export const NAME =\` / \`export function NAME\` are inlined`);
  }
  for (const name of names.split(",").map((n) => n.trim())) {
    if (!declared.includes(name)) errors.push(`${file} does not declare ${name}`);
  }
  for (const name of declared) {
    const top = new RegExp(`^(?:export )?(?:const|let|var|function|class) ${name.replace("$", "\\$")}\\b`, "m");
    if (top.test(glue)) errors.push(`${file} declares ${name}, a name the glue already uses`);
  }
  return `/* snippet */\n${text.replace(/^export /gm, "")}/* end snippet */\n`;
});
if (glue.includes("./snippets/")) errors.push("a snippet is still referred to");
if (errors.length) {
  console.error(`inline-snippets: ${errors.join("; ")}`);
  process.exit(1);
}
fs.writeFileSync(gluePath, glue);
fs.rmSync(path.join(out, "snippets"), { recursive: true, force: true });
