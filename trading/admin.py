"""Admin: the books, read-mostly, with each audited row's history (simple-history's "History" button)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from trading.models import (
    Balance,
    EquitySnapshot,
    Fill,
    Instrument,
    Order,
    OrderEvent,
    ParkedExecution,
    Position,
    TradingState,
)


class ReadOnlyMixin:
    """Books change only through services (so every change is an event with a source); the admin shows them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OrderEventInline(ReadOnlyMixin, admin.TabularInline):
    model = OrderEvent
    extra = 0
    ordering = ["sequence"]
    fields = readonly_fields = (
        "sequence",
        "kind",
        "source",
        "from_state",
        "to_state",
        "exec_id",
        "actor",
        "reason",
        "recorded_at",
    )


class FillInline(ReadOnlyMixin, admin.TabularInline):
    model = Fill
    extra = 0
    fields = readonly_fields = ("exec_id", "quantity", "price", "cost", "fee", "liquidity", "executed_at")


@admin.register(Instrument)
class InstrumentAdmin(SimpleHistoryAdmin):
    history_list_display = ["actor", "status", "ordermin", "tick_size"]
    list_display = ["symbol", "rest_symbol", "altname", "v1_symbol", "status", "tick_size", "ordermin", "costmin"]
    list_filter = ["status", "quote"]
    search_fields = ["symbol", "rest_symbol", "altname", "v1_symbol"]


@admin.register(Order)
class OrderAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    history_list_display = ["actor", "state", "filled_qty", "avg_price", "exchange_order_id"]
    list_display = [
        "client_order_id",
        "exchange_order_id",
        "instrument",
        "side",
        "order_type",
        "quantity",
        "limit_price",
        "state",
        "filled_qty",
        "avg_price",
        "created_at",
    ]
    list_filter = ["state", "side", "order_type", "instrument"]
    search_fields = ["client_order_id", "exchange_order_id"]
    inlines = [OrderEventInline, FillInline]


@admin.register(Fill)
class FillAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["exec_id", "order", "instrument", "side", "quantity", "price", "fee", "realised_pnl", "executed_at"]
    list_filter = ["instrument", "side", "liquidity"]
    search_fields = ["exec_id", "order__client_order_id"]


@admin.register(Position)
class PositionAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    history_list_display = ["actor", "quantity", "avg_price", "realised_pnl", "fees"]
    list_display = ["instrument", "quantity", "avg_price", "realised_pnl", "fees", "opened_at", "updated_at"]


@admin.register(Balance)
class BalanceAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    history_list_display = ["actor", "total"]
    list_display = ["asset", "total", "updated_at"]


@admin.register(TradingState)
class TradingStateAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    history_list_display = ["actor", "state", "reason"]
    list_display = ["state", "reason", "changed_by", "changed_at"]


@admin.register(EquitySnapshot)
class EquitySnapshotAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["taken_at", "currency", "equity", "high_water_mark", "drawdown", "realised_pnl", "unrealised_pnl"]
    list_filter = ["currency"]


@admin.register(ParkedExecution)
class ParkedExecutionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["exchange_order_id", "exec_type", "exec_id", "received_at"]
    search_fields = ["exchange_order_id", "exec_id"]
