// The admin dashboard: live clients and stats pushed by the hub (monitor=1), sending
// notifications, and a demo job that emits progress events. Uses the repository's npm package.
import { createClient } from "/vendor/eventwire/dist/index.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "eventwire-admin-token";
const SELF = "admin-dashboard";
let token = sessionStorage.getItem(TOKEN_KEY) ?? undefined;
const history = { connections: [], eps: [], cpu: [], mem: [] };

function headers(json) {
  const h = json ? { "content-type": "application/json" } : {};
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

async function api(path, body) {
  const res = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(answer.error?.message ?? `HTTP ${res.status}`), { status: res.status });
  return answer;
}

function setStatus(kind, text) {
  const el = $("status");
  el.className = `pill ${kind}`;
  el.textContent = text;
  el.dataset.state = kind;
}

function spark(id, values) {
  const max = Math.max(1e-9, ...values);
  const series = values.length === 1 ? [values[0], values[0]] : values;
  const points = series
    .map((v, i) => `${(i / (series.length - 1)) * 60},${26 - (v / max) * 24}`)
    .join(" ");
  $(id).querySelector("polyline").setAttribute("points", points);
}

function push(series, value) {
  series.push(value);
  if (series.length > 60) series.shift();
}

function renderStats(s) {
  $("s-connections").textContent = String(s.activeConnections);
  // Several instances (Redis): name the one this dashboard's figures come from.
  if (s.instance) {
    $("instance").hidden = false;
    $("instance").textContent = `instance ${s.instance}`;
  }
  $("s-eps").textContent = s.eventsPerSecond.toFixed(1);
  $("s-dropped").textContent = String(s.eventsDropped);
  $("s-slow").textContent = String(s.slowConsumerDisconnects);
  $("s-cpu").textContent = s.cpuPercent == null ? "n/a" : `${s.cpuPercent.toFixed(1)} %`;
  $("s-mem").textContent = s.memoryBytes == null ? "n/a" : `${(s.memoryBytes / 1048576).toFixed(1)} MB`;
  push(history.connections, s.activeConnections);
  push(history.eps, s.eventsPerSecond);
  push(history.cpu, s.cpuPercent ?? 0);
  push(history.mem, s.memoryBytes ?? 0);
  spark("g-connections", history.connections);
  spark("g-eps", history.eps);
  spark("g-cpu", history.cpu);
  spark("g-mem", history.mem);
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function renderClients(clients) {
  const body = $("clients");
  body.replaceChildren();
  const others = clients.filter((c) => c.clientId !== SELF);
  $("client-ids").replaceChildren(
    ...others.map((c) => Object.assign(document.createElement("option"), { value: c.clientId })),
  );
  if (others.length === 0) {
    const td = cell("No client connected yet. Open the client page in another tab.");
    td.className = "empty";
    td.colSpan = 6;
    const tr = document.createElement("tr");
    tr.append(td);
    body.append(tr);
    return;
  }
  const clustered = others.some((c) => c.instance !== undefined);
  $("th-instance").hidden = !clustered;
  for (const c of others) {
    const tr = document.createElement("tr");
    tr.dataset.clientId = c.clientId;
    const topics = document.createElement("td");
    for (const t of c.topics) topics.append(Object.assign(document.createElement("span"), { className: "tag", textContent: t }));
    const actions = document.createElement("td");
    const drop = Object.assign(document.createElement("button"), { className: "btn danger small", textContent: "Drop 4 s", type: "button" });
    drop.addEventListener("click", () => api("/clients/drop", { clientId: c.clientId, forSecs: 4 }).catch(showError));
    actions.append(drop);
    tr.append(
      cell(c.clientId),
      cell(c.userId ?? "–"),
      cell(String(c.connections)),
      topics,
      cell(new Date(c.connectedAt).toLocaleTimeString()),
    );
    // With several hub instances (Redis), each client names the instance it is on.
    if (clustered) tr.append(cell(c.instance ?? "–"));
    tr.append(actions);
    body.append(tr);
  }
}

function showError(error) {
  if (error.status === 401 || error.status === 403) askToken(error.message);
  else console.warn(error);
}

function askToken(message) {
  $("token-error").textContent = message ?? "";
  if (!$("token-dialog").open) $("token-dialog").showModal();
}

$("token-form").addEventListener("submit", () => {
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});

$("send-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const target = $("target").value;
  const value = $("target-value").value.trim();
  const body = { event: "notification", data: { message: $("message").value } };
  if (target !== "all") {
    if (!value) {
      $("send-result").textContent = "Name the client, user or topic.";
      return;
    }
    body[target] = value;
  }
  try {
    const { delivered } = await api("/publish", body);
    $("send-result").textContent = `Delivered to ${delivered} connection${delivered === 1 ? "" : "s"}.`;
    $("message").value = "";
  } catch (error) {
    $("send-result").textContent = error.message;
    showError(error);
  }
});

$("job-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const clientId = $("job-client").value.trim();
  const button = $("start-job");
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Job running…";
  try {
    for (let percent = 0; percent <= 100; percent += 5) {
      await api("/publish", { event: "progress", data: percent, clientId });
      $("job-result").textContent = `${percent} %`;
      await new Promise((r) => setTimeout(r, 200));
    }
    $("job-result").textContent = "done";
  } catch (error) {
    $("job-result").textContent = error.message;
    showError(error);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
});

let client = null;

async function start() {
  try {
    await api("/stats"); // 401/403 here means: ask for a token
  } catch (error) {
    showError(error);
    return;
  }
  client?.close();
  client = createClient("/events?monitor=1", {
    clientId: SELF,
    token,
    events: ["clients", "stats"],
    backoff: { initialDelayMs: 1000, maxAttempts: Infinity },
  });
  client.on("open", () => setStatus("open", "live"));
  client.on("reconnecting", ({ attempt }) => setStatus("reconnecting", `reconnecting (attempt ${attempt})`));
  client.on("statechange", ({ readyState }) => readyState === 2 && setStatus("closed", "closed"));
  client.on("clients", ({ data }) => renderClients(data.clients));
  client.on("stats", ({ data }) => renderStats(data));
}

start();
