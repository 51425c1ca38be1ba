// The Overview page: trading state with halt / reduce / resume, health strip, equity and drawdown (with the limit),
// PnL today / week / month, open positions at their marks, open alerts, and the live event feed.
import { connectLive, eventTopic } from "./live.js";
import { getJSON, confirmedAction, flash } from "./api.js";
import { fmtTime, fmtMoney, fmtSigned, fmtDecimal, fmtPct, esc } from "./format.js";

const cfg = JSON.parse(document.getElementById("overview-config").textContent);
const MONEY = cfg.money_places;
const $ = (id) => document.getElementById(id);
const signClass = (v) => (Number(v) > 0 ? "pos" : Number(v) < 0 ? "neg" : "");

// --- trading state --------------------------------------------------------------------------------------------

function showState(s) {
  const badge = $("state-badge");
  badge.textContent = s.state;
  badge.className = `badge ${s.state}`;
  badge.dataset.state = s.state;
  $("state-reason").textContent = s.reason || "–";
  $("state-by").textContent = s.changed_by || "–";
  $("state-at").textContent = fmtTime(s.changed_at);
  if (cfg.can_trade) {
    $("btn-halt").disabled = s.state === "halted";
    $("btn-reduce").disabled = s.state !== "active";
    $("btn-resume").disabled = s.state === "active";
  }
}

async function loadState() {
  showState(await getJSON("/api/trading/state/"));
}

async function switchState(url, what) {
  const result = await confirmedAction({ url, what });
  if (result) showState(typeof result.state === "object" ? result.state : result);
  await refreshAfterAction();
}

async function refreshAfterAction() {
  await Promise.all([loadState(), loadAlerts()]).catch((e) => flash(`Reload failed: ${e.message}`, "error"));
}

$("btn-halt").addEventListener("click", () => switchState("/api/trading/state/halt/", "halt trading"));
$("btn-reduce").addEventListener("click", () => switchState("/api/trading/state/reduce/", "reduce only"));
$("btn-resume").addEventListener("click", () => switchState("/api/trading/state/resume/", "resume trading"));

// --- health strip ---------------------------------------------------------------------------------------------

function showComponent(name, status, text) {
  const box = document.querySelector(`#health-strip [data-component="${name}"]`);
  if (!box) return;
  box.dataset.status = status;
  box.querySelector("small").textContent = text;
  box.title = text;
}

async function loadHealth() {
  const [health, celery] = await Promise.allSettled([
    getJSON("/dashboard-api/system/health/"),
    getJSON("/dashboard-api/system/celery/"),
  ]);
  if (health.status === "fulfilled") {
    for (const name of ["exchange", "ingest", "database", "broker"]) {
      const c = health.value.components[name];
      if (!c) continue;
      const text = c.status === "ok" ? `ok · ${Math.round(c.latency_ms)} ms` : c.error || "failing";
      showComponent(name, c.status, text);
    }
    $("health-at").textContent = `checked ${fmtTime(health.value.checked_at)}`;
  } else {
    for (const name of ["exchange", "ingest", "database", "broker"]) showComponent(name, "unknown", "no answer");
  }
  if (celery.status === "fulfilled") {
    const n = celery.value.workers.length;
    const text = celery.value.error || (n ? `${n} online` : "no worker answers");
    showComponent("workers", n && !celery.value.error ? "ok" : "failing", text);
  } else {
    showComponent("workers", "unknown", "no answer");
  }
}

// --- equity and drawdown --------------------------------------------------------------------------------------

let equityPlot = null;
let drawdownPlot = null;

function plotWidth(el) {
  return Math.max(300, el.clientWidth || el.parentElement.clientWidth - 24);
}

function drawEquity(data) {
  const limitPct = Number(data.max_drawdown) * 100;
  const xs = data.points.map((p) => new Date(p.at).getTime() / 1000);
  const equity = data.points.map((p) => Number(p.equity));
  const dd = data.points.map((p) => -Number(p.drawdown) * 100);
  const limit = data.points.map(() => -limitPct);
  $("equity-latest").textContent = data.latest ? fmtMoney(data.latest.equity, MONEY, data.currency) : "–";
  $("drawdown-latest").textContent = data.latest ? fmtPct(data.latest.drawdown) : "–";
  $("drawdown-limit").textContent = fmtPct(data.max_drawdown);
  const axis = { stroke: "#8a96a3", grid: { stroke: "#2a3440" }, ticks: { stroke: "#2a3440" } };
  const timeAxis = { ...axis, space: 90, values: (u, ticks) => ticks.map((t) => fmtTime(t * 1000).slice(5, 16)) };
  const eqEl = $("equity-chart");
  const ddEl = $("drawdown-chart");
  if (equityPlot) equityPlot.destroy();
  if (drawdownPlot) drawdownPlot.destroy();
  const tz = { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") };
  equityPlot = new uPlot(
    {
      width: plotWidth(eqEl), height: 220, ...tz, legend: { show: true },
      series: [
        { value: (u, v) => (v == null ? "–" : fmtTime(v * 1000)) },
        { label: `equity ${data.currency}`, stroke: "#58a6ff", width: 1.5, value: (u, v) => (v == null ? "–" : fmtMoney(v, MONEY)) },
      ],
      axes: [timeAxis, { ...axis, size: 80, values: (u, ticks) => ticks.map((v) => fmtMoney(v, 0)) }],
    },
    [xs, equity],
    eqEl,
  );
  drawdownPlot = new uPlot(
    {
      width: plotWidth(ddEl), height: 160, ...tz, legend: { show: true },
      scales: { y: { range: (u, min) => [Math.min(min ?? 0, -limitPct * 1.2), 0] } },
      series: [
        { value: (u, v) => (v == null ? "–" : fmtTime(v * 1000)) },
        { label: "drawdown %", stroke: "#d29922", fill: "rgba(210,153,34,.15)", value: (u, v) => (v == null ? "–" : `${v.toFixed(2)} %`) },
        { label: `limit ${fmtPct(data.max_drawdown)}`, stroke: "#f85149", dash: [6, 4], width: 1.5, points: { show: false }, value: () => `-${limitPct.toFixed(2)} %` },
      ],
      axes: [timeAxis, { ...axis, size: 80, values: (u, ticks) => ticks.map((v) => `${v.toFixed(1)} %`) }],
    },
    [xs, dd, limit],
    ddEl,
  );
  eqEl.dataset.points = String(xs.length);
}

let equityDays = 7;

async function loadEquity() {
  const since = new Date(Date.now() - equityDays * 86400e3).toISOString();
  drawEquity(await getJSON(`/api/trading/equity/?since=${encodeURIComponent(since)}`));
}

$("equity-range").addEventListener("click", (ev) => {
  const days = Number(ev.target?.dataset?.days);
  if (!days) return;
  equityDays = days;
  for (const b of $("equity-range").querySelectorAll("button")) b.className = Number(b.dataset.days) === days ? "ok" : "";
  loadEquity().catch((e) => flash(`Could not load the equity: ${e.message}`, "error"));
});

// --- PnL and positions ----------------------------------------------------------------------------------------

function showPnl(data) {
  const byName = Object.fromEntries(data.periods.map((p) => [p.name, p]));
  for (const row of document.querySelectorAll("#pnl-table tbody tr")) {
    const key = row.dataset.row;
    ["today", "week", "month"].forEach((period, i) => {
      const p = byName[period];
      const cell = row.cells[i + 1];
      if (!p) return;
      if (key === "fills") {
        cell.textContent = String(p.fills);
        return;
      }
      const value = key === "fees" ? `-${p.fees}` : p[key];
      cell.textContent = fmtSigned(value, MONEY);
      cell.className = `num ${signClass(value)}`;
      if (key === "unrealised" && !p.unrealised_at_start_known) cell.title = "no equity snapshot before the period: counted from zero";
    });
  }
  const body = document.querySelector("#positions-table tbody");
  if (!data.positions.length) {
    body.innerHTML = '<tr><td colspan="8" class="empty">No open position.</td></tr>';
    return;
  }
  body.innerHTML = data.positions.map((p) => {
    const money = p.quote === data.currency ? MONEY : p.price_precision;
    return `<tr data-symbol="${esc(p.symbol)}">
      <td><a href="/market/?symbol=${encodeURIComponent(p.symbol)}">${esc(p.symbol)}</a></td>
      <td class="num">${fmtDecimal(p.quantity, p.qty_precision)}</td>
      <td class="num">${fmtMoney(p.avg_price, p.price_precision)}</td>
      <td class="num">${p.mark === null ? "no quote" : fmtMoney(p.mark, p.price_precision)}</td>
      <td class="num ${signClass(p.unrealised_pnl)}">${fmtSigned(p.unrealised_pnl, money)} ${esc(p.quote)}</td>
      <td class="num ${signClass(p.realised_pnl)}">${fmtSigned(p.realised_pnl, money)}</td>
      <td class="num">${fmtMoney(p.fees, money)}</td>
      <td>${fmtTime(p.marked_at)}</td></tr>`;
  }).join("");
}

async function loadPnl() {
  showPnl(await getJSON("/api/trading/pnl/"));
}

// --- alerts ---------------------------------------------------------------------------------------------------

async function loadAlerts() {
  const data = await getJSON("/api/alerting/alerts/?open=true&limit=50");
  const body = document.querySelector("#alerts-table tbody");
  if (!data.results.length) {
    body.innerHTML = '<tr><td colspan="4" class="empty">No open alert.</td></tr>';
    return;
  }
  body.innerHTML = data.results.map((a) => `<tr data-alert="${a.id}">
      <td><span class="badge ${esc(a.severity)}">${esc(a.severity)}</span></td>
      <td style="white-space:normal">${esc(a.message)}${a.count > 1 ? ` <span class="muted">×${a.count}</span>` : ""}</td>
      <td>${fmtTime(a.last_seen_at || a.created_at)}</td>
      <td>${a.state === "firing" && cfg.alert_ack_url
        ? `<button type="button" data-ack="${a.id}">Acknowledge</button>`
        : `<span class="muted" title="${esc(a.acknowledged_by)}">${esc(a.state)}</span>`}</td></tr>`).join("");
}

document.querySelector("#alerts-table").addEventListener("click", async (ev) => {
  const id = ev.target?.dataset?.ack;
  if (!id) return;
  const result = await confirmedAction({
    url: cfg.alert_ack_url.replace("{id}", id), what: `acknowledge alert ${id}`, field: "note",
  });
  if (result) await loadAlerts().catch((e) => flash(`Reload failed: ${e.message}`, "error"));
});

// --- live -----------------------------------------------------------------------------------------------------

const FEED_MAX = 50;

function describe(event) {
  const skip = new Set(["topic", "type", "kind", "at"]);
  const rest = Object.entries(event).filter(([k]) => !skip.has(k));
  return rest.map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

function addToFeed(event) {
  const feed = $("event-feed");
  const item = document.createElement("li");
  item.dataset.topic = eventTopic(event);
  item.innerHTML = `<span class="muted">${fmtTime(event.at || new Date())}</span> <b>${esc(eventTopic(event))}</b> ${esc(describe(event))}`;
  feed.prepend(item);
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

let pnlTimer = null;
function soon(fn) {
  // Coalesce bursts of events into one reload a second.
  if (pnlTimer) return;
  pnlTimer = setTimeout(() => {
    pnlTimer = null;
    fn().catch((e) => console.warn("reload failed", e));
  }, 1000);
}

async function resync() {
  loadHealth().catch((e) => console.warn("health unavailable", e));
  await Promise.all([loadState(), loadEquity(), loadPnl(), loadAlerts()]);
}

connectLive({
  resync,
  handlers: {
    trading_state: () => loadState().catch((e) => console.warn(e)),
    // A halt raises an alert (its event is the one a halt publishes): the state is reloaded with the alerts.
    alert: () => Promise.all([loadAlerts(), loadState()]).catch((e) => console.warn(e)),
    fill: () => soon(() => Promise.all([loadPnl(), loadEquity()])),
    order: () => soon(loadPnl),
    equity: () => soon(() => Promise.all([loadPnl(), loadEquity()])),
    connection: () => loadHealth().catch((e) => console.warn(e)),
    exchange_status: () => loadHealth().catch((e) => console.warn(e)),
    "*": addToFeed,
  },
});
setInterval(() => loadHealth().catch((e) => console.warn("health unavailable", e)), 30000);
// Marks move without an event per quote: PnL and positions every 15 s, the equity curve (10 s snapshots) every 60 s.
const whileLive = (fn) => () => {
  if (document.body.dataset.live === "live" && !document.hidden) fn().catch((e) => console.warn("reload failed", e));
};
setInterval(whileLive(loadPnl), 15000);
setInterval(whileLive(loadEquity), 60000);
