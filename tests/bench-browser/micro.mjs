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
import { floorListener } from "./page/floor.js";

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

// The page's payloads and ids (bench.mjs): `{seq, v, name}`, ids counting up.
const events = [];
let expected = 0;
for (let i = 0; i < N; i++) {
  const v = (i * 7919) % 1000;
  expected += v;
  events.push([JSON.stringify({ seq: i, v, name: `sensor-${i % 64}` }), String(1796163317395537 + i)]);
}
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

const clients = {
  raw() {
    const es = new FakeEventSource("raw");
    es.addEventListener("tick", (e) => tick(JSON.parse(e.data)));
    return fire(es);
  },
  floor() {
    const es = new FakeEventSource("floor");
    es.addEventListener("tick", floorListener(tick));
    return fire(es);
  },
};
for (const [i, dir] of dirs.entries()) {
  const lib = await import(pathToFileURL(path.resolve(dir, "dist/index.js")).href);
  await lib.ready();
  clients[`sdk${i}`] = () => {
    const client = lib.createClient("http://127.0.0.1:9/events", { EventSource: FakeEventSource, heartbeatTimeoutMs: 60_000 });
    client.on("tick", (e) => tick(e.data));
    FakeEventSource.last.dispatchEvent(new Event("open"));
    const ms = fire(FakeEventSource.last);
    if (client.lastEventId !== events[N - 1][1]) throw new Error(`lastEventId ${client.lastEventId}`);
    client.close();
    return ms;
  };
}

const runs = Object.fromEntries(Object.keys(clients).map((c) => [c, []]));
for (let rep = 0; rep < REPS; rep++) for (const [name, run] of Object.entries(clients)) runs[name].push(run());
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const ns = (ms) => ((ms * 1e6) / N).toFixed(0).padStart(6);
console.log(`${N.toLocaleString("en")} events, ${REPS} runs each, interleaved; ns per event`);
console.log(`${"client".padEnd(8)} ${"min".padStart(6)} ${"median".padStart(6)}  over raw (min)`);
const rawMin = Math.min(...runs.raw);
for (const [name, ms] of Object.entries(runs)) {
  const min = Math.min(...ms);
  console.log(`${name.padEnd(8)} ${ns(min)} ${ns(median(ms))}  ${ns(min - rawMin)}${dirs[Number(name.slice(3))] && name.startsWith("sdk") ? `  ${dirs[Number(name.slice(3))]}` : ""}`);
}
