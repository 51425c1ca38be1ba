"""Read-only admin for what the ingest worker records: its heartbeat, its gap repairs and the bars that missed their
decision (the worker writes them; an operator only reads)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ingest.models import BackfillRecord, IngestStatus, MissedDecision


class _ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BackfillRecord)
class BackfillRecordAdmin(_ReadOnly):
    list_display = (
        "started_at",
        "symbol",
        "reason",
        "source",
        "gap_start",
        "gap_end",
        "trades_fetched",
        "trades_added",
        "ohlc_bars",
        "bars_written",
        "status",
    )
    list_filter = ("reason", "source", "status", "symbol")
    date_hierarchy = "started_at"


@admin.register(IngestStatus)
class IngestStatusAdmin(_ReadOnly):
    list_display = ("name", "connection_state", "exchange_status", "last_message_at", "updated_at")


@admin.register(MissedDecision)
class MissedDecisionAdmin(_ReadOnly):
    list_display = ("bar_start", "symbol", "interval_seconds", "reason", "age_seconds", "max_age_seconds", "worker")
    list_filter = ("reason", "symbol")
    date_hierarchy = "bar_start"
