"""The notification settings are checked when a process starts (system checks), and `/metrics` shows the delivery
log's state (a channel that is down is a pending message growing older)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from notifications.checks import notification_settings_check
from notifications.models import Notification


def ids(settings: Any) -> set[str]:
    return {str(m.id) for m in notification_settings_check()}


def test_the_default_settings_pass_the_checks(quiet_settings: Any) -> None:
    assert ids(quiet_settings) == set()


@pytest.mark.parametrize(
    ("name", "value", "check"),
    [
        ("NOTIFY_WEBHOOK_FORMAT", "xml", "notifications.E001"),
        ("NOTIFY_QUIET_HOURS", "late at night", "notifications.E003"),
        ("NOTIFY_QUIET_HOURS", "25:00-07:00", "notifications.E003"),
        ("NOTIFY_QUIET_HOURS_TIMEZONE", "Mars/Olympus", "notifications.E003"),
        ("NOTIFY_EMAIL_SEVERITIES", ["critical", "loud"], "notifications.E004"),
        ("NOTIFY_TELEGRAM_BOT_TOKEN", "123:abc", "notifications.W001"),
    ],
)
def test_a_bad_setting_is_reported(quiet_settings: Any, name: str, value: Any, check: str) -> None:
    if name.startswith("NOTIFY_QUIET_HOURS_"):
        quiet_settings.NOTIFY_QUIET_HOURS = "22:00-07:00"
    setattr(quiet_settings, name, value)
    assert check in ids(quiet_settings)


def test_a_signed_webhook_without_its_secret_is_an_error(quiet_settings: Any) -> None:
    quiet_settings.NOTIFY_WEBHOOK_URL = "http://127.0.0.1:18899/hook"
    assert "notifications.E002" in ids(quiet_settings)
    quiet_settings.NOTIFY_WEBHOOK_FORMAT = "slack"
    assert ids(quiet_settings) == set()


@pytest.mark.django_db
def test_metrics_show_messages_per_state_and_the_age_of_the_oldest_pending(quiet_settings: Any) -> None:
    quiet_settings.NOTIFY_WEBHOOK_URL = "http://127.0.0.1:18899/hook"
    quiet_settings.NOTIFY_WEBHOOK_SECRET = "s"
    Notification.objects.create(channel="webhook", deliver_after=timezone.now() - timedelta(minutes=10))
    text = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()

    assert 'galfriday_notifications{channel="webhook",state="pending"} 1.0' in text
    assert 'galfriday_notifications{channel="email",state="sent"} 0.0' in text
    assert 'galfriday_notification_channel_configured{channel="webhook"} 1.0' in text
    age = next(
        line
        for line in text.splitlines()
        if line.startswith('galfriday_notifications_oldest_pending_age_seconds{channel="webhook"}')
    )
    assert float(age.rsplit(" ", 1)[1]) >= 600
