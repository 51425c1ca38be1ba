from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Delivery of alerts to people: webhook (signed JSON, Slack-compatible), e-mail and Telegram, with routing,
    grouping, repeats, flood control, quiet hours and a delivery log."""

    name = "notifications"
    verbose_name = "Notifications"
