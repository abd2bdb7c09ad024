// The SDK's own per-event work, without a network, a hub or a browser: Node dispatches N
// MessageEvents synchronously on a fake EventSource (an EventTarget, passed as the SDK's
// `EventSource` option) and times the handlers, min and median of R runs, interleaved:
//   raw    JSON.parse(e.data) and the handler,
//   floor  the SDK's listener API in plain JavaScript (as the page's `floor` client),
//   sdkN   the SDK built in each DIR given (npm/ directories with dist/ built).
// The browser benchmark (bench.mjs) is the measure that counts; its run-to-run noise on a
// shared machine (several % of CPU time) hides changes this resolves, such as a copy into
// wasm memory per event. Node's MessageEvent is implemented in JavaScript, so the absolute
// numbers are not the browser's; the SDK's wasm and glue are the same.
//
//   node tests/bench-browser/micro.mjs [--events N] [--reps R] DIR [DIR ...]
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { clients, payloads, runAll, table } from "./page/micro-clients.js";

const { values: opts, positionals: dirs } = parseArgs({
  options: { events: { type: "string" }, reps: { type: "string" } },
  allowPositionals: true,
});
const N = Number(opts.events ?? 200_000);
const REPS = Number(opts.reps ?? 11);
if (!dirs.length || !(N > 0) || !(REPS > 0)) {
  console.error("usage: micro.mjs [--events N] [--reps R] DIR [DIR ...]  (npm/ directories, built)");
  process.exit(2);
}

const { events, expected } = payloads(N);
let sum = 0;
const tick = (d) => (sum += d.v);

class FakeEventSource extends EventTarget {
  static last;
  constructor(url) {
    super();
    this.url = url;
    FakeEventSource.last = this;
  }
  close() {}
}

/** Dispatches the N events on `es`; returns the milliseconds, checking the sum. */
function fire(es) {
  sum = 0;
  const t = performance.now();
  for (const [data, lastEventId] of events) es.dispatchEvent(new MessageEvent("tick", { data, lastEventId }));
  const ms = performance.now() - t;
  if (sum !== expected) throw new Error(`sum ${sum}, expected ${expected}`);
  return ms;
}

const libs = [];
for (const dir of dirs) {
  const lib = await import(pathToFileURL(path.resolve(dir, "dist/index.js")).href);
  await lib.ready();
  libs.push(lib);
}
const runs = runAll(clients({ FakeEventSource, fire, tick, libs, lastId: events[N - 1][1] }), REPS);
console.log(`${N.toLocaleString("en")} events, ${REPS} runs each, interleaved; ns per event`);
console.log(table(runs, N, dirs));
