"""Rules evaluated where the event happens: after the commit of a trading state change, an equity snapshot, a
rejected order or an ingest heartbeat, the rules that watch it run at once (the beat schedule catches the rest).
A failing rule is logged by `rules_evaluate` and never reaches the code that saved the row."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from alerting.rules import rules_evaluate
from ingest.models import IngestStatus
from trading.models import EquitySnapshot, OrderEvent, TradingState
from trading.order_states import OrderState


def _after_commit(*names: str) -> None:
    transaction.on_commit(lambda: rules_evaluate(names=list(names)), robust=True)


def on_trading_state(sender: Any, instance: TradingState, **kwargs: Any) -> None:
    _after_commit("kill_switch")


def on_equity_snapshot(sender: Any, instance: EquitySnapshot, created: bool, **kwargs: Any) -> None:
    if created:
        _after_commit("drawdown")


def on_order_event(sender: Any, instance: OrderEvent, created: bool, **kwargs: Any) -> None:
    if created and instance.to_state == OrderState.REJECTED:
        _after_commit("order_rejections")


def on_ingest_status(sender: Any, instance: IngestStatus, **kwargs: Any) -> None:
    _after_commit("exchange_disconnected", "exchange_maintenance")


def connect() -> None:
    post_save.connect(on_trading_state, sender=TradingState, dispatch_uid="alerting.trading_state")
    post_save.connect(on_equity_snapshot, sender=EquitySnapshot, dispatch_uid="alerting.equity_snapshot")
    post_save.connect(on_order_event, sender=OrderEvent, dispatch_uid="alerting.order_event")
    post_save.connect(on_ingest_status, sender=IngestStatus, dispatch_uid="alerting.ingest_status")
