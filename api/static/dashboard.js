// plantwatch dashboard: plain JS, no build step, no network beyond this server.
// Every value from the server goes into the page as text (textContent), never as HTML.
// The page runs under a Content-Security-Policy without 'unsafe-inline': no inline
// scripts or style attributes; styles are set through the CSSOM (style.setProperty).
//
// Access: the API token lives in sessionStorage (this tab only, gone when it closes)
// and goes out as `Authorization: Bearer` on every request. The alarm stream is read
// with fetch() rather than EventSource, which cannot send that header; a token in the
// URL (?token=) would land in access logs and the browser history.
"use strict";

const API = "/api/v1";
const SEVERITY = { hh: 2, ll: 2, h: 1, l: 1 };
const RISKS = ["red", "orange", "yellow", "blue"];
const CHART_WINDOW = "-15m";
const CHART_REFRESH_MS = 10000;
const TOKEN_KEY = "plantwatch-token";

const state = {
  plant: null,
  sensors: new Map(), // sensor id -> {sensor, site, workshop, area}
  alarms: new Map(), // alarm_id -> alarm row
  fresh: new Set(), // alarm ids raised since the page loaded, for a brief flash
  selected: null,
  chartTimer: null,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else if (key === "style") {
      // CSSOM, not the style attribute: the CSP allows no inline style attributes.
      for (const decl of value.split(";")) {
        const colon = decl.indexOf(":");
        if (colon > 0) node.style.setProperty(decl.slice(0, colon).trim(), decl.slice(colon + 1).trim());
      }
    }
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const areaKey = (site, workshop, area) => `${site}/${workshop}/${area}`;

// ---- access ---------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

// fetch() with the token; a 401 asks for a (new) token and reports the server's words,
// unless someone signed in while the request was out (its 401 is about no token).
async function api(path, options = {}) {
  const sent = token();
  const response = await fetch(path, {
    ...options,
    headers: { ...authHeaders(), ...(options.headers ?? {}) },
  });
  if (response.status === 401) {
    const body = await response.clone().json().catch(() => ({}));
    // Judged after the body is read: a sign-in may have happened meanwhile.
    if (token() === sent) {
      showLogin(typeof body.detail === "string" ? body.detail : "this server needs a token");
    }
  }
  return response;
}

function showLogin(why) {
  if (token()) sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("login").hidden = false;
  document.getElementById("signout").hidden = true;
  document.getElementById("login-note").textContent = why;
  document.getElementById("token-input").focus();
}

function signedIn() {
  document.getElementById("login").hidden = true;
  document.getElementById("signout").hidden = !token();
}

function setUpLogin() {
  const form = document.getElementById("login");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("token-input");
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    signedIn();
    loadPlant();
    connect();
  });
  document.getElementById("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  signedIn();
}

function fmtNumber(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 0.01 || abs >= 1e6)) return value.toExponential(2);
  return Number(value.toFixed(abs < 10 ? 2 : 1)).toString();
}

function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function fmtAge(ms) {
  let s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

// ---- alarms ---------------------------------------------------------------

const STATE_TEXT = {
  unack: "unacknowledged", ack: "acknowledged", rtn_unack: "returned, unacknowledged",
  latched: "latched (reset needed)",
};

// A row of the alarm list from a point's current state (snapshot or event).
function alarmRow(a) {
  return {
    alarm_id: a.alarm_id, sensor: a.sensor, limit: a.limit,
    value: a.active ? a.raised_value : (a.cleared_value ?? a.raised_value),
    setpoint: a.setpoint, priority: a.priority, post: a.post, team: a.team, site: a.site,
    workshop: a.workshop, area: a.area, unit: a.unit, since: a.raised_ts, state: a.state,
    active: a.active, acked: a.acked, annunciated: a.annunciated, shelved: a.shelved !== null,
    contributions: a.contributions ?? null,
  };
}

// An mspc warning's group sensors by their share of the statistic, largest first.
function fmtContributions(c) {
  if (!c) return "";
  return Object.entries(c).sort((x, y) => y[1] - x[1]).slice(0, 3)
    .map(([sensor, share]) => `${sensor} ${Math.round(share * 100)} %`).join(", ");
}

function applyAlarmEvent(e) {
  if (!e.alarm_id) return;
  if (e.state === "normal") {
    state.alarms.delete(e.alarm_id);
    return;
  }
  state.alarms.set(e.alarm_id, alarmRow(e));
  if ((e.change === "raised" || e.change === "realarm") && e.annunciate) {
    state.fresh.add(e.alarm_id);
    setTimeout(() => state.fresh.delete(e.alarm_id), 2500);
  }
}

async function operatorAction(alarmId, action) {
  if (!token()) {
    showLogin(`sign in with an operator token to ${action}`);
    return;
  }
  const response = await api(`${API}/alarms/${encodeURIComponent(alarmId)}/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  });
  if (!response.ok && response.status !== 401) {
    const body = await response.json().catch(() => ({}));
    alert(`${action} refused (${response.status}): ${body.detail ?? ""}`);
  }
}

function sortedAlarms() {
  return [...state.alarms.values()].sort(
    (a, b) => Number(b.active) - Number(a.active) ||
      (SEVERITY[b.limit] ?? 0) - (SEVERITY[a.limit] ?? 0) || a.since - b.since,
  );
}

function renderAlarms() {
  const rows = document.getElementById("alarm-rows");
  const alarms = sortedAlarms();
  rows.replaceChildren(
    ...alarms.map((a) => {
      const sev = SEVERITY[a.limit] ?? 1;
      const tr = el(
        "tr",
        {
          class: `sev-${sev}${state.fresh.has(a.alarm_id) ? " fresh" : ""}` +
            `${a.active ? "" : " returned"}${a.annunciated ? "" : " hidden-by-overlay"}`,
          title: `${a.alarm_id} · raised ${new Date(a.since).toLocaleString()}`,
          onclick: () => selectSensor(a.sensor),
        },
        el("td", {}, a.sensor),
        el("td", { class: "limit", title: fmtContributions(a.contributions) },
          a.contributions ? `${a.limit} (${fmtContributions(a.contributions)})` : a.limit),
        el("td", { class: "num" }, `${fmtNumber(a.value)} ${a.unit}`),
        el("td", { class: "num" }, fmtNumber(a.setpoint)),
        el("td", {}, a.priority),
        el("td", {}, a.post),
        el("td", {}, a.area),
        el("td", { "data-since": a.since }, fmtAge(a.since)),
        el("td", { class: `st st-${a.state}` },
          (STATE_TEXT[a.state] ?? a.state) + (a.shelved ? " · shelved" : "")),
        el("td", {},
          a.acked ? (a.state === "latched"
            ? el("button", { type: "button", class: "act", onclick: (ev) => {
              ev.stopPropagation(); operatorAction(a.alarm_id, "reset");
            } }, "Reset") : "")
            : el("button", { type: "button", class: "act", onclick: (ev) => {
              ev.stopPropagation(); operatorAction(a.alarm_id, "ack");
            } }, "Ack")),
      );
      return tr;
    }),
  );
  document.getElementById("no-alarms").hidden = alarms.length > 0;
  const count = document.getElementById("alarm-count");
  const unacked = alarms.filter((a) => !a.acked).length;
  count.textContent = `${alarms.length} standing · ${unacked} unacknowledged`;
  count.classList.toggle("hot", alarms.some((a) => a.active && (SEVERITY[a.limit] ?? 0) >= 1));
  renderAreaStates();
}

// ---- plant ----------------------------------------------------------------

function renderPlant() {
  const root = document.getElementById("areas");
  const plant = state.plant;
  document.getElementById("enterprise").textContent = plant.enterprise.name || plant.enterprise.id;
  const blocks = [];
  for (const site of plant.sites) {
    for (const ws of site.workshops) {
      blocks.push(el("h3", {}, `${site.name || site.id} · ${ws.name || ws.id}`));
      const tiles = ws.areas.map((area) => {
        const risk = RISKS.includes(area.risk) ? area.risk : "blue";
        return el(
          "div",
          {
            class: "area",
            "data-area": areaKey(site.id, ws.id, area.id),
            style: `--risk: var(--risk-${risk})`,
          },
          el("span", { class: `chip badge risk-${risk}`, title: "Inherent risk colour" }, risk),
          el("div", { class: "name" }, area.name || area.id),
          el("div", { class: "who" }, `post ${area.post} · team ${area.team}`),
          el(
            "ul",
            { class: "sensors" },
            ...area.sensors.map((s) =>
              el(
                "li",
                {},
                el(
                  "button",
                  {
                    type: "button",
                    "data-sensor": s.id,
                    title: s.description || s.kind,
                    onclick: () => selectSensor(s.id),
                  },
                  s.id,
                ),
              ),
            ),
          ),
        );
      });
      blocks.push(el("div", { class: "areas" }, ...tiles));
    }
  }
  root.replaceChildren(...blocks);
  renderAreaStates();
}

function renderAreaStates() {
  const areaSev = new Map();
  const sensorSev = new Map();
  for (const a of state.alarms.values()) {
    if (!a.active) continue;
    const sev = SEVERITY[a.limit] ?? 1;
    const key = areaKey(a.site, a.workshop, a.area);
    areaSev.set(key, Math.max(areaSev.get(key) ?? 0, sev));
    sensorSev.set(a.sensor, Math.max(sensorSev.get(a.sensor) ?? 0, sev));
  }
  for (const tile of document.querySelectorAll(".area")) {
    const sev = areaSev.get(tile.dataset.area) ?? 0;
    tile.classList.toggle("state-1", sev === 1);
    tile.classList.toggle("state-2", sev === 2);
  }
  for (const button of document.querySelectorAll(".sensors button")) {
    const sev = sensorSev.get(button.dataset.sensor) ?? 0;
    button.classList.toggle("s-1", sev === 1);
    button.classList.toggle("s-2", sev === 2);
  }
}

// Live risk colour (安全风险分级): the area's tile takes its live colour, the
// badge says it, and the tooltip gives the reasons.
function applyRisk(r) {
  for (const tile of document.querySelectorAll(".area")) {
    if (tile.dataset.area.split("/")[2] !== r.area) continue;
    const colour = RISKS.includes(r.colour) ? r.colour : "blue";
    tile.style.setProperty("--risk", `var(--risk-${colour})`);
    tile.dataset.risk = colour;
    const badge = tile.querySelector(".badge");
    badge.className = `chip badge risk-${colour}`;
    badge.textContent = colour;
    badge.title = (r.reasons || []).join("\n");
  }
}

// Alarm floods (EEMUA 191): while a post is flooded, its low and medium
// alarms are held back; the banner says so and how many, instead of flashing each.
async function loadFloods() {
  try {
    const response = await api(`${API}/floods`);
    if (!response.ok) return;
    const floods = (await response.json()).open;
    const banner = document.getElementById("flood-banner");
    banner.hidden = floods.length === 0;
    banner.textContent = floods.map((f) =>
      `Alarm flood on post ${f.post} since ${fmtTime(f.start_ts)}: ` +
      `${f.held_back_total} alarms held back (listed dimmed), high priority still shown`,
    ).join(" · ");
  } catch (err) {
    console.warn("flood state unavailable", err);
  }
}

// A fetched picture may be older than a risk event that arrived while the
// fetch was in flight: then the event wins and the fetch is dropped.
let riskEvents = 0;

async function loadRisk() {
  const seen = riskEvents;
  try {
    const response = await api(`${API}/risk`);
    if (!response.ok) return;
    const areas = (await response.json()).areas;
    if (seen !== riskEvents) return;
    for (const r of areas) applyRisk(r);
  } catch (err) {
    console.warn("risk colours unavailable", err);
  }
}

// ---- sensor view ----------------------------------------------------------

function selectSensor(id) {
  state.selected = id;
  history.replaceState(null, "", `#sensor=${encodeURIComponent(id)}`);
  document.getElementById("sensor").hidden = false;
  clearInterval(state.chartTimer);
  state.chartTimer = setInterval(loadChart, CHART_REFRESH_MS);
  loadChart();
}

function closeSensor() {
  state.selected = null;
  history.replaceState(null, "", location.pathname);
  clearInterval(state.chartTimer);
  document.getElementById("sensor").hidden = true;
}

async function loadChart() {
  const id = state.selected;
  if (id === null) return;
  const place = state.sensors.get(id);
  const s = place?.sensor;
  document.getElementById("sensor-title").textContent = `Sensor ${id}`;
  document.getElementById("sensor-info").textContent = s
    ? `${s.kind}${s.gas ? " " + s.gas : ""} · ${place.area} · range ${s.range[0]}–${s.range[1]} ` +
      `${s.unit} · priority ${s.priority}${s.description ? " · " + s.description : ""}`
    : "";
  const note = document.getElementById("chart-note");
  try {
    // The newest 5000 readings of the window (newest first), drawn oldest first.
    const url = `${API}/sensors/${encodeURIComponent(id)}/readings?start=${CHART_WINDOW}` +
      "&limit=5000&order=desc";
    const response = await api(url);
    const body = await response.json();
    if (Array.isArray(body.points)) body.points.reverse();
    if (state.selected !== id) return;
    if (!response.ok) {
      note.textContent = `Readings unavailable: ${typeof body.detail === "string" ? body.detail : response.status}`;
      document.getElementById("chart").replaceChildren();
      return;
    }
    drawChart(body, s);
    const last = body.points.at(-1);
    note.textContent = last
      ? `${body.points.length} readings in the last 15 min; last ${fmtNumber(last.value)} ${body.unit} at ${fmtTime(last.ts)}`
      : "No readings in the last 15 minutes.";
  } catch (err) {
    note.textContent = `Readings unavailable: ${err}`;
  }
}

function drawChart(data, sensor) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 190, L = 44, R = 34, T = 10, B = 22;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Readings of ${data.sensor}`);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  const limits = sensor ? Object.entries(sensor.limits).filter(([, v]) => v !== null) : [];
  const values = data.points.map((p) => p.value).filter((v) => v !== null && Number.isFinite(v));
  let lo = Math.min(...values, ...limits.map(([, v]) => v));
  let hi = Math.max(...values, ...limits.map(([, v]) => v));
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    [lo, hi] = sensor ? sensor.range : [0, 1];
  }
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  if (sensor) { lo = Math.max(lo, sensor.range[0]); hi = Math.min(hi, sensor.range[1]); }
  const x = (ts) => L + ((ts - data.start) / (data.end - data.start)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);

  add("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
  add("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B });
  add("text", { x: L - 4, y: T + 10, "text-anchor": "end" }, fmtNumber(hi));
  add("text", { x: L + 4, y: T + 10 }, data.unit);
  add("text", { x: L - 4, y: H - B, "text-anchor": "end" }, fmtNumber(lo));
  add("text", { x: L, y: H - 6 }, fmtTime(data.start));
  add("text", { x: W - R, y: H - 6, "text-anchor": "end" }, fmtTime(data.end));
  for (const [name, value] of limits) {
    if (value < lo || value > hi) continue;
    const sev = SEVERITY[name] ?? 1;
    add("line", { class: `lim lim-${sev}`, x1: L, y1: y(value), x2: W - R, y2: y(value) });
    add("text", { x: W - R + 3, y: y(value) + 4 }, name.toUpperCase());
  }
  let d = "";
  let pen = false;
  for (const p of data.points) {
    if (p.value === null || !Number.isFinite(p.value)) { pen = false; continue; }
    const v = Math.min(hi, Math.max(lo, p.value));
    d += `${pen ? "L" : "M"}${x(p.ts).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  }
  if (d) add("path", { class: "line", d });
  const last = data.points.filter((p) => p.value !== null).at(-1);
  if (last) add("circle", { cx: x(last.ts), cy: y(Math.min(hi, Math.max(lo, last.value))), r: 3 });
  document.getElementById("chart").replaceChildren(svg);
}

// ---- live stream ----------------------------------------------------------

function setLink(up, text) {
  const link = document.getElementById("link");
  link.textContent = text;
  link.classList.toggle("up", up);
  link.classList.toggle("down", !up);
}

// One event of the stream, by name (the SSE `event:` field).
function dispatch(event, data) {
  if (event === "snapshot") {
    const snapshot = JSON.parse(data);
    state.alarms = new Map(snapshot.alarms.map((a) => [a.alarm_id, alarmRow(a)]));
    setLink(true, "live");
    renderAlarms();
    if (state.plant !== null) loadRisk();
    loadFloods();
  } else if (event === "alarm") {
    applyAlarmEvent(JSON.parse(data));
    renderAlarms();
    if (state.selected !== null) loadChart();
  } else if (event === "risk") {
    riskEvents += 1;
    applyRisk(JSON.parse(data));
  } else if (event === "flood") {
    loadFloods();
  } else if (event === "overflow") {
    // The server dropped us for being too slow; the stream ends and we
    // reconnect, starting again from a fresh snapshot.
    setLink(false, "resyncing…");
  }
}

// The alarm stream, read with fetch() so it can carry the token (EventSource
// cannot send headers). The wire format is plain server-sent events; like
// EventSource, it reconnects after the server's `retry:` delay and starts again
// from a fresh snapshot.
let streamAbort = null;

async function connect() {
  if (streamAbort !== null) streamAbort.abort();
  const abort = new AbortController();
  streamAbort = abort;
  let retryMs = 3000;
  try {
    const response = await api(`${API}/alarms/stream`, {
      headers: { Accept: "text/event-stream" },
      cache: "no-store",
      signal: abort.signal,
    });
    if (response.status === 401) {
      if (streamAbort === abort) setLink(false, "sign-in needed");
      return; // signing in reconnects
    }
    if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status}`);
    setLink(true, "live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line === "" || line.startsWith(":")) continue; // a comment: keep-alive
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
          else if (field === "retry" && /^\d+$/.test(text)) retryMs = Number(text);
        }
        if (data.length > 0) dispatch(event, data.join("\n"));
      }
    }
  } catch (err) {
    if (abort.signal.aborted) return;
    console.warn("alarm stream lost", err);
  }
  if (abort.signal.aborted) return;
  setLink(false, "reconnecting…");
  setTimeout(() => {
    if (streamAbort === abort) connect();
  }, retryMs);
}

async function loadPlant() {
  try {
    const response = await api(`${API}/sensors`);
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`);
    }
    state.plant = await response.json();
    state.sensors.clear();
    for (const site of state.plant.sites) {
      for (const ws of site.workshops) {
        for (const area of ws.areas) {
          for (const sensor of area.sensors) {
            state.sensors.set(sensor.id, { sensor, site: site.id, workshop: ws.id, area: area.id });
          }
        }
      }
    }
    renderPlant();
    loadRisk();
  } catch (err) {
    document.getElementById("areas").replaceChildren(el("p", { class: "muted" }, `Cannot load the plant: ${err.message ?? err}`));
  }
}

async function start() {
  document.getElementById("sensor-close").addEventListener("click", closeSensor);
  setInterval(() => {
    document.getElementById("clock").textContent = fmtTime(Date.now());
    for (const cell of document.querySelectorAll("td[data-since]")) {
      cell.textContent = fmtAge(Number(cell.dataset.since));
    }
  }, 1000);
  setUpLogin();
  await loadPlant();
  const linked = /^#sensor=(.+)$/.exec(location.hash);
  if (linked) {
    try {
      selectSensor(decodeURIComponent(linked[1]));
    } catch {
      // a mangled link: just show the dashboard
    }
  }
  connect();
}

start();
