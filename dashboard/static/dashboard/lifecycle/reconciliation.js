// Reconciliation: staff resolve a discrepancy with a note (required, recorded), acknowledge one, or ask for a run,
// through the reconciliation API; the page re-renders its regions after each action, on every (re)connection of
// the live socket and after a reconciliation or alert event.

import { askReason, confirmedAction, flash, postJSON } from "../api.js";
import { liveRegions, refreshRegions } from "./regions.js";

async function resolve(id) {
  const note = await askReason(`resolve discrepancy ${id} (the note is kept with it)`);
  if (note === null) return false;
  try {
    await postJSON(`/api/reconciliation/discrepancies/${id}/resolve/`, { note });
    flash(`Done: discrepancy ${id} resolved.`, "ok");
    return true;
  } catch (e) {
    flash(`Not done: resolve discrepancy ${id}: ${e.message}`, "error");
    return false;
  }
}

async function acknowledge(id) {
  const note = await askReason(`acknowledge discrepancy ${id}`);
  if (note === null) return false;
  try {
    await postJSON(`/api/reconciliation/discrepancies/${id}/acknowledge/`, { note });
    flash(`Done: discrepancy ${id} acknowledged.`, "ok");
    return true;
  } catch (e) {
    flash(`Not done: acknowledge discrepancy ${id}: ${e.message}`, "error");
    return false;
  }
}

document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("button[data-action]");
  if (!button || !button.closest("#reconciliation")) return;
  button.disabled = true;
  let done = false;
  try {
    if (button.dataset.action === "resolve") done = await resolve(button.dataset.id);
    else if (button.dataset.action === "acknowledge") done = await acknowledge(button.dataset.id);
    else if (button.dataset.action === "trigger") {
      done = Boolean(await confirmedAction({ url: "/api/reconciliation/runs/trigger/", what: "run a reconciliation now" }));
    }
    if (done) await refreshRegions();
  } finally {
    if (document.contains(button)) button.disabled = false;
  }
});

liveRegions({ topics: ["reconciliation", "alert", "connection"] });
