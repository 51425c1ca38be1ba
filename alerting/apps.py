from __future__ import annotations

from django.apps import AppConfig


class AlertingConfig(AppConfig):
    """Alert rules evaluated where events happen and on a schedule, silences, and the alert API."""

    name = "alerting"
    verbose_name = "Alerting"
