// The page side of the browser benchmark (driven by ../bench.mjs). One client per page:
// `prepare(name)` loads its library (outside the measurement), `connect(...)` opens the stream
// and resolves once it is open, `done()` resolves when every event has arrived (or the stream
// stalled) with the timings and the checks, `after()` measures what the heap retains.
//
// Every client ends in the same handler, `tick`, with the decoded payload `{seq, v, name}`:
// it checks the order (seq 0, 1, 2, ...), sums `v` (so the decoded value is used and nothing
// can be optimised away) and stops the clock at the last event. The clock starts at the first
// event, so connecting is not measured (`connectToLastMs` is reported beside it).

import { floorListener } from "./floor.js";

/** The clients compared: each opens `hub`'s stream and calls `tick` with decoded payloads. */
const CLIENTS = {
  /** (a) The browser's EventSource, `JSON.parse` on each `data`. */
  raw: {
    async load() {},
    open(hub, lastEventId, on) {
      const url = lastEventId ? `${hub}/events?lastEventId=${lastEventId}` : `${hub}/events`;
      const es = new EventSource(url);
      es.addEventListener("tick", (e) => tick(JSON.parse(e.data)));
      es.onopen = on.open;
      es.onerror = () => on.error(`EventSource error (readyState ${es.readyState})`);
      return () => es.close();
    },
  },
  /** (b) The eventwire SDK from the packed tarball: it decodes the JSON itself. */
  sdk: {
    lib: undefined,
    async load() {
      this.lib = await import("/node_modules/eventwire/dist/index.js");
      // The wasm is fetched and compiled here, not during the measurement.
      await this.lib.ready();
    },
    open(hub, lastEventId, on) {
      const client = this.lib.createClient(`${hub}/events`, lastEventId ? { lastEventId } : {});
      client.on("tick", (e) => tick(e.data));
      client.on("open", on.open);
      client.on("error", (e) => on.error(`${e.kind}: ${e.message}`));
      return () => client.close();
    },
  },
  /**
   * Diagnostic (`--clients raw,sdk,sdk0`): the SDK with `heartbeatTimeoutMs: 0`, so no
   * watchdog timer is re-armed per event; the difference to `sdk` is the watchdog's cost.
   */
  sdk0: {
    async load() {
      await CLIENTS.sdk.load();
    },
    open(hub, lastEventId, on) {
      const client = CLIENTS.sdk.lib.createClient(`${hub}/events`, { heartbeatTimeoutMs: 0, ...(lastEventId ? { lastEventId } : {}) });
      client.on("tick", (e) => tick(e.data));
      client.on("open", on.open);
      client.on("error", (e) => on.error(`${e.kind}: ${e.message}`));
      return () => client.close();
    },
  },
  /** Diagnostic (`--clients raw,sdk,floor`): the SDK's listener API in plain JavaScript (floor.js). */
  floor: {
    async load() {},
    open(hub, lastEventId, on) {
      const url = lastEventId ? `${hub}/events?lastEventId=${lastEventId}` : `${hub}/events`;
      const es = new EventSource(url);
      es.addEventListener("tick", floorListener(tick));
      es.onopen = on.open;
      es.onerror = () => on.error(`EventSource error (readyState ${es.readyState})`);
      return () => es.close();
    },
  },
  /** `--compare DIR`: the SDK built in DIR, served under /b/. */
  sdkb: {
    lib: undefined,
    async load() {
      this.lib = await import("/b/node_modules/eventwire/dist/index.js");
      await this.lib.ready();
    },
    open(hub, lastEventId, on) {
      return CLIENTS.sdk.open.call(this, hub, lastEventId, on);
    },
  },
  /** (c) reconnecting-eventsource (npm), `JSON.parse` on each `data`. */
  res: {
    ReconnectingEventSource: undefined,
    async load() {
      const mod = await import("/node_modules/reconnecting-eventsource/build/esm/reconnecting-eventsource.js");
      this.ReconnectingEventSource = mod.default;
    },
    open(hub, lastEventId, on) {
      const es = new this.ReconnectingEventSource(`${hub}/events`, lastEventId ? { lastEventId } : {});
      es.addEventListener("tick", (e) => tick(JSON.parse(e.data)));
      es.onopen = on.open;
      es.onerror = () => on.error("ReconnectingEventSource error");
      return () => es.close();
    },
  },
};

let client;
let expected = 0;
let count = 0;
let sum = 0;
let outOfOrder = 0;
let lastSeq = -1;
let tConnect = 0;
let tFirst = 0;
let tLast = 0;
let heapEnd;
let close = () => {};
let finished;
const errors = [];

const heap = () => performance.memory?.usedJSHeapSize;

// The SDK's linear memory is not in the JS heap: every WebAssembly.Memory the page
// instantiates is noted here so its size can be reported beside the heap.
const memories = [];
for (const name of ["instantiate", "instantiateStreaming"]) {
  const original = WebAssembly[name];
  WebAssembly[name] = async (...args) => {
    const result = await original.apply(WebAssembly, args);
    const exports = (result.instance ?? result).exports ?? {};
    for (const value of Object.values(exports)) if (value instanceof WebAssembly.Memory) memories.push(value);
    return result;
  };
}
const wasmBytes = () => memories.reduce((total, m) => total + m.buffer.byteLength, 0);
const gc = () => globalThis.gc?.();

/** The one handler every client calls with a decoded payload. */
function tick(d) {
  if (count === 0) tFirst = performance.now();
  if (d.seq !== count) outOfOrder++;
  lastSeq = d.seq;
  sum += d.v;
  count++;
  if (count === expected) {
    tLast = performance.now();
    heapEnd = heap();
    close();
    finished();
  }
}

window.bench = {
  /** Loads the client's library; answers the heap after a GC, the baseline. */
  async prepare(name) {
    client = CLIENTS[name];
    if (!client) throw new Error(`unknown client ${name}`);
    await client.load();
    gc();
    return { heapBase: heap() };
  },

  /** After `done()`: the heap once the closed stream and the client's objects are collected. */
  async after() {
    await new Promise((r) => setTimeout(r, 50));
    gc();
    return { heapAfterGc: heap(), wasmBytes: wasmBytes() };
  },

  /**
   * Opens the stream (replaying after `lastEventId` when given) and resolves once it is open;
   * `n` events are expected. Rejects when it does not open within `openTimeoutMs`.
   */
  connect({ hub, n, lastEventId, openTimeoutMs = 10_000 }) {
    expected = n;
    const done = new Promise((resolve) => (finished = resolve));
    this.done = async (stallMs = 20_000) => {
      // Resolves at the last event, or when no event arrived for `stallMs`.
      let seen = -1;
      const stall = new Promise((resolve) => {
        const timer = setInterval(() => {
          if (count === expected || count === seen) {
            clearInterval(timer);
            resolve();
          }
          seen = count;
        }, stallMs);
        done.then(() => clearInterval(timer));
      });
      await Promise.race([done, stall]);
      close();
      const complete = count === expected;
      return {
        count,
        lastSeq,
        outOfOrder,
        sum,
        firstToLastMs: complete ? tLast - tFirst : null,
        connectToLastMs: complete ? tLast - tConnect : null,
        heapEnd: heapEnd ?? heap(),
        errors,
      };
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not open after ${openTimeoutMs} ms: ${errors.join("; ")}`)), openTimeoutMs);
      tConnect = performance.now();
      close = client.open(hub, lastEventId, {
        open: () => {
          clearTimeout(timer);
          resolve();
        },
        error: (message) => errors.push(message),
      });
    });
  },
};
