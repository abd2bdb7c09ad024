// Playwright smoke test of the OPTIMISED release build (wasm-opt output) of eventwire-client:
// serves the build on localhost, loads it in headless Chromium, connects to the real hub,
// publishes an event and checks the page receives it, decoded.
//
//   node tests/client-smoke/smoke.mjs <pkg dir> <hub url>
//
// playwright-core comes from .tools/npm (scripts/install-tools.sh); the browser is Debian's.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(root, ".tools/npm/"));
const { chromium } = require("playwright-core");

const [pkgDir, hubUrl] = process.argv.slice(2);
if (!pkgDir || !hubUrl) {
  console.error("usage: smoke.mjs <pkg dir> <hub url>");
  process.exit(2);
}

const page = `<!doctype html><meta charset="utf-8"><title>eventwire smoke</title>
<script type="module">
  import init, { createClient } from "./eventwire_client.js";
  window.received = [];
  window.states = [];
  try {
    await init();
    const client = createClient(new URL("/events", ${JSON.stringify(hubUrl)}).href, { clientId: "smoke" });
    client.addEventListener("statechange", (e) => window.states.push(e.readyState));
    client.on("smoke", (e) => window.received.push(e));
    client.addEventListener("open", () => { window.opened = true; });
    try { createClient("ftp://nope", {}); } catch (e) { window.badUrlIsError = e instanceof Error && /url/.test(e.message); }
    window.client = client;
  } catch (e) {
    window.loadError = String(e && e.stack || e);
  }
</script>`;

const types = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
const server = http.createServer((req, res) => {
  const name = req.url === "/" ? "index.html" : path.basename(new URL(req.url, "http://x").pathname);
  if (name === "favicon.ico") {
    res.writeHead(204);
    return res.end();
  }
  if (name === "index.html") {
    res.writeHead(200, { "content-type": "text/html" });
    return res.end(page);
  }
  const file = path.join(pkgDir, name);
  if (!fs.existsSync(file)) {
    res.writeHead(404);
    return res.end();
  }
  res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const pageUrl = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
    "--disable-dev-shm-usage",
  ],
});
let failed = 0;
let passed = 0;
const check = (ok, what) => {
  if (ok) { passed++; console.log(`ok - ${what}`); } else { failed++; console.log(`not ok - ${what}`); }
};
try {
  const tab = await browser.newPage();
  const consoleErrors = [];
  tab.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  tab.on("pageerror", (e) => consoleErrors.push(String(e)));
  await tab.goto(pageUrl);
  await tab.waitForFunction(() => window.opened || window.loadError, null, { timeout: 15000 });
  const loadError = await tab.evaluate(() => window.loadError);
  check(!loadError, `optimised build loads${loadError ? ": " + loadError : ""}`);
  check(await tab.evaluate(() => window.client && window.client.readyState === 1), "client open (readyState 1)");
  check(await tab.evaluate(() => window.badUrlIsError === true), "bad URL throws an Error");

  const res = await fetch(new URL("/publish", hubUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ event: "smoke", data: { hello: "wasm" }, clientId: "smoke" }),
  });
  const { id } = await res.json();
  await tab.waitForFunction(() => window.received.length > 0, null, { timeout: 10000 });
  const ev = await tab.evaluate(() => {
    const e = window.received[0];
    return { type: e.type, data: e.data, raw: e.raw, id: e.id };
  });
  check(ev.type === "smoke" && ev.data.hello === "wasm" && ev.raw === '{"hello":"wasm"}' && ev.id === id,
    `event received and decoded: ${JSON.stringify(ev)}`);
  await tab.evaluate(() => window.client.close());
  check(await tab.evaluate(() => window.client.readyState === 2), "close() ends CLOSED");
  check(consoleErrors.length === 0, `no console errors ${consoleErrors.length ? JSON.stringify(consoleErrors) : ""}`);
} catch (e) {
  failed++;
  console.log(`not ok - smoke test threw: ${e && e.stack || e}`);
} finally {
  await browser.close();
  server.close();
}
console.log(`smoke: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
