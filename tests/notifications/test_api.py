"""The notifications API and admin: the delivery log and event log (any user), the channels (no secret in the
answer), the "send a test notification" action (API and admin, staff) through a local HTTP server standing in for
the webhook endpoint (no internet here), and re-queueing a failed message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from notifications.delivery import notification_deliver
from notifications.grouping import alert_event_record
from notifications.models import ChannelState, Notification
from tests.notifications.conftest import SECRET
from tests.notifications.support import HttpReceiver
from trading.alerts import alert_raise

pytestmark = [pytest.mark.django_db, pytest.mark.services("postgres")]


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_staff_sends_a_test_notification_that_reaches_the_channel(
    webhook: HttpReceiver, staff_user: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[int] = []
    monkeypatch.setattr("notifications.dispatch.enqueue_now", lambda pk, countdown=0.0: queued.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(staff_user).post(reverse("api:notifications:notification-test"), {}, format="json")

    assert response.status_code == 202, response.content
    [row] = response.json()
    assert (row["channel"], row["kind"], row["state"], row["requested_by"]) == (
        "webhook",
        "test",
        "pending",
        "user:staff",
    )
    assert queued == [row["id"]]
    assert notification_deliver(notification_id=row["id"]).status == "sent"
    [posted] = webhook.received
    assert posted.json()["kind"] == "test"
    assert "user:staff" in posted.json()["text"]


def test_a_test_notification_to_a_channel_that_is_not_configured_is_refused(
    quiet_settings: Any, staff_user: Any
) -> None:
    client = client_for(staff_user)
    url = reverse("api:notifications:notification-test")

    nowhere = client.post(url, {}, format="json")
    assert nowhere.status_code == 409
    assert nowhere.json()["error"]["code"] == "channel_not_configured"
    unknown = client.post(url, {"channel": "pigeon"}, format="json")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "validation_error"
    assert Notification.objects.count() == 0


def test_a_user_who_is_not_staff_cannot_send_a_test_notification(webhook: HttpReceiver, plain_user: Any) -> None:
    response = client_for(plain_user).post(reverse("api:notifications:notification-test"), {}, format="json")
    assert response.status_code == 403
    assert Notification.objects.count() == 0


def test_the_delivery_log_lists_messages_with_what_they_carried(webhook: HttpReceiver, plain_user: Any) -> None:
    t0 = datetime.now(UTC)
    alert = alert_raise(kind="drift", severity="warning", message="drift on v3")
    alert_event_record(alert_id=alert.pk, change="fired", now=t0)
    message = Notification.objects.get()
    notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3))
    client = client_for(plain_user)

    listed = client.get(reverse("api:notifications:notification-list"), {"channel": "webhook", "state": "sent"})
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["results"]] == [message.pk]
    assert client.get(reverse("api:notifications:notification-list"), {"state": "failed"}).json()["count"] == 0
    by_alert = client.get(reverse("api:notifications:notification-list"), {"alert_id": alert.pk})
    assert by_alert.json()["count"] == 1

    detail = client.get(reverse("api:notifications:notification-detail", args=[message.pk])).json()
    assert detail["state"] == "sent"
    assert detail["attempts"] == 1
    assert [e["alert_id"] for e in detail["events"]] == [alert.pk]
    assert "drift on v3" in detail["body"]
    assert client.get(reverse("api:notifications:notification-detail", args=[999_999])).status_code == 404

    events = client.get(reverse("api:notifications:event-list"), {"alert_id": alert.pk}).json()
    assert [(e["change"], e["routed_to"]) for e in events["results"]] == [("fired", ["webhook"])]
    bad = client.get(reverse("api:notifications:notification-list"), {"state": "lost"})
    assert bad.status_code == 400


def test_the_channel_list_shows_configuration_and_never_a_secret(
    webhook: HttpReceiver, telegram: HttpReceiver, plain_user: Any
) -> None:
    response = client_for(plain_user).get(reverse("api:notifications:channel-list"))
    assert response.status_code == 200
    rows = {r["channel"]: r for r in response.json()}
    assert (rows["webhook"]["configured"], rows["email"]["configured"], rows["telegram"]["configured"]) == (
        True,
        False,
        True,
    )
    assert rows["webhook"]["severities"] == ["critical", "warning"]
    assert SECRET not in response.content.decode()
    assert "TEST-token" not in response.content.decode()


def test_staff_requeues_a_failed_message_and_a_sent_one_is_refused(
    webhook: HttpReceiver, staff_user: Any, settings: Any
) -> None:
    settings.NOTIFY_WEBHOOK_SECRET = ""  # the signed format refuses: a permanent failure
    t0 = datetime.now(UTC)
    alert = alert_raise(kind="trading_halted", severity="critical", message="halted")
    alert_event_record(alert_id=alert.pk, change="fired", now=t0)
    message = Notification.objects.get()
    assert notification_deliver(notification_id=message.pk, now=t0 + timedelta(seconds=3)).status == "failed"
    settings.NOTIFY_WEBHOOK_SECRET = SECRET
    client = client_for(staff_user)
    url = reverse("api:notifications:notification-requeue", args=[message.pk])

    requeued = client.post(url)
    assert requeued.status_code == 200, requeued.content
    assert requeued.json()["state"] == "pending"
    assert notification_deliver(notification_id=message.pk).status == "sent"
    again = client.post(url)
    assert again.status_code == 409
    assert len(webhook.received) == 1


def test_the_admin_action_sends_a_test_notification(
    webhook: HttpReceiver, admin_client: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("notifications.dispatch.enqueue_now", lambda pk, countdown=0.0: None)
    for channel in ("webhook", "email", "telegram"):  # the migration's rows (a transactional test flushes them)
        ChannelState.objects.get_or_create(channel=channel)
    changelist = reverse("admin:notifications_channelstate_changelist")
    assert admin_client.get(changelist).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            changelist, {"action": "send_test", "_selected_action": ["webhook", "email"]}, follow=True
        )
    assert response.status_code == 200
    text = response.content.decode().lower()  # the admin capitalises its messages
    assert "webhook: test notification queued." in text
    assert "email: channel email is not configured" in text
    [message] = Notification.objects.filter(kind="test")
    assert message.requested_by == "user:admin"
    assert notification_deliver(notification_id=message.pk).status == "sent"
    assert len(webhook.received) == 1
    assert admin_client.get(reverse("admin:notifications_notification_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:notifications_notification_change", args=[message.pk])).status_code == 200
    assert admin_client.get(reverse("admin:notifications_alertevent_changelist")).status_code == 200
