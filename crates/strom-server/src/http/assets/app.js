// The Strom console: a small single-page app over the JSON API (/api/...). No framework,
// no build step; charts are drawn on <canvas>.
"use strict";

const POLL_MS = 2000;
const HISTORY_POINTS = 150; // 5 minutes at one point per 2 s
let timers = [];

function $(sel, root) { return (root || document).querySelector(sel); }
function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function fmtBytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function fmtDuration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

function showError(msg) {
  const el = $("#error");
  // Behind the login form an error says nothing new.
  if (msg && !$("#login").hidden) return;
  if (!msg) { el.hidden = true; el.textContent = ""; return; }
  el.hidden = false;
  el.textContent = msg;
}

// ---- Login ----
// With http.authentication=basic the API answers 401 until the console sends a user and
// password. They are kept in sessionStorage (gone when the tab closes) and sent as an
// HTTP Basic Authorization header with every call.
const CREDENTIAL_KEY = "strom.credential";

function credential() { return sessionStorage.getItem(CREDENTIAL_KEY); }

function basicCredential(user, password) {
  const bytes = new TextEncoder().encode(user + ":" + password);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

// The user name in a stored credential, for the header.
function credentialUser(cred) {
  const bytes = Uint8Array.from(atob(cred), c => c.charCodeAt(0));
  return new TextDecoder().decode(bytes).split(":")[0];
}

class LoginNeeded extends Error {}

function showLogin(message) {
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#logout").hidden = true;
  $("#login-user").focus();
}

function setupLogin() {
  // A reload keeps the tab's login.
  if (credential()) {
    $("#logout").hidden = false;
    $("#whoami").textContent = credentialUser(credential());
  }
  $("#login-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const user = $("#login-user").value;
    sessionStorage.setItem(CREDENTIAL_KEY, basicCredential(user, $("#login-password").value));
    $("#login-password").value = "";
    try {
      await api("GET", "/cluster");
    } catch (e) {
      sessionStorage.removeItem(CREDENTIAL_KEY);
      showLogin(e.message);
      return;
    }
    $("#login").hidden = true;
    $("#logout").hidden = false;
    $("#whoami").textContent = user;
    route();
  });
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(CREDENTIAL_KEY);
    $("#whoami").textContent = "";
    for (const t of timers) clearInterval(t);
    timers = [];
    showLogin("");
  });
}

// Calls the API; a non-2xx answer becomes an Error carrying the API's message, and a 401
// brings up the login form.
async function api(method, path, body) {
  // Marks the call as the console's: the server then leaves WWW-Authenticate out of a 401,
  // so the browser shows this page's form rather than its own dialog.
  const opts = {method, headers: {"X-Requested-With": "XMLHttpRequest"}};
  const cred = credential();
  if (cred) opts.headers["Authorization"] = "Basic " + cred;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch("/api" + path, opts);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = {error: text}; }
  const message = (data && data.error) || ("HTTP " + res.status);
  if (res.status === 401) {
    showLogin(cred ? message : "");
    throw new LoginNeeded(message);
  }
  if (!res.ok) {
    throw new Error(message);
  }
  return data;
}

function every(ms, fn) {
  fn();
  timers.push(setInterval(fn, ms));
}

// A line chart of one or more series on a canvas. series: [{label, color, points: [numbers]}]
function drawChart(canvas, series, unit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 34;
  ctx.clearRect(0, 0, w, h);
  let max = 1;
  for (const s of series) for (const v of s.points) max = Math.max(max, v);
  ctx.strokeStyle = "#dde2ea";
  ctx.fillStyle = "#667";
  ctx.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + (h - pad) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 4, y); ctx.stroke();
    const v = max * (4 - i) / 4;
    ctx.fillText(unit === "bytes" ? fmtBytes(Math.round(v)).replace(" ", "") : String(Math.round(v)), 2, y + 4);
  }
  series.forEach((s, k) => {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach((v, i) => {
      const x = pad + (w - pad - 4) * i / Math.max(1, HISTORY_POINTS - 1);
      const y = pad / 2 + (h - pad) * (1 - v / max);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = s.color;
    ctx.fillText(s.label, pad + 8 + k * 110, h - 4);
  });
}

// Rates per second from successive totals, kept across page switches.
const history = {last: null, bytesIn: [], bytesOut: [], recIn: [], recOut: []};
function pushRate(arr, v) { arr.push(v); if (arr.length > HISTORY_POINTS) arr.shift(); }

async function sampleCluster() {
  const c = await api("GET", "/cluster");
  const now = performance.now();
  if (history.last) {
    const dt = (now - history.last.t) / 1000;
    if (dt > 0) {
      pushRate(history.bytesIn, Math.max(0, (c.bytes_in_total - history.last.c.bytes_in_total) / dt));
      pushRate(history.bytesOut, Math.max(0, (c.bytes_out_total - history.last.c.bytes_out_total) / dt));
      pushRate(history.recIn, Math.max(0, (c.records_in_total - history.last.c.records_in_total) / dt));
      pushRate(history.recOut, Math.max(0, (c.records_out_total - history.last.c.records_out_total) / dt));
    }
  }
  history.last = {t: now, c};
  $("#status").textContent = "Strom " + c.version + " · node " + c.node_id + " · up " + fmtDuration(c.uptime_seconds);
  return c;
}

// ---- Overview ----
async function pageOverview(page) {
  page.innerHTML = `
    <h2>Overview</h2>
    <div class="cards" id="overview-cards"></div>
    <div class="charts">
      <div class="chart"><div class="title">Throughput (bytes/s)</div><canvas id="chart-bytes" width="520" height="220"></canvas></div>
      <div class="chart"><div class="title">Throughput (records/s)</div><canvas id="chart-records" width="520" height="220"></canvas></div>
    </div>
    <h3>Brokers</h3>
    <table id="brokers-table"><thead><tr><th>Node</th><th>Address</th><th>Listen</th><th>Data dir</th><th>fsync</th></tr></thead><tbody></tbody></table>`;
  const brokers = await api("GET", "/brokers");
  $("#brokers-table tbody").innerHTML = brokers.map(b =>
    `<tr><td>${b.node_id}</td><td>${esc(b.host)}:${b.port}</td><td>${esc(b.listen)}</td><td>${b.data_dir == null ? '<span class="muted" title="needs DESCRIBE on the cluster">hidden</span>' : esc(b.data_dir)}</td><td>${esc(b.fsync)}</td></tr>`).join("");
  onSample = c => {
    const card = (label, value, id) => `<div class="card"><div class="label">${label}</div><div class="value" id="${id}">${value}</div></div>`;
    $("#overview-cards").innerHTML =
      card("Topics", c.topics, "card-topics") + card("Partitions", c.partitions, "card-partitions") +
      card("Offline partitions", c.offline_partitions, "card-offline") + card("Consumer groups", c.groups, "card-groups") +
      card("Disk used", fmtBytes(c.disk_bytes), "card-disk") + card("Bytes in", fmtBytes(c.bytes_in_total), "card-bytes-in") +
      card("Bytes out", fmtBytes(c.bytes_out_total), "card-bytes-out") + card("Uptime", fmtDuration(c.uptime_seconds), "card-uptime");
    drawChart($("#chart-bytes"), [{label: "in", color: "#2f6fd1", points: history.bytesIn}, {label: "out", color: "#e07b22", points: history.bytesOut}], "bytes");
    drawChart($("#chart-records"), [{label: "in", color: "#2f6fd1", points: history.recIn}, {label: "out", color: "#e07b22", points: history.recOut}], "count");
  };
  await tick();
}

// ---- Topics ----
async function pageTopics(page, name) {
  if (name) return pageTopic(page, name);
  page.innerHTML = `
    <h2>Topics</h2>
    <form class="inline" id="create-topic-form">
      <label>Name <input id="create-topic-name" required></label>
      <label>Partitions <input id="create-topic-partitions" type="number" min="1" value="1" style="width:6em"></label>
      <label>Configs (name=value, one per line) <textarea id="create-topic-configs" rows="1" cols="30"></textarea></label>
      <button type="submit" id="create-topic-submit">Create topic</button>
    </form>
    <div id="topics-notice" class="notice"></div>
    <table id="topics-table"><thead><tr><th>Name</th><th class="num">Partitions</th><th class="num">Messages</th><th class="num">Size</th><th>Retention (ms)</th><th>Overrides</th><th></th></tr></thead><tbody></tbody></table>`;
  $("#create-topic-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const configs = parsePairs($("#create-topic-configs").value);
      const t = await api("POST", "/topics", {name: $("#create-topic-name").value.trim(), partitions: parseInt($("#create-topic-partitions").value, 10), configs});
      $("#topics-notice").textContent = `Created topic ${t.name} with ${t.partitions} partition(s).`;
      showError(null);
      await loadTopics();
    } catch (e) { showError(e.message); }
  });
  await loadTopics();
}

function parsePairs(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const l = line.trim();
    if (!l) continue;
    const i = l.indexOf("=");
    if (i <= 0) throw new Error(`expected name=value, got "${l}"`);
    out[l.slice(0, i).trim()] = l.slice(i + 1).trim();
  }
  return out;
}

async function loadTopics() {
  const topics = await api("GET", "/topics");
  $("#topics-table tbody").innerHTML = topics.map(t => `
    <tr data-topic="${esc(t.name)}">
      <td><a href="#/topics/${encodeURIComponent(t.name)}">${esc(t.name)}</a></td>
      <td class="num">${t.partitions}</td><td class="num">${t.messages}</td><td class="num">${fmtBytes(t.size_bytes)}</td>
      <td>${esc(t.retention_ms || "")}</td>
      <td>${Object.entries(t.overrides || {}).map(([k, v]) => `<span class="tag">${esc(k)}=${esc(v)}</span>`).join("")}</td>
      <td><button class="danger" data-delete="${esc(t.name)}">Delete</button></td>
    </tr>`).join("") || `<tr><td colspan="7" class="muted">No topics yet.</td></tr>`;
  for (const b of document.querySelectorAll("#topics-table [data-delete]")) {
    b.addEventListener("click", async () => {
      const name = b.getAttribute("data-delete");
      if (!confirm(`Delete topic ${name} and all its messages?`)) return;
      try { await api("DELETE", "/topics/" + encodeURIComponent(name)); showError(null); await loadTopics(); }
      catch (e) { showError(e.message); }
    });
  }
}

async function pageTopic(page, name) {
  const t = await api("GET", "/topics/" + encodeURIComponent(name));
  // Null when the user may not DESCRIBE_CONFIGS the topic.
  const configs = t.configs || [];
  page.innerHTML = `
    <h2>Topic ${esc(t.name)} <span class="muted">${esc(t.topic_id)}</span></h2>
    <p><a href="#/messages/${encodeURIComponent(t.name)}">Browse messages</a></p>
    <h3>Partitions</h3>
    <table id="partitions-table"><thead><tr><th>Partition</th><th class="num">Start</th><th class="num">End</th><th class="num">High watermark</th><th class="num">Flushed</th><th class="num">Size</th><th class="num">Segments</th><th>State</th></tr></thead><tbody>
    ${t.partitions.map(p => `<tr><td>${p.partition}</td><td class="num">${p.start_offset}</td><td class="num">${p.end_offset}</td><td class="num">${p.high_watermark}</td><td class="num">${p.flushed_offset}</td><td class="num">${fmtBytes(p.size_bytes)}</td><td class="num">${p.segments}</td><td>${p.offline ? "offline: " + esc(p.offline) : "online"}</td></tr>`).join("")}
    </tbody></table>
    <h3>Configs</h3>
    ${t.configs ? "" : '<p class="muted" id="configs-hidden">Configs need DESCRIBE_CONFIGS on this topic.</p>'}
    <form class="inline" id="config-form">
      <label>Name <select id="config-name">${configs.map(c => `<option>${esc(c.name)}</option>`).join("")}</select></label>
      <label>Value <input id="config-value"></label>
      <button type="submit">Set</button>
      <button type="button" class="secondary" id="config-reset">Reset to default</button>
    </form>
    <table id="configs-table"><thead><tr><th>Name</th><th>Value</th><th>Source</th></tr></thead><tbody>
    ${configs.map(c => `<tr><td>${esc(c.name)}</td><td>${esc(c.value)}</td><td>${c.default ? '<span class="muted">default</span>' : "topic override"}</td></tr>`).join("")}
    </tbody></table>`;
  const alter = async body => {
    try { await api("PUT", `/topics/${encodeURIComponent(name)}/configs`, body); showError(null); await pageTopic(page, name); }
    catch (e) { showError(e.message); }
  };
  $("#config-form").addEventListener("submit", ev => {
    ev.preventDefault();
    alter({set: {[$("#config-name").value]: $("#config-value").value}});
  });
  $("#config-reset").addEventListener("click", () => alter({delete: [$("#config-name").value]}));
}

// ---- Messages ----
let browseState = null;

async function pageMessages(page, topicName) {
  const topics = await api("GET", "/topics");
  page.innerHTML = `
    <h2>Messages</h2>
    <form class="inline" id="browse-form">
      <label>Topic <select id="browse-topic">${topics.map(t => `<option ${t.name === topicName ? "selected" : ""}>${esc(t.name)}</option>`).join("")}</select></label>
      <label>Partition <input id="browse-partition" type="number" min="0" value="0" style="width:5em"></label>
      <label>Offset <input id="browse-offset" type="number" min="0" placeholder="newest" style="width:8em"></label>
      <label>or from time <input id="browse-time" type="datetime-local"></label>
      <label>Page size <input id="browse-limit" type="number" min="1" max="500" value="50" style="width:5em"></label>
      <label>Contains <input id="browse-search" placeholder="substring"></label>
      <label>Show as <select id="browse-format"><option value="auto">auto (JSON / text / hex)</option><option value="text">text</option><option value="hex">hex</option></select></label>
      <button type="submit" id="browse-submit">Show</button>
      <button type="button" class="secondary" id="browse-prev">◀ Back</button>
      <button type="button" class="secondary" id="browse-next">Forward ▶</button>
    </form>
    <div id="browse-info" class="muted"></div>
    <table id="messages-table"><thead><tr><th class="num">Offset</th><th>Time</th><th>Key</th><th>Headers</th><th>Value</th></tr></thead><tbody></tbody></table>
    <h3>Produce a test message</h3>
    <form class="inline" id="produce-form">
      <label>Partition <input id="produce-partition" type="number" min="0" placeholder="auto" style="width:5em"></label>
      <label>Key <input id="produce-key"></label>
      <label>Value <textarea id="produce-value" rows="1" cols="30"></textarea></label>
      <label>Headers (name=value per line) <textarea id="produce-headers" rows="1" cols="24"></textarea></label>
      <button type="submit" id="produce-submit">Produce</button>
    </form>
    <div id="produce-notice" class="notice"></div>`;
  const query = offset => {
    const q = new URLSearchParams();
    q.set("partition", $("#browse-partition").value || "0");
    q.set("limit", $("#browse-limit").value || "50");
    q.set("format", $("#browse-format").value);
    const s = $("#browse-search").value;
    if (s) q.set("search", s);
    if (offset != null) q.set("offset", offset);
    else if ($("#browse-offset").value !== "") q.set("offset", $("#browse-offset").value);
    else if ($("#browse-time").value) q.set("timestamp", String(new Date($("#browse-time").value).getTime()));
    return q;
  };
  const load = async offset => {
    const topic = $("#browse-topic").value;
    if (!topic) { showError("Create a topic first."); return; }
    try {
      const r = await api("GET", `/topics/${encodeURIComponent(topic)}/messages?${query(offset)}`);
      browseState = r;
      showError(null);
      $("#browse-info").textContent = `Partition ${r.partition}: offsets ${r.start_offset} to ${r.end_offset}; showing ${r.messages.length} from ${r.from_offset}` +
        (r.scanned > r.messages.length ? ` (searched ${r.scanned} records${r.search_done ? "" : ", press Forward to search further"})` : "");
      $("#messages-table tbody").innerHTML = r.messages.map(m => `
        <tr data-offset="${m.offset}">
          <td class="num">${m.offset}</td>
          <td>${new Date(m.timestamp_ms).toISOString()}</td>
          <td class="key">${showValue(m.key)}</td>
          <td class="headers">${m.headers.map(h => `<div><span class="tag">${esc(h.key)}</span>${showValue(h.value)}</div>`).join("")}</td>
          <td class="value">${showValue(m.value)}</td>
        </tr>`).join("") || `<tr><td colspan="5" class="muted">No messages here.</td></tr>`;
    } catch (e) { showError(e.message); }
  };
  $("#browse-form").addEventListener("submit", ev => { ev.preventDefault(); load(null); });
  $("#browse-next").addEventListener("click", () => { if (browseState) load(browseState.next_offset); });
  $("#browse-prev").addEventListener("click", () => { if (browseState) load(browseState.prev_offset); });
  $("#produce-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const body = {value: $("#produce-value").value, headers: parsePairs($("#produce-headers").value)};
      if ($("#produce-key").value) body.key = $("#produce-key").value;
      if ($("#produce-partition").value !== "") body.partition = parseInt($("#produce-partition").value, 10);
      const r = await api("POST", `/topics/${encodeURIComponent($("#browse-topic").value)}/messages`, body);
      $("#produce-notice").textContent = `Produced to partition ${r.partition} at offset ${r.offset}.`;
      showError(null);
    } catch (e) { showError(e.message); }
  });
  if (topics.length) await load(null);
}

function showValue(v) {
  if (v == null) return '<span class="muted">null</span>';
  if (v.encoding === "json") return `<pre>${esc(JSON.stringify(v.data, null, 2))}</pre>`;
  if (v.encoding === "hex") return `<span class="tag">hex</span><pre>${esc(v.data)}</pre>`;
  return `<pre>${esc(v.data)}</pre>`;
}

// ---- Consumer groups ----
async function pageGroups(page, groupId) {
  if (groupId) return pageGroup(page, groupId);
  page.innerHTML = `
    <h2>Consumer groups</h2>
    <table id="groups-table"><thead><tr><th>Group</th><th>State</th><th class="num">Members</th><th>Protocol</th><th class="num">Total lag</th></tr></thead><tbody></tbody></table>`;
  every(POLL_MS, async () => {
    try {
      const groups = await api("GET", "/groups");
      $("#groups-table tbody").innerHTML = groups.map(g => `
        <tr data-group="${esc(g.group_id)}">
          <td><a href="#/groups/${encodeURIComponent(g.group_id)}">${esc(g.group_id)}</a></td>
          <td>${esc(g.state)}</td><td class="num">${g.members.length}</td><td>${esc(g.protocol_type)} ${esc(g.protocol)}</td>
          <td class="num total-lag">${g.total_lag}</td>
        </tr>`).join("") || `<tr><td colspan="5" class="muted">No consumer groups yet.</td></tr>`;
    } catch (e) { showError(e.message); }
  });
}

async function pageGroup(page, groupId) {
  page.innerHTML = `
    <h2>Group ${esc(groupId)} <span id="group-state" class="tag"></span></h2>
    <div class="chart"><div class="title">Total lag over time</div><canvas id="chart-lag" width="520" height="180"></canvas></div>
    <h3>Members</h3>
    <table id="group-members"><thead><tr><th>Member</th><th>Client</th><th>Host</th><th>Assignment</th></tr></thead><tbody></tbody></table>
    <h3>Lag per partition</h3>
    <table id="group-offsets"><thead><tr><th>Topic</th><th class="num">Partition</th><th class="num">Committed</th><th class="num">High watermark</th><th class="num">Lag</th></tr></thead><tbody></tbody></table>
    <h3>Reset offsets <span class="muted">(only when the group is empty)</span></h3>
    <form class="inline" id="reset-form">
      <label>Topic <input id="reset-topic" required></label>
      <label>To <select id="reset-to"><option>earliest</option><option>latest</option><option>offset</option><option>timestamp</option></select></label>
      <label>Offset <input id="reset-offset" type="number" min="0" style="width:8em"></label>
      <label>Time <input id="reset-time" type="datetime-local"></label>
      <button type="submit" id="reset-submit">Reset</button>
    </form>
    <div id="reset-notice" class="notice"></div>`;
  const lagHistory = [];
  every(POLL_MS, async () => {
    try {
      const g = await api("GET", "/groups/" + encodeURIComponent(groupId));
      showError(null);
      $("#group-state").textContent = g.state;
      pushRate(lagHistory, g.total_lag);
      drawChart($("#chart-lag"), [{label: "lag", color: "#c23b3b", points: lagHistory}], "count");
      $("#group-members tbody").innerHTML = g.members.map(m => `
        <tr><td>${esc(m.member_id)}</td><td>${esc(m.client_id)}</td><td>${esc(m.client_host)}</td>
        <td>${m.assignment.map(a => `<span class="tag">${esc(a.topic)}: ${a.partitions.join(", ")}</span>`).join("")}</td></tr>`).join("")
        || `<tr><td colspan="4" class="muted">No members (the group is empty).</td></tr>`;
      $("#group-offsets tbody").innerHTML = g.offsets.map(o => `
        <tr data-topic="${esc(o.topic)}" data-partition="${o.partition}">
          <td>${esc(o.topic)}</td><td class="num">${o.partition}</td><td class="num">${o.committed_offset}</td>
          <td class="num">${o.high_watermark == null ? "" : o.high_watermark}</td><td class="num lag">${o.lag == null ? "" : o.lag}</td>
        </tr>`).join("") || `<tr><td colspan="5" class="muted">No committed offsets.</td></tr>`;
      if (!$("#reset-topic").value && g.offsets.length) $("#reset-topic").value = g.offsets[0].topic;
    } catch (e) { showError(e.message); }
  });
  $("#reset-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const to = $("#reset-to").value;
    const body = {topic: $("#reset-topic").value.trim(), to};
    if (to === "offset") body.offset = parseInt($("#reset-offset").value, 10);
    if (to === "timestamp") body.timestamp_ms = new Date($("#reset-time").value).getTime();
    try {
      const r = await api("POST", `/groups/${encodeURIComponent(groupId)}/reset-offsets`, body);
      $("#reset-notice").textContent = "Reset: " + r.offsets.map(o => `${r.topic}-${o.partition} → ${o.offset}`).join(", ");
      showError(null);
    } catch (e) { showError(e.message); }
  });
}

// ---- Routing ----
// The page that wants each throughput sample (the overview), if any.
let onSample = null;
async function tick() {
  if (!$("#login").hidden) return;
  try {
    const c = await sampleCluster();
    if (onSample) onSample(c);
  } catch (e) { if (onSample && !(e instanceof LoginNeeded)) showError(e.message); }
}

async function route() {
  for (const t of timers) clearInterval(t);
  timers = [];
  onSample = null;
  showError(null);
  const parts = (location.hash || "#/overview").slice(2).split("/").map(decodeURIComponent);
  const [name, arg] = parts;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.id === "nav-" + name);
  const page = $("#page");
  try {
    if (name === "topics") await pageTopics(page, arg);
    else if (name === "messages") await pageMessages(page, arg);
    else if (name === "groups") await pageGroups(page, arg);
    else await pageOverview(page);
  } catch (e) { if (!(e instanceof LoginNeeded)) showError(e.message); }
}

window.addEventListener("hashchange", route);
setupLogin();
route();
// Keep sampling throughput on every page, so the overview's charts have history.
setInterval(tick, POLL_MS);
