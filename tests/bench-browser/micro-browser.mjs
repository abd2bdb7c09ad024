// micro.mjs in headless Chromium: the SDK's own per-event work in the engine the browser
// benchmark measures, without a network, a hub or dispatchEvent. The page makes N
// MessageEvents before each run and calls the `tick` listener of a fake EventSource (an
// EventTarget, the SDK's `EventSource` option) with each, timing the handlers; min and median
// of R runs, interleaved: raw (`JSON.parse(e.data)`), floor (page/floor.js) and the SDK built
// in each DIR given (npm/ directories with dist/ built), plus how many paired runs of each SDK
// after the first were faster than the first. Unlike Node's, Chromium's MessageEvent is a DOM
// object: `data`, `type` and `lastEventId` are the DOM getters a real EventSource's events
// have (each `lastEventId` read makes a new string: about 0.2 µs here). Runs move by ±10-20%
// with the machine's load (mins less than medians): compare builds in the same run.
//
//   node tests/bench-browser/micro-browser.mjs [--events N] [--reps R] DIR [DIR ...]
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { table } from "./page/micro-clients.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values: opts, positionals: dirs } = parseArgs({
  options: { events: { type: "string" }, reps: { type: "string" } },
  allowPositionals: true,
});
const N = Number(opts.events ?? 200_000);
const REPS = Number(opts.reps ?? 11);
if (!dirs.length || !(N > 0) || !(REPS > 0)) {
  console.error("usage: micro-browser.mjs [--events N] [--reps R] DIR [DIR ...]  (npm/ directories, built)");
  process.exit(2);
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
// `/sdkN/...` is DIR number N; `/floor.js` the floor client.
const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, "http://x");
  const m = /^\/sdk(\d+)\/(.*)$/.exec(pathname);
  const base = m ? path.resolve(dirs[Number(m[1])] ?? "/nonexistent") : path.join(HERE, "page");
  const file = m ? path.join(base, m[2]) : pathname === "/" ? null : path.join(base, pathname);
  if (file === null) {
    res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>micro</title>");
    return;
  }
  if (!file.startsWith(base) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404).end("not found");
    return;
  }
  res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const runs = await page.evaluate(
    async ({ N, REPS, ndirs }) => {
      const { clients, payloads, runAll } = await import("/micro-clients.js");
      const { events, expected } = payloads(N);
      let sum = 0;
      const tick = (d) => (sum += d.v);
      // Its listeners are kept and called directly by `fire` (dispatchEvent would cost more
      // than the handlers, and its noise would hide them).
      class FakeEventSource extends EventTarget {
        static last;
        constructor(url) {
          super();
          this.url = url;
          this.ticks = [];
          FakeEventSource.last = this;
        }
        addEventListener(type, listener) {
          if (type === "tick") this.ticks.push(listener);
          else super.addEventListener(type, listener);
        }
        close() {}
      }
      // The events of one run, made before it is timed.
      const fire = (es) => {
        const made = events.map(([data, lastEventId]) => new MessageEvent("tick", { data, lastEventId }));
        const [listener] = es.ticks;
        sum = 0;
        const t = performance.now();
        for (const e of made) listener(e);
        const ms = performance.now() - t;
        if (sum !== expected) throw new Error(`sum ${sum}, expected ${expected}`);
        return ms;
      };
      const libs = [];
      for (let i = 0; i < ndirs; i++) {
        const lib = await import(`/sdk${i}/dist/index.js`);
        await lib.ready();
        libs.push(lib);
      }
      return runAll(clients({ FakeEventSource, fire, tick, libs, lastId: events[N - 1][1] }), REPS);
    },
    { N, REPS, ndirs: dirs.length },
  );
  console.log(`${(await browser.version())}: ${N.toLocaleString("en")} events, ${REPS} runs each, interleaved; ns per event`);
  console.log(table(runs, N, dirs));
  // Paired: in how many reps each SDK after the first was faster than the first.
  for (const name of Object.keys(runs).filter((n) => n.startsWith("sdk") && n !== "sdk0")) {
    const lower = runs[name].filter((ms, i) => ms < runs.sdk0[i]).length;
    console.log(`${name} faster than sdk0 in ${lower} of ${REPS} paired runs`);
  }
} finally {
  await browser.close();
  server.close();
}
