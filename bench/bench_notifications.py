"""Benchmark: alert condition -> notification delivered, and a storm of alert events -> bounded, grouped messages.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_bench REDIS_URL=redis://127.0.0.1:6379/8 \\
        .venv/bin/python bench/bench_notifications.py latency [--alerts 100] [--group-wait-s 2]
    DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/bench_notifications.py storm \\
        [--events 1000] [--seconds 60] [--fingerprints 200] [--flood-limit 10] [--flood-window-s 300] [--email]
    DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/bench_notifications.py [--port 9550] rules \\
        [--conditions 120] [--assets 8] [--mean-gap-s 2] [--group-wait-s 1]

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

rules: the whole production path, from a condition in the database to a person's inbox. Celery beat runs too, on
the production schedule (``setup_periodic_tasks``) with only the alert rules' database group, the notifications'
re-drive and reminders enabled, and the e-mail channel is on as well, through Django's SMTP backend to a real SMTP
server (aiosmtpd) in this process on ``--port`` + 1. ``--assets`` assets each have a minimum balance
(GALFRIDAY_ALERT_BALANCE_MIN, a rule only the schedule sees); at random times (exponential gaps of mean
``--mean-gap-s``) an idle asset's balance is set below its minimum (``trading.accounts.balance_set``, as the ingest
worker does from the exchange's balances; the condition holds from its commit), and once the alert reached both
receivers the balance is restored, and the resolution is waited for at both. ``--conditions`` such cycles. Parts:
condition -> alert raised (its ``created_at``: the beat interval, the queue, the pass), raised -> delivered per
channel (the group wait, the broker, the seal and send), condition -> delivered per channel and on both ("all"), and
the same for the condition clearing (the clear follows a delivery, so it is in phase with the beat: its figures
are not a uniform sample of the interval). Flood control is out of reach, as in ``latency``.

storm: ``--events`` raises spread evenly over ``--seconds``, each on one of ``--fingerprints`` conditions drawn
at random (seeded; kinds and severities mixed: a new condition fires, a known one repeats), with the production
flood settings unless given (``--email``: the e-mail channel on too, to a real SMTP server as in ``rules``).
Then it waits until no message is pending (the flood summary is due when the window
has room again) and counts: raises accounted for (the alerts' counts: a repeat is counted on its alert, and logged
as an event when it is sent), conditions fired and their events logged (one each), events routed to the webhook,
messages and their kinds, requests the receiver got, and whether every routed event was carried by exactly one
sent message (nothing lost).

Prints one JSON object; exits 1 when something was lost, a signature did not verify or a message is not sent.
"""

from __future__ import annotations

import argparse
import base64
import email
import hashlib
import hmac
import io
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_execution_report import bench_environment, prepare_database  # noqa: E402
from bench.stats import percentiles  # noqa: E402

SECRET = "bench-webhook-secret"
PORT = 9550  # --port; the SMTP server of `rules` listens on the next one
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


class Mailbox:
    """A real SMTP server (aiosmtpd) on loopback standing in for the operator's mail server (no internet here):
    stamps each message's arrival (time.time_ns) with its delivery id (the X-GalFriday-Delivery header)."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command lines

        self.requests: list[tuple[int, int]] = []
        self.lock = threading.Lock()
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                arrived = time.time_ns()
                message = email.message_from_bytes(envelope.content)
                with mailbox.lock:
                    mailbox.requests.append((arrived, int(message["X-GalFriday-Delivery"])))
                return "250 Message accepted for delivery"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


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


def start_beat(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """Celery beat on django-celery-beat's database schedule, as production runs it."""
    celery = str(Path(sys.executable).with_name("celery"))
    args = [celery, "-A", "galfriday_site", "beat", "-S", "django", "--loglevel", "WARNING"]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def schedule_alerting_only() -> list[str]:
    """The production schedule (setup_periodic_tasks), with only the alert rules' database group and the
    notifications' re-drive and reminders enabled: nothing else runs (no worker consumes the other queues, and the
    broker group's queue_no_worker would fire on them)."""
    from django.core.management import call_command
    from django_celery_beat.models import PeriodicTask

    from galfriday_site.periodic import MANAGED_PREFIX

    call_command("setup_periodic_tasks", stdout=io.StringIO())
    keep = [MANAGED_PREFIX + n for n in ("alert rules", "notifications re-drive", "notification reminders")]
    PeriodicTask.objects.exclude(name__in=keep).update(enabled=False)
    return sorted(PeriodicTask.objects.filter(enabled=True).values_list("name", flat=True))


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


def run_rules(
    webhook: Receiver, mailbox: Mailbox, conditions: int, assets: list[str], mean_gap_s: float
) -> dict[str, Any]:
    """Conditions made true in the database, found by the beat-scheduled rules, delivered on both channels: see the
    module. Returns the distributions of each part, per channel."""
    from notifications.models import NotificationItem
    from trading.accounts import balance_set
    from trading.models import Alert

    chooser = random.Random(17)
    channels = ("webhook", "email")
    # asset -> ("low", t0) | ("restored", t1, alert_id)
    state: dict[str, tuple[Any, ...]] = {}
    delivered: dict[tuple[int, str, str], int] = {}  # (alert_id, change, channel) -> first arrival
    fingerprints: dict[int, str] = {}
    cycles: list[dict[str, Any]] = []
    seen = {"webhook": 0, "email": 0}
    started = 0
    next_start = time.monotonic()
    deadline_s = 120.0

    def arrivals() -> None:
        with webhook.lock:
            hooks = [(t, int(body["delivery_id"])) for t, body in webhook.requests[seen["webhook"] :]]
            seen["webhook"] = len(webhook.requests)
        with mailbox.lock:
            mails = list(mailbox.requests[seen["email"] :])
            seen["email"] = len(mailbox.requests)
        for channel, got in (("webhook", hooks), ("email", mails)):
            for arrived, delivery_id in got:
                for alert_id, change in NotificationItem.objects.filter(notification_id=delivery_id).values_list(
                    "event__alert_id", "event__change"
                ):
                    delivered.setdefault((alert_id, change, channel), arrived)

    def alert_of(asset: str, change: str) -> int | None:
        for (alert_id, ch, _), _t in list(delivered.items()):
            if ch != change:
                continue
            if alert_id not in fingerprints:
                fingerprints[alert_id] = Alert.objects.values_list("fingerprint", flat=True).get(pk=alert_id)
            if fingerprints[alert_id] == f"balance_low:{asset}" and not any(
                c.get("alert_id") == alert_id for c in cycles
            ):
                return alert_id
        return None

    while len(cycles) < conditions:
        now = time.monotonic()
        idle = [a for a in assets if a not in state]
        if started < conditions and now >= next_start and idle:
            asset = chooser.choice(idle)
            balance_set(asset=asset, total=Decimal("1"))  # committed: the condition holds from here
            state[asset] = ("low", time.time_ns(), now)
            started += 1
            next_start = now + chooser.expovariate(1.0 / mean_gap_s)
        arrivals()
        for asset, st in list(state.items()):
            if time.monotonic() - st[2] > deadline_s:
                raise SystemExit(f"{asset}: nothing delivered within {deadline_s} s of {st[0]}")
            if st[0] == "low":
                alert_id = alert_of(asset, "fired")
                if alert_id is None or not all((alert_id, "fired", c) in delivered for c in channels):
                    continue
                balance_set(asset=asset, total=Decimal("1000"))  # the condition clears
                state[asset] = ("restored", time.time_ns(), time.monotonic(), alert_id, st[1])
            else:
                _, cleared, _, alert_id, made_true = st
                if not all((alert_id, "resolved", c) in delivered for c in channels):
                    continue
                alert = Alert.objects.get(pk=alert_id)
                assert alert.resolved_at is not None
                raised, resolved = alert.created_at.timestamp() * 1e9, alert.resolved_at.timestamp() * 1e9
                cycle: dict[str, Any] = {"alert_id": alert_id, "asset": asset}
                cycle["condition_to_raised"] = raised - made_true
                if raised < made_true:
                    raise SystemExit(f"{asset}: alert {alert_id} was raised before its condition held")
                cycle["clear_to_resolved"] = resolved - cleared
                for c in channels:
                    cycle[f"condition_to_delivered:{c}"] = delivered[(alert_id, "fired", c)] - made_true
                    cycle[f"raised_to_delivered:{c}"] = delivered[(alert_id, "fired", c)] - raised
                    cycle[f"clear_to_delivered:{c}"] = delivered[(alert_id, "resolved", c)] - cleared
                cycle["condition_to_delivered:all"] = max(cycle[f"condition_to_delivered:{c}"] for c in channels)
                cycles.append(cycle)
                del state[asset]
        time.sleep(0.01)

    def dist(key: str) -> dict[str, Any]:
        return percentiles([int(c[key]) for c in cycles], count_key="conditions")

    keys = ["condition_to_raised", "clear_to_resolved"] + [
        f"{part}:{c}"
        for part in ("condition_to_delivered", "raised_to_delivered", "clear_to_delivered")
        for c in (*channels, "all")
        if not (c == "all" and part != "condition_to_delivered")
    ]
    return {
        "conditions": len(cycles),
        "over_5_s": sum(1 for c in cycles if c["condition_to_delivered:all"] > 5e9),
        **{key: dist(key) for key in keys},
    }


def run_storm(
    receiver: Receiver, events: int, seconds: float, fingerprints: int, mailbox: Mailbox | None = None
) -> dict[str, Any]:
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
        **({"email": storm_email(mailbox)} if mailbox is not None else {}),
    }


def storm_email(mailbox: Mailbox) -> dict[str, Any]:
    """The e-mail channel's side of a storm: its messages, and whether each sent one reached the SMTP server once."""
    from django.db.models import Sum

    from notifications.models import AlertEvent, Notification, NotificationItem

    mail = Notification.objects.filter(channel="email")
    received = [delivery_id for _, delivery_id in mailbox.requests]
    sent_ids = sorted(mail.filter(state="sent").values_list("pk", flat=True))
    return {
        "events_routed": AlertEvent.objects.filter(routed_to__contains=["email"]).count(),
        "events_carried_by_messages": NotificationItem.objects.filter(notification__channel="email").count(),
        "events_carried_by_sent_messages": NotificationItem.objects.filter(
            notification__channel="email", notification__state="sent"
        ).count(),
        "messages": mail.count(),
        "messages_by_kind": {k: mail.filter(kind=k).count() for k in ("alerts", "summary")},
        "messages_sent": len(sent_ids),
        "event_count_sum": mail.aggregate(n=Sum("event_count"))["n"] or 0,
        "smtp_messages_received": len(received),
        "each_sent_message_received_once": sorted(received) == sent_ids,
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
    storm.add_argument("--email", action="store_true", help="the e-mail channel on too (a real SMTP server)")
    rules = sub.add_parser("rules")
    rules.add_argument("--conditions", type=int, default=120)
    rules.add_argument("--assets", type=int, default=8, help="conditions that may hold at once")
    rules.add_argument("--mean-gap-s", type=float, default=2.0, help="mean time between conditions (exponential)")
    rules.add_argument("--group-wait-s", type=float, default=None)
    parser.add_argument("--port", type=int, default=PORT, help="the webhook receiver's; SMTP on the next one")
    parser.add_argument("--log-dir", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="galfriday-bench-notify-") as var_dir:
        env = {
            **os.environ,
            **bench_environment(var_dir),
            "PYTHONPATH": str(ROOT),
            "NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{args.port}/hook",
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
        assets = [f"BENCH{i:02d}" for i in range(getattr(args, "assets", 0))]
        if args.mode == "rules" or getattr(args, "email", False):
            env.update(
                NOTIFY_EMAIL_TO="ops@example.com",
                EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                EMAIL_HOST="127.0.0.1",
                EMAIL_PORT=str(args.port + 1),
                EMAIL_USE_TLS="false",
                GALFRIDAY_ALERT_BALANCE_MIN=",".join(f"{a}=100" for a in assets),
            )
        if args.mode in ("latency", "rules"):
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
        receiver = Receiver(args.port)
        mailbox = Mailbox(args.port + 1) if args.mode == "rules" or getattr(args, "email", False) else None
        schedule = []
        if args.mode == "rules":
            from trading.accounts import balance_set

            for asset in assets:  # above the minimum before the rules first run (a missing balance is zero)
                balance_set(asset=asset, total=Decimal("1000"))
            schedule = schedule_alerting_only()
        worker = start_worker(env, log_dir / "worker.log")
        beat = start_beat(env, log_dir / "beat.log") if args.mode == "rules" else None
        try:
            wait_until(
                lambda: worker.poll() is not None or app.control.ping(timeout=1.0), 120, "the worker", interval_s=0.5
            )
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited ({worker.returncode}); see {log_dir / 'worker.log'}")
            if args.mode == "latency":
                result = run_latency(receiver, args.alerts, args.warmup, args.gap_ms / 1000)
            elif args.mode == "rules":
                assert mailbox is not None
                result = {
                    "schedule": schedule,
                    **run_rules(receiver, mailbox, args.conditions, assets, args.mean_gap_s),
                }
            else:
                result = run_storm(receiver, args.events, args.seconds, args.fingerprints, mailbox)
        finally:
            for process in (beat, worker):
                if process is None:
                    continue
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            receiver.stop()
            if mailbox is not None:
                mailbox.stop()
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
        mail = result.get("email")
        if mail is not None and not (
            mail["events_routed"] == mail["events_carried_by_messages"] == mail["events_carried_by_sent_messages"]
            and mail["each_sent_message_received_once"]
        ):
            problems.append("e-mail: routed events not all carried by a sent message received once")
    if problems:
        print("bench_notifications: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
