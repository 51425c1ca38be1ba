"""Fixtures of the notifications tests: the channels pointed at local servers (see support.py), every routing
and grouping parameter set explicitly so a test reads its own numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.notifications.support import HttpReceiver, http_receiver, smtp_server

SECRET = "test-webhook-secret"
BOT_TOKEN = "123456:TEST-token"
CHAT_ID = "-1001"


@pytest.fixture
def quiet_settings(settings: Any) -> Any:
    """No channel configured; grouping parameters fixed (group wait 2 s, repeat 1 h, 3 messages per 10 min)."""
    settings.NOTIFY_WEBHOOK_URL = ""
    settings.NOTIFY_WEBHOOK_SECRET = ""
    settings.NOTIFY_WEBHOOK_FORMAT = "json"
    settings.NOTIFY_EMAIL_TO = []
    settings.NOTIFY_TELEGRAM_BOT_TOKEN = ""
    settings.NOTIFY_TELEGRAM_CHAT_ID = ""
    for channel in ("WEBHOOK", "EMAIL", "TELEGRAM"):
        setattr(settings, f"NOTIFY_{channel}_SEVERITIES", ["critical", "warning"])
        setattr(settings, f"NOTIFY_{channel}_KINDS", [])
    settings.NOTIFY_GROUP_WAIT_S = 2.0
    settings.NOTIFY_REPEAT_INTERVAL_S = 3600
    settings.NOTIFY_FLOOD_LIMIT = 3
    settings.NOTIFY_FLOOD_WINDOW_S = 600
    settings.NOTIFY_QUIET_HOURS = ""
    settings.NOTIFY_QUIET_HOURS_TIMEZONE = "UTC"
    settings.NOTIFY_TIMEOUT_S = 5.0
    settings.NOTIFY_RETRY_BACKOFF_S = 0.2
    settings.NOTIFY_RETRY_BACKOFF_MAX_S = 1.0
    return settings


@pytest.fixture
def webhook(quiet_settings: Any) -> Iterator[HttpReceiver]:
    """The webhook channel on, pointed at a local HTTP server (standing in for the operator's endpoint)."""
    with http_receiver() as receiver:
        quiet_settings.NOTIFY_WEBHOOK_URL = f"{receiver.url}/hook"
        quiet_settings.NOTIFY_WEBHOOK_SECRET = SECRET
        yield receiver


@pytest.fixture
def telegram(quiet_settings: Any) -> Iterator[HttpReceiver]:
    """The Telegram channel on, its Bot API base URL pointed at a local HTTP server (no internet here)."""
    with http_receiver() as receiver:
        quiet_settings.NOTIFY_TELEGRAM_API_URL = receiver.url
        quiet_settings.NOTIFY_TELEGRAM_BOT_TOKEN = BOT_TOKEN
        quiet_settings.NOTIFY_TELEGRAM_CHAT_ID = CHAT_ID
        yield receiver


@pytest.fixture
def mailbox(quiet_settings: Any) -> Iterator[list[dict[str, Any]]]:
    """The e-mail channel on, through Django's SMTP backend to a real SMTP server (aiosmtpd) on loopback."""
    with smtp_server() as (port, messages):
        quiet_settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        quiet_settings.EMAIL_HOST = "127.0.0.1"
        quiet_settings.EMAIL_PORT = port
        quiet_settings.EMAIL_USE_TLS = False
        quiet_settings.EMAIL_USE_SSL = False
        quiet_settings.EMAIL_HOST_USER = ""
        quiet_settings.EMAIL_HOST_PASSWORD = ""
        quiet_settings.NOTIFY_EMAIL_TO = ["ops@example.com", "oncall@example.com"]
        quiet_settings.DEFAULT_FROM_EMAIL = "gal-friday@example.com"
        yield messages
