// End-to-end: the demo pages as a person uses them, in headless Chromium against the real hub
// binary serving them (the same flags as scripts/demo.sh). Screenshots go to tests/artifacts/.
//
//   EVENTWIRE_HUB_BIN=target/debug/eventwire node --test tests/e2e/demo.test.mjs
//
// Needs npm/ built (scripts/build-npm.sh). playwright-core comes from .tools/npm.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(ROOT, ".tools/npm/"));
const { chromium } = require("playwright-core");

const HUB_BIN = process.env.EVENTWIRE_HUB_BIN ?? path.join(ROOT, "target/debug/eventwire");
const ARTIFACTS = path.join(ROOT, "tests/artifacts");
const WAIT_MS = 15_000;

let port;
let base;
let hub;
let browser;
const pages = []; // every page opened, for the console check

/** A free port, so the hub can be restarted on the same address. */
function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startHub(auth = ["--dev"], listenPort = port) {
  const proc = spawn(
    HUB_BIN,
    [...auth, "--listen", `127.0.0.1:${listenPort}`, "--demo", path.join(ROOT, "demo"),
      "--npm-dir", path.join(ROOT, "npm"), "--monitor-secs", "1", "--retry-ms", "1000"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  proc.stderr.resume();
  await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`hub did not start: ${out}`)), WAIT_MS);
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      if (out.includes("listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on("exit", (code) => reject(new Error(`hub exited with ${code}: ${out}`)));
  });
  return proc;
}

async function stopHub() {
  const exited = new Promise((resolve) => hub.once("exit", resolve));
  hub.kill("SIGTERM");
  await exited;
}

async function open(urlPath) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  const page = await context.newPage();
  const record = { page, context, console: [], pageErrors: [] };
  page.on("console", (msg) => msg.type() === "error" && record.console.push(msg.text()));
  page.on("pageerror", (err) => record.pageErrors.push(String(err)));
  pages.push(record);
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

async function publish(body) {
  const res = await fetch(`${base}/publish`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

async function feed(page) {
  return page.locator("#feed li span").allTextContents();
}

/** Console errors that are not the expected refusals while the hub is down or a client is paused. */
function unexpectedConsoleErrors(record) {
  return record.console.filter(
    (text) => !/Failed to load resource|net::ERR_CONNECTION_REFUSED|EventSource|503/.test(text),
  );
}

before(async () => {
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  hub = await startHub();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  if (hub && hub.exitCode === null) await stopHub();
});

test("the admin sends to one client and the client shows it within a second", async () => {
  const alice = await open("/client?name=alice");
  await waitState(alice.page, "open");
  const admin = await open("/admin");
  await waitState(admin.page, "open");
  // Presence arrives by event: alice is listed without any polling.
  await admin.page.locator('#clients tr[data-client-id="alice"]').waitFor({ timeout: WAIT_MS });

  await admin.page.selectOption("#target", "clientId");
  await admin.page.fill("#target-value", "alice");
  await admin.page.fill("#message", "Your build finished");
  const sent = Date.now();
  await admin.page.click("#send");
  await alice.page.locator("#feed li span", { hasText: "Your build finished" }).waitFor({ timeout: 1000 });
  const took = Date.now() - sent;
  assert.ok(took < 1000, `shown after ${took} ms`);
  await admin.page.locator("#send-result", { hasText: "Delivered to 1 connection" }).waitFor({ timeout: WAIT_MS });

  // The demo job drives alice's progress bar to 100 %.
  await admin.page.fill("#job-client", "alice");
  await admin.page.click("#start-job");
  await alice.page.waitForFunction(() => document.getElementById("percent").textContent === "50%", null, { timeout: WAIT_MS });
  await alice.page.screenshot({ path: path.join(ARTIFACTS, "client.png") });
  await alice.page.waitForFunction(() => document.getElementById("percent").textContent === "100%", null, { timeout: WAIT_MS });

  // Live stats reached the dashboard.
  await admin.page.waitForFunction(() => document.getElementById("s-mem").textContent.endsWith("MB"), null, { timeout: WAIT_MS });
  assert.match(await admin.page.locator("#s-connections").textContent(), /^\d+$/);
  await admin.page.screenshot({ path: path.join(ARTIFACTS, "admin.png"), fullPage: true });

  for (const record of [alice, admin]) {
    assert.deepEqual(record.pageErrors, []);
    assert.deepEqual(record.console, [], "no console errors");
  }
});

test("without ?name= the client page shows only the join form; joining goes live", async () => {
  const record = await open("/client");
  const { page } = record;
  await page.locator("#join-form").waitFor({ timeout: WAIT_MS });
  // Nothing of the connection card may show before joining: no status pill, no working buttons.
  for (const id of ["#app-view", "#status", "#reconnect", "#drop", "#feed"]) {
    assert.equal(await page.locator(id).isVisible(), false, `${id} is hidden before joining`);
  }
  assert.equal(await page.locator("#join-view").isVisible(), true);
  await page.screenshot({ path: path.join(ARTIFACTS, "client-join.png") });

  await page.fill("#name", "frank");
  await page.click("#join-form button");
  await waitState(page, "open");
  assert.equal(await page.locator("#join-view").isVisible(), false, "the join form goes away");
  assert.equal(await page.locator("#drop").isVisible(), true);
  assert.equal(new URL(page.url()).searchParams.get("name"), "frank");
  await publish({ event: "notification", data: { message: "hello frank" }, clientId: "frank" });
  await page.locator("#feed li span", { hasText: "hello frank" }).waitFor({ timeout: WAIT_MS });
  assert.deepEqual(record.pageErrors, []);
  assert.deepEqual(record.console, []);
});

/** How the demo job's button looks: its colours as drawn over the card (opacity applied). */
async function buttonLook(page) {
  const look = await page.locator("#start-job").evaluate((button) => {
    const style = getComputedStyle(button);
    return {
      disabled: button.disabled,
      label: button.textContent,
      background: style.backgroundColor,
      color: style.color,
      opacity: Number(style.opacity),
      card: getComputedStyle(button.closest(".card")).backgroundColor,
    };
  });
  const rgb = (css) => css.match(/[\d.]+/g).map(Number);
  const card = rgb(look.card);
  const over = (css) => {
    const [r, g, b, a = 1] = rgb(css);
    return [r, g, b].map((c, i) => look.opacity * a * c + (1 - look.opacity * a) * card[i]);
  };
  return { ...look, drawn: { background: over(look.background), color: over(look.color) }, cardRgb: card };
}

/** WCAG 2 contrast ratio of two sRGB colours (0-255 channels). */
function contrast(a, b) {
  const lum = ([r, g, b]) => {
    const lin = (c) => (c / 255 <= 0.03928 ? c / 255 / 12.92 : ((c / 255 + 0.055) / 1.055) ** 2.4);
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

test("the demo job's button stays a button while the job runs, and comes back after", async () => {
  const gina = await open("/client?name=gina");
  await waitState(gina.page, "open");
  const admin = await open("/admin");
  await waitState(admin.page, "open");
  const before = await buttonLook(admin.page);
  assert.equal(before.disabled, false);

  await admin.page.fill("#job-client", "gina");
  await admin.page.click("#start-job");
  await admin.page.waitForFunction(() => document.getElementById("start-job").disabled, null, { timeout: WAIT_MS });
  const running = await buttonLook(admin.page);
  await admin.page.locator("#job-form").screenshot({ path: path.join(ARTIFACTS, "admin-job-running.png") });
  // While disabled, its box stands out from the card at least as much as the enabled button's
  // does, and its label stays readable (3:1, WCAG's minimum for a control). Half opacity on the
  // pale button failed both: the button read as plain text.
  assert.ok(
    contrast(running.drawn.background, running.cardRgb) >= contrast(before.drawn.background, before.cardRgb),
    `running: ${JSON.stringify(running)}, before: ${JSON.stringify(before)}`,
  );
  assert.ok(contrast(running.drawn.color, running.drawn.background) >= 3, JSON.stringify(running));

  await gina.page.waitForFunction(() => document.getElementById("percent").textContent === "100%", null, { timeout: WAIT_MS });
  await admin.page.locator("#job-result", { hasText: "done" }).waitFor({ timeout: WAIT_MS });
  const after = await buttonLook(admin.page);
  assert.deepEqual(
    { disabled: after.disabled, label: after.label, drawn: after.drawn },
    { disabled: false, label: before.label, drawn: before.drawn },
    "after the job the button looks as it did before the click",
  );
  for (const record of [gina, admin]) {
    assert.deepEqual(record.pageErrors, []);
    assert.deepEqual(record.console, []);
  }
});

test("a broadcast reaches two clients", async () => {
  const bob = await open("/client?name=bob");
  const carol = await open("/client?name=carol");
  await waitState(bob.page, "open");
  await waitState(carol.page, "open");
  const admin = await open("/admin");
  await waitState(admin.page, "open");
  await admin.page.locator('#clients tr[data-client-id="carol"]').waitFor({ timeout: WAIT_MS });
  await admin.page.selectOption("#target", "all");
  await admin.page.fill("#message", "Maintenance at noon");
  await admin.page.click("#send");
  for (const record of [bob, carol]) {
    await record.page.locator("#feed li span", { hasText: "Maintenance at noon" }).waitFor({ timeout: WAIT_MS });
    assert.deepEqual(record.pageErrors, []);
    assert.deepEqual(record.console, []);
  }
});

test("dropping the connection shows the backoff, then replays what was published meanwhile", async () => {
  const dave = await open("/client?name=dave");
  await waitState(dave.page, "open");
  await dave.page.click("#drop");
  await waitState(dave.page, "reconnecting");
  assert.match(await dave.page.locator("#status").textContent(), /reconnecting in [\d.]+ s \(attempt \d+ of 10\)/);
  for (const message of ["one", "two", "three"]) {
    await publish({ event: "notification", data: { message }, clientId: "dave" });
  }
  await waitState(dave.page, "open");
  await dave.page.locator("#replay", { hasText: "3 events came back from replay." }).waitFor({ timeout: WAIT_MS });
  assert.deepEqual(await feed(dave.page), ["three", "two", "one"], "each exactly once, newest first");
  assert.deepEqual(dave.pageErrors, []);
  assert.deepEqual(unexpectedConsoleErrors(dave), []);
});

test("after a hub restart the client comes back on its own", async () => {
  const erin = await open("/client?name=erin");
  await waitState(erin.page, "open");
  await stopHub();
  await erin.page.waitForFunction(
    () => document.getElementById("status").dataset.state !== "open",
    null,
    { timeout: WAIT_MS },
  );
  hub = await startHub();
  await waitState(erin.page, "open");
  await publish({ event: "notification", data: { message: "back again" }, clientId: "erin" });
  await erin.page.locator("#feed li span", { hasText: "back again" }).waitFor({ timeout: WAIT_MS });
  assert.deepEqual(erin.pageErrors, []);
  assert.deepEqual(unexpectedConsoleErrors(erin), []);
});

/** An HS256 JWT, signed with Node's crypto (the hub verifies it with jsonwebtoken). */
function jwt(claims, secret) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${crypto.createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("with auth on, the admin page asks for a token and then goes live", async () => {
  const secret = "e2e-secret-0123456789abcdef0123456789";
  const authPort = await freePort();
  const authHub = await startHub(["--jwt-secret", secret], authPort);
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    await page.goto(`http://127.0.0.1:${authPort}/admin`);
    await page.locator("#token-dialog[open]").waitFor({ timeout: WAIT_MS });
    // A token without the admin role is refused, and the page says why.
    await page.fill("#token", jwt({ sub: "mallory", exp: Math.floor(Date.now() / 1000) + 600 }, secret));
    await page.click("#token-form button");
    await page.locator("#token-error", { hasText: "admin role" }).waitFor({ timeout: WAIT_MS });
    await page.fill("#token", jwt({ sub: "ops", role: "admin", exp: Math.floor(Date.now() / 1000) + 600 }, secret));
    await page.click("#token-form button");
    await waitState(page, "open");
    await page.waitForFunction(() => document.getElementById("s-mem").textContent.endsWith("MB"), null, { timeout: WAIT_MS });
    assert.deepEqual(pageErrors, []);
    await context.close();
  } finally {
    const exited = new Promise((resolve) => authHub.once("exit", resolve));
    authHub.kill("SIGTERM");
    await exited;
  }
});

test("no page logged a script error or an unexpected console error", () => {
  assert.ok(pages.length >= 6);
  for (const record of pages) {
    assert.deepEqual(record.pageErrors, [], record.page.url());
    assert.deepEqual(unexpectedConsoleErrors(record), [], record.page.url());
  }
});
