// Publish latency, in memory against Redis: single-event `POST /publish` calls sent one after
// another over one keep-alive connection, timed from the first byte written to the last byte
// of the answer read. Runs the hubs given in turn, interleaved, so both see the same machine.
//
//   node tests/cluster/publish-latency.mjs [--count 2000] [--rounds 3] [--warmup 200] NAME=URL...
//   node tests/cluster/publish-latency.mjs memory=http://127.0.0.1:8081 redis=http://127.0.0.1:8082
//
// A plain socket, not fetch: the client's own cost stays small and the same for every hub.
// Every loop is bounded; a publish that does not answer 200 within 10 s stops the run.
import net from "node:net";

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const [value] = args.splice(i, 2).slice(1);
  return Number(value);
};
const COUNT = opt("count", 2000);
const ROUNDS = opt("rounds", 3);
const WARMUP = opt("warmup", 200);
const hubs = args.map((arg) => {
  const [name, url] = arg.split("=");
  const { hostname, port } = new URL(url);
  return { name, host: hostname, port: Number(port), samples: [] };
});
if (hubs.length === 0) {
  console.error("usage: publish-latency.mjs [--count N] [--rounds N] [--warmup N] NAME=URL...");
  process.exit(2);
}

/** One keep-alive connection; `request(bytes)` resolves with the answer's status and body. */
function connect({ host, port }) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host, () => resolve(client));
    socket.setNoDelay(true);
    socket.on("error", reject);
    let buffer = Buffer.alloc(0);
    let waiting = null;
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0 || !waiting) return;
      const head = buffer.subarray(0, end).toString("latin1");
      const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? NaN);
      if (!Number.isFinite(length)) return waiting.reject(new Error(`no content-length: ${head}`));
      if (buffer.length < end + 4 + length) return;
      const body = buffer.subarray(end + 4, end + 4 + length).toString();
      buffer = buffer.subarray(end + 4 + length);
      const status = Number(head.split(" ")[1]);
      const done = waiting;
      waiting = null;
      done.resolve({ status, body });
    });
    const client = {
      request(bytes) {
        return new Promise((res, rej) => {
          const timer = setTimeout(() => rej(new Error("no answer within 10 s")), 10_000);
          waiting = {
            resolve: (v) => (clearTimeout(timer), res(v)),
            reject: (e) => (clearTimeout(timer), rej(e)),
          };
          socket.write(bytes);
        });
      },
      close: () => socket.destroy(),
    };
  });
}

function publishRequest(host, port, n) {
  const body = JSON.stringify({ event: "latency", data: { n, message: "x".repeat(64) } });
  return Buffer.from(
    `POST /publish HTTP/1.1\r\nhost: ${host}:${port}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

async function run(hub, count, record) {
  const client = await connect(hub);
  try {
    for (let i = 0; i < count; i += 1) {
      const bytes = publishRequest(hub.host, hub.port, i);
      const start = process.hrtime.bigint();
      const { status, body } = await client.request(bytes);
      const micros = Number(process.hrtime.bigint() - start) / 1000;
      if (status !== 200) throw new Error(`${hub.name}: ${status} ${body}`);
      if (record) record.push(micros);
    }
  } finally {
    client.close();
  }
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const ms = (us) => (us / 1000).toFixed(3);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return `n=${sorted.length} p50=${ms(quantile(sorted, 0.5))} ms p90=${ms(quantile(sorted, 0.9))} ms ` +
    `p99=${ms(quantile(sorted, 0.99))} ms max=${ms(sorted.at(-1))} ms mean=${ms(mean)} ms`;
}

for (const hub of hubs) await run(hub, WARMUP, null);
for (let round = 1; round <= ROUNDS; round += 1) {
  for (const hub of hubs) {
    const samples = [];
    await run(hub, COUNT, samples);
    hub.samples.push(...samples);
    console.log(`round ${round} ${hub.name.padEnd(8)} ${summary(samples)}`);
  }
}
for (const hub of hubs) console.log(`all     ${hub.name.padEnd(8)} ${summary(hub.samples)}`);
