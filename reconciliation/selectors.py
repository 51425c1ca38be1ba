"""Reads of reconciliation runs and discrepancies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet

from reconciliation.models import Discrepancy, ReconciliationRun


def run_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[ReconciliationRun]:
    """Newest first. Filters: trigger, status, started_after, started_before."""
    filters = filters or {}
    qs = ReconciliationRun.objects.all()
    if filters.get("trigger"):
        qs = qs.filter(trigger=filters["trigger"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("started_after"):
        qs = qs.filter(started_at__gte=filters["started_after"])
    if filters.get("started_before"):
        qs = qs.filter(started_at__lt=filters["started_before"])
    return qs


def run_get(*, run_id: int) -> ReconciliationRun | None:
    return ReconciliationRun.objects.filter(pk=run_id).first()


def discrepancy_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Discrepancy]:
    """Newest first. Filters: run_id, kind, severity, status, symbol, asset, order_id, open (bool: not resolved)."""
    filters = filters or {}
    qs = Discrepancy.objects.select_related("instrument")
    for name in ("kind", "severity", "status", "asset", "order_id", "run_id"):
        if filters.get(name):
            qs = qs.filter(**{name: filters[name]})
    if filters.get("symbol"):
        qs = qs.filter(instrument__symbol=filters["symbol"])
    if filters.get("open") is True:
        qs = qs.filter(status__in=[Discrepancy.Status.OPEN, Discrepancy.Status.ACKNOWLEDGED])
    elif filters.get("open") is False:
        qs = qs.filter(status__in=[Discrepancy.Status.RESOLVED, Discrepancy.Status.AUTO_RESOLVED])
    return qs


def discrepancy_get(*, discrepancy_id: int) -> Discrepancy | None:
    return Discrepancy.objects.select_related("instrument").filter(pk=discrepancy_id).first()


def last_good_run() -> ReconciliationRun | None:
    return (
        ReconciliationRun.objects.filter(
            status__in=[ReconciliationRun.Status.CLEAN, ReconciliationRun.Status.CORRECTED]
        )
        .order_by("-started_at")
        .first()
    )
