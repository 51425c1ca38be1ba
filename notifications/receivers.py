"""The notifications app's receiver of `trading.alerts.alert_changed` (sent after commit by the alerting app; it
calls receivers with `send_robust`, so a failure here is logged there and never reaches the code that raised the
alert)."""

from __future__ import annotations

from typing import Any

from core.audit import audit_actor
from notifications.grouping import alert_event_record


def on_alert_changed(sender: Any, *, alert_id: int, change: str, silenced: bool = False, **_: Any) -> None:
    with audit_actor("notifications"):
        alert_event_record(alert_id=alert_id, change=change, silenced=silenced)
