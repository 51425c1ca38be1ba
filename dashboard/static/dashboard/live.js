// Live updates of a page over the Channels websocket /ws/system/ (galfriday_site/consumers.py).
//
// The channel layer is lossy by design, so the database stays the source of truth: on every (re)connection the
// page's `resync` reloads its state over REST, and events only move it forward between resyncs. A lost
// connection is retried with exponential backoff and jitter (0.5 s doubling to 30 s). Frames are
// {"type": "event", "event": {...}}; an event is dispatched to the page's handler for its `topic` (the ingest
// worker's SystemEvent), else its `type` or `kind`, and to the "*" handler if there is one.
//
//   import { connectLive } from ".../live.js";
//   const live = connectLive({ resync: loadEverything, handlers: { alert: onAlert, "*": onAny } });
//
// The header's #gf-live badge shows the state (connecting, resyncing, live, reconnecting, stale, denied), and
// <body data-live=...> and data-resyncs=... say it to tests.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;

export function eventTopic(event) {
  return (event && (event.topic || event.type || event.kind)) || "unknown";
}

export function connectLive({ resync = null, handlers = {}, url = "/ws/system/" } = {}) {
  const badge = document.getElementById("gf-live");
  let socket = null;
  let attempt = 0;
  let timer = null;
  let stopped = false;
  let resyncs = 0;

  function setState(state, text = state) {
    document.body.dataset.live = state;
    if (badge) {
      badge.dataset.state = state;
      badge.textContent = text;
    }
  }

  function dispatch(event) {
    const topic = eventTopic(event);
    for (const handler of [handlers[topic], handlers["*"]]) {
      if (typeof handler !== "function") continue;
      try {
        handler(event, topic);
      } catch (e) {
        console.warn(`live: the handler of ${topic} failed`, e);
      }
    }
  }

  async function runResync() {
    setState("resyncing");
    try {
      if (resync) await resync();
      resyncs += 1;
      document.body.dataset.resyncs = String(resyncs);
      setState("live");
    } catch (e) {
      console.warn("live: resync failed; the page may be stale until the next reconnect", e);
      setState("stale", "stale");
    }
  }

  function schedule() {
    const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    setState("reconnecting", `reconnecting in ${Math.ceil(delay / 1000)} s`);
    timer = setTimeout(open, delay);
  }

  function open() {
    timer = null;
    setState("connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${url}`);
    socket = ws;
    ws.addEventListener("open", () => {
      attempt = 0;
      runResync();
    });
    ws.addEventListener("message", (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        console.warn("live: a frame that is not JSON");
        return;
      }
      if (frame && frame.type === "event") dispatch(frame.event || {});
    });
    ws.addEventListener("close", (ev) => {
      if (socket !== ws) return;
      socket = null;
      if (stopped) return setState("offline");
      if (ev.code === 4401) return setState("denied", "signed out");
      schedule();
    });
  }

  open();
  const live = {
    /** Drop the connection as a network failure would (it reconnects and resyncs). */
    drop() {
      if (socket) socket.close(4000, "dropped");
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (socket) socket.close(1000);
    },
    get state() {
      return document.body.dataset.live;
    },
    get resyncs() {
      return resyncs;
    },
  };
  window.gfLive = live;
  return live;
}
