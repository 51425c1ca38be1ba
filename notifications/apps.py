from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Delivery of alerts to people: webhook (signed JSON, Slack-compatible), e-mail and Telegram, with routing,
    grouping, repeats, flood control, quiet hours and a delivery log."""

    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # reason: these import models, which the app registry allows only once it is ready
        from galfriday_site.metrics import register_collector
        from notifications import checks  # noqa: F401  (registers the system checks)
        from notifications.metrics import NotificationCollector
        from notifications.receivers import on_alert_changed
        from trading.alerts import alert_changed

        alert_changed.connect(on_alert_changed, dispatch_uid="notifications.on_alert_changed")
        register_collector("notifications", NotificationCollector())
