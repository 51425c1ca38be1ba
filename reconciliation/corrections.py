"""The corrections a run carries out: one handler per finding action (`HANDLERS`), each applying what the engine
planned through the trading services, in its own transaction.

Corrections are events, never overwrites: a missing fill is a `trade` execution applied by
`trading.execution_reports.execution_report_apply` with `source=reconciliation`; an order the exchange closed
moves through its state machine the same way; an unknown exchange order is adopted from a complete `pending_new`
event (then its fills and status); a fee the exchange re-priced goes through `fill_fee_correct`; a quantity the
exchange amended is an `amended` event; an order the exchange never had is marked rejected; a balance moved
outside trading is set through `balance_set`. Each handler returns the evidence recorded on the discrepancy
(before, after, events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction

from core.errors import ApplicationError
from ingest.kraken.errors import KrakenError
from ingest.kraken.rest_types import OrderInfo, TradeInfo
from reconciliation import engine, selectors
from reconciliation.engine import ExchangeView, Finding, InstrumentInfo
from reconciliation.models import Discrepancy
from trading.accounts import balance_set, fill_fee_correct
from trading.execution_reports import ExecutionApplyResult, execution_report_apply
from trading.executions import EventSource, ExecType, ExecutionEvent, FeeAmount
from trading.kill_switch import order_cancel_request
from trading.models import Order
from trading.order_states import OrderState
from trading.orders import order_mark_rejected

logger = logging.getLogger(__name__)

UNKNOWN_ORDERS_ADOPT = "adopt"
UNKNOWN_ORDERS_CANCEL = "cancel"  # adopt, then cancel if still open

# Order corrections run in the order the exchange reported the facts: adoptions first (they create orders other
# findings may refer to), then fills oldest first, then fees, quantities, states and rejections.
_ORDER_RANK = {engine.A_ADOPT: 0, engine.A_FILL: 1, engine.A_FEE: 2, engine.A_AMEND: 3, engine.A_STATE: 4}
_CLOSING = {"canceled": ExecType.CANCELED, "expired": ExecType.EXPIRED}


@dataclass
class Outcome:
    """A run's findings and what became of their corrections, by index in `findings`."""

    findings: list[Finding] = field(default_factory=list)
    details: dict[int, dict[str, Any]] = field(default_factory=dict)  # action detail (evidence) per finding
    failed: dict[int, str] = field(default_factory=dict)  # why the correction failed


@dataclass(frozen=True)
class Correction:
    """What every handler needs: the exchange's answers, the instruments by exchange pair name, who acts (the
    audit actor `reconciliation:run-<id>`), the run, and the unknown-orders policy."""

    view: ExchangeView
    instruments: dict[str, InstrumentInfo]
    actor: str
    run_id: int
    unknown_orders: str = UNKNOWN_ORDERS_ADOPT

    def instrument_of(self, info: OrderInfo) -> InstrumentInfo | None:
        return self.instruments.get(info.descr.pair.upper())


Handler = Callable[[Correction, Finding], dict[str, Any]]


# --- the events the corrections apply ---------------------------------------------------------------------------


def _trade_event(trade: TradeInfo, symbol: str, quote: str, cl_ord_id: str | None = None) -> ExecutionEvent:
    return ExecutionEvent(
        order_id=trade.ordertxid,
        exec_type=ExecType.TRADE,
        cl_ord_id=cl_ord_id,
        timestamp=trade.executed_at,
        symbol=symbol or None,
        side=trade.type,
        exec_id=trade.txid,
        trade_id=trade.trade_id,
        last_qty=trade.vol,
        last_price=trade.price,
        cost=trade.cost,
        fees=(FeeAmount(quote, trade.fee),) if trade.fee else (),
        liquidity_ind=("m" if trade.maker else "t") if trade.maker is not None else None,
        source=EventSource.RECONCILIATION,
    )


def _status_event(info: OrderInfo, exec_type: ExecType) -> ExecutionEvent:
    return ExecutionEvent(
        order_id=info.txid,
        exec_type=exec_type,
        timestamp=info.closed_at if exec_type in (ExecType.CANCELED, ExecType.EXPIRED) else info.opened_at,
        cl_ord_id=info.cl_ord_id,
        reason=info.reason or None,
        source=EventSource.RECONCILIATION,
    )


def _adopt_event(info: OrderInfo, symbol: str) -> ExecutionEvent:
    limit = info.descr.ordertype == "limit"
    tif = str(info.raw.get("timeinforce", "GTC")).lower() if info.raw else "gtc"
    return ExecutionEvent(
        order_id=info.txid,
        exec_type=ExecType.PENDING_NEW,
        timestamp=info.opened_at,
        cl_ord_id=info.cl_ord_id,
        symbol=symbol,
        side=info.descr.type,
        order_type=info.descr.ordertype,
        time_in_force=tif if tif in ("gtc", "ioc", "gtd") else "gtc",
        post_only="post" in info.oflags.split(","),
        order_qty=info.vol,
        limit_price=(info.descr.price or info.limitprice) if limit else None,
        source=EventSource.RECONCILIATION,
    )


def _apply(event: ExecutionEvent, actor: str) -> ExecutionApplyResult:
    return execution_report_apply(event=event, actor=actor)


# --- one handler per action ---------------------------------------------------------------------------------------


def order_adopt(c: Correction, finding: Finding) -> dict[str, Any]:
    """An exchange order we have no record of: created from a complete `pending_new` event, then its fills and its
    status; with the `cancel` policy, canceled if still open."""
    info = c.view.orders[finding.exchange_order_id]
    inst = c.instrument_of(info)
    if inst is None:
        raise ValueError(f"order {info.txid}: no instrument for pair {info.descr.pair}")
    events = list(_apply(_adopt_event(info, inst.symbol), c.actor).events)
    fills = []
    for txid in finding.plan["trades"]:
        events += _apply(_trade_event(c.view.trades[txid], inst.symbol, inst.quote, info.cl_ord_id), c.actor).events
        fills.append(txid)
    status = _CLOSING.get(info.status) or (ExecType.NEW if info.status == "open" else None)
    if status is not None:
        events += _apply(_status_event(info, status), c.actor).events
    order = Order.objects.get(exchange_order_id=info.txid)
    finding.order_pk = order.pk
    detail: dict[str, Any] = {
        "before": {},
        "after": selectors.order_snapshot(order_id=order.pk),
        "events": events,
        "fills": fills,
    }
    if c.unknown_orders == UNKNOWN_ORDERS_CANCEL and order.state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED):
        order_cancel_request(
            order_id=order.pk,
            reason=f"unknown exchange order canceled by reconciliation run {c.run_id}",
            source=EventSource.RECONCILIATION,
            actor=c.actor,
        )
        finding.action = Discrepancy.Action.ORDER_ADOPTED_AND_CANCELED
        detail["after"] = selectors.order_snapshot(order_id=order.pk)
    return detail


def fill_apply(c: Correction, finding: Finding) -> dict[str, Any]:
    """A trade the exchange made that our books miss: applied as a `trade` execution."""
    trade = c.view.trades[finding.exec_id]
    info = c.view.orders[trade.ordertxid]
    inst = c.instrument_of(info)
    before = selectors.order_snapshot(order_id=finding.order_pk)
    event = _trade_event(trade, inst.symbol if inst else "", inst.quote if inst else "", info.cl_ord_id)
    result = _apply(event, c.actor)
    if result.parked:
        raise ApplicationError(f"fill {trade.txid} could not be matched to an order")
    return {
        "before": before,
        "after": selectors.order_snapshot(order_id=result.order_id),
        "events": result.events,
        "fill_id": result.fill_id,
    }


def fee_correct(c: Correction, finding: Finding) -> dict[str, Any]:
    """A fee the exchange re-priced: the fill's fee set to the exchange's."""
    trade = c.view.trades[finding.exec_id]
    inst = c.instrument_of(c.view.orders[trade.ordertxid])
    before = selectors.order_snapshot(order_id=finding.order_pk)
    fill = fill_fee_correct(
        exec_id=trade.txid,
        fee=trade.fee,
        fee_asset=inst.quote if inst else "",
        actor=c.actor,
        reason=f"fee re-priced by the exchange (reconciliation run {c.run_id})",
    )
    return {
        "before": {**before, "fill_fee": finding.local_value},
        "after": {**selectors.order_snapshot(order_id=finding.order_pk), "fill_fee": str(fill.fee)},
    }


def quantity_amend(c: Correction, finding: Finding) -> dict[str, Any]:
    """An order quantity the exchange amended: an `amended` execution."""
    info = c.view.orders[finding.exchange_order_id]
    before = selectors.order_snapshot(order_id=finding.order_pk)
    event = ExecutionEvent(
        order_id=info.txid,
        exec_type=ExecType.AMENDED,
        order_qty=Decimal(finding.plan["order_qty"]),
        source=EventSource.RECONCILIATION,
        timestamp=info.opened_at,
    )
    result = _apply(event, c.actor)
    return {"before": before, "after": selectors.order_snapshot(order_id=finding.order_pk), "events": result.events}


def state_advance(c: Correction, finding: Finding) -> dict[str, Any]:
    """An order the exchange moved on (accepted, canceled, expired): the status execution the engine planned."""
    info = c.view.orders[finding.exchange_order_id]
    before = selectors.order_snapshot(order_id=finding.order_pk)
    result = _apply(_status_event(info, ExecType(finding.plan["exec_type"])), c.actor)
    return {"before": before, "after": selectors.order_snapshot(order_id=finding.order_pk), "events": result.events}


def order_reject(c: Correction, finding: Finding) -> dict[str, Any]:
    """An order the exchange never had (after a targeted query): marked rejected."""
    if finding.order_pk is None:
        raise ValueError("an order rejection needs the local order")
    before = selectors.order_snapshot(order_id=finding.order_pk)
    order_mark_rejected(
        order_id=finding.order_pk,
        reason=f"not found on the exchange after a targeted query (reconciliation run {c.run_id})",
        source=EventSource.RECONCILIATION,
        actor=c.actor,
    )
    return {"before": before, "after": selectors.order_snapshot(order_id=finding.order_pk)}


def balance_correct(c: Correction, finding: Finding) -> dict[str, Any]:
    """A balance moved outside trading (or rounding within tolerance): set to the exchange's total."""
    balance = balance_set(
        asset=finding.asset,
        total=Decimal(finding.plan["total"]),
        source=EventSource.RECONCILIATION,
        actor=c.actor,
    )
    return {"before": {"total": finding.local_value}, "after": {"total": str(balance.total)}}


HANDLERS: dict[str, Handler] = {
    engine.A_ADOPT: order_adopt,
    engine.A_FILL: fill_apply,
    engine.A_FEE: fee_correct,
    engine.A_AMEND: quantity_amend,
    engine.A_STATE: state_advance,
    engine.A_REJECT: order_reject,
    engine.A_BALANCE: balance_correct,
}


# --- carrying them out --------------------------------------------------------------------------------------------


def corrections_apply(c: Correction, outcome: Outcome, indices: Iterable[int]) -> None:
    """Each finding's correction in its own transaction; a failure is logged and kept on `outcome.failed` (the
    finding then counts as critical), and the others still run."""
    for i in indices:
        finding = outcome.findings[i]
        handler = HANDLERS.get(finding.action)
        try:
            if handler is None:
                raise ValueError(f"no correction for {finding.action}")
            with transaction.atomic():
                outcome.details[i] = handler(c, finding)
        except (ApplicationError, KrakenError, ValueError) as exc:
            logger.exception("reconciliation correction failed", extra={"run_id": c.run_id, "kind": finding.kind})
            outcome.details[i] = {"error": f"{type(exc).__name__}: {exc}"}
            outcome.failed[i] = str(exc)


def order_corrections_apply(c: Correction, outcome: Outcome) -> None:
    """Phase 1: every order and fill finding that calls for an action, in the order the exchange reported them."""

    def order_of_facts(i: int) -> tuple[int, Decimal, int]:
        finding = outcome.findings[i]
        when = c.view.trades[finding.exec_id].time if finding.action == engine.A_FILL else Decimal(0)
        return _ORDER_RANK.get(finding.action, len(_ORDER_RANK)), when, i

    todo = [i for i, f in enumerate(outcome.findings) if f.action != engine.A_NONE]
    corrections_apply(c, outcome, sorted(todo, key=order_of_facts))


def balance_corrections_apply(c: Correction, outcome: Outcome, *, start: int) -> None:
    """Phase 2: the balance findings from index `start` on (positions are never corrected, only reported)."""
    todo = [i for i in range(start, len(outcome.findings)) if outcome.findings[i].action == engine.A_BALANCE]
    corrections_apply(c, outcome, todo)
