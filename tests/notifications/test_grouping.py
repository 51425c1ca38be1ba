"""Routing, grouping, repeats, flood control and quiet hours, through the services with an injected clock and real
local servers for the channels (no internet here: a local HTTP server stands in for the webhook endpoint and the
Telegram Bot API). The delivery task is not enqueued (the enqueue is recorded instead): each test drives
`notification_deliver` itself at the times it names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifications import dispatch
from notifications.config import parse_quiet_hours
from notifications.delivery import notification_deliver, notifications_redrive
from notifications.grouping import alert_event_record, reminders_send
from notifications.models import AlertEvent, Notification
from notifications.services import notification_requeue
from tests.notifications.support import HttpReceiver
from trading.alerts import alert_acknowledge, alert_raise, alert_resolve, alert_silence_create
from trading.models import Alert

pytestmark = [pytest.mark.django_db, pytest.mark.services("postgres")]


@pytest.fixture(autouse=True)
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    calls: list[tuple[int, float]] = []
    monkeypatch.setattr(dispatch, "enqueue_now", lambda pk, countdown=0.0: calls.append((pk, countdown)))
    return calls


def fire(kind: str = "exchange_disconnected", severity: str = "critical", fingerprint: str | None = None) -> Alert:
    return alert_raise(kind=kind, severity=severity, message=f"{kind} happened", fingerprint=fingerprint)


def record(alert: Alert, change: str, at: datetime, silenced: bool = False) -> AlertEvent:
    event = alert_event_record(alert_id=alert.pk, change=change, silenced=silenced, now=at)
    assert event is not None
    return event


def open_messages(channel: str) -> list[Notification]:
    return list(Notification.objects.filter(channel=channel, sealed_at__isnull=True).order_by("pk"))


def test_alerts_that_fire_within_the_group_wait_go_out_in_one_message_per_channel(
    webhook: HttpReceiver,
    telegram: HttpReceiver,
    enqueued: list[tuple[int, float]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    t0 = datetime.now(UTC)
    alerts = [fire(kind, fingerprint=kind) for kind in ("exchange_disconnected", "trading_halted", "drawdown_breach")]
    with django_capture_on_commit_callbacks(execute=True):  # the enqueue after commit (the alerts' own are not run)
        for offset, alert in enumerate(alerts):
            record(alert, "fired", t0 + timedelta(seconds=offset * 0.5))

    [hook_message] = open_messages("webhook")
    [telegram_message] = open_messages("telegram")
    assert hook_message.event_count == telegram_message.event_count == 3
    assert hook_message.deliver_after == t0 + timedelta(seconds=2)  # the group wait, from the first event
    assert sorted(pk for pk, _ in enqueued) == sorted([hook_message.pk, telegram_message.pk])

    assert notification_deliver(notification_id=hook_message.pk, now=t0 + timedelta(seconds=1)).status == "not_due"
    assert webhook.received == []
    assert notification_deliver(notification_id=hook_message.pk, now=t0 + timedelta(seconds=2.1)).status == "sent"
    assert notification_deliver(notification_id=telegram_message.pk, now=t0 + timedelta(seconds=2.1)).status == "sent"

    [posted] = webhook.received
    body = posted.json()
    assert body["alert_count"] == 3
    assert {a["alert_id"] for a in body["alerts"]} == {a.pk for a in alerts}
    assert body["subject"] == "[Gal-Friday] 3 alerts: 3 critical"
    [telegram_post] = telegram.received
    assert "3 alerts" in telegram_post.json()["text"]
    # An alert after the message was sealed opens the next one.
    record(fire("balance_low", "warning"), "fired", t0 + timedelta(seconds=3))
    [later] = open_messages("webhook")
    assert later.pk != hook_message.pk


def test_a_sent_message_is_not_sent_twice(webhook: HttpReceiver) -> None:
    t0 = datetime.now(UTC)
    record(fire(), "fired", t0)
    [message] = open_messages("webhook")
    assert notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3)).status == "sent"
    assert notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=4)).status == "done"
    assert len(webhook.received) == 1
    message.refresh_from_db()
    assert (message.state, message.attempts) == ("sent", 1)


def test_routing_by_severity_and_kind(webhook: HttpReceiver, telegram: HttpReceiver, settings: Any) -> None:
    settings.NOTIFY_WEBHOOK_SEVERITIES = ["critical"]
    settings.NOTIFY_TELEGRAM_KINDS = ["drift"]
    t0 = datetime.now(UTC)

    drift = record(fire("drift", "warning"), "fired", t0)
    halted = record(fire("trading_halted", "critical"), "fired", t0)
    info = record(fire("model_rollback", "info"), "fired", t0)

    assert drift.routed_to == ["telegram"]
    assert halted.routed_to == ["webhook"]
    assert info.routed_to == []  # nobody takes info by default
    assert AlertEvent.objects.count() == 3  # every event is in the log, routed or not


def test_repeats_within_the_interval_are_not_sent_and_an_open_alert_is_repeated_after_it(
    webhook: HttpReceiver,
) -> None:
    t0 = datetime.now(UTC)
    alert = fire()
    record(alert, "fired", t0)
    [first] = open_messages("webhook")
    assert notification_deliver(notification_id=first.pk, now=t0 + timedelta(seconds=3)).status == "sent"

    again = fire()  # raised again: the same open alert counts it
    assert (again.pk, again.count) == (alert.pk, 2)
    assert alert_event_record(alert_id=alert.pk, change="repeated", now=t0 + timedelta(minutes=5)) is None
    assert open_messages("webhook") == []

    late = record(alert, "repeated", t0 + timedelta(hours=1, seconds=10))
    assert late.routed_to == ["webhook"]
    [repeat] = open_messages("webhook")
    assert notification_deliver(notification_id=repeat.pk, now=t0 + timedelta(hours=1, seconds=13)).status == "sent"
    assert [p.json()["alerts"][0]["change"] for p in webhook.received] == ["fired", "repeated"]
    assert list(AlertEvent.objects.filter(alert_id=alert.pk).order_by("pk").values_list("change", flat=True)) == [
        "fired",
        "repeated",
    ]


def test_the_beat_reminds_of_a_firing_alert_but_not_of_an_acknowledged_one(webhook: HttpReceiver) -> None:
    t0 = datetime.now(UTC)
    firing, acked = fire("exchange_disconnected"), fire("trading_halted")
    for alert in (firing, acked):
        record(alert, "fired", t0)
    [message] = open_messages("webhook")
    notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3))
    alert_acknowledge(alert_id=acked.pk, actor="user:ops")

    assert reminders_send(now=t0 + timedelta(minutes=30)) == 0  # within the repeat interval
    assert reminders_send(now=t0 + timedelta(hours=2)) == 1
    reminder = AlertEvent.objects.get(change="reminder")
    assert (reminder.alert_id, reminder.routed_to) == (firing.pk, ["webhook"])
    assert reminders_send(now=t0 + timedelta(hours=2, minutes=1)) == 0  # one reminder per interval


def test_a_resolution_goes_to_the_channels_that_carried_the_alert(
    webhook: HttpReceiver, telegram: HttpReceiver, settings: Any
) -> None:
    settings.NOTIFY_WEBHOOK_SEVERITIES = ["critical"]
    t0 = datetime.now(UTC)
    alert = fire("balance_low", "warning")
    record(alert, "fired", t0)
    [message] = open_messages("telegram")
    notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3))

    alert_resolve(fingerprint="balance_low")
    resolved = record(alert, "resolved", t0 + timedelta(minutes=1))
    assert resolved.routed_to == ["telegram"]
    acked = record(alert, "acknowledged", t0 + timedelta(minutes=2))
    assert acked.routed_to == []  # logged only
    [notice] = open_messages("telegram")
    notification_deliver(notification_id=notice.pk, now=t0 + timedelta(minutes=2))
    assert "RESOLVED" in telegram.received[-1].json()["text"]


def test_a_silenced_alert_is_logged_and_not_sent(webhook: HttpReceiver) -> None:
    alert_silence_create(kind="drift", fingerprint="", duration=timedelta(hours=1), reason="known", actor="user:ops")
    alert = fire("drift", "warning")
    event = record(alert, "fired", datetime.now(UTC), silenced=True)
    assert (event.silenced, event.routed_to) == (True, [])
    assert Notification.objects.count() == 0


def test_flood_control_folds_the_excess_into_one_summary_and_loses_nothing(webhook: HttpReceiver) -> None:
    """Limit 3 messages per 10 minutes: five groups of alerts make three messages and one summary."""
    t0 = datetime.now(UTC)
    for group in range(5):
        at = t0 + timedelta(seconds=10 * group)
        for n in range(4):
            record(fire("order_rejections", "warning", fingerprint=f"g{group}-{n}"), "fired", at)
        [message] = open_messages("webhook")
        outcome = notification_deliver(notification_id=message.pk, now=at + timedelta(seconds=3))
        # three sent, the fourth becomes the summary, the fifth joins it
        assert outcome.status == ["sent", "sent", "sent", "folded", "not_due"][group], group

    [summary] = open_messages("webhook")
    assert summary.kind == "summary"
    assert summary.event_count == 8  # the fourth and fifth groups
    first_sent = Notification.objects.filter(state="sent").order_by("sealed_at").first()
    assert first_sent is not None
    assert first_sent.sealed_at is not None
    assert summary.deliver_after > first_sent.sealed_at + timedelta(minutes=10)
    assert notification_deliver(notification_id=summary.pk, now=t0 + timedelta(minutes=5)).status == "not_due"
    assert notification_deliver(notification_id=summary.pk, now=summary.deliver_after).status == "sent"

    assert len(webhook.received) == 4
    last = webhook.received[-1].json()
    assert (last["kind"], last["event_count"], last["alert_count"]) == ("summary", 8, 8)
    assert last["subject"].startswith("[Gal-Friday] Flood control: 8 alert events")
    # Nothing lost: all 20 events are in the log, each carried by exactly one webhook message.
    assert AlertEvent.objects.count() == 20
    assert sum(Notification.objects.filter(channel="webhook").values_list("event_count", flat=True)) == 20


def test_quiet_hours_defer_warnings_and_critical_goes_at_once(webhook: HttpReceiver, settings: Any) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    start, end = t0 - timedelta(hours=1), t0 + timedelta(hours=1)
    settings.NOTIFY_QUIET_HOURS = f"{start:%H:%M}-{end:%H:%M}"
    end_at = end.replace(second=0)

    record(fire("drift", "warning"), "fired", t0)
    record(fire("trading_halted", "critical"), "fired", t0)

    quiet = Notification.objects.get(bucket="quiet")
    now = Notification.objects.get(bucket="now")
    assert quiet.deliver_after == end_at
    assert notification_deliver(notification_id=now.pk, now=t0 + timedelta(seconds=3)).status == "sent"
    assert notification_deliver(notification_id=quiet.pk, now=t0 + timedelta(seconds=3)).status == "not_due"
    assert [p.json()["alerts"][0]["kind"] for p in webhook.received] == ["trading_halted"]
    assert notifications_redrive(now=end_at + timedelta(seconds=11)) == [quiet.pk]
    assert notification_deliver(notification_id=quiet.pk, now=end_at + timedelta(seconds=1)).status == "sent"
    assert [p.json()["alerts"][0]["kind"] for p in webhook.received] == ["trading_halted", "drift"]


@pytest.mark.parametrize(
    ("window", "at", "end"),
    [
        ("22:00-07:00", "2026-01-05T23:30", "2026-01-06T07:00"),
        ("22:00-07:00", "2026-01-06T03:00", "2026-01-06T07:00"),
        ("22:00-07:00", "2026-01-06T12:00", None),
        ("12:00-13:00", "2026-01-06T12:59", "2026-01-06T13:00"),
        ("12:00-13:00", "2026-01-06T13:00", None),
    ],
)
def test_quiet_hours_windows(window: str, at: str, end: str | None) -> None:
    quiet = parse_quiet_hours(window, "UTC")
    assert quiet is not None
    found = quiet.end_if_quiet(datetime.fromisoformat(at).replace(tzinfo=UTC))
    assert found == (datetime.fromisoformat(end).replace(tzinfo=UTC) if end else None)


def test_quiet_hours_in_a_local_time_zone() -> None:
    quiet = parse_quiet_hours("22:00-07:00", "America/New_York")
    assert quiet is not None
    # 04:00 UTC is 23:00 in New York (EST, UTC-5): quiet until 07:00 EST = 12:00 UTC.
    end = quiet.end_if_quiet(datetime(2026, 1, 6, 4, 0, tzinfo=UTC))
    assert end is not None
    assert end.astimezone(UTC) == datetime(2026, 1, 6, 12, 0, tzinfo=UTC)


def test_a_channel_that_is_down_is_retried_with_backoff_and_delivered_when_it_returns(
    quiet_settings: Any,
) -> None:
    receiver = HttpReceiver()
    quiet_settings.NOTIFY_WEBHOOK_URL = receiver.url
    quiet_settings.NOTIFY_WEBHOOK_SECRET = "s"
    quiet_settings.NOTIFY_RETRY_BACKOFF_S = 1.0
    quiet_settings.NOTIFY_RETRY_BACKOFF_MAX_S = 60.0
    t0 = datetime.now(UTC)
    record(fire(), "fired", t0)
    [message] = open_messages("webhook")

    first = notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3))
    assert first.status == "retry"
    assert first.retry_in is not None
    message.refresh_from_db()
    assert (message.state, message.attempts) == ("pending", 1)
    assert "unreachable" in message.last_error
    assert message.next_attempt_at is not None
    # Not before the backoff; then again (still down), with a longer backoff.
    assert notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3)).status == "not_due"
    second = notification_deliver(notification_id=message.pk, now=message.next_attempt_at)
    assert second.status == "retry"
    assert second.retry_in is not None
    message.refresh_from_db()
    assert message.attempts == 2
    assert second.retry_in > first.retry_in  # exponential: 1-1.25 s, then 2-2.5 s

    receiver.start()
    try:
        assert notification_deliver(notification_id=message.pk, now=message.next_attempt_at).status == "sent"
    finally:
        receiver.stop()
    message.refresh_from_db()
    assert (message.state, message.attempts) == ("sent", 3)
    assert len(receiver.received) == 1
    history = list(message.history.order_by("history_date").values_list("state", flat=True))
    assert history[-1] == "sent"
    assert "pending" in history


def test_a_permanent_error_fails_the_message_and_a_requeue_sends_it(webhook: HttpReceiver, settings: Any) -> None:
    settings.NOTIFY_WEBHOOK_SECRET = ""  # the signed JSON format refuses to send unsigned
    t0 = datetime.now(UTC)
    record(fire(), "fired", t0)
    [message] = open_messages("webhook")
    assert notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3)).status == "failed"
    message.refresh_from_db()
    assert message.state == "failed"
    assert "NOTIFY_WEBHOOK_SECRET" in message.last_error

    settings.NOTIFY_WEBHOOK_SECRET = "fixed"
    notification_requeue(notification_id=message.pk, actor="user:ops")
    assert notification_deliver(notification_id=message.pk).status == "sent"
    assert len(webhook.received) == 1
    assert message.history.filter(actor="user:ops", state="pending").exists()


def test_an_alert_reaches_every_configured_channel(
    webhook: HttpReceiver, telegram: HttpReceiver, mailbox: list[dict[str, Any]]
) -> None:
    t0 = datetime.now(UTC)
    alert = fire("reconciliation_failed", "critical")
    event = record(alert, "fired", t0)
    assert event.routed_to == ["email", "telegram", "webhook"]
    for message in Notification.objects.order_by("channel"):
        assert notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3)).status == "sent"

    [mail] = mailbox
    assert "Subject: [Gal-Friday] CRITICAL: Reconciliation failed" in mail["data"]
    assert "reconciliation_failed happened" in mail["data"]
    assert "Reconciliation failed" in telegram.received[0].json()["text"]
    assert webhook.received[0].json()["alerts"][0]["runbook_url"].endswith("#reconciliation-failed")
