// A plain node:http Server-Sent Events hub: the "what you would write yourself" rival in
// docs/BENCHMARKS.md. No dependencies. It speaks the same publish shape as the eventwire hub
// so the load tool treats both alike:
//
//   GET  /events?clientId=ID        text/event-stream; Last-Event-ID replays from a buffer
//   POST /publish {"event","data"[,"clientId"]}  -> {"ok":true,"id":"N","delivered":n}
//
// Each event is encoded once and the same string written to every recipient. A recipient
// whose unwritten output passes --max-buffered bytes is cut (its socket destroyed), so a
// reader that stops reading cannot grow the process without bound. The last --buffer events
// are kept for replay. A comment heartbeat goes to every stream every --heartbeat-secs.
//
// Usage: node tests/bench/node-sse.mjs [--port 0] [--buffer 1000] [--max-buffered 1048576]
//        [--heartbeat-secs 15]   (prints "listening on http://127.0.0.1:PORT")

import http from "node:http";

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const port = flag("port", 0);
const bufferSize = flag("buffer", 1000);
const maxBuffered = flag("max-buffered", 1 << 20);
const heartbeatSecs = flag("heartbeat-secs", 15);

/** Every open stream; and the streams of each client id. */
const streams = new Set();
const byClient = new Map();
/** The replay buffer: {id, clientId (or null for everyone), frame}, oldest first. */
const history = [];
let lastId = 0;
let cut = 0;

function send(stream, frame) {
  if (stream.res.writableLength > maxBuffered) {
    cut += 1;
    stream.res.destroy();
    return false;
  }
  stream.res.write(frame);
  return true;
}

function subscribe(req, res, url) {
  const clientId = url.searchParams.get("clientId") ?? `anon${lastId}-${streams.size}`;
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  const stream = { res, clientId };
  streams.add(stream);
  let mine = byClient.get(clientId);
  if (!mine) byClient.set(clientId, (mine = new Set()));
  mine.add(stream);
  res.on("close", () => {
    streams.delete(stream);
    mine.delete(stream);
    if (mine.size === 0) byClient.delete(clientId);
  });
  let text = "retry: 2000\n\n";
  const header = req.headers["last-event-id"];
  if (header !== undefined && /^\d+$/.test(header)) {
    const after = Number(header);
    for (const e of history) {
      if (e.id > after && (e.clientId === null || e.clientId === clientId)) text += e.frame;
    }
  }
  res.write(text);
}

function publish(req, res) {
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size > 65536) req.destroy();
    else chunks.push(c);
  });
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return answer(res, 400, { error: { code: "invalid_json" } });
    }
    if (typeof body?.event !== "string" || /[\r\n]/.test(body.event) || body.event === "") {
      return answer(res, 400, { error: { code: "invalid_event" } });
    }
    const id = ++lastId;
    const data = JSON.stringify(body.data ?? null);
    const frame = `id: ${id}\nevent: ${body.event}\ndata: ${data}\n\n`;
    const clientId = typeof body.clientId === "string" ? body.clientId : null;
    history.push({ id, clientId, frame });
    if (history.length > bufferSize) history.shift();
    let delivered = 0;
    const targets = clientId === null ? streams : (byClient.get(clientId) ?? []);
    for (const stream of targets) {
      if (send(stream, frame)) delivered += 1;
    }
    answer(res, 200, { ok: true, id: String(id), delivered });
  });
}

function answer(res, status, value) {
  const text = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/events") return subscribe(req, res, url);
  if (req.method === "POST" && url.pathname === "/publish") return publish(req, res);
  if (req.method === "GET" && url.pathname === "/stats") {
    return answer(res, 200, { streams: streams.size, lastId, cut });
  }
  answer(res, 404, { error: { code: "not_found" } });
});
// Streams live for the whole run; publishers keep their connections between phases.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.requestTimeout = 0;

if (heartbeatSecs > 0) {
  setInterval(() => {
    for (const stream of streams) send(stream, ": heartbeat\n\n");
  }, heartbeatSecs * 1000).unref();
}

server.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
