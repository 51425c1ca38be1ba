"""The wiring, with a real Celery worker (celery's test worker on Redis, the project's queues) and the real signal
path: an alert raised and committed -> `alert_changed` -> the event logged and grouped -> the delivery task on the
`default` queue -> the channel. No internet here: a local HTTP server stands in for the webhook endpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from galfriday_site.celery import make_celery_app
from notifications import dispatch
from notifications.delivery import REDRIVE_GRACE, notifications_redrive
from notifications.models import AlertEvent, Notification
from tests.notifications.conftest import SECRET
from tests.notifications.support import HttpReceiver, verify_hmac
from tests.waiting import wait_for
from trading.alerts import alert_raise

# PostgreSQL and Redis: the worker thread and the test share rows and the broker; the test commits (transaction).
pytestmark = [pytest.mark.services("postgres", "redis"), pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_app() -> Iterator[Celery]:
    url = os.environ["REDIS_URL"]
    app = make_celery_app("galfriday_notify_test", broker_url=url, result_backend=url)
    app.control.purge()  # nothing left over from another run on this broker database
    with start_worker(app, pool="solo", perform_ping_check=False, queues=["default"], shutdown_timeout=10):
        yield app


def _sent(channel: str) -> list[Notification]:
    return list(Notification.objects.filter(channel=channel, state="sent"))


def test_an_alert_reaches_the_webhook_through_a_real_worker(
    webhook: HttpReceiver, quiet_settings: Any, worker_app: Celery
) -> None:
    quiet_settings.NOTIFY_GROUP_WAIT_S = 0.5
    alert = alert_raise(kind="exchange_disconnected", severity="critical", message="WebSocket down for 6 minutes")

    [message] = wait_for(lambda: _sent("webhook"), timeout=30, what="the message sent by the worker")
    [posted] = webhook.received
    assert verify_hmac(SECRET, posted.headers["X-GalFriday-Signature"], posted.body)
    assert posted.json()["alerts"][0]["alert_id"] == alert.pk
    assert posted.json()["delivery_id"] == message.pk
    assert AlertEvent.objects.get(alert_id=alert.pk).routed_to == ["webhook"]


def test_a_channel_that_is_down_is_retried_logged_and_delivered_when_it_returns(
    quiet_settings: Any, worker_app: Celery
) -> None:
    receiver = HttpReceiver()  # not started yet: the channel is down
    quiet_settings.NOTIFY_WEBHOOK_URL = f"{receiver.url}/hook"
    quiet_settings.NOTIFY_WEBHOOK_SECRET = SECRET
    quiet_settings.NOTIFY_GROUP_WAIT_S = 0.2
    quiet_settings.NOTIFY_RETRY_BACKOFF_S = 0.3
    quiet_settings.NOTIFY_RETRY_BACKOFF_MAX_S = 1.0
    alerts = [
        alert_raise(kind=kind, severity="critical", message=f"{kind} now")
        for kind in ("trading_halted", "reconciliation_failed")
    ]

    message = wait_for(
        lambda: Notification.objects.filter(channel="webhook", attempts__gte=3).first(),
        timeout=60,
        what="three failed attempts",
    )
    assert message is not None
    assert message.state == "pending"
    assert "unreachable" in message.last_error  # the delivery log says why
    receiver.start()
    try:
        wait_for(lambda: _sent("webhook"), timeout=60, what="delivery after the channel returned")
    finally:
        receiver.stop()

    # Nothing lost: both alerts in the log and in what the receiver got, exactly once.
    assert AlertEvent.objects.filter(alert_id__in=[a.pk for a in alerts]).count() == 2
    posted = [a["alert_id"] for p in receiver.received for a in p.json()["alerts"]]
    assert sorted(posted) == sorted(a.pk for a in alerts)
    assert len(receiver.received) == Notification.objects.filter(channel="webhook").count()


def test_the_re_drive_sends_a_message_whose_task_was_never_enqueued(
    webhook: HttpReceiver, quiet_settings: Any, worker_app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet_settings.NOTIFY_GROUP_WAIT_S = 0.2
    refused: list[int] = []
    with monkeypatch.context() as patch:  # the broker refuses the enqueue after commit
        patch.setattr(dispatch, "enqueue_now", lambda pk, countdown=0.0: refused.append(pk))
        alert = alert_raise(kind="balance_low", severity="warning", message="USD below 100")
    [message] = Notification.objects.filter(channel="webhook")
    assert refused == [message.pk]
    assert notifications_redrive() == []  # not late yet

    assert notifications_redrive(now=timezone.now() + REDRIVE_GRACE * 2) == [message.pk]
    wait_for(lambda: _sent("webhook"), timeout=30, what="the re-driven message")
    assert [a["alert_id"] for a in webhook.received[0].json()["alerts"]] == [alert.pk]
