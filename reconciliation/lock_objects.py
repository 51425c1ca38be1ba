"""The one place reconciliation takes row locks (after Saleor's lock_objects.py). Runs are single-flight by a
database constraint (one `running` row), not by a lock."""

from __future__ import annotations

from reconciliation.models import Discrepancy


def discrepancy_lock(pk: int) -> Discrepancy | None:
    return Discrepancy.objects.select_for_update().order_by("pk").filter(pk=pk).first()
