// Browser benchmark: how long a page in headless Chromium takes to handle N events from the
// eventwire hub with
//   raw  the browser's EventSource + JSON.parse of each `data`,
//   sdk  the eventwire SDK, installed from the packed tarball of the built npm/ package (the
//        optimised release wasm that ships); it decodes the JSON itself,
//   res  reconnecting-eventsource (npm, pinned in package.json) + JSON.parse.
// Each handler sums a field of the decoded value and the page checks that all N arrived, in
// order, with the right sum; a run that fails a check fails the benchmark.
//
// How the events reach the page (`--mode`):
//   replay (default)  all N are published into the hub's history first, then the page connects
//                     with `lastEventId` = the id just before the first, and the hub writes
//                     the whole replay as fast as the socket takes it. The hub has nothing left
//                     to do but write, and no publisher shares the 2 cores with Chromium, so
//                     the time is the client's.
//   live              the page connects, then this script publishes the N events in batches of
//                     1000 (the hub's --max-batch), one after another, as fast as the hub
//                     accepts them. The page may wait for the publisher, which runs on the same
//                     cores: a measure of the whole path rather than of the client alone.
// Two measures per run: wall, the page's clock from its first event to its last; cpu, the
// renderer main thread's CPU time (CDP Performance metrics in thread ticks) from connecting to
// the last event. Wall is what a user waits, but on a shared machine it also counts the time
// Chromium's network process and the page wait for a core; cpu counts only the page's own work
// (EventSource parsing and dispatch, the client, JSON, GC), whatever else the machine runs.
// Clients run interleaved (each repetition in a rotated order), one fresh browser context per
// run, after one uncounted warm-up run each; the table shows medians.
//
//   node tests/bench-browser/bench.mjs [--events N] [--reps R] [--mode replay|live|both]
//        [--quick] [--profile] [--npm-dir DIR] [--compare DIR] [--clients raw,sdk,res]
//
// scripts/bench-browser.sh installs what this needs and builds the hub and the package first.
// --quick: 2,000 events, 1 repetition, every check still made (for the test command).
// --npm-dir DIR: measure the built package in DIR (a candidate build elsewhere) instead of npm/.
// --compare DIR: also measure the built package in DIR, as client `sdkb`, interleaved with the
//   others (an A/B of an SDK change: build it with build-npm.sh in another checkout).
// --profile: also one profiled run of raw and sdk, and of sdkb and floor when measured
//   (Chromium's CDP Profiler, 100 µs sampling);
//   writes .cpuprofile files (open them in Chrome DevTools) and prints self time per
//   function. The sdk run uses a build of the same wasm that keeps its function names
//   (wasm-bindgen + wasm-opt -Oz -g, in $CARGO_TARGET_DIR/bench-browser/named), so the
//   profile names Rust functions; its total time is printed beside the shipped build's.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const TARGET = process.env.CARGO_TARGET_DIR ?? path.join(ROOT, "target");
const OUT = path.join(TARGET, "bench-browser");
const HUB_BIN = process.env.EVENTWIRE_HUB_BIN ?? path.join(TARGET, "release/eventwire");
const BATCH = 1000;
const CLIENT_NAMES = {
  raw: "EventSource + JSON.parse",
  sdk: "eventwire SDK",
  res: "reconnecting-eventsource",
  // Diagnostic, only with --clients: the SDK without its watchdog (heartbeatTimeoutMs: 0).
  sdk0: "eventwire SDK, no watchdog",
  // Diagnostic, only with --clients: the SDK's listener API in plain JS, the least it can cost.
  floor: "JS floor of the SDK's API",
  // With --compare DIR: the SDK built in DIR, beside the one from npm/ (or --npm-dir).
  sdkb: "eventwire SDK (--compare)",
};

const { values: opts } = parseArgs({
  options: {
    events: { type: "string" },
    reps: { type: "string" },
    mode: { type: "string", default: "replay" },
    clients: { type: "string" },
    quick: { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    "npm-dir": { type: "string" },
    compare: { type: "string" },
  },
});
const N = Number(opts.events ?? (opts.quick ? 2000 : 100_000));
const REPS = Number(opts.reps ?? (opts.quick ? 1 : 5));
const MODES = opts.mode === "both" ? ["replay", "live"] : [opts.mode];
const CLIENTS = (opts.clients ?? (opts.compare ? "raw,sdk,sdkb" : "raw,sdk,res")).split(",");
if (CLIENTS.includes("sdkb") && !opts.compare) throw new Error("the sdkb client needs --compare DIR");
if (!(N > 0) || !(REPS > 0) || MODES.some((m) => m !== "replay" && m !== "live")) {
  console.error("usage: bench.mjs [--events N] [--reps R] [--mode replay|live|both] [--quick] [--profile] [--npm-dir DIR] [--clients raw,sdk,res]");
  process.exit(2);
}
for (const c of CLIENTS) if (!CLIENT_NAMES[c]) throw new Error(`unknown client ${c}`);

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), "eventwire-bench-"));
const log = (...a) => console.error("[bench]", ...a);

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * The package as users get it: `npm pack` of a copy of the built npm/ directory (prepack then
 * only checks the built files; packing npm/ itself would rebuild the wasm), installed into a
 * fresh app directory. Returns that app's directory.
 */
function installPackage(dir, name) {
  const copy = path.join(WORK, name, "npm");
  fs.cpSync(path.resolve(dir), copy, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}node_modules`),
  });
  const packed = path.join(WORK, name);
  const [{ filename }] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", packed, "--loglevel=error"], copy));
  const app = path.join(WORK, name, "app");
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, "package.json"), '{"name":"bench-app","private":true}\n');
  run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", path.join(packed, filename)], app);
  return app;
}

/** The hub, with room for the whole run in its history and in each connection's queue. */
async function startHub() {
  const args = [
    "--dev",
    "--listen", "127.0.0.1:0",
    "--history-size", String(Math.max(N, 1000)),
    "--history-ttl-secs", "86400",
    // A batch of 1000 of our events is ~60 KB, near the 64 KiB default.
    "--max-body-bytes", String(4 << 20),
    "--max-batch", String(BATCH),
    // Live mode: the publisher may get ahead of the page by up to every batch.
    "--queue-capacity", String(Math.ceil(N / BATCH) + 100),
    "--max-lag-secs", "600",
  ];
  const proc = spawn(HUB_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  proc.stderr.resume();
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`hub did not start: ${out}`)), 10_000);
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`hub exited with ${code}: ${out}`)));
    proc.on("error", (e) => reject(new Error(`hub ${HUB_BIN} did not start: ${e.message}`)));
  });
  return { url, proc };
}

/** The N events as publish batches (JSON bodies), built once; `seq` 0..N-1, `v` summed. */
function batches() {
  const bodies = [];
  let sum = 0;
  for (let i = 0; i < N; i += BATCH) {
    const batch = [];
    for (let seq = i; seq < Math.min(N, i + BATCH); seq++) {
      const v = (seq * 7919) % 1000;
      sum += v;
      batch.push({ event: "tick", data: { seq, v, name: `sensor-${seq % 64}` } });
    }
    bodies.push(JSON.stringify(batch));
  }
  return { bodies, sum };
}

/** Publishes every batch in order, each once the hub has answered the previous; the first id. */
async function publishAll(hub, bodies) {
  let first;
  for (const body of bodies) {
    const res = await fetch(`${hub}/publish`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const answer = await res.json();
    if (res.status !== 200) throw new Error(`publish: ${res.status} ${JSON.stringify(answer)}`);
    first ??= answer[0].id;
  }
  return first;
}

/**
 * How fast the hub hands the replay to a reader that does nothing but count the frames (node,
 * on the same machine): the ceiling of what any client can be measured at. Milliseconds from
 * the first byte to the N-th event.
 */
async function wireMs(hub, lastEventId) {
  const abort = new AbortController();
  const res = await fetch(`${hub}/events?lastEventId=${lastEventId}`, { signal: abort.signal });
  const reader = res.body.getReader();
  const marker = Buffer.from("event: tick\n");
  let events = 0;
  let carry = Buffer.alloc(0);
  let start;
  while (events < N) {
    let stalled;
    const timeout = new Promise((_, reject) => {
      stalled = setTimeout(() => reject(new Error(`the replay stalled after ${events} of ${N} events`)), 10_000);
    });
    const { value, done } = await Promise.race([reader.read(), timeout]).finally(() => clearTimeout(stalled));
    if (done) throw new Error(`the replay ended after ${events} of ${N} events`);
    start ??= performance.now();
    const chunk = Buffer.concat([carry, value]);
    for (let i = chunk.indexOf(marker); i >= 0; i = chunk.indexOf(marker, i + marker.length)) events++;
    carry = chunk.subarray(Math.max(0, chunk.length - marker.length + 1));
  }
  const ms = performance.now() - start;
  abort.abort();
  return ms;
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

/**
 * Serves the page (page/), the installed package (/node_modules/eventwire/) and
 * reconnecting-eventsource (/node_modules/reconnecting-eventsource/), and the --compare build
 * (/b/node_modules/eventwire/). `wasmDir`, when set,
 * replaces the package's wasm/ directory (the profiling build with names).
 */
function startStatic(app, appB, state) {
  const roots = [
    ["/b/node_modules/eventwire/", () => path.join(appB ?? app, "node_modules/eventwire")],
    ["/node_modules/eventwire/wasm/", () => state.wasmDir ?? path.join(app, "node_modules/eventwire/wasm")],
    ["/node_modules/eventwire/", () => path.join(app, "node_modules/eventwire")],
    ["/node_modules/reconnecting-eventsource/", () => path.join(HERE, "node_modules/reconnecting-eventsource")],
    ["/", () => path.join(HERE, "page")],
  ];
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      let { pathname } = new URL(req.url, "http://x");
      if (pathname === "/") pathname = "/index.html";
      const [prefix, dir] = roots.find(([p]) => pathname.startsWith(p));
      const base = dir();
      const file = path.join(base, pathname.slice(prefix.length));
      if (!file.startsWith(base) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
        res.writeHead(404).end("not found");
        return;
      }
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
      fs.createReadStream(file).pipe(res);
    });
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

/**
 * One run: a fresh context and page, the client's library loaded, the stream opened, (live)
 * the events published, then the page's result, checked. `profile` wraps the run in the CDP
 * Profiler and adds the profile to the result.
 */
async function runOnce({ browser, pageUrl, hub, client, mode, lastEventId, bodies, sum, profile = false }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && pageErrors.push(m.text()));
  try {
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.bench);
    const { heapBase } = await page.evaluate((c) => window.bench.prepare(c), client);
    // The renderer's main-thread CPU time (thread ticks), which other processes on the
    // machine do not inflate, from before connecting to the last event.
    const cdp = await context.newCDPSession(page);
    await cdp.send("Performance.enable", { timeDomain: "threadTicks" });
    const metrics = async () =>
      Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
    if (profile) {
      await cdp.send("Profiler.enable");
      await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
      await cdp.send("Profiler.start");
    }
    const before = await metrics();
    await page.evaluate((a) => window.bench.connect(a), { hub, n: N, lastEventId: mode === "replay" ? lastEventId : undefined });
    const result = page.evaluate(() => window.bench.done());
    if (mode === "live") await publishAll(hub, bodies);
    const r = await result;
    const after = await metrics();
    r.cpuMs = (after.ThreadTime - before.ThreadTime) * 1000;
    r.scriptMs = (after.ScriptDuration - before.ScriptDuration) * 1000;
    if (profile) r.profile = (await cdp.send("Profiler.stop")).profile;
    Object.assign(r, await page.evaluate(() => window.bench.after()));
    r.heapBase = heapBase;
    r.client = client;
    r.mode = mode;
    const problems = [];
    if (r.count !== N) problems.push(`${r.count} of ${N} events arrived`);
    if (r.outOfOrder !== 0) problems.push(`${r.outOfOrder} out of order`);
    if (r.lastSeq !== N - 1) problems.push(`last seq ${r.lastSeq}, expected ${N - 1}`);
    if (r.sum !== sum) problems.push(`sum ${r.sum}, expected ${sum}`);
    if (pageErrors.length) problems.push(`page errors: ${pageErrors.join("; ")}`);
    if (problems.length) {
      throw new Error(`${client} (${mode}): ${problems.join(", ")}${r.errors.length ? ` (client errors: ${r.errors.join("; ")})` : ""}`);
    }
    return r;
  } finally {
    await context.close();
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const mb = (bytes) => (bytes == null ? "n/a" : (bytes / 1048576).toFixed(1));
const pad = (s, n) => String(s).padStart(n);

function table(mode, results) {
  const rows = CLIENTS.map((c) => {
    const rs = results.filter((r) => r.client === c);
    const wall = rs.map((r) => r.firstToLastMs);
    return {
      c,
      wall: median(wall),
      min: Math.min(...wall),
      max: Math.max(...wall),
      cpu: median(rs.map((r) => r.cpuMs)),
      heapEnd: median(rs.map((r) => r.heapEnd - r.heapBase)),
      heapGc: median(rs.map((r) => r.heapAfterGc - r.heapBase)),
      wasm: median(rs.map((r) => r.wasmBytes)),
      runs: rs.map((r) => `${r.firstToLastMs.toFixed(0)}/${r.cpuMs.toFixed(0)}`).join(" "),
    };
  });
  const raw = rows.find((r) => r.c === "raw");
  const med = Object.fromEntries(rows.map((r) => [r.c, r.wall]));
  const cpu = Object.fromEntries(rows.map((r) => [r.c, r.cpu]));
  const lines = [
    `mode ${mode}: ${N.toLocaleString("en")} events, ${REPS} run${REPS > 1 ? "s" : ""} per client, interleaved; medians`,
    "  wall: the page's clock from its first event to its last; cpu: the renderer main thread's CPU time (thread ticks) from connecting to the last event",
    `${"client".padEnd(26)} ${pad("wall ms", 8)} ${pad("min-max", 11)} ${pad("events/s", 9)} ${pad("x raw", 5)} ${pad("cpu ms", 7)} ${pad("cpu us/ev", 9)} ${pad("x raw", 5)} ${pad("heap+MB", 7)} ${pad("after GC", 8)} ${pad("wasm MB", 7)}  runs (wall/cpu ms)`,
  ];
  for (const r of rows) {
    lines.push(
      [
        CLIENT_NAMES[r.c].padEnd(26),
        pad(r.wall.toFixed(1), 8),
        pad(`${r.min.toFixed(0)}-${r.max.toFixed(0)}`, 11),
        pad(Math.round(N / (r.wall / 1000)).toLocaleString("en"), 9),
        pad(raw ? (r.wall / raw.wall).toFixed(2) : "-", 5),
        pad(r.cpu.toFixed(1), 7),
        pad(((r.cpu * 1000) / N).toFixed(2), 9),
        pad(raw ? (r.cpu / raw.cpu).toFixed(2) : "-", 5),
        pad(mb(r.heapEnd), 7),
        pad(mb(r.heapGc), 8),
        pad(r.wasm ? mb(r.wasm) : "-", 7),
        ` ${r.runs}`,
      ].join(" "),
    );
  }
  // Paired: the runs of one repetition ran back to back, so their ratio cancels much of the
  // machine's load, which moves every client's CPU time between repetitions.
  const cpus = Object.fromEntries(CLIENTS.map((c) => [c, results.filter((r) => r.client === c).map((r) => r.cpuMs)]));
  const paired = (a, b) => median(cpus[a].map((ms, i) => ms / cpus[b][i]));
  if (cpus.raw && REPS > 1) {
    const others = CLIENTS.filter((c) => c !== "raw");
    lines.push(`paired cpu x raw (median of each repetition's ratio): ${others.map((c) => `${c} ${paired(c, "raw").toFixed(3)}`).join(", ")}`);
  }
  if (cpus.sdk && cpus.sdkb) {
    const lower = cpus.sdk.filter((ms, i) => ms < cpus.sdkb[i]).length;
    lines.push(`paired: sdk used less cpu than sdkb in ${lower} of ${cpus.sdk.length} repetitions; median sdk/sdkb ${paired("sdk", "sdkb").toFixed(3)}`);
  }
  return { text: lines.join("\n"), med, cpu, mode };
}

/**
 * Self and total time per function from a CDP profile, over the samples between the first
 * and the last sample that was not idle. Functions are keyed by name and location.
 */
function summarise(profile, top = 25) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (n) => {
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(/^.*\//, "")}:${f.lineNumber + 1}` : "";
    return `${f.functionName || "(anonymous)"}${where ? ` ${where}` : ""}`;
  };
  const self = new Map();
  const total = new Map();
  let busy = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length - 1; i++) {
    const dt = timeDeltas[i + 1] / 1000;
    const node = nodes.get(samples[i]);
    const k = key(node);
    if (k === "(idle)") continue;
    busy += dt;
    self.set(k, (self.get(k) ?? 0) + dt);
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const kk = key(nodes.get(id));
      if (seen.has(kk)) continue;
      seen.add(kk);
      total.set(kk, (total.get(kk) ?? 0) + dt);
    }
  }
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  const lines = [`busy (not idle) ${busy.toFixed(1)} ms; self time per function (ms, % of busy), total time with callees`];
  for (const [k, ms] of rows) {
    lines.push(`${pad(ms.toFixed(1), 8)} ${pad(((100 * ms) / busy).toFixed(1), 5)}%  total ${pad((total.get(k) ?? 0).toFixed(1), 8)}  ${k}`);
  }
  return { text: lines.join("\n"), self, total, busy };
}

/**
 * The shipped wasm rebuilt with its function names, for profiles: wasm-bindgen on the cargo
 * artifact that scripts/build-client-wasm.sh last built, then wasm-opt -Oz -g (binaryen from
 * .tools/npm). `undefined` when a tool or the artifact is missing.
 */
function namedBuild() {
  const artifact = path.join(TARGET, "wasm32-unknown-unknown/release/eventwire_client.wasm");
  const wasmOpt = path.join(ROOT, ".tools/npm/node_modules/.bin/wasm-opt");
  const bindgen = spawnSync("wasm-bindgen", ["--version"], { env: { ...process.env, PATH: `${os.homedir()}/.cargo/bin:${process.env.PATH}` } });
  if (!fs.existsSync(artifact) || !fs.existsSync(wasmOpt) || bindgen.status !== 0) return undefined;
  const dir = path.join(OUT, "named");
  fs.rmSync(dir, { recursive: true, force: true });
  execFileSync("wasm-bindgen", ["--target", "web", "--out-dir", dir, artifact], {
    env: { ...process.env, PATH: `${os.homedir()}/.cargo/bin:${process.env.PATH}` },
  });
  const wasm = path.join(dir, "eventwire_client_bg.wasm");
  execFileSync(wasmOpt, ["-Oz", "--converge", "-g", wasm, "-o", wasm]);
  return dir;
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const npmDir = opts["npm-dir"] ?? path.join(ROOT, "npm");
  log(`packing ${npmDir} and installing the tarball into ${WORK}/a/app`);
  const app = installPackage(npmDir, "a");
  let appB;
  if (opts.compare) {
    log(`packing ${opts.compare} and installing the tarball into ${WORK}/b/app`);
    appB = installPackage(opts.compare, "b");
  }
  const hub = await startHub();
  const state = { wasmDir: undefined };
  const server = await startStatic(app, appB, state);
  const pageUrl = `http://127.0.0.1:${server.address().port}/`;
  const { bodies, sum } = batches();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
      "--disable-dev-shm-usage",
      "--disable-renderer-backgrounding",
      "--disable-background-timer-throttling",
      "--enable-precise-memory-info",
      "--js-flags=--expose-gc",
    ],
  });
  const failures = [];
  const out = [];
  try {
    let lastEventId;
    if (MODES.includes("replay")) {
      const t = performance.now();
      const first = await publishAll(hub.url, bodies);
      lastEventId = String(BigInt(first) - 1n);
      log(`published ${N} events into the hub's history in ${(performance.now() - t).toFixed(0)} ms; replaying after id ${lastEventId}`);
      try {
        const wire = median([await wireMs(hub.url, lastEventId), await wireMs(hub.url, lastEventId), await wireMs(hub.url, lastEventId)]);
        out.push(`the hub's replay to a reader that only counts frames (node): ${wire.toFixed(1)} ms for ${N.toLocaleString("en")} events (median of 3), the ceiling for any client`);
      } catch (e) {
        failures.push(`hub replay to node: ${e.message}`);
      }
    }
    const common = { browser, pageUrl, hub: hub.url, lastEventId, bodies, sum };
    // One warm-up run per client (not counted): the browser's first page pays for its caches.
    for (const client of CLIENTS) {
      await runOnce({ ...common, client, mode: MODES[0] }).catch((e) => failures.push(`warm-up ${e.message}`));
    }
    for (const mode of MODES) {
      const results = [];
      for (let rep = 0; rep < REPS; rep++) {
        const order = CLIENTS.map((_, i) => CLIENTS[(i + rep) % CLIENTS.length]);
        for (const client of order) {
          try {
            const r = await runOnce({ ...common, client, mode });
            log(`${mode} rep ${rep + 1} ${client}: ${r.firstToLastMs.toFixed(1)} ms wall, ${r.cpuMs.toFixed(1)} ms cpu`);
            results.push(r);
          } catch (e) {
            failures.push(e.message);
            log(`FAILED ${e.message}`);
          }
        }
      }
      if (failures.length) break;
      out.push(table(mode, results));
    }
    if (opts.profile && !failures.length) {
      const mode = MODES[0];
      const profiles = [];
      for (const client of ["raw", "sdk", ...CLIENTS.filter((c) => c === "sdkb" || c === "floor")]) {
        const r = await runOnce({ ...common, client, mode, profile: true });
        fs.writeFileSync(path.join(OUT, `${client}.cpuprofile`), JSON.stringify(r.profile));
        profiles.push(`${CLIENT_NAMES[client]}, shipped build, profiled run ${r.firstToLastMs.toFixed(1)} ms (${path.join(OUT, `${client}.cpuprofile`)})\n${summarise(r.profile).text}`);
      }
      state.wasmDir = namedBuild();
      if (state.wasmDir) {
        const plain = await runOnce({ ...common, client: "sdk", mode });
        const r = await runOnce({ ...common, client: "sdk", mode, profile: true });
        const file = path.join(OUT, "sdk-named.cpuprofile");
        fs.writeFileSync(file, JSON.stringify(r.profile));
        profiles.push(
          `eventwire SDK, build with wasm function names: ${plain.firstToLastMs.toFixed(1)} ms unprofiled, ${r.firstToLastMs.toFixed(1)} ms profiled (${file})\n${summarise(r.profile, 40).text}`,
        );
        state.wasmDir = undefined;
      } else {
        log("no build with names (needs wasm-bindgen, .tools/npm wasm-opt and the cargo artifact): profile of the shipped build only");
      }
      out.push(profiles.join("\n\n"));
    }
  } finally {
    await browser.close();
    server.close();
    hub.proc.kill("SIGTERM");
    fs.rmSync(WORK, { recursive: true, force: true });
  }
  console.log(`${out.map((o) => o.text ?? o).join("\n\n")}\n`);
  if (failures.length) {
    console.error(`[bench] FAILED:\n  ${failures.join("\n  ")}`);
    process.exit(1);
  }
  for (const { mode, med, cpu } of out.filter((o) => o.med)) {
    const ratio = (of, m) => (m[of] && m.raw ? `${(m[of] / m.raw).toFixed(2)}x` : "-");
    console.log(
      `${mode}: sdk/raw ${ratio("sdk", med)} wall, ${ratio("sdk", cpu)} cpu (target <= 1.15x); ` +
        `reconnecting-eventsource/raw ${ratio("res", med)} wall, ${ratio("res", cpu)} cpu`,
    );
  }
}

await main();
