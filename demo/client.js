// The client page: joins as a client id, shows the connection live, notifications, progress.
// Uses the repository's npm package, served by the hub at /vendor/eventwire/.
import { createClient } from "/vendor/eventwire/dist/index.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const BACKOFF = { initialDelayMs: 1000, factor: 2, maxDelayMs: 8000, maxAttempts: 10, jitter: 0.3 };

let client = null;
let received = 0;
let reconnects = 0;
let opened = false;
let countdown = null;

function setStatus(kind, text) {
  const el = $("status");
  el.className = `pill ${kind}`;
  el.textContent = text;
  el.dataset.state = kind;
}

function stopCountdown() {
  clearInterval(countdown);
  countdown = null;
}

function showReconnecting(attempt, delayMs) {
  stopCountdown();
  const due = Date.now() + delayMs;
  const tick = () => {
    const secs = Math.max(0, (due - Date.now()) / 1000);
    setStatus("reconnecting", `reconnecting in ${secs.toFixed(1)} s (attempt ${attempt} of ${BACKOFF.maxAttempts})`);
  };
  tick();
  countdown = setInterval(tick, 100);
}

function time() {
  return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function addNotification(text, replayed) {
  const feed = $("feed");
  feed.querySelector(".empty")?.remove();
  const li = document.createElement("li");
  if (replayed) li.className = "replayed";
  const span = document.createElement("span");
  span.textContent = text;
  const at = document.createElement("time");
  at.textContent = replayed ? `${time()} · replayed` : time();
  li.append(span, at);
  feed.prepend(li);
}

function join(name) {
  history.replaceState(null, "", `?name=${encodeURIComponent(name)}`);
  $("join-view").hidden = true;
  $("app-view").hidden = false;
  $("who").textContent = name;
  document.title = `eventwire · ${name}`;

  let replayLeft = 0;
  client = createClient("/events", {
    clientId: name,
    topics: ["demo"],
    token: params.get("token") ?? undefined,
    backoff: BACKOFF,
    // One hub connection for all of this browser's tabs with the same name.
    shareAcrossTabs: true,
  });
  client.on("leader", ({ leader, tabs }) => {
    $("tabs").textContent = `shared by ${tabs} tab${tabs === 1 ? "" : "s"}, this tab ${leader ? "leads" : "follows"}`;
  });
  client.on("statechange", ({ readyState }) => {
    if (readyState === 1) return; // "open" handles it
    if (readyState === 2) {
      stopCountdown();
      setStatus("closed", "closed");
    } else if (!countdown) {
      setStatus("connecting", "connecting");
    }
  });
  client.on("open", () => {
    stopCountdown();
    setStatus("open", "open");
  });
  client.on("reconnecting", ({ attempt, delayMs }) => showReconnecting(attempt, delayMs));
  client.on("error", ({ kind, message }) => {
    if (kind === "retries_exhausted") {
      stopCountdown();
      setStatus("closed", "closed: gave up reconnecting");
    }
    console.info(`eventwire ${kind}: ${message}`);
  });
  client.on("__connected", ({ data }) => {
    if (opened) {
      reconnects += 1;
      $("reconnects").textContent = String(reconnects);
      const n = data.replayCount;
      replayLeft = n;
      $("replay").hidden = false;
      $("replay").textContent =
        n === 1 ? "1 event came back from replay." : `${n} events came back from replay.`;
    }
    opened = true;
  });
  client.on("gap", () => {
    $("gap").hidden = false;
  });
  const counted = () => {
    received += 1;
    $("received").textContent = String(received);
    $("last-id").textContent = client.lastEventId ?? "–";
    const replayed = replayLeft > 0;
    if (replayed) replayLeft -= 1;
    return replayed;
  };
  client.on("notification", ({ data }) => {
    const replayed = counted();
    addNotification(typeof data === "object" && data !== null ? String(data.message) : String(data), replayed);
  });
  client.on("progress", ({ data }) => {
    counted();
    const percent = Math.max(0, Math.min(100, Number(typeof data === "object" && data !== null ? data.percent : data)));
    $("bar").style.width = `${percent}%`;
    $("percent").textContent = `${Math.round(percent)}%`;
    $("job").textContent = percent >= 100 ? "job done" : "job running";
  });
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name").value.trim();
  if (name) join(name);
});

$("reconnect").addEventListener("click", () => client?.reconnect());

$("drop").addEventListener("click", async () => {
  const name = $("who").textContent;
  const headers = { "content-type": "application/json" };
  if (params.get("token")) headers.authorization = `Bearer ${params.get("token")}`;
  const res = await fetch("/clients/drop", {
    method: "POST",
    headers,
    body: JSON.stringify({ clientId: name, forSecs: 4 }),
  });
  if (!res.ok) console.warn("drop failed", res.status, await res.text());
});

const preset = params.get("name");
if (preset && preset.trim()) join(preset.trim());
else $("name").focus();
