// 200 clients of the OPTIMISED release build, cut at once, must come back spread over the
// backoff's jitter window rather than in one wave. Runs in Node (one process can hold 200
// EventSources; a browser page holds 6 per host over HTTP/1.1) with Node's own EventSource
// (`node --experimental-eventsource`), against the real hub behind the chaos proxy.
//
//   node --experimental-eventsource tests/client-smoke/spread.mjs <pkg dir> <proxy url> <control url>
//
// Prints the spread; fails when the reconnects bunch up (more than 30% of the clients in any
// 100 ms) or spread over less than half of the jitter window.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, proxyUrl, controlUrl] = process.argv.slice(2);
if (!pkgDir || !proxyUrl || !controlUrl) {
  console.error("usage: spread.mjs <pkg dir> <proxy url> <control url>");
  process.exit(2);
}
if (typeof EventSource !== "function") {
  console.error("run with node --experimental-eventsource");
  process.exit(2);
}

const CLIENTS = 200;
// Defaults except none: initialDelayMs 2000, jitter 0.5, so the first delay falls in [1000, 2000].
const WINDOW = [1000, 2000];

const glue = await import(pathToFileURL(path.join(pkgDir, "eventwire_client.js")).href);
await glue.default({ module_or_path: fs.readFileSync(path.join(pkgDir, "eventwire_client_bg.wasm")) });

const control = (p) => fetch(new URL(p, controlUrl), { method: "POST" }).then((r) => r.json());
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, ms, cond) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await wait(50);
  }
  throw new Error(`timed out: ${what}`);
}

await control("/mode/pass");
const clients = [];
for (let i = 0; i < CLIENTS; i++) {
  const c = { opens: [], delays: [] };
  c.client = glue.createClient(new URL("/events", proxyUrl).href, { clientId: `spread-${i}` });
  c.client.on("open", () => c.opens.push(performance.now()));
  c.client.on("reconnecting", (e) => c.delays.push(e.delayMs));
  clients.push(c);
}
let failed = false;
try {
  await until("all clients open", 60_000, () => clients.every((c) => c.opens.length >= 1));
  // Cut every connection at once (the proxy answers 503 meanwhile), then let them back.
  await control("/mode/drop");
  const cutAt = performance.now();
  await wait(300);
  await control("/mode/pass");
  await until("all clients back", 30_000, () => clients.every((c) => c.opens.length >= 2));

  const back = clients.map((c) => c.opens[1] - cutAt).sort((a, b) => a - b);
  const pick = (q) => back[Math.min(back.length - 1, Math.floor(q * back.length))];
  let busiest = 0;
  for (let i = 0, j = 0; i < back.length; i++) {
    while (back[i] - back[j] > 100) j++;
    busiest = Math.max(busiest, i - j + 1);
  }
  const firstDelays = clients.map((c) => c.delays[0]);
  const spread = back[back.length - 1] - back[0];
  console.log(
    `reconnect spread of ${CLIENTS} clients cut at once: first back after ${back[0].toFixed(0)} ms, ` +
      `last after ${back[back.length - 1].toFixed(0)} ms (spread ${spread.toFixed(0)} ms; ` +
      `p10 ${pick(0.1).toFixed(0)}, p50 ${pick(0.5).toFixed(0)}, p90 ${pick(0.9).toFixed(0)} ms); ` +
      `busiest 100 ms: ${busiest} clients; announced first delays ` +
      `${Math.min(...firstDelays)}..${Math.max(...firstDelays)} ms (jitter window ${WINDOW.join("..")} ms)`,
  );
  const check = (ok, what) => {
    console.log(`${ok ? "ok" : "not ok"} - ${what}`);
    if (!ok) failed = true;
  };
  check(
    firstDelays.every((d) => d >= WINDOW[0] && d <= WINDOW[1]),
    "every announced first delay lies in the jitter window",
  );
  check(
    back.every((t) => t >= WINDOW[0] - 50),
    "no client came back before the window opened",
  );
  check(busiest <= CLIENTS * 0.3, `no 100 ms holds more than 30% of the clients (${busiest})`);
  check(
    pick(0.9) - pick(0.1) >= (WINDOW[1] - WINDOW[0]) / 2,
    `p10..p90 covers at least half the window (${(pick(0.9) - pick(0.1)).toFixed(0)} ms)`,
  );
} catch (e) {
  console.log(`not ok - ${e && e.stack || e}`);
  failed = true;
} finally {
  for (const c of clients) c.client.close();
  await control("/mode/pass");
}
process.exit(failed ? 1 : 0);
