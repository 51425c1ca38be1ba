"""Benchmark: alert condition -> notification delivered, and a storm of alert events -> bounded, grouped messages.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_bench REDIS_URL=redis://127.0.0.1:6379/8 \\
        .venv/bin/python bench/bench_notifications.py latency [--alerts 100] [--group-wait-s 2]
    DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/bench_notifications.py storm \\
        [--events 1000] [--seconds 60] [--fingerprints 200] [--flood-limit 10] [--flood-window-s 300]

Targets (issue 17): condition -> notification delivered p99 under 5 s; a storm of 1,000 alert events in a minute
gives a bounded number of grouped messages, and nothing is lost from the log.

Processes, all on this machine: a real Celery worker (``celery -A galfriday_site worker -Q default --pool solo``) on
the Redis broker and PostgreSQL (the database is created if missing, migrated and flushed: never point it at a
database you keep); a local HTTP server in this process standing in for the webhook endpoint (no internet here),
which verifies each request's HMAC signature and stamps its arrival; and this process, which raises the alerts
through ``trading.alerts.alert_raise`` exactly as the rules do (the ``alert_changed`` signal after commit, the
notifications receiver logging and grouping the event in this process, the delivery task on the worker).

latency: one alert at a time (a new fingerprint each, critical), each waited for at the receiver before the next
(``--gap-ms`` idle in between). Timed from just before ``alert_raise`` to the receiver's stamp: the raise and its
commit, the event logged and grouped, the group wait (``NOTIFY_GROUP_WAIT_S``, default the setting's 2 s: it is
most of the figure), the broker, the worker's seal and send, the HTTP request. Flood control is set out of reach
(``NOTIFY_FLOOD_LIMIT`` 1,000,000) because one message per alert is the point here.

storm: ``--events`` raises spread evenly over ``--seconds``, each on one of ``--fingerprints`` conditions drawn
at random (seeded; kinds and severities mixed: a new condition fires, a known one repeats), with the production
flood settings unless given. Then it waits until no message is pending (the flood summary is due when the window
has room again) and counts: raises accounted for (the alerts' counts: a repeat is counted on its alert, and logged
as an event when it is sent), conditions fired and their events logged (one each), events routed to the webhook,
messages and their kinds, requests the receiver got, and whether every routed event was carried by exactly one
sent message (nothing lost).

Prints one JSON object; exits 1 when something was lost, a signature did not verify or a message is not sent.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_execution_report import bench_environment, prepare_database  # noqa: E402
from bench.stats import percentiles  # noqa: E402

SECRET = "bench-webhook-secret"
PORT = 18899  # this helper's loopback range ends here
KINDS = [
    ("exchange_disconnected", "critical"),
    ("reconciliation_failed", "critical"),
    ("model_degraded", "critical"),
    ("latency_high", "warning"),
    ("drift", "warning"),
    ("db_pool_exhausted", "warning"),
    ("balance_low", "warning"),
    ("order_rejections", "warning"),
]


class Receiver:
    """The webhook endpoint: verifies the signature, stamps arrival (time.time_ns), keeps the JSON."""

    def __init__(self, port: int) -> None:
        self.requests: list[tuple[int, dict[str, Any]]] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time_ns()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fields = dict(
                    p.split("=", 1) for p in self.headers.get("X-GalFriday-Signature", "").split(",") if "=" in p
                )
                mac = hmac.new(SECRET.encode(), fields.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
                with receiver.lock:
                    if not hmac.compare_digest(mac, fields.get("v1", "")):
                        receiver.bad_signatures += 1
                    receiver.requests.append((arrived, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    celery = str(Path(sys.executable).with_name("celery"))
    args = [celery, "-A", "galfriday_site", "worker", "-Q", "default", "--pool", "solo", "--concurrency", "1"]
    args += [
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "WARNING",
        "--hostname",
        f"bench-notify-{os.getpid()}@%h",
    ]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise SystemExit(f"timed out after {timeout_s} s waiting for {what}")


def run_latency(receiver: Receiver, alerts: int, warmup: int, gap_s: float) -> dict[str, Any]:
    from trading.alerts import alert_raise

    samples: list[int] = []
    for i in range(warmup + alerts):
        seen = len(receiver.requests)
        started = time.time_ns()
        alert = alert_raise(
            kind="exchange_disconnected",
            severity="critical",
            message=f"bench alert {i}",
            fingerprint=f"bench-latency-{os.getpid()}-{i}",
        )
        wait_until(lambda seen=seen: len(receiver.requests) > seen, 60, f"alert {i} at the receiver")
        arrived, body = receiver.requests[seen]
        if [a["alert_id"] for a in body["alerts"]] != [alert.pk]:
            raise SystemExit(f"alert {i}: the receiver got {body['alerts']}")
        if i >= warmup:
            samples.append(arrived - started)
        time.sleep(gap_s)
    return {"condition_to_delivered": percentiles(samples, count_key="alerts")}


def run_storm(receiver: Receiver, events: int, seconds: float, fingerprints: int) -> dict[str, Any]:
    from django.db.models import Sum

    from notifications.models import AlertEvent, Notification, NotificationItem
    from trading.alerts import alert_raise
    from trading.models import Alert

    chooser = random.Random(17)
    started = time.monotonic()
    for i in range(events):
        due = started + seconds * i / events
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        n = chooser.randrange(fingerprints)  # conditions firing and coming back all through the storm
        kind, severity = KINDS[n % len(KINDS)]
        alert_raise(kind=kind, severity=severity, message=f"storm condition {n}", fingerprint=f"storm-{n}")
    raise_s = time.monotonic() - started
    drained_at = wait_until(
        lambda: not Notification.objects.filter(state="pending").exists() and time.monotonic(), 3600, "no pending"
    )
    webhook = Notification.objects.filter(channel="webhook")
    storm_alerts = Alert.objects.filter(fingerprint__startswith="storm-")
    routed = AlertEvent.objects.filter(routed_to__contains=["webhook"]).count()
    carried = NotificationItem.objects.filter(notification__channel="webhook").count()
    carried_sent = NotificationItem.objects.filter(notification__channel="webhook", notification__state="sent").count()
    kinds = {k: webhook.filter(kind=k).count() for k in ("alerts", "summary")}
    return {
        "events_raised": events,
        "raise_seconds": round(raise_s, 1),
        "drained_after_s": round(drained_at - started, 1),
        "raises_counted_on_alerts": storm_alerts.aggregate(n=Sum("count"))["n"],
        "alerts_fired": storm_alerts.count(),
        "events_logged": AlertEvent.objects.count(),
        "events_by_change": {c: AlertEvent.objects.filter(change=c).count() for c in ("fired", "repeated")},
        "events_routed_to_webhook": routed,
        "events_carried_by_webhook_messages": carried,
        "events_carried_by_sent_messages": carried_sent,
        "webhook_messages": webhook.count(),
        "webhook_messages_by_kind": kinds,
        "webhook_messages_sent": webhook.filter(state="sent").count(),
        "event_count_sum": webhook.aggregate(n=Sum("event_count"))["n"] or 0,
        "receiver_requests": len(receiver.requests),
        "events_in_received_payloads": sum(body["event_count"] for _, body in receiver.requests),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    latency = sub.add_parser("latency")
    latency.add_argument("--alerts", type=int, default=100)
    latency.add_argument("--warmup", type=int, default=3)
    latency.add_argument("--gap-ms", type=float, default=200.0)
    latency.add_argument("--group-wait-s", type=float, default=None, help="NOTIFY_GROUP_WAIT_S (default: setting's)")
    storm = sub.add_parser("storm")
    storm.add_argument("--events", type=int, default=1000)
    storm.add_argument("--seconds", type=float, default=60.0)
    storm.add_argument("--fingerprints", type=int, default=200)
    storm.add_argument("--group-wait-s", type=float, default=None)
    storm.add_argument("--flood-limit", type=int, default=None, help="NOTIFY_FLOOD_LIMIT (default: setting's)")
    storm.add_argument("--flood-window-s", type=int, default=None, help="NOTIFY_FLOOD_WINDOW_S (default: setting's)")
    parser.add_argument("--log-dir", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="galfriday-bench-notify-") as var_dir:
        env = {
            **os.environ,
            **bench_environment(var_dir),
            "PYTHONPATH": str(ROOT),
            "NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{PORT}/hook",
            "NOTIFY_WEBHOOK_SECRET": SECRET,
            "NOTIFY_WEBHOOK_FORMAT": "json",
            "NOTIFY_EMAIL_TO": "",
            "NOTIFY_TELEGRAM_BOT_TOKEN": "",
            "NOTIFY_QUIET_HOURS": "",
            # A production start (DEBUG off) refuses to run without an artifact key: a fresh one for the run.
            "MODELS_REGISTRY_ARTIFACT_KEYS": "k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        if args.group_wait_s is not None:
            env["NOTIFY_GROUP_WAIT_S"] = str(args.group_wait_s)
        if args.mode == "latency":
            env["NOTIFY_FLOOD_LIMIT"] = "1000000"
        else:
            if args.flood_limit is not None:
                env["NOTIFY_FLOOD_LIMIT"] = str(args.flood_limit)
            if args.flood_window_s is not None:
                env["NOTIFY_FLOOD_WINDOW_S"] = str(args.flood_window_s)
        os.environ.update(env)
        import django

        django.setup()
        from django.conf import settings

        from galfriday_site.celery import app

        prepare_database()
        app.control.purge()
        log_dir = Path(args.log_dir) if args.log_dir else Path(var_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        receiver = Receiver(PORT)
        worker = start_worker(env, log_dir / "worker.log")
        try:
            wait_until(
                lambda: worker.poll() is not None or app.control.ping(timeout=1.0), 120, "the worker", interval_s=0.5
            )
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited ({worker.returncode}); see {log_dir / 'worker.log'}")
            if args.mode == "latency":
                result = run_latency(receiver, args.alerts, args.warmup, args.gap_ms / 1000)
            else:
                result = run_storm(receiver, args.events, args.seconds, args.fingerprints)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
            receiver.stop()
        result = {
            "mode": args.mode,
            "group_wait_s": settings.NOTIFY_GROUP_WAIT_S,
            "flood_limit": settings.NOTIFY_FLOOD_LIMIT,
            "flood_window_s": settings.NOTIFY_FLOOD_WINDOW_S,
            "bad_signatures": receiver.bad_signatures,
            **result,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        }
    print(json.dumps(result, indent=2))
    problems = []
    if receiver.bad_signatures:
        problems.append(f"{receiver.bad_signatures} requests with a bad signature")
    if args.mode == "storm":
        if result["raises_counted_on_alerts"] != result["events_raised"]:
            problems.append("raises lost (the alerts' counts)")
        if result["events_by_change"]["fired"] != result["alerts_fired"]:
            problems.append("fired events lost from the log")
        if not (
            result["events_routed_to_webhook"]
            == result["events_carried_by_webhook_messages"]
            == result["events_carried_by_sent_messages"]
            == result["events_in_received_payloads"]
        ):
            problems.append("routed events not all carried by exactly one sent message")
    if problems:
        print("bench_notifications: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
