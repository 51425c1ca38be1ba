"""Reads of drift reports and thresholds (the API, the admin and `/metrics` use these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Max, QuerySet

from models_registry.drift.thresholds import thresholds_for
from models_registry.models import DriftPolicy, DriftReport, ModelVersion, RegisteredModel


def drift_thresholds(*, model: RegisteredModel) -> dict[str, Any]:
    """The model's drift thresholds: the defaults with its policy's overrides."""
    policy = DriftPolicy.objects.filter(model=model).values_list("thresholds", flat=True).first()
    return thresholds_for(policy or {})


def drift_report_list(
    *,
    version: ModelVersion,
    status: str | None = None,
    confirmed: bool | None = None,
    since: datetime | None = None,
) -> QuerySet[DriftReport]:
    qs = DriftReport.objects.filter(version=version).select_related("model", "version")
    if status:
        qs = qs.filter(status=status)
    if confirmed is not None:
        qs = qs.filter(confirmed=confirmed)
    if since is not None:
        qs = qs.filter(as_of__gte=since)
    return qs.order_by("-as_of", "-id")


def drift_report_get(*, version: ModelVersion, report_id: int) -> DriftReport | None:
    return DriftReport.objects.filter(version=version, pk=report_id).select_related("model", "version").first()


def drift_report_previous(*, version: ModelVersion, before: datetime) -> DriftReport | None:
    """The latest evaluated (ok or drift) report of `version` with `as_of` before `before`."""
    return (
        DriftReport.objects.filter(
            version=version, as_of__lt=before, status__in=[DriftReport.Status.OK, DriftReport.Status.DRIFT]
        )
        .order_by("-as_of", "-id")
        .first()
    )


def drift_latest_reports() -> list[DriftReport]:
    """The latest report of each version that has one (for `/metrics`): one grouped query and one fetch."""
    latest = DriftReport.objects.values("version_id").annotate(last=Max("id")).order_by().values_list("last", flat=True)
    return list(
        DriftReport.objects.filter(pk__in=list(latest))
        .select_related("model", "version")
        .order_by("model__name", "version__version")
    )
