from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The operator's pages at `/` (Django templates, vendored charts, live over the Channels websocket)."""

    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        """Turn what the domain apps announce (stage moves, matured outcomes, experiments, drift reports,
        reconciliation) into live events, in every process that loads the apps: the worker and beat make most of
        these changes, not the web process."""
        # Not at module level: apps.py is loaded while the app registry populates, before models can be imported.
        from dashboard.lifecycle import events

        events.connect()
