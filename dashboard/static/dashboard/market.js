// Market & trades: candles per symbol (lightweight-charts) with decisions and fills marked, the symbol's fills,
// and "why did this trade happen": fill -> order (events, risk check) -> decision (sizing, edge vs cost) ->
// prediction (model and version, class probabilities, features).
import { connectLive } from "./live.js";
import { getJSON, flash } from "./api.js";
import { fmtTime, fmtMoney, fmtDecimal, fmtPct, fmtSigned, esc } from "./format.js";

const cfg = JSON.parse(document.getElementById("market-config").textContent);
const $ = (id) => document.getElementById(id);
const LC = window.LightweightCharts;
let symbol = cfg.symbol;
let places = (cfg.instruments.find((i) => i.symbol === symbol) || { places: { price: 2, qty: 8, money: 2 } }).places;
let chart = null;
let series = null;
let markers = null;
let fillsByTime = new Map();
let decisionsByTime = new Map();

function makeChart() {
  const el = $("candle-chart");
  chart = LC.createChart(el, {
    autoSize: true,
    layout: { background: { color: "#171e26" }, textColor: "#d7dde4" },
    grid: { vertLines: { color: "#2a3440" }, horzLines: { color: "#2a3440" } },
    timeScale: { timeVisible: true, secondsVisible: false },
    localization: { timeFormatter: (t) => fmtTime(t * 1000) },
  });
  series = chart.addSeries(LC.CandlestickSeries, {
    upColor: "#3fb950", downColor: "#f85149", borderVisible: false, wickUpColor: "#3fb950", wickDownColor: "#f85149",
  });
  markers = LC.createSeriesMarkers(series, []);
  chart.subscribeClick((param) => {
    if (param.time === undefined) return;
    const fill = fillsByTime.get(param.time);
    if (fill) return explain({ fill: fill.id });
    const decision = decisionsByTime.get(param.time);
    if (decision) explain({ decision: decision.id });
  });
}

async function loadCandles() {
  if (!symbol) return;
  const data = await getJSON(`/dashboard-api/market/candles/?symbol=${encodeURIComponent(symbol)}&bars=480`);
  places = data.places;
  series.applyOptions({ priceFormat: { type: "price", precision: places.price, minMove: 10 ** -places.price } });
  series.setData(data.candles.map((c) => ({
    time: c.time, open: Number(c.open), high: Number(c.high), low: Number(c.low), close: Number(c.close),
  })));
  fillsByTime = new Map(data.fills.map((f) => [f.time, f]));
  decisionsByTime = new Map(data.decisions.map((d) => [d.time, d]));
  const marks = [
    ...data.decisions.filter((d) => d.signal !== 0).map((d) => ({
      time: d.time,
      position: d.signal > 0 ? "belowBar" : "aboveBar",
      shape: d.signal > 0 ? "arrowUp" : "arrowDown",
      color: d.status === "ordered" ? (d.signal > 0 ? "#3fb950" : "#f85149") : "#8a96a3",
      text: d.status === "ordered" ? "" : d.status,
    })),
    ...data.fills.map((f) => ({
      time: f.time, position: "inBar", shape: "circle", color: "#58a6ff", text: `${f.side} ${fmtDecimal(f.quantity, places.qty)}`,
    })),
  ].sort((a, b) => a.time - b.time);
  markers.setMarkers(marks);
  chart.timeScale().fitContent();
  $("candle-chart").dataset.candles = String(data.candles.length);
  $("candle-range").textContent = data.candles.length
    ? `${data.candles.length} bars, ${fmtTime(data.from)} – ${fmtTime(data.to)} · ${data.decisions.length} decisions · ${data.fills.length} fills`
    : "No bars stored for this symbol yet.";
}

async function loadFills() {
  if (!symbol) return;
  const data = await getJSON(`/api/trading/fills/?symbol=${encodeURIComponent(symbol)}&limit=50`);
  const body = document.querySelector("#fills-table tbody");
  if (!data.results.length) {
    body.innerHTML = '<tr><td colspan="5" class="empty">No fill yet.</td></tr>';
    return;
  }
  body.innerHTML = data.results.map((f) => `<tr data-fill="${f.id}" style="cursor:pointer">
      <td><a href="?symbol=${encodeURIComponent(symbol)}&fill=${f.id}" data-fill="${f.id}">${fmtTime(f.executed_at)}</a></td>
      <td class="${f.side === "buy" ? "pos" : "neg"}">${esc(f.side)}</td>
      <td class="num">${fmtDecimal(f.quantity, places.qty)}</td>
      <td class="num">${fmtMoney(f.price, places.price)}</td>
      <td class="num">${fmtMoney(f.fee, places.money)}</td></tr>`).join("");
}

async function loadDecisions() {
  if (!symbol) return;
  const data = await getJSON(`/api/trading/decisions/?symbol=${encodeURIComponent(symbol)}&limit=30`);
  const body = document.querySelector("#decisions-table tbody");
  if (!data.results.length) {
    body.innerHTML = '<tr><td colspan="4" class="empty">No decision yet.</td></tr>';
    return;
  }
  body.innerHTML = data.results.map((d) => `<tr data-decision="${d.id}" style="cursor:pointer">
      <td><a href="#" data-decision="${d.id}">${fmtTime(d.bar_time)}</a></td>
      <td class="${d.signal > 0 ? "pos" : d.signal < 0 ? "neg" : ""}">${d.signal > 0 ? "buy" : d.signal < 0 ? "sell" : "flat"} ${fmtPct(d.confidence, 0)}</td>
      <td>${esc(d.status)}</td>
      <td class="muted" style="white-space:normal">${esc(d.reason || (d.capped_by ? `capped by ${d.capped_by}` : ""))}</td></tr>`).join("");
}

document.querySelector("#decisions-table").addEventListener("click", (ev) => {
  const row = ev.target.closest("[data-decision]");
  if (!row) return;
  ev.preventDefault();
  explain({ decision: Number(row.dataset.decision) });
});

document.querySelector("#fills-table").addEventListener("click", (ev) => {
  const row = ev.target.closest("[data-fill]");
  if (!row) return;
  ev.preventDefault();
  explain({ fill: Number(row.dataset.fill) });
});

// --- the why-chain --------------------------------------------------------------------------------------------

const section = (title, inner, attrs = "") => `<section class="why-step" ${attrs}><h3>${title}</h3>${inner}</section>`;
const kv = (pairs) => `<dl class="kv">${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`;
const CLASS_NAMES = { "-1": "down", "0": "flat", "1": "up" };

function probabilities(probs) {
  return Object.entries(probs || {})
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([k, v]) => `<div>${esc(CLASS_NAMES[k] || k)} <span style="display:inline-block;height:8px;width:${Math.round(Number(v) * 150)}px;background:#58a6ff"></span> ${fmtPct(v, 1)}</div>`)
    .join("");
}

function renderWhy(w) {
  const p = w.places;
  const parts = [];
  if (w.fill) {
    const f = w.fill;
    parts.push(section("Fill", kv([
      ["executed", fmtTime(f.executed_at)],
      ["side · quantity · price", `${esc(f.side)} ${fmtDecimal(f.quantity, p.qty)} @ ${fmtMoney(f.price, p.price)}`],
      ["fee", `${fmtMoney(f.fee, p.money)} (${esc(f.liquidity)})`],
      ["execution id", esc(f.exec_id)],
    ]), 'data-step="fill"'));
  }
  if (w.order) {
    const o = w.order;
    const events = o.events.map((e) => `<li>${fmtTime(e.recorded_at)} · ${esc(e.kind)} ${esc(e.from_state)} → ${esc(e.to_state)} <span class="muted">(${esc(e.source)})</span>${e.reason ? ` · ${esc(e.reason)}` : ""}</li>`).join("");
    parts.push(section(`Order ${o.id}`, kv([
      ["client order id", esc(o.client_order_id)],
      ["type", `${esc(o.side)} ${esc(o.order_type)} ${fmtDecimal(o.quantity, p.qty)}${o.limit_price ? ` @ ${fmtMoney(o.limit_price, p.price)}` : ""}`],
      ["state", `${esc(o.state)} · filled ${fmtDecimal(o.filled_qty, p.qty)}${o.avg_price ? ` @ ${fmtMoney(o.avg_price, p.price)}` : ""}`],
      ["reason", esc(o.reason || "–")],
    ]) + `<ol class="muted">${events}</ol>`, 'data-step="order"'));
    const r = w.risk;
    const riskText = r.status === "passed"
      ? `<span class="badge ok">passed</span> at ${fmtTime(r.at)} (mid ${fmtMoney(r.mid, p.price)}, position ${fmtDecimal(r.position, p.qty)})`
      : r.status === "rejected"
        ? `<span class="badge bad">rejected</span> ${esc(JSON.stringify(r.result))}`
        : `<span class="badge warn">unknown</span> ${esc(r.note)}`;
    parts.push(section("Risk check", `<p>${riskText}</p><p class="muted">Checks of the risk manager: ${r.checks.map(esc).join(", ")}. A passing order records only "passed", not each check.</p>`, 'data-step="risk"'));
  }
  if (!w.decision) {
    parts.push(section("Decision", `<p class="empty">${esc(w.no_decision || "none")}</p>`, 'data-step="decision"'));
    return parts.join("");
  }
  const d = w.decision;
  const edgeClass = d.edge_net_of_cost === null ? "" : Number(d.edge_net_of_cost) > 0 ? "pos" : "neg";
  parts.push(section(`Decision ${d.id}`, kv([
    ["bar", fmtTime(d.bar_time)],
    ["model", esc(d.model_version)],
    ["signal · confidence", `${d.signal > 0 ? "buy" : d.signal < 0 ? "sell" : "flat"} · ${fmtPct(d.confidence, 1)}`],
    ["expected edge vs cost", `${fmtPct(d.expected_edge, 3)} vs ${fmtPct(d.cost, 3)} → <b class="${edgeClass}">${fmtPct(d.edge_net_of_cost, 3)}</b> net`],
    ["size", `from ${fmtDecimal(d.current_qty, p.qty)} to target ${fmtDecimal(d.target_qty, p.qty)}: order ${fmtSigned(d.order_qty, p.qty)} at ${fmtMoney(d.price, p.price)} on equity ${fmtMoney(d.equity, p.money)}`],
    ["capped by", d.capped_by ? `<b>${esc(d.capped_by)}</b>${d.capped_by_limit_now !== null ? ` (limit now ${esc(fmtMoney(d.capped_by_limit_now, p.money))})` : ""}` : "no limit (the model's target)"],
    ["status", `${esc(d.status)}${d.reason ? ` · ${esc(d.reason)}` : ""}`],
  ]), 'data-step="decision"'));
  if (!w.prediction) {
    parts.push(section("Prediction", `<p class="empty">${esc(w.no_prediction || "none")}</p>`, 'data-step="prediction"'));
    return parts.join("");
  }
  const pr = w.prediction;
  const features = pr.features.length
    ? `<table><thead><tr><th>feature</th><th class="num">value</th></tr></thead><tbody>${pr.features.map((f) => `<tr><td>${esc(f.name)}</td><td class="num">${Number(f.value).toPrecision(6)}</td></tr>`).join("")}</tbody></table>`
    : '<p class="empty">The feature row was not stored for this prediction.</p>';
  parts.push(section("Prediction", kv([
    ["model", `<a href="/models/${encodeURIComponent(pr.model_name)}/" data-model>${esc(pr.model_name)}</a> <b data-version>v${pr.version}</b> (${esc(pr.stage)})`],
    ["made", `${fmtTime(pr.created_at)} for the bar of ${fmtTime(pr.bar_time)}, horizon ${pr.horizon ?? "–"} bars`],
    ["class probabilities", probabilities(pr.probabilities)],
    ["predicted", `${esc(CLASS_NAMES[String(pr.predicted_class)] || pr.predicted_class)} → signal ${pr.signal} at ${fmtPct(pr.confidence, 1)}`],
  ]) + features, 'data-step="prediction"'));
  return parts.join("");
}

async function explain(query) {
  const params = new URLSearchParams(query);
  try {
    const w = await getJSON(`/dashboard-api/market/why/?${params}`);
    $("why-body").innerHTML = renderWhy(w);
    document.querySelectorAll("#fills-table tr.selected").forEach((r) => r.classList.remove("selected"));
    if (query.fill) {
      document.querySelector(`#fills-table tr[data-fill="${query.fill}"]`)?.classList.add("selected");
      history.replaceState(null, "", `?symbol=${encodeURIComponent(symbol)}&fill=${query.fill}`);
    }
    $("why").dataset.loaded = query.fill ? `fill-${query.fill}` : `decision-${query.decision}`;
  } catch (e) {
    flash(`Could not explain: ${e.message}`, "error");
  }
}

// --- wiring ---------------------------------------------------------------------------------------------------

$("symbol").addEventListener("change", (ev) => {
  symbol = ev.target.value;
  history.replaceState(null, "", `?symbol=${encodeURIComponent(symbol)}`);
  $("why-body").innerHTML = '<p class="empty">Pick a fill (or a marker on the chart).</p>';
  resync().catch((e) => flash(`Reload failed: ${e.message}`, "error"));
});

let reloadTimer = null;
function reloadSoon() {
  if (reloadTimer) return;
  reloadTimer = setTimeout(() => {
    reloadTimer = null;
    resync().catch((e) => console.warn("reload failed", e));
  }, 1000);
}

async function resync() {
  await Promise.all([loadCandles(), loadFills(), loadDecisions()]);
}

makeChart();
if (cfg.fill) explain({ fill: cfg.fill });
connectLive({ resync, handlers: { bar: reloadSoon, fill: reloadSoon, order: reloadSoon, decision: reloadSoon } });
