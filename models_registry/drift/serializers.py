"""Output shape of a drift report (API, command, admin): the same document everywhere."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from models_registry.models import DriftReport


@extend_schema_serializer(component_name="DriftReportSummary")
class DriftReportSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="version.version")
    trigger = serializers.CharField()
    actor = serializers.CharField()
    as_of = serializers.DateTimeField()
    status = serializers.CharField()
    kinds = serializers.ListField(child=serializers.CharField())
    confirmed = serializers.BooleanField()
    confirmed_by = serializers.ListField(child=serializers.CharField())
    consecutive = serializers.IntegerField()
    change_point_at = serializers.DateTimeField(allow_null=True)
    dataset_drift = serializers.BooleanField()
    drift_share = serializers.FloatField(allow_null=True)
    n_features = serializers.IntegerField()
    n_drifted = serializers.IntegerField()
    prediction_psi = serializers.FloatField(allow_null=True)
    alert_id = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    duration_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="DriftReport")
class DriftReportSerializer(DriftReportSummarySerializer):
    windows = serializers.JSONField()
    thresholds = serializers.JSONField()
    features = serializers.JSONField(help_text="per feature: test, statistic, threshold, verdict, PSI; drifted first")
    prediction = serializers.JSONField()
    label = serializers.JSONField()  # type: ignore[assignment]  # the report's field, not Field.label
    concept = serializers.JSONField()


def report_document(report: DriftReport) -> dict[str, Any]:
    return dict(DriftReportSerializer(report).data)
