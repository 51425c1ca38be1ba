// System: the health checks and Celery's queues and workers are probed after the page loads (they talk to every
// component and wait for worker replies), then every 15 s; the ingest and alert regions re-render on every
// (re)connection of the live socket and after connection, exchange-status, gap or alert events.

import { getJSON } from "../api.js";
import { esc, fmtTime } from "../format.js";
import { liveRegions } from "./regions.js";

const PROBE_EVERY_MS = 15000;

async function loadHealth() {
  const doc = await getJSON("/dashboard-api/system/health/");
  const strip = document.getElementById("health-strip");
  strip.innerHTML = Object.entries(doc.components).map(([name, c]) =>
    `<div class="component" data-component="${esc(name)}" data-status="${esc(c.status)}">` +
    `<strong>${esc(name)}</strong> ${esc(c.status)}${c.required ? "" : ' <span class="muted">(optional)</span>'}` +
    `<small>${c.latency_ms.toFixed(1)} ms${c.backend ? ` · ${esc(c.backend)}` : ""}</small>` +
    (c.error ? `<small title="${esc(c.error)}">${esc(c.error)}</small>` : "") + "</div>").join("");
  document.getElementById("health-checked").textContent = `overall ${doc.status}, checked ${fmtTime(doc.checked_at)}`;
}

async function loadCelery() {
  const doc = await getJSON("/dashboard-api/system/celery/");
  for (const row of document.querySelectorAll("#celery-queues tr[data-queue]")) {
    const depth = doc.queues[row.dataset.queue];
    row.querySelector("td.num").textContent = depth === null || depth === undefined ? "unknown" : String(depth);
  }
  const box = document.getElementById("celery-workers");
  box.innerHTML = doc.workers.length
    ? `<ul class="legend">${doc.workers.map((w) => `<li data-worker="${esc(w)}"><span class="badge ok">online</span> ${esc(w)}</li>`).join("")}</ul>`
    : `<p class="empty">No worker answered the ping${doc.error ? `: ${esc(doc.error)}` : ""}.</p>`;
  const outcomes = doc.outcomes;
  const tasks = document.getElementById("celery-tasks");
  tasks.dataset.failed = String(outcomes.failed_total);
  tasks.innerHTML = (outcomes.shared ? "" : '<p class="muted">This process counts only its own tasks (no PROMETHEUS_MULTIPROC_DIR shared with the workers).</p>') +
    (outcomes.tasks.length
      ? `<table><thead><tr><th>task</th><th class="num">failed</th><th class="num">succeeded</th><th>other outcomes</th></tr></thead><tbody>` +
        outcomes.tasks.map((t) => `<tr data-task="${esc(t.task)}"><td>${esc(t.task)}</td>` +
          `<td class="num${t.failed ? " neg" : ""}">${t.failed}</td><td class="num">${t.outcomes.success ?? 0}</td>` +
          `<td>${esc(Object.entries(t.outcomes).filter(([k]) => k !== "success").map(([k, v]) => `${k} ${v}`).join(" · ") || "–")}</td></tr>`).join("") +
        "</tbody></table>"
      : '<p class="empty">No task has finished yet.</p>');
  document.getElementById("celery-checked").textContent = doc.error ? `broker: ${doc.error}` : `checked ${fmtTime(doc.checked_at)}`;
}

async function probe() {
  const results = await Promise.allSettled([loadHealth(), loadCelery()]);
  for (const r of results) if (r.status === "rejected") console.warn("system: a probe failed", r.reason);
  document.body.dataset.probes = String(Number(document.body.dataset.probes || 0) + 1);
}

probe();
setInterval(probe, PROBE_EVERY_MS);
liveRegions({ topics: ["connection", "exchange_status", "gap", "alert", "reconnect", "trading_state"] });
