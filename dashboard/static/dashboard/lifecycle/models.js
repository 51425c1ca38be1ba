// A model's page: live vs validation metrics per serving version (the registry's live-metrics API), the
// cumulative net return per version (dashboard-api), the calibration of the serving versions (the registry's
// calibration API). Everything reloads on a (re)connection of the live socket and after a drift, stage or
// experiment event (regions.js re-renders the server parts).

import { getJSON } from "../api.js";
import { DASH, esc, fmtTime } from "../format.js";
import { lineChart, PALETTE, reliabilityDiagram } from "./charts.js";
import { liveRegions } from "./regions.js";

const config = JSON.parse(document.getElementById("model-charts").textContent);
const base = `/api/models/${encodeURIComponent(config.model)}`;
const WINDOWS = [["1h", "1 h"], ["24h", "24 h"], ["7d", "7 d"], ["all", "all"], ["last_1000", "last 1000"]];

const finite = (v) => typeof v === "number" && Number.isFinite(v);
const pct = (v, places = 1) => (finite(v) ? `${(v * 100).toFixed(places)} %` : DASH);
const bp = (v) => (finite(v) ? `${v * 1e4 >= 0 ? "+" : ""}${(v * 1e4).toFixed(2)} bp` : DASH);
const sig = (v, d = 4) => {
  if (!finite(v)) return DASH;
  return Math.abs(v) >= 1e6 || (v !== 0 && Math.abs(v) < 1e-4) ? v.toExponential(d - 1) : Number(v.toPrecision(d)).toString();
};
const interval = (low, high, fmt) => (finite(low) && finite(high) ? `<div class="ci">[${fmt(low)}, ${fmt(high)}]</div>` : "");

const METRICS = [
  { label: "direction hit rate", val: "direction_hit_rate", fmt: pct,
    live: (w) => w.hit_rate && [w.hit_rate.value, w.hit_rate.low, w.hit_rate.high, w.hit_rate.n] },
  { label: "log loss", val: "log_loss", fmt: (v) => sig(v),
    live: (w) => w.log_loss && [w.log_loss.mean, w.log_loss.low, w.log_loss.high, w.log_loss.n] },
  { label: "Brier (multiclass)", val: "brier_multiclass", fmt: (v) => sig(v),
    live: (w) => w.brier_multiclass && [w.brier_multiclass.mean, w.brier_multiclass.low, w.brier_multiclass.high] },
  { label: "ECE (top-label)", val: "ece", fmt: (v) => sig(v, 3), live: (w) => [w.ece] },
  { label: "net return / prediction", val: "net_return_per_prediction", fmt: bp,
    live: (w) => w.net_return && [w.net_return.mean, w.net_return.low, w.net_return.high] },
  { label: "Sharpe / prediction", val: "sharpe_per_bar", fmt: (v) => sig(v, 3),
    live: (w) => w.sharpe && [w.sharpe.sharpe, w.sharpe.low, w.sharpe.high] },
];

function liveTable(doc) {
  const head = WINDOWS.map(([key, label]) => {
    const w = doc.windows[key] || {};
    const span = w.data_window ? `${fmtTime(w.data_window.first_bar)} → ${fmtTime(w.data_window.last_bar)}` : "no outcome";
    return `<th class="num" title="${esc(span)}">${esc(label)}<div class="muted">n = ${w.n_outcomes ?? 0}</div></th>`;
  }).join("");
  const rows = METRICS.map((m) => {
    const cells = WINDOWS.map(([key]) => {
      const w = doc.windows[key] || {};
      const [value, low, high] = (w.n_outcomes ? m.live(w) : null) || [];
      return `<td class="num">${m.fmt(value)}${interval(low, high, m.fmt)}</td>`;
    }).join("");
    return `<tr><th>${esc(m.label)}</th><td class="num validation">${m.fmt(doc.validation[m.val])}</td>${cells}</tr>`;
  }).join("");
  const degradation = doc.degradation || {};
  const verdict = degradation.degraded
    ? `<span class="badge bad">degraded</span> ${esc((degradation.reasons || []).join("; "))}`
    : `<span class="badge ok">not degraded</span> <span class="muted">(last ${degradation.window ?? DASH} outcomes, ` +
      `${degradation.n_outcomes ?? 0} available, judged from ${degradation.min_outcomes ?? DASH})</span>`;
  return `<h3>v${doc.version} <span class="muted">${esc(doc.stage)} · horizon ${doc.horizon ?? DASH} bars · ` +
    `round trip ${bp(doc.round_trip_cost)} · ${doc.pending_outcomes} pending · as of ${fmtTime(doc.as_of)}</span></h3>` +
    `<p>${verdict}</p>` +
    `<table class="live-metrics" data-version="${doc.version}"><thead><tr><th>metric</th><th class="num">validation (OOS)</th>${head}</tr></thead>` +
    `<tbody>${rows}</tbody></table>`;
}

async function loadLive() {
  const box = document.getElementById("live-metrics-body");
  if (!config.serving.length) return;
  const docs = await Promise.all(config.serving.map((v) => getJSON(`${base}/versions/${v}/live-metrics/`)));
  box.innerHTML = docs.map(liveTable).join("");
}

async function loadCumulative() {
  const el = document.getElementById("cumulative-chart");
  const note = document.getElementById("cumulative-note");
  if (!config.chart.length) {
    el.innerHTML = '<p class="empty">No version to draw.</p>';
    return;
  }
  const url = `/dashboard-api/models/${encodeURIComponent(config.model)}/cumulative-net-return/?versions=${config.chart.join(",")}`;
  const doc = await getJSON(url);
  const drawn = doc.versions.filter((v) => v.n > 0);
  const series = drawn.map((v, i) => ({ label: `v${v.version} (${v.stage})`, t: v.t, y: v.cumulative, color: PALETTE[i % PALETTE.length] }));
  if (!lineChart(el, series, { format: (v) => `${(v * 100).toFixed(2)} %` })) {
    el.innerHTML = '<p class="empty">No matured outcome yet: the chart starts once predictions reach their horizon.</p>';
  }
  note.textContent = doc.versions.map((v) => `v${v.version}: ${v.n} outcomes, total ${(v.total * 100).toFixed(2)} %`).join(" · ");
}

async function loadCalibration() {
  const el = document.getElementById("calibration");
  const versions = config.serving.slice(0, 3);
  if (!versions.length) {
    el.innerHTML = '<p class="empty">No version is serving.</p>';
    return;
  }
  const docs = await Promise.all(versions.map((v) => getJSON(`${base}/versions/${v}/calibration/`)));
  const curves = docs.map((d, i) => ({ label: `v${d.version}`, buckets: d.buckets, color: PALETTE[i % PALETTE.length] }));
  reliabilityDiagram(el, curves);
  const legend = document.createElement("ul");
  legend.className = "legend";
  legend.innerHTML = docs.map((d, i) => `<li><span style="color:${PALETTE[i % PALETTE.length]}">●</span> v${d.version}: ` +
    `ECE ${sig(d.ece, 3)} live vs ${sig(d.validation_ece, 3)} validation, n = ${d.n_outcomes}</li>`).join("");
  el.append(legend);
}

async function loadAll() {
  await Promise.all([loadLive(), loadCumulative(), loadCalibration()]);
  document.body.dataset.chartsLoaded = String(Number(document.body.dataset.chartsLoaded || 0) + 1);
}

loadAll().catch((e) => console.warn("models: a chart could not load", e));
liveRegions({ topics: ["drift", "stage", "experiment", "outcomes", "alert"], after: loadAll });
