"""What keeps a safety halt in place, wired into trading through GALFRIDAY_RESUME_BLOCKERS (trading does not import
reconciliation): the open critical reconciliation discrepancies."""

from __future__ import annotations

from reconciliation import selectors
from reconciliation.models import Discrepancy


def open_critical_discrepancies() -> list[int]:
    """Ids of the critical discrepancies not yet resolved (open or only acknowledged), oldest first."""
    open_critical = selectors.discrepancy_list(filters={"severity": Discrepancy.Severity.CRITICAL, "open": True})
    return list(open_critical.order_by("pk").values_list("pk", flat=True))
