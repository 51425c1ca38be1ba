"""System checks of the notification settings: a mistake in them is reported when a process starts, not when the
first alert should have gone out."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from notifications import config


@checks.register("galfriday")
def notification_settings_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    problems: list[checks.CheckMessage] = []
    try:
        fmt = config.webhook_format()
    except ImproperlyConfigured as exc:
        problems.append(checks.Error(str(exc), id="notifications.E001"))
        fmt = ""
    if settings.NOTIFY_WEBHOOK_URL and fmt == "json" and not settings.NOTIFY_WEBHOOK_SECRET:
        problems.append(
            checks.Error(
                "NOTIFY_WEBHOOK_URL is set for the signed JSON format but NOTIFY_WEBHOOK_SECRET is empty",
                hint="Set NOTIFY_WEBHOOK_SECRET (the receiver verifies the signature with it), or use "
                "NOTIFY_WEBHOOK_FORMAT=slack for a Slack incoming webhook.",
                id="notifications.E002",
            )
        )
    try:
        config.quiet_hours()
    except ImproperlyConfigured as exc:
        problems.append(checks.Error(str(exc), id="notifications.E003"))
    for route in config.routes():
        unknown = route.severities - set(config.SEVERITIES)
        if unknown:
            problems.append(
                checks.Error(
                    f"NOTIFY_{route.channel.upper()}_SEVERITIES has unknown severities: {sorted(unknown)}",
                    hint=f"Use some of {list(config.SEVERITIES)}.",
                    id="notifications.E004",
                )
            )
    if bool(settings.NOTIFY_TELEGRAM_BOT_TOKEN) != bool(settings.NOTIFY_TELEGRAM_CHAT_ID):
        problems.append(
            checks.Warning(
                "Telegram needs both NOTIFY_TELEGRAM_BOT_TOKEN and NOTIFY_TELEGRAM_CHAT_ID; the channel is off",
                id="notifications.W001",
            )
        )
    return problems
