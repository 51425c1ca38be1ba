"""Reconciliation in the admin: runs and discrepancies (read-only: they change through services), a "run now"
action, and acknowledge / resolve actions on discrepancies (the note is the action's reason)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from core.errors import ApplicationError
from reconciliation import services
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.tasks import reconciliation_request


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


class DiscrepancyInline(admin.TabularInline):
    model = Discrepancy
    fields = (
        "kind",
        "severity",
        "asset",
        "exchange_order_id",
        "exec_id",
        "local_value",
        "exchange_value",
        "action",
        "status",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = (
        "id",
        "trigger",
        "status",
        "started_at",
        "duration_ms",
        "processing_ms",
        "rest_calls",
        "discrepancy_count",
    )
    list_filter = ("status", "trigger")
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in ReconciliationRun._meta.fields]
    inlines = [DiscrepancyInline]
    actions = ["trigger_run"]

    @admin.action(description="Run a reconciliation now (queued)")
    def trigger_run(self, request: HttpRequest, queryset: QuerySet[ReconciliationRun]) -> None:
        reconciliation_request(trigger="operator", requested_by=_actor(request), reason="requested from the admin")
        self.message_user(request, "Reconciliation run queued.", messages.SUCCESS)


@admin.register(Discrepancy)
class DiscrepancyAdmin(_ReadOnly, SimpleHistoryAdmin):
    list_display = (
        "id",
        "run",
        "kind",
        "severity",
        "instrument",
        "asset",
        "local_value",
        "exchange_value",
        "action",
        "status",
    )
    list_filter = ("status", "severity", "kind", "within_tolerance")
    search_fields = ("exchange_order_id", "exec_id", "asset")
    readonly_fields = [f.name for f in Discrepancy._meta.fields]
    actions = ["acknowledge", "resolve"]

    @admin.action(description="Acknowledge selected discrepancies")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Discrepancy]) -> None:
        for d in queryset:
            services.discrepancy_acknowledge(
                discrepancy_id=d.pk, actor=_actor(request), note="acknowledged in the admin"
            )
        self.message_user(request, f"{queryset.count()} acknowledged.", messages.SUCCESS)

    @admin.action(description="Resolve selected discrepancies (checked by an operator)")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Discrepancy]) -> None:
        done = 0
        for d in queryset:
            try:
                services.discrepancy_resolve(discrepancy_id=d.pk, actor=_actor(request), note="resolved in the admin")
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{d}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} resolved.", messages.SUCCESS)
