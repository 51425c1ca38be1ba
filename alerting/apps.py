from __future__ import annotations

from django.apps import AppConfig


class AlertingConfig(AppConfig):
    """Alert rules evaluated where events happen and on a schedule, silences, and the alert API."""

    name = "alerting"
    verbose_name = "Alerting"

    def ready(self) -> None:
        # reason: signal handlers import models, which the app registry only allows once it is ready.
        from alerting import signals

        signals.connect()
