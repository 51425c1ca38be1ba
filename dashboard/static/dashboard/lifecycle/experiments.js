// An experiment's page: staff actions (start, pause, resume, conclude, stop, abort) through the experiments API
// with a reason and a confirmation; the primary delta and its always-valid p over time (the results API's
// series) and each arm's cumulative net return since the start (dashboard-api). Resyncs on every (re)connection
// and after an experiment event.

import { confirmedAction, getJSON } from "../api.js";
import { epochSeconds } from "../format.js";
import { lineChart, PALETTE } from "./charts.js";
import { liveRegions, refreshRegions } from "./regions.js";

const config = JSON.parse(document.getElementById("experiment-chart").textContent);
const api = `/api/experiments/${config.id}`;
const WHAT = {
  start: "start the experiment", pause: "pause the experiment", resume: "resume the experiment",
  conclude: "conclude the experiment", stop: "stop the experiment on a guardrail", abort: "abort the experiment",
};

document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("button[data-action]");
  if (!button || !button.closest("#actions")) return;
  const action = button.dataset.action;
  const box = button.closest(".actions");
  const extra = {};
  if (action === "conclude") {
    const winner = box.querySelector("select[name=winner]").value;
    if (winner) extra.winner = winner;
  }
  if (action === "stop") extra.guardrail = box.querySelector("select[name=guardrail]").value;
  button.disabled = true;
  try {
    const done = await confirmedAction({ url: `${api}/${action}/`, what: WHAT[action], extra });
    if (done) await resync();
  } finally {
    button.disabled = false;
  }
});

function drawSeries(series) {
  const byArm = new Map();
  for (const point of series) {
    if (!byArm.has(point.arm)) byArm.set(point.arm, { t: [], delta: [], p: [] });
    const s = byArm.get(point.arm);
    s.t.push(epochSeconds(point.at));
    s.delta.push(point.delta);
    s.p.push(point.p);
  }
  const arms = [...byArm.entries()];
  const fmt = config.primary === "net_return" ? (v) => `${(v * 1e4).toFixed(2)} bp`
    : config.primary === "hit_rate" ? (v) => `${(v * 100).toFixed(2)} %` : (v) => v.toPrecision(3);
  const empty = '<p class="empty">No comparison yet: the series starts after the burn-in.</p>';
  const deltaEl = document.getElementById("delta-chart");
  const pEl = document.getElementById("p-chart");
  if (!lineChart(deltaEl, arms.map(([arm, s], i) => ({ label: arm, t: s.t, y: s.delta, color: PALETTE[(i + 1) % PALETTE.length] })), { format: fmt })) {
    deltaEl.innerHTML = empty;
  }
  if (!lineChart(pEl, arms.map(([arm, s], i) => ({ label: arm, t: s.t, y: s.p, color: PALETTE[(i + 1) % PALETTE.length] })), { format: (v) => v.toFixed(2), zeroLine: false, yRange: [0, 1] })) {
    pEl.innerHTML = empty;
  }
}

async function drawCumulative() {
  const el = document.getElementById("arm-cumulative");
  if (!config.since) {
    el.innerHTML = '<p class="empty">Not started yet.</p>';
    return;
  }
  const params = new URLSearchParams({ versions: config.arms.map((a) => a.version).join(","), since: config.since });
  if (config.until) params.set("until", config.until);
  const doc = await getJSON(`/dashboard-api/models/${encodeURIComponent(config.model)}/cumulative-net-return/?${params}`);
  const byVersion = new Map(doc.versions.map((v) => [v.version, v]));
  const series = config.arms.map((arm, i) => {
    const v = byVersion.get(arm.version) || { t: [], cumulative: [] };
    return { label: `${arm.name} (v${arm.version})`, t: v.t, y: v.cumulative, color: PALETTE[i % PALETTE.length] };
  });
  if (!lineChart(el, series, { format: (v) => `${(v * 100).toFixed(2)} %` })) {
    el.innerHTML = '<p class="empty">No matured outcome since the start yet.</p>';
  }
}

async function loadCharts() {
  const results = await getJSON(`${api}/results/`);
  config.until = results.experiment.ended_at;
  drawSeries(results.series);
  await drawCumulative();
  document.body.dataset.chartsLoaded = String(Number(document.body.dataset.chartsLoaded || 0) + 1);
}

async function resync() {
  await refreshRegions();
  await loadCharts();
}

drawSeries(config.series);
drawCumulative().catch((e) => console.warn("experiment: the cumulative chart could not load", e));
liveRegions({ topics: ["experiment", "outcomes", "stage", "alert"], after: loadCharts });
