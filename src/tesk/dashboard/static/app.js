// The tesk dashboard: a list of tasks, their counts by state, and one task's details, kept current
// by the server's event stream (GET /ga4gh/tes/v1/events). Plain browser JavaScript, no libraries:
// every piece of text from the server goes into the page through textContent, never as HTML.
"use strict";

const API = "/ga4gh/tes/v1";
const FINAL = new Set(["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"]);
const STATES = ["QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "CANCELING", "COMPLETE", "EXECUTOR_ERROR",
  "SYSTEM_ERROR", "CANCELED", "PREEMPTED", "UNKNOWN"];
const TOKEN_KEY = "tesk.dashboard.token";
// The metadata keys of a task's last log that docs/extensions.md documents ("Failure reasons",
// "Resource use"); tesk.failures and tesk.usage write them.
const REASON_KEY = "tesk.failure_reason";
const FAILED_EXECUTOR_KEY = "tesk.failure_executor";
const USAGE_PREFIX = "tesk.executor.";
const GIB = 2 ** 30; // resources.ram_gb is read as GiB, as every tesk backend reads it
const POLL_MS = 5000;
const LIST_REFRESH_MS = 500;
const COUNTS_REFRESH_MS = 2000;
const DETAIL_REFRESH_MS = 300;

const page = {
  tokens: [null],          // page_token of each page shown so far; the last one is the current page
  next: null,              // next_page_token of the current page
  rows: new Map(),         // task id -> its <tr>
  openTask: null,          // id of the task shown in the detail pane
  seen: new Map(),         // task id -> [{state, time}] transitions this page saw live
  live: false,
};

// -- small helpers ---------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function $(id) { return document.getElementById(id); }

function badge(state) {
  return el("span", { class: `state s-${state}`, "data-state": state }, state);
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

function duration(startIso, endIso) {
  if (!startIso) return "";
  const ms = (endIso ? new Date(endIso) : new Date()) - new Date(startIso);
  if (!(ms >= 0)) return "";
  return clock(Math.round(ms / 1000));
}

// Whole seconds as people read a duration: 42s, 3m 5s, 2h 10m.
function clock(s) {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

// Measured seconds: tenths below a minute (an executor's CPU time is often well under a second).
function seconds(s) {
  return s < 60 ? `${s.toFixed(1)}s` : clock(Math.round(s));
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) { n /= 1024; unit += 1; }
  return `${unit ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[unit]}`;
}

function taskEnd(task) {
  const logs = task.logs || [];
  return logs.length ? logs[logs.length - 1].end_time : null;
}

// Run fn once, ms after the first of a burst of calls: a busy server's steady stream of changes
// then costs one reload per interval (a debounce would wait for a quiet moment that never comes).
function throttle(fn, ms) {
  let timer = null;
  return () => {
    if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}

// -- the token ------------------------------------------------------------------------------------

// A pasted token wins; otherwise the token Swagger UI's Authorize button stored for this origin
// (the API page runs with persistAuthorization, which keeps it in localStorage under "authorized").
function swaggerToken() {
  try {
    const stored = JSON.parse(localStorage.getItem("authorized") || "{}");
    for (const scheme of Object.values(stored)) {
      if (scheme && scheme.token && scheme.token.access_token) return scheme.token.access_token;
      if (scheme && typeof scheme.value === "string" && scheme.value) return scheme.value;
    }
  } catch (e) { /* not JSON: nothing stored by Swagger UI */ }
  return null;
}

function token() { return localStorage.getItem(TOKEN_KEY) || swaggerToken(); }

function headers() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function showTokenBox(show) {
  $("token-box").hidden = !show;
  const source = localStorage.getItem(TOKEN_KEY) ? "a pasted token" : swaggerToken() ? "the API page's sign-in" : "no token";
  $("token-button").textContent = `Token: ${source === "no token" ? "none" : "set"}`;
  $("token-button").title = `Using ${source}`;
}

// -- talking to the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.message ? body.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

function banner(message) {
  const node = $("banner");
  node.hidden = !message;
  node.textContent = message || "";
}

function reportError(error) {
  if (error instanceof ApiError && error.status === 401) {
    banner(`${error.message} — paste a token, or sign in with the API page's Authorize button.`);
    showTokenBox(true);
  } else {
    banner(error.message || String(error));
  }
}

// -- filters and the list -----------------------------------------------------------------------------

function filters() {
  return {
    state: $("f-state").value,
    name: $("f-name").value.trim(),
    tag: $("f-tag").value.trim(),
    size: $("f-size").value,
  };
}

function listQuery(pageToken) {
  const f = filters();
  const q = new URLSearchParams({ view: "BASIC", page_size: f.size });
  if (f.state) q.set("state", f.state);
  if (f.name) q.set("name_prefix", f.name);
  if (f.tag) {
    const [key, ...rest] = f.tag.split("=");
    q.append("tag_key", key);
    q.append("tag_value", rest.join("="));
  }
  if (pageToken) q.set("page_token", pageToken);
  return q;
}

function row(task) {
  const tr = el("tr", { "data-id": task.id, class: task.id === page.openTask ? "open" : null,
    onclick: () => openTask(task.id) },
  el("td", { class: "id" }, el("a", { href: `#task=${encodeURIComponent(task.id)}` }, task.id)),
  el("td", { class: "name" }, task.name || ""),
  el("td", { class: "st" }, badge(task.state)),
  el("td", { class: "created", title: task.creation_time || "" }, when(task.creation_time)),
  el("td", { class: "dur" }, duration(task.creation_time, FINAL.has(task.state) ? taskEnd(task) : null)));
  tr.task = task;
  return tr;
}

async function loadList() {
  const pageToken = page.tokens[page.tokens.length - 1];
  let body;
  try {
    body = await api(`${API}/tasks?${listQuery(pageToken)}`);
  } catch (error) { reportError(error); return; }
  banner(null);
  const tbody = document.querySelector("#tasks tbody");
  page.rows.clear();
  const rows = (body.tasks || []).map((task) => { const tr = row(task); page.rows.set(task.id, tr); return tr; });
  tbody.replaceChildren(...rows);
  $("empty").hidden = rows.length > 0;
  page.next = body.next_page_token || null;
  $("older").disabled = !page.next;
  $("newer").disabled = page.tokens.length < 2;
  $("page-label").textContent = `page ${page.tokens.length}`;
}

async function loadCounts() {
  let body;
  try { body = await api("/dashboard/api/counts"); } catch (error) { return; }
  const counts = body.counts || {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const chip = (state, label, n) => el("button", {
    type: "button", class: `count s-${state || "ALL"}${$("f-state").value === state ? " chosen" : ""}`,
    "data-state": state, onclick: () => { $("f-state").value = state; applyFilters(); },
  }, el("span", { class: "n" }, `${n}${body.complete ? "" : "+"}`), " ", label);
  $("counts").replaceChildren(chip("", "all", total),
    ...STATES.filter((s) => counts[s]).map((s) => chip(s, s.toLowerCase().replace("_", " "), counts[s])));
}

function applyFilters() {
  page.tokens = [null];
  saveHash();
  loadList();
  loadCounts();
}

// -- one task -------------------------------------------------------------------------------------

function section(title, ...content) {
  return el("section", { class: "block", "data-section": title }, el("h3", {}, title), ...content);
}

function keyValues(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return null;
  return el("dl", { class: "kv" }, entries.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function timeline(task) {
  const items = [];
  const add = (time, text, cls) => { if (time) items.push({ time, text, cls }); };
  add(task.creation_time, "created", "QUEUED");
  (task.logs || []).forEach((attempt, a) => {
    const tag = (task.logs.length > 1) ? ` (attempt ${a + 1})` : "";
    add(attempt.start_time, `started${tag}`, "RUNNING");
    (attempt.logs || []).forEach((log, i) => {
      add(log.start_time, `executor ${i} started`, "RUNNING");
      add(log.end_time, `executor ${i} finished, exit code ${log.exit_code}`, log.exit_code === 0 ? "COMPLETE" : "EXECUTOR_ERROR");
    });
    add(attempt.end_time, `ended${tag}`, task.state);
  });
  for (const change of page.seen.get(task.id) || []) add(change.time, `state ${change.state} (seen live)`, change.state);
  items.sort((x, y) => new Date(x.time) - new Date(y.time));
  return el("ol", { class: "timeline" }, items.map((item) =>
    el("li", { class: `s-${item.cls}` }, el("time", { datetime: item.time, title: item.time }, when(item.time)), " ", item.text)));
}

// Why a task ended other than COMPLETE, from its last log's metadata; null for COMPLETE, a task
// not yet final, or a task whose backend recorded no reason.
function failure(task) {
  const metadata = ((task.logs || []).slice(-1)[0] || {}).metadata || {};
  if (!FINAL.has(task.state) || task.state === "COMPLETE" || !metadata[REASON_KEY]) return null;
  const executor = /^\d+$/.test(metadata[FAILED_EXECUTOR_KEY] || "") ? Number(metadata[FAILED_EXECUTOR_KEY]) : null;
  return { reason: metadata[REASON_KEY], executor };
}

function failureNote(found) {
  return el("p", { class: "failure", "data-reason": found.reason },
    el("strong", {}, found.reason), found.executor === null ? "" : ` in executor ${found.executor}`);
}

// Executor i's measured use (wall time, CPU time, peak memory); a key the backend did not measure
// is absent and stays out of the page rather than showing as 0.
function usage(metadata, i) {
  const number = (name) => {
    const text = (metadata || {})[`${USAGE_PREFIX}${i}.${name}`];
    const value = text === undefined ? NaN : Number(text);
    return Number.isFinite(value) ? value : null;
  };
  return { wall: number("wall_seconds"), cpu: number("cpu_seconds"), peak: number("peak_memory_bytes") };
}

// Peak memory against the task's ram_gb: a <meter> (no inline styles, which the page's CSP forbids),
// and the share in words, which can pass 100% when the executor was killed at its limit.
function memoryBar(peak, ramGb) {
  const limit = ramGb * GIB;
  const share = Math.round((100 * peak) / limit);
  return el("p", { class: "memory" },
    el("meter", { min: 0, max: limit, value: Math.min(peak, limit), high: 0.9 * limit, optimum: 0,
      title: `${bytes(peak)} of ${ramGb} GiB` }),
    ` ${share}% of ram_gb (${ramGb} GiB)`);
}

function usageBlock(measured, ramGb) {
  const entries = [["wall time", measured.wall, seconds], ["CPU time", measured.cpu, seconds],
    ["peak memory", measured.peak, bytes]].filter(([, value]) => value !== null);
  if (!entries.length) return null;
  return el("div", { class: "usage" },
    el("dl", { class: "kv" }, entries.map(([name, value, show]) => [el("dt", {}, name), el("dd", { "data-usage": name }, show(value))])),
    measured.peak !== null && ramGb > 0 ? memoryBar(measured.peak, ramGb) : null);
}

function executors(task) {
  const attempt = (task.logs || []).slice(-1)[0] || {};
  const failed = failure(task);
  const ramGb = (task.resources || {}).ram_gb;
  return (task.executors || []).map((ex, i) => {
    const log = (attempt.logs || [])[i];
    return el("article", { class: `executor${failed && failed.executor === i ? " failed" : ""}`, "data-executor": i },
      el("h4", {}, `Executor ${i}`, log ? el("span", { class: `exit ${log.exit_code === 0 ? "ok" : "bad"}` }, `exit ${log.exit_code}`)
        : el("span", { class: "exit" }, FINAL.has(task.state) ? "did not run" : "not finished")),
      el("p", { class: "image" }, el("code", {}, ex.image)),
      failed && failed.executor === i ? failureNote(failed) : null,
      el("pre", { class: "command" }, ex.command.map((part) => (/\s/.test(part) ? JSON.stringify(part) : part)).join(" ")),
      keyValues({ ...(ex.workdir ? { workdir: ex.workdir } : {}), ...(ex.stdin ? { stdin: ex.stdin } : {}),
        ...(ex.stdout ? { stdout: ex.stdout } : {}), ...(ex.stderr ? { stderr: ex.stderr } : {}), ...(ex.env || {}) }),
      log ? el("div", { class: "streams" },
        el("h5", {}, "stdout"), log.stdout ? el("pre", { class: "stdout" }, log.stdout) : el("p", { class: "hint stdout" }, "(no output)"),
        log.stderr ? [el("h5", {}, "stderr"), el("pre", { class: "stderr" }, log.stderr)] : null,
        el("p", { class: "hint" }, log.start_time ? `ran ${duration(log.start_time, log.end_time)}` : "")) : null,
      usageBlock(usage(attempt.metadata, i), ramGb));
  });
}

function files(list, kind) {
  if (!list || !list.length) return el("p", { class: "hint" }, `No ${kind}.`);
  return el("table", { class: "files" },
    el("thead", {}, el("tr", {}, el("th", {}, "Path"), el("th", {}, "Type"), el("th", {}, kind === "inputs" ? "From" : "To"))),
    el("tbody", {}, list.map((f) => el("tr", {}, el("td", {}, el("code", {}, f.path)), el("td", {}, f.type || "FILE"),
      el("td", { class: "url" }, f.url || (f.content !== undefined ? `inline content (${f.content.length} characters)` : ""))))));
}

function renderDetail(task) {
  const attempt = (task.logs || []).slice(-1)[0] || {};
  const cancel = !FINAL.has(task.state) && task.state !== "CANCELING"
    ? el("button", { type: "button", id: "cancel", onclick: () => cancelTask(task.id) }, "Cancel task") : null;
  const failed = failure(task);
  const resources = task.resources ? Object.fromEntries(Object.entries(task.resources)
    .filter(([, v]) => typeof v !== "object").map(([k, v]) => [k, String(v)])) : {};
  $("detail").replaceChildren(...[
    el("div", { class: "head" },
      el("button", { type: "button", class: "close", title: "Close", onclick: () => openTask(null) }, "×"),
      el("h2", {}, task.name || task.id), badge(task.state), cancel),
    el("p", { class: "hint" }, el("code", {}, task.id), task.description ? ` — ${task.description}` : ""),
    failed ? section("Failure reason", failureNote(failed)) : null,
    section("Timeline", timeline(task)),
    section("Executors", executors(task)),
    section("Inputs", files(task.inputs, "inputs")),
    section("Outputs", files(task.outputs, "outputs"),
      (attempt.outputs || []).length ? el("table", { class: "files uploaded" },
        el("thead", {}, el("tr", {}, el("th", {}, "Uploaded"), el("th", {}, "To"), el("th", {}, "Size"))),
        el("tbody", {}, attempt.outputs.map((o) =>
        el("tr", {}, el("td", {}, el("code", {}, o.path)), el("td", { class: "url" }, o.url), el("td", {}, `${o.size_bytes} bytes`))))) : null),
    (attempt.system_logs || []).length ? section("System logs", el("pre", { class: "system" }, attempt.system_logs.join("\n"))) : null,
    Object.keys(task.tags || {}).length ? section("Tags", keyValues(task.tags)) : null,
    Object.keys(resources).length ? section("Resources", keyValues(resources)) : null,
  ].filter(Boolean));
  $("detail").hidden = false;
  $("detail").dataset.id = task.id;
  $("detail").dataset.state = task.state;
}

async function loadDetail() {
  if (!page.openTask) return;
  const id = page.openTask;
  try {
    const task = await api(`${API}/tasks/${encodeURIComponent(id)}?view=FULL`);
    if (page.openTask === id) renderDetail(task);
  } catch (error) {
    $("detail").replaceChildren(el("p", { class: "error" }, error.message));
    $("detail").hidden = false;
  }
}

function openTask(id) {
  page.openTask = id;
  for (const [rowId, tr] of page.rows) tr.classList.toggle("open", rowId === id);
  document.body.classList.toggle("with-detail", Boolean(id));
  saveHash();
  if (id) loadDetail(); else $("detail").hidden = true;
}

async function cancelTask(id) {
  if (!window.confirm(`Cancel task ${id}? Its running executor is stopped and later ones do not run.`)) return;
  try {
    await api(`${API}/tasks/${encodeURIComponent(id)}:cancel`, { method: "POST" });
  } catch (error) { reportError(error); }
  loadDetail();
}

// -- live updates -----------------------------------------------------------------------------------

const refreshList = throttle(() => { if (page.tokens.length === 1) loadList(); }, LIST_REFRESH_MS);
const refreshCounts = throttle(loadCounts, COUNTS_REFRESH_MS);
const refreshDetail = throttle(loadDetail, DETAIL_REFRESH_MS);

function onStateChange(change) {
  const seen = page.seen.get(change.id) || [];
  seen.push({ state: change.state, time: change.time });
  page.seen.set(change.id, seen.slice(-50));
  const tr = page.rows.get(change.id);
  if (tr) {
    tr.querySelector(".st").replaceChildren(badge(change.state));
    tr.classList.add("flash");
    setTimeout(() => tr.classList.remove("flash"), 1200);
  }
  if (change.id === page.openTask) refreshDetail();
  refreshList();
  refreshCounts();
}

function setLive(mode) {
  page.live = mode === "live";
  const node = $("live");
  node.className = `live ${mode === "live" ? "on" : "off"}`;
  node.textContent = mode === "live" ? "live" : mode;
}

// Server-Sent Events read with fetch (EventSource cannot send an Authorization header).
async function followEvents() {
  let delay = 1000;
  for (;;) {
    try {
      const response = await fetch(`${API}/events`, { headers: { ...headers(), Accept: "text/event-stream" } });
      if (response.status === 404 || response.status === 405) { setLive("polling"); return poll(); }
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new ApiError(response.status, (body && body.message) || `event stream: HTTP ${response.status}`);
      }
      setLive("live");
      delay = 1000;
      refreshList(); // anything that changed while we were away
      refreshCounts();
      if (page.openTask) refreshDetail();
      await readEvents(response.body.getReader());
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) reportError(error);
    }
    setLive("reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
      }
      if (name === "state" && data.length) onStateChange(JSON.parse(data.join("\n")));
      if (name === "overflow") return;
    }
  }
}

async function poll() {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    await loadList();
    await loadCounts();
    await loadDetail();
  }
}

// -- the address bar keeps the filters and the open task, so a view can be shared -----------------

function saveHash() {
  const f = filters();
  const q = new URLSearchParams();
  if (f.state) q.set("state", f.state);
  if (f.name) q.set("name", f.name);
  if (f.tag) q.set("tag", f.tag);
  if (page.openTask) q.set("task", page.openTask);
  const hash = q.toString();
  if (location.hash.slice(1) !== hash) history.replaceState(null, "", hash ? `#${hash}` : location.pathname);
}

function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  $("f-state").value = q.get("state") || "";
  $("f-name").value = q.get("name") || "";
  $("f-tag").value = q.get("tag") || "";
  return q.get("task");
}

// -- start ------------------------------------------------------------------------------------------

function start() {
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); applyFilters(); });
  $("f-state").addEventListener("change", applyFilters);
  $("f-size").addEventListener("change", applyFilters);
  $("f-reset").addEventListener("click", () => { $("filters").reset(); applyFilters(); });
  $("older").addEventListener("click", () => { if (page.next) { page.tokens.push(page.next); loadList(); } });
  $("newer").addEventListener("click", () => { if (page.tokens.length > 1) { page.tokens.pop(); loadList(); } });
  $("home").addEventListener("click", (event) => { event.preventDefault(); openTask(null); });
  $("token-button").addEventListener("click", () => showTokenBox($("token-box").hidden));
  $("token-box").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    showTokenBox(false);
    location.reload();
  });
  $("token-clear").addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); showTokenBox(false); location.reload(); });
  window.addEventListener("hashchange", () => {
    const id = new URLSearchParams(location.hash.slice(1)).get("task");
    if (id !== page.openTask) openTask(id);
  });
  setInterval(() => { // durations of running tasks keep counting
    for (const tr of page.rows.values()) {
      const state = tr.querySelector(".state").dataset.state;
      if (!FINAL.has(state)) tr.querySelector(".dur").textContent = duration(tr.task.creation_time, null);
    }
  }, 1000);
  showTokenBox(false);
  const task = readHash();
  loadList();
  loadCounts();
  if (task) openTask(task);
  followEvents();
}

start();
