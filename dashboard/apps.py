from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The operator's pages at `/` (Django templates, vendored charts, live over the Channels websocket)."""

    name = "dashboard"
    verbose_name = "Dashboard"
