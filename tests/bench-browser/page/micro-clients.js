// What micro.mjs (in Node) and micro-browser.mjs (in Chromium, which serves this file to its
// page) time: the same payloads, the same clients, the same interleaved runs and table. Each
// host brings its fake EventSource (an EventTarget that keeps its newest instance in
// `FakeEventSource.last`) and its `fire(es)`, which calls the `tick` listeners with every
// event and returns the milliseconds.
import { floorListener } from "./floor.js";

/** The page's payloads and ids (bench.mjs): `{seq, v, name}`, ids counting up; `expected` is the sum of `v`. */
export function payloads(n) {
  const events = [];
  let expected = 0;
  for (let i = 0; i < n; i++) {
    const v = (i * 7919) % 1000;
    expected += v;
    events.push([JSON.stringify({ seq: i, v, name: `sensor-${i % 64}` }), String(1796163317395537 + i)]);
  }
  return { events, expected };
}

/**
 * The clients, each a function that runs once and returns its milliseconds: raw
 * (`JSON.parse(e.data)`), floor (floor.js), and `sdkN` for the N-th loaded package in `libs`.
 * `tick` is the handler every client hands the decoded payload to; `lastId` the id an SDK
 * client must report after the run.
 */
export function clients({ FakeEventSource, fire, tick, libs, lastId }) {
  const all = {
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
  libs.forEach((lib, i) => {
    all[`sdk${i}`] = () => {
      const client = lib.createClient("http://127.0.0.1:9/events", { EventSource: FakeEventSource, heartbeatTimeoutMs: 60_000 });
      client.on("tick", (e) => tick(e.data));
      FakeEventSource.last.dispatchEvent(new Event("open"));
      const ms = fire(FakeEventSource.last);
      if (client.lastEventId !== lastId) throw new Error(`lastEventId ${client.lastEventId}`);
      client.close();
      return ms;
    };
  });
  return all;
}

/** Runs every client `reps` times, interleaved; the milliseconds of each run, per client. */
export function runAll(all, reps) {
  const runs = Object.fromEntries(Object.keys(all).map((c) => [c, []]));
  for (let rep = 0; rep < reps; rep++) for (const [name, run] of Object.entries(all)) runs[name].push(run());
  return runs;
}

/** The table of min and median ns per event, and each client's min over raw's. */
export function table(runs, n, dirs) {
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const ns = (ms) => ((ms * 1e6) / n).toFixed(0).padStart(6);
  const lines = [`${"client".padEnd(8)} ${"min".padStart(6)} ${"median".padStart(6)}  over raw (min)`];
  const rawMin = Math.min(...runs.raw);
  for (const [name, ms] of Object.entries(runs)) {
    const min = Math.min(...ms);
    const dir = name.startsWith("sdk") ? `  ${dirs[Number(name.slice(3))]}` : "";
    lines.push(`${name.padEnd(8)} ${ns(min)} ${ns(median(ms))}  ${ns(min - rawMin)}${dir}`);
  }
  return lines.join("\n");
}
