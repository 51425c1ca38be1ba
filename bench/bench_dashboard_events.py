"""Event published on the channel layer → visible in the open dashboard page (issue 16): the browser harness of
the dashboard's tests (tests/dashboard/conftest.py: the real web process under uvicorn, Redis channel layer,
Debian's chromium through Playwright) with the Overview page open, and events sent to the `system` group at a
steady rate as a producer sends them.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_dashboard_bench REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/bench_dashboard_events.py [--events 500] [--rate 20] [--json out.json]

Target: p99 under 1 s. Needs a quiet machine.

Each event carries the wall-clock time it was sent (ms); a MutationObserver in the page stamps the moment its line
is added to the live feed (`performance.timeOrigin + performance.now()`, the same machine's clock), so a latency
is group_send → Redis → the web process's consumer → websocket → live.js dispatch → the DOM. The database
(`DATABASE_URL`) is migrated and EMPTIED.

Prints one JSON object: events sent and seen, p50/p90/p99/max in ms; exits 1 when one is lost or p99 is over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_P99_MS = 1000.0
OBSERVER = """() => {
  window.__latencies = [];
  const feed = document.getElementById("event-feed");
  new MutationObserver((mutations) => {
    const now = performance.timeOrigin + performance.now();
    for (const m of mutations) for (const node of m.addedNodes) {
      if (node.dataset && node.dataset.topic === "bench") {
        const sent = Number(/sent_ms=([0-9.]+)/.exec(node.textContent)[1]);
        window.__latencies.push(now - sent);
      }
    }
  }).observe(feed, { childList: true });
}"""


def publish(events: int, rate: float, errors: list[BaseException]) -> None:
    """Send `events` events to the `system` group at `rate` per second (a thread with its own event loop)."""
    from channels.layers import get_channel_layer  # reason: after django.setup()

    async def run() -> None:
        layer = get_channel_layer()
        interval = 1.0 / rate
        start = time.monotonic()
        for i in range(events):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event = {"topic": "bench", "n": i, "sent_ms": f"{time.time() * 1000:.3f}"}
            await layer.group_send("system", {"type": "system.event", "event": event})

    try:
        asyncio.run(run())
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--port", type=int, help="the web process's loopback port (default: a free one of the harness's)"
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")
    os.environ.setdefault("GALFRIDAY_ENV_FILE", "/dev/null")
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("REDIS_URL is required (the channel layer the web process shares)")
    import django  # reason: settings come from the environment

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from bench.bench_execution_report import cpu_model, prepare_database
    from tests.dashboard.conftest import CHROMIUM, loopback_port, web_env
    from tests.loopback import uvicorn_server

    prepare_database()
    user = get_user_model().objects.create_user(username="bench-viewer", password="pw-bench-123", is_staff=True)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    port = args.port or loopback_port()
    env = {**web_env(), "DJANGO_SETTINGS_MODULE": "galfriday_site.settings"}
    log = ROOT / "var" / "bench-dashboard-events-web.log"
    with uvicorn_server(env, port=port, log=log) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(base_url=base)
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base}])
        page = context.new_page()
        page.goto("/")
        page.wait_for_selector('body[data-live="live"]', timeout=30_000)
        page.evaluate(OBSERVER)
        errors: list[BaseException] = []
        sender = threading.Thread(target=publish, args=(args.events, args.rate, errors))
        sender.start()
        sender.join()
        if errors:
            raise errors[0]
        with contextlib.suppress(PlaywrightTimeout):  # lost events are reported below
            page.wait_for_function(f"window.__latencies.length >= {args.events}", timeout=10_000)
        latencies: list[float] = sorted(page.evaluate("window.__latencies"))
        browser.close()

    def at(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * q))], 2) if latencies else float("nan")

    report: dict[str, Any] = {
        "benchmark": "dashboard_event_to_browser",
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load": os.getloadavg()},
        "sent": args.events,
        "seen": len(latencies),
        "rate_per_s": args.rate,
        "p50_ms": at(0.5),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "target_p99_ms": TARGET_P99_MS,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0 if len(latencies) == args.events and report["p99_ms"] <= TARGET_P99_MS else 1


if __name__ == "__main__":
    sys.exit(main())
