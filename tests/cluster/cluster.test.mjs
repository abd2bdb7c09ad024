// End-to-end through scripts/cluster.sh: Redis, three hub instances and nginx in front. The
// demo client page, opened through nginx in headless Chromium, receives what is published
// through nginx (so through any instance); the instance its stream is on is killed with
// SIGKILL; the page reconnects through nginx to another instance and, in the end, has shown
// every event exactly once and in publish order.
//
//   EVENTWIRE_HUB_BIN=target/debug/eventwire node --test tests/cluster/cluster.test.mjs
//
// Needs npm/ built (scripts/build-npm.sh). playwright-core comes from .tools/npm. cluster.sh
// installs redis-server and nginx-light if they are missing. No step waits for a fixed time:
// each waits for a state, with generous bounds for a loaded 2-core machine.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(ROOT, ".tools/npm/"));
const { chromium } = require("playwright-core");

const HUB_BIN = process.env.EVENTWIRE_HUB_BIN ?? path.join(ROOT, "target/debug/eventwire");
const START_MS = 300_000; // cluster.sh may apt-get install nginx-light first
const WAIT_MS = 30_000;

let cluster; // the cluster.sh process
let base; // nginx
let runDir;
let redisPid;
const hubs = new Map(); // instance name -> { addr, pid }
let browser;

/** A free port for nginx to listen on. */
function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts scripts/cluster.sh and reads the addresses and pids it prints. */
async function startCluster() {
  const port = await freePort();
  const proc = spawn("bash", [path.join(ROOT, "scripts/cluster.sh"), "--retry-ms", "1000"], {
    cwd: ROOT,
    env: { ...process.env, EVENTWIRE_LISTEN: `127.0.0.1:${port}`, EVENTWIRE_HUB_BIN: HUB_BIN },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  proc.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const lines = readline.createInterface({ input: proc.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cluster.sh did not start: ${stderr}`)), START_MS);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`cluster.sh exited with ${code}: ${stderr}`));
    });
    lines.on("line", (line) => {
      let m;
      if ((m = line.match(/^cluster: redis \S+ \(pid (\d+)\)$/))) {
        redisPid = Number(m[1]);
      } else if ((m = line.match(/^cluster: (hub-\d+) http:\/\/(\S+) \(pid (\d+)\)$/))) {
        hubs.set(m[1], { addr: m[2], pid: Number(m[3]) });
      } else if ((m = line.match(/^cluster: nginx (http:\/\/\S+) \(pid \d+\)$/))) {
        base = m[1];
      } else if ((m = line.match(/^cluster: logs in (\S+)/))) {
        runDir = m[1];
      } else if (line.startsWith("cluster: open ")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return proc;
}

/** Stops cluster.sh as Ctrl-C would (its trap stops every piece) and waits for it. */
async function stopCluster() {
  if (cluster.exitCode !== null || cluster.signalCode !== null) return cluster.exitCode;
  const exited = new Promise((resolve) => cluster.once("exit", (code, signal) => resolve(code ?? signal)));
  cluster.kill("SIGTERM");
  return exited;
}

async function open(urlPath) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  const page = await context.newPage();
  const record = { page, context, console: [], pageErrors: [] };
  page.on("console", (msg) => msg.type() === "error" && record.console.push(msg.text()));
  page.on("pageerror", (err) => record.pageErrors.push(String(err)));
  await page.goto(`${base}${urlPath}`);
  return record;
}

async function waitState(page, state) {
  await page.waitForFunction(
    (want) => document.getElementById("status")?.dataset.state === want,
    state,
    { timeout: WAIT_MS },
  );
}

/**
 * Publishes through nginx. The idempotency key makes a retry safe: a publish whose answer was
 * lost (an instance killed under it: nginx answers 502) is sent again with the same `id`, as
 * docs/PROTOCOL.md tells publishers to do.
 */
async function publish(body) {
  let last = "";
  for (let attempt = 0; attempt < 10; attempt += 1) {
    const res = await fetch(`${base}/publish`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    last = `${res.status} ${await res.text()}`;
    if (res.status === 200) return JSON.parse(last.slice(4));
    if (res.status !== 502 && res.status !== 503) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`publish ${JSON.stringify(body)}: ${last}`);
}

async function getJson(urlPath) {
  const res = await fetch(`${base}${urlPath}`);
  assert.equal(res.status, 200, urlPath);
  return res.json();
}

/**
 * The one instance that lists `clientId` in /clients (asked through nginx, so of any
 * instance), once it satisfies `accept`. Instances report every 2 s and a killed instance's
 * report lingers up to 6 s, so this polls.
 */
async function instanceOf(clientId, accept = () => true) {
  const deadline = Date.now() + WAIT_MS;
  let seen = [];
  while (Date.now() < deadline) {
    const { clients } = await getJson("/clients");
    seen = clients.filter((c) => c.clientId === clientId).map((c) => c.instance);
    if (seen.length === 1 && accept(seen[0])) return seen[0];
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.fail(`${clientId} never listed on one acceptable instance (last seen on ${JSON.stringify(seen)})`);
}

/** The feed's messages, oldest first (the page shows the newest on top). */
async function feedInOrder(page) {
  return (await page.locator("#feed li span").allTextContents()).reverse();
}

async function waitShown(page, message) {
  await page.locator("#feed li span", { hasText: message }).first().waitFor({ timeout: WAIT_MS });
}

function unexpectedConsoleErrors(record) {
  return record.console.filter(
    (text) => !/Failed to load resource|net::ERR_|EventSource|50[23]/.test(text),
  );
}

before(async () => {
  cluster = await startCluster();
  assert.deepEqual([...hubs.keys()].sort(), ["hub-1", "hub-2", "hub-3"]);
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  if (cluster) await stopCluster();
});

test("through nginx, a page whose instance is killed moves to another and sees every event once", async () => {
  const zoe = await open("/client?name=zoe");
  const { page } = zoe;
  await waitState(page, "open");
  const sent = [];
  const publishSome = async (label, count) => {
    for (let i = 1; i <= count; i += 1) {
      const message = `${label}-${i}`;
      await publish({ event: "notification", data: { message }, clientId: "zoe", id: message });
      sent.push(message);
    }
  };

  // Live, whichever instance each publish reaches.
  await publishSome("before", 6);
  await waitShown(page, sent.at(-1));
  assert.deepEqual(await feedInOrder(page), sent);

  const first = await instanceOf("zoe");
  process.kill(hubs.get(first).pid, "SIGKILL");

  // Published while the page's stream is cut or moving: some of these reach the dead
  // instance's port, and nginx passes them to a live one.
  await publishSome("during", 6);
  await page.waitForFunction(
    () => Number(document.getElementById("reconnects").textContent) >= 1,
    null,
    { timeout: WAIT_MS },
  );
  await waitState(page, "open");
  const second = await instanceOf("zoe", (instance) => instance !== first);
  assert.notEqual(second, first);

  await publishSome("after", 6);
  // The last event published arrives after every earlier one (per-target order holds), so
  // once it shows, any duplicate replay would already show too.
  await waitShown(page, sent.at(-1));
  assert.deepEqual(await feedInOrder(page), sent, "every event exactly once, in publish order");
  assert.equal(await page.locator("#received").textContent(), String(sent.length));
  assert.equal(await page.locator("#gap").isVisible(), false, "no gap");

  // The publishes really went through several instances (nginx's round robin).
  const upstreams = new Set(
    fs.readFileSync(path.join(runDir, "nginx/access.log"), "utf8")
      .split("\n")
      .filter((line) => line.includes('"POST /publish ') && line.includes(" 200 "))
      .map((line) => line.match(/upstream=(.*) rt=/)[1].split(",").at(-1).trim()),
  );
  assert.ok(upstreams.size >= 2, `publishes served by ${[...upstreams]}`);

  assert.deepEqual(zoe.pageErrors, []);
  assert.deepEqual(unexpectedConsoleErrors(zoe), []);
});

test("the admin page, through nginx, shows which instance each client is on", async () => {
  const yan = await open("/client?name=yan");
  await waitState(yan.page, "open");
  const instance = await instanceOf("yan");
  const admin = await open("/admin");
  // Instances report every 2 s: the row appears with its instance within a few reports.
  const row = admin.page.locator('#clients tr[data-client-id="yan"]');
  await row.waitFor({ timeout: WAIT_MS });
  await admin.page.locator("#th-instance").waitFor({ state: "visible", timeout: WAIT_MS });
  await admin.page.waitForFunction(
    (want) => document.querySelector('#clients tr[data-client-id="yan"]')?.textContent.includes(want),
    instance,
    { timeout: WAIT_MS },
  );
  // The dashboard names the instance its own figures come from (its next stats event).
  await admin.page.waitForFunction(
    () => /^instance hub-\d$/.test(document.getElementById("instance")?.textContent ?? ""),
    null,
    { timeout: WAIT_MS },
  );
  assert.deepEqual(admin.pageErrors, []);
});

test("stopping cluster.sh stops nginx, every instance and Redis", async () => {
  const code = await stopCluster();
  assert.ok(code === 143 || code === 0, `cluster.sh exited with ${code}`);
  for (const pid of [redisPid, ...[...hubs.values()].map((hub) => hub.pid)]) {
    assert.throws(() => process.kill(pid, 0), /ESRCH/, `pid ${pid} is gone`);
  }
  const port = Number(new URL(base).port);
  await assert.rejects(
    new Promise((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve();
      });
      socket.on("error", reject);
    }),
    /ECONNREFUSED/,
    "nginx no longer listens",
  );
  assert.equal(fs.existsSync(runDir), false, "the run directory is removed");
});
