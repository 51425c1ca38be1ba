"""What keeps a safety halt in place, wired into trading through GALFRIDAY_RESUME_BLOCKERS (trading does not import
reconciliation): the open critical reconciliation discrepancies."""

from __future__ import annotations


def open_critical_discrepancies() -> list[int]:
    """Ids of the critical discrepancies not yet resolved (open or only acknowledged), oldest first."""
    from reconciliation.models import Discrepancy

    return list(
        Discrepancy.objects.filter(
            severity=Discrepancy.Severity.CRITICAL,
            status__in=[Discrepancy.Status.OPEN, Discrepancy.Status.ACKNOWLEDGED],
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
