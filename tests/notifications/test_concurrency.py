"""Concurrency on PostgreSQL (SQLite ignores row locks): two workers delivering the same message send it once, and
events recorded at the same time on the same channel join one open message. No internet here: a local HTTP server
stands in for the webhook endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from notifications import dispatch
from notifications.delivery import Outcome, notification_deliver
from notifications.grouping import alert_event_record
from notifications.models import Notification
from tests.notifications.conftest import SECRET
from tests.notifications.support import Received, http_receiver
from trading.alerts import alert_raise

pytestmark = [pytest.mark.services("postgres"), pytest.mark.django_db(transaction=True)]


def in_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        try:
            start.wait(timeout=10)
            results[i] = calls[i]()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_workers_delivering_the_same_message_send_it_once(
    quiet_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "enqueue_now", lambda pk, countdown=0.0: None)

    def slow(_: Received) -> tuple[int, dict[str, Any]]:
        time.sleep(0.5)  # the receiver takes its time: both workers are inside the delivery together
        return 200, {"ok": True}

    with http_receiver(slow) as receiver:
        quiet_settings.NOTIFY_WEBHOOK_URL = receiver.url
        quiet_settings.NOTIFY_WEBHOOK_SECRET = SECRET
        t0 = datetime.now(UTC)
        alert = alert_raise(kind="trading_halted", severity="critical", message="halted")
        alert_event_record(alert_id=alert.pk, change="repeated", now=t0)
        message = Notification.objects.get(channel="webhook")
        at = t0 + timedelta(seconds=3)
        outcomes: list[Outcome] = in_threads(
            [lambda: notification_deliver(notification_id=message.pk, now=at) for _ in range(2)]
        )

    assert sorted(o.status for o in outcomes) == ["busy", "sent"]
    assert len(receiver.received) == 1
    message.refresh_from_db()
    assert (message.state, message.attempts) == ("sent", 1)


def test_events_recorded_together_join_one_open_message(quiet_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "enqueue_now", lambda pk, countdown=0.0: None)
    quiet_settings.NOTIFY_WEBHOOK_URL = "http://127.0.0.1:18899/hook"
    quiet_settings.NOTIFY_WEBHOOK_SECRET = SECRET
    alerts = [
        alert_raise(kind="drift", severity="warning", message=f"drift {i}", fingerprint=f"drift:{i}") for i in range(6)
    ]
    Notification.objects.all().delete()  # what the alerts' own signals made (this test commits): start empty
    t0 = datetime.now(UTC)

    def record(alert_id: int) -> Callable[[], Any]:
        return lambda: alert_event_record(alert_id=alert_id, change="repeated", now=t0)

    in_threads([record(a.pk) for a in alerts])

    [message] = Notification.objects.filter(channel="webhook")
    assert message.event_count == 6
    assert message.items.count() == 6
