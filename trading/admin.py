"""Admin: the books, read-mostly, with each audited row's history (simple-history's "History" button); actions
for traders (cancel orders, halt trading); risk limits editable by staff, with their history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from core.errors import ApplicationError
from trading import kill_switch
from trading.executions import EventSource
from trading.models import (
    Balance,
    Decision,
    EquitySnapshot,
    Fill,
    Instrument,
    MarketQuote,
    Order,
    OrderEvent,
    ParkedExecution,
    Position,
    RiskLimit,
    SafetyOverride,
    TradingState,
)
from trading.permissions import actor_name, can_trade


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
    readonly_fields = ["decision_link"]
    inlines = [OrderEventInline, FillInline]

    @admin.display(description="decision")
    def decision_link(self, obj: Order) -> str:
        decision = Decision.objects.filter(order=obj).first()
        if decision is None:
            return "none (a manual order)"
        url = reverse("admin:trading_decision_change", args=[decision.pk])
        return format_html('<a href="{}">{}</a>: {}', url, decision.decision_id, decision.reason or decision.status)

    actions = ["cancel_orders", "halt_trading"]

    @admin.action(description="Cancel selected orders")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        if not _trader_or_refuse(request):
            return
        done, refused = 0, []
        for order in queryset.order_by("pk"):
            try:
                kill_switch.order_cancel_request(
                    order_id=order.pk,
                    reason="canceled from the admin",
                    source=EventSource.OPERATOR,
                    actor=actor_name(request.user),
                )
                done += 1
            except ApplicationError as exc:
                refused.append(f"{order.client_order_id}: {exc.message}")
        self.message_user(request, f"Cancel requested for {done} order(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not canceled: " + "; ".join(refused), messages.WARNING)

    @admin.action(description="HALT trading (kill switch: cancel every open order)")
    def halt_trading(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        _halt_from_admin(self, request)


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
    actions = ["halt_trading"]

    @admin.action(description="HALT trading (kill switch: cancel every open order)")
    def halt_trading(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        _halt_from_admin(self, request)


def _trader_or_refuse(request: HttpRequest) -> bool:
    if can_trade(request.user):
        return True
    messages.error(request, "Only members of the traders group may do this.")
    return False


def _halt_from_admin(model_admin: admin.ModelAdmin, request: HttpRequest) -> None:  # type: ignore[type-arg]
    if not _trader_or_refuse(request):
        return
    result = kill_switch.trading_halt(reason="halted from the admin", actor=actor_name(request.user))
    model_admin.message_user(
        request,
        f"Trading halted; {len(result.sweep.pending_cancel)} cancel(s) requested, "
        f"{len(result.sweep.canceled)} unsent order(s) canceled.",
        messages.WARNING,
    )


@admin.register(RiskLimit)
class RiskLimitAdmin(SimpleHistoryAdmin):
    """Staff edit limits here; every change is in the row's history with the user."""

    history_list_display = ["actor", "max_order_notional", "max_position_notional", "max_drawdown"]
    list_display = [
        "__str__",
        "max_order_notional",
        "max_position_notional",
        "max_gross_exposure",
        "price_band",
        "max_orders_per_minute",
        "max_data_age_seconds",
        "daily_loss_limit",
        "max_drawdown",
        "updated_at",
    ]
    autocomplete_fields = ["instrument"]


@admin.register(MarketQuote)
class MarketQuoteAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["instrument", "bid", "ask", "mid", "quoted_at", "updated_at"]


@admin.register(EquitySnapshot)
class EquitySnapshotAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["taken_at", "currency", "equity", "high_water_mark", "drawdown", "realised_pnl", "unrealised_pnl"]
    list_filter = ["currency"]


@admin.register(ParkedExecution)
class ParkedExecutionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["exchange_order_id", "exec_type", "exec_id", "received_at"]
    search_fields = ["exchange_order_id", "exec_id"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = [
        "bar_time", "instrument", "model_version", "signal", "confidence", "expected_edge", "cost", "order_qty",
        "capped_by", "status", "order", "reason",
    ]  # fmt: skip
    list_filter = ["status", "instrument", "model_name", "capped_by"]
    search_fields = ["decision_id"]


@admin.register(SafetyOverride)
class SafetyOverrideAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Resumptions after a safety halt with critical discrepancies open: the record of each override."""

    list_display = ["created_at", "actor", "halted_by", "reason"]
    readonly_fields = ["created_at", "actor", "reason", "halted_by", "halt_reason", "open_critical"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
