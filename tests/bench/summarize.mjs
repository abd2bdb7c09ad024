// Reads the raw JSON of a scripts/bench.sh run (one file per tool run) and prints one
// Markdown table per size: each figure for eventwire, nchan and node (the median of the
// repetitions) and the ratio eventwire/nchan. Writes summary.json beside raw/ and, with
// --chart FILE, an SVG of p99 latency (2 and 10 ev/s on schedule) and idle memory per
// connection against connections.
// Node standard library only.
//
// Usage: node tests/bench/summarize.mjs OUT_DIR [--chart FILE.svg]

import fs from "node:fs";
import path from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: summarize.mjs OUT_DIR [--chart FILE.svg]");
  process.exit(2);
}
const chartAt = process.argv.indexOf("--chart");
const chartFile = chartAt > 0 ? process.argv[chartAt + 1] : null;

const SERVERS = ["eventwire", "nchan", "node"];
const runs = [];
for (const name of fs.readdirSync(path.join(dir, "raw")).sort()) {
  if (!name.endsWith(".json")) continue;
  const text = fs.readFileSync(path.join(dir, "raw", name), "utf8").trim();
  const line = text.split("\n").filter((l) => l.startsWith("{")).pop();
  if (!line) {
    runs.push({ file: name, broken: true });
    continue;
  }
  runs.push({ file: name, ...JSON.parse(line) });
}

const median = (xs) => {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const get = (o, keys) => keys.reduce((v, k) => (v == null ? v : v[k]), o);
const pick = (size, label, server) =>
  runs.filter((r) => !r.broken && r.connections === size && r.label === label && r.server === server);

/** Each figure: label, unit, which runs, how to read one run, and whether lower is better. */
const FIGURES = [
  ["idle memory per connection", "KB", "broadcast", (r) => r.idle_bytes_per_connection / 1000, true],
  ["connect all, 200 in flight", "ms", "broadcast", (r) => r.connect_all_ms, true],
  ["p99 at 2 ev/s, publisher waits for each answer", "ms", "broadcast", (r) => get(r, ["phases", "lat2c", "latency_ms", "p99"]), true],
  ["p99 at 2 ev/s, on schedule", "ms", "broadcast", (r) => get(r, ["phases", "lat2o", "latency_ms", "p99"]), true],
  ["p99 at 10 ev/s, publisher waits for each answer", "ms", "broadcast", (r) => get(r, ["phases", "lat10c", "latency_ms", "p99"]), true],
  ["p99 at 10 ev/s, on schedule", "ms", "broadcast", (r) => get(r, ["phases", "lat10o", "latency_ms", "p99"]), true],
  ["p50 at 10 ev/s, on schedule", "ms", "broadcast", (r) => get(r, ["phases", "lat10o", "latency_ms", "p50"]), true],
  ["publish rate reached, 10 ev/s waiting for answers", "ev/s", "broadcast", (r) => get(r, ["phases", "lat10c", "publish_rate"]), false],
  ["server CPU per delivery, 10 ev/s on schedule", "µs", "broadcast", (r) => get(r, ["phases", "lat10o", "cpu_us_per_delivery"]), true],
  ["burst deliveries/s (~1M deliveries)", "/s", "broadcast", (r) => get(r, ["phases", "burst", "deliveries_per_s"]), false],
  ["server CPU per delivery, burst", "µs", "broadcast", (r) => get(r, ["phases", "burst", "cpu_us_per_delivery"]), true],
  ["burst p99 latency", "ms", "broadcast", (r) => get(r, ["phases", "burst", "latency_ms", "p99"]), true],
  ["peak RSS (whole broadcast run)", "MiB", "broadcast", (r) => r.rss_peak / 1048576, true],
  ["unicast events/s, 1 event per POST, keep-alive", "/s", "unicast", (r) => get(r, ["phases", "unicast", "deliveries_per_s"]), false],
  ["reconnect storm: all resynced after", "ms", "storm", (r) => get(r, ["phases", "storm", "resync_ms", "max"]), true],
  ["reconnect storm: resync p50", "ms", "storm", (r) => get(r, ["phases", "storm", "resync_ms", "p50"]), true],
  ["10% slow: readers' p99 (2 ev/s on schedule)", "ms", "slow", (r) => get(r, ["phases", "slow", "latency_ms", "p99"]), true],
  ["10% slow: readers' p99 / own p99 before", "×", "slow", (r) => r.slow_p99_ratio, true],
  ["10% slow: server RSS growth while they stall", "MiB", "slow", (r) => (get(r, ["phases", "slow", "rss_peak"]) - r.rss_at_stall) / 1048576, true],
  ["10% slow: slow connections cut by the server", "", "slow", (r) => r.slow_cut, null],
];

const LOSS_LABELS = ["broadcast", "unicast", "storm", "slow"];
const fmt = (x, unit) => {
  if (x == null) return "–";
  if (unit === "/s") return Math.round(x).toLocaleString("en-US");
  const a = Math.abs(x);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
  return x.toFixed(digits);
};

const sizes = [...new Set(runs.filter((r) => !r.broken).map((r) => r.connections))].sort((a, b) => a - b);
const summary = { sizes: {}, runs: runs.length, broken: runs.filter((r) => r.broken).map((r) => r.file) };
let text = "";
for (const size of sizes) {
  const loads = runs
    .filter((r) => r.connections === size && r.loadavg_start)
    .map((r) => Number(r.loadavg_start.split(" ")[0]));
  // Runs per server in the group run most at this size (each group's runs are one set).
  const reps = Math.max(...SERVERS.flatMap((s) => LOSS_LABELS.map((g) => pick(size, g, s).length)), 0);
  text += `\n### ${size.toLocaleString("en-US")} connections\n\n`;
  text += `Median of ${reps} run(s) per figure; 1-minute load average at the start of each run: ${
    loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : "?"
  }.\n\n`;
  text += "| figure | eventwire | nchan | node | eventwire/nchan |\n|---|---|---|---|---|\n";
  const table = {};
  for (const [label, unit, group, read] of FIGURES) {
    const values = SERVERS.map((s) => median(pick(size, group, s).map(read)));
    if (values.every((v) => v == null)) continue;
    const [hub, nchan] = values;
    const ratio = hub != null && nchan != null && nchan !== 0 ? hub / nchan : null;
    table[label] = { unit, eventwire: values[0], nchan: values[1], node: values[2], ratio };
    const u = unit && unit !== "×" ? ` (${unit})` : unit === "×" ? " (×)" : "";
    text += `| ${label}${u} | ${values.map((v) => fmt(v, unit)).join(" | ")} | ${
      ratio == null ? "–" : `${ratio.toFixed(2)}×`
    } |\n`;
  }
  // Lost and duplicated events over every run of this size (each must be 0).
  const lost = SERVERS.map((s) =>
    LOSS_LABELS.flatMap((l) => pick(size, l, s)).reduce(
      (sum, r) => sum + Object.values(r.phases ?? {}).reduce((a, p) => a + (p.lost ?? 0) + (p.duplicates ?? 0), 0),
      0,
    ),
  );
  const failedConnects = SERVERS.map((s) =>
    LOSS_LABELS.flatMap((l) => pick(size, l, s)).reduce((sum, r) => sum + (r.connect_failed ?? 0), 0),
  );
  table["lost + duplicated events, all runs"] = { eventwire: lost[0], nchan: lost[1], node: lost[2] };
  text += `| lost + duplicated events, all runs | ${lost.join(" | ")} | |\n`;
  text += `| failed connects, all runs | ${failedConnects.join(" | ")} | |\n`;

  const one = median(pick(size, "one-core", "eventwire").map((r) => get(r, ["phases", "burst", "deliveries_per_s"])));
  const two = median(pick(size, "two-cores", "eventwire").map((r) => get(r, ["phases", "burst", "deliveries_per_s"])));
  if (one != null && two != null) {
    table["both cores / one core (eventwire burst)"] = { one, two, ratio: two / one };
    text += `\neventwire burst on two cores (tool sharing them) ${fmt(two, "/s")}/s against ${fmt(one, "/s")}/s on one: **${(two / one).toFixed(2)}×**.\n`;
  }
  const redis = pick(size, "redis", "eventwire");
  if (redis.length) {
    const row = (phase) => median(redis.map((r) => get(r, ["phases", phase, "latency_ms", "p99"])));
    const mem = (phase) => median(pick(size, "broadcast", "eventwire").map((r) => get(r, ["phases", phase, "latency_ms", "p99"])));
    text += "\n| eventwire p99 (ms) | in memory | through Redis |\n|---|---|---|\n";
    const rows = {};
    for (const [phase, label] of [
      ["lat2c", "2 ev/s, publisher waits"],
      ["lat2o", "2 ev/s, on schedule"],
      ["lat10c", "10 ev/s, publisher waits"],
      ["lat10o", "10 ev/s, on schedule"],
    ]) {
      rows[phase] = { memory: mem(phase), redis: row(phase) };
      text += `| ${label} | ${fmt(mem(phase), "ms")} | ${fmt(row(phase), "ms")} |\n`;
    }
    table["redis p99"] = rows;
  }
  summary.sizes[size] = table;
}
const failedRuns = runs.filter((r) => r.broken || r.ok === false);
if (failedRuns.length) {
  text += `\nRuns that failed a check: ${failedRuns
    .map((r) => `${r.file}${r.failures ? ` (${r.failures.join("; ")})` : ""}`)
    .join(", ")}\n`;
}
process.stdout.write(text);
fs.writeFileSync(path.join(dir, "summary.json"), JSON.stringify(summary, null, 2));

if (chartFile) {
  fs.writeFileSync(chartFile, chart(summary));
  console.error(`chart written to ${chartFile}`);
}

/** Three panels against connections, one line per server: p99 latency at 2 and at 10 ev/s on
 * schedule (log scale: a saturated server's p99 is seconds), idle memory per connection. */
function chart(summary) {
  const COLORS = { eventwire: "#d9480f", nchan: "#1971c2", node: "#2f9e44" };
  const NAMES = { eventwire: "eventwire hub", nchan: "nchan", node: "node:http" };
  const panels = [
    ["p99 latency, 2 ev/s on schedule (ms)", "p99 at 2 ev/s, on schedule", true],
    ["p99 latency, 10 ev/s on schedule (ms)", "p99 at 10 ev/s, on schedule", true],
    ["idle memory per connection (KB)", "idle memory per connection", false],
  ];
  const W = 330, H = 260, M = { l: 56, r: 30, t: 34, b: 44 };
  const xs = Object.keys(summary.sizes).map(Number);
  const xMax = Math.max(...xs, 1);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W * panels.length}" height="${H + 30}" font-family="sans-serif" font-size="12">\n`;
  svg += `<rect width="100%" height="100%" fill="white"/>\n`;
  panels.forEach(([title, figure, log], i) => {
    const ox = i * W;
    const points = {};
    const all = [];
    for (const s of SERVERS) {
      points[s] = xs
        .map((x) => [x, summary.sizes[x]?.[figure]?.[s]])
        .filter(([, y]) => typeof y === "number" && (!log || y > 0));
      for (const [, y] of points[s]) all.push(y);
    }
    let ticks, scale;
    if (log) {
      const lo = Math.floor(Math.log10(Math.min(...all, 10)));
      const hi = Math.ceil(Math.log10(Math.max(...all, 10)));
      ticks = [];
      for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
      scale = (y) => (Math.log10(y) - lo) / Math.max(hi - lo, 1);
    } else {
      const yMax = niceCeil(Math.max(...all, 1));
      ticks = [0, 1, 2, 3, 4, 5].map((k) => (yMax * k) / 5);
      scale = (y) => y / yMax;
    }
    const px = (x) => ox + M.l + (x / xMax) * (W - M.l - M.r);
    const py = (y) => M.t + (1 - scale(y)) * (H - M.t - M.b);
    const y0 = M.t + (H - M.t - M.b);
    svg += `<text x="${ox + W / 2}" y="18" text-anchor="middle" font-weight="bold">${title}</text>\n`;
    for (const t of ticks) {
      svg += `<line x1="${px(0)}" y1="${py(t)}" x2="${px(xMax)}" y2="${py(t)}" stroke="#eee"/>`;
      svg += `<text x="${px(0) - 6}" y="${py(t) + 4}" text-anchor="end">${t.toLocaleString("en-US")}</text>\n`;
    }
    svg += `<line x1="${px(0)}" y1="${y0}" x2="${px(xMax)}" y2="${y0}" stroke="#333"/>\n`;
    svg += `<line x1="${px(0)}" y1="${y0}" x2="${px(0)}" y2="${M.t}" stroke="#333"/>\n`;
    for (const x of xs) {
      svg += `<text x="${px(x)}" y="${y0 + 16}" text-anchor="middle">${x.toLocaleString("en-US")}</text>\n`;
    }
    svg += `<text x="${ox + M.l + (W - M.l - M.r) / 2}" y="${H - 6}" text-anchor="middle">connections</text>\n`;
    for (const s of SERVERS) {
      const pts = points[s];
      if (!pts.length) continue;
      svg += `<polyline fill="none" stroke="${COLORS[s]}" stroke-width="2" points="${pts
        .map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`)
        .join(" ")}"/>\n`;
      for (const [x, y] of pts) {
        svg += `<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${COLORS[s]}"/>\n`;
      }
    }
  });
  SERVERS.forEach((s, i) => {
    const x = 70 + i * 160;
    svg += `<rect x="${x}" y="${H + 8}" width="14" height="4" fill="${COLORS[s]}"/>`;
    svg += `<text x="${x + 20}" y="${H + 14}">${NAMES[s]}</text>\n`;
  });
  return svg + "</svg>\n";
}

function niceCeil(y) {
  const p = 10 ** Math.floor(Math.log10(y));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= y) return m * p;
  return 10 * p;
}
