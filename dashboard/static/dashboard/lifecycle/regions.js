// Resync of the lifecycle pages (models, experiments, reconciliation, system): the page asks the server for itself
// again and swaps every element marked data-region="<id>" for the fresh one. The server's rendering stays the one
// implementation of what a page shows; the channel layer only says *when* to look again (it is lossy, so the
// websocket's (re)connection always resyncs too). Bursts of events are coalesced into one reload.

import { connectLive } from "../live.js";

export async function refreshRegions() {
  const response = await fetch(location.href, {
    credentials: "same-origin",
    headers: { Accept: "text/html", "X-Dashboard-Resync": "1" },
  });
  if (!response.ok) throw new Error(`resync: ${response.status} ${response.statusText}`);
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const fresh of doc.querySelectorAll("[data-region]")) {
    const current = document.querySelector(`[data-region="${fresh.dataset.region}"]`);
    if (current) current.replaceWith(document.importNode(fresh, true));
  }
  document.dispatchEvent(new CustomEvent("gf:regions-refreshed"));
}

/**
 * Connect the page to the live socket: resync (regions and `after`) on every (re)connection, and again, coalesced
 * over `delayMs`, after an event whose topic is in `topics` ("*" for any).
 */
export function liveRegions({ topics = ["*"], after = null, delayMs = 300 } = {}) {
  let timer = null;
  const resync = async () => {
    await refreshRegions();
    if (after) await after();
  };
  const soon = () => {
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      try {
        await resync();
      } catch (e) {
        console.warn("lifecycle: refresh after an event failed; the next one or a reconnect retries", e);
      }
    }, delayMs);
  };
  const handlers = {};
  for (const topic of topics) handlers[topic] = soon;
  return connectLive({ resync, handlers });
}
