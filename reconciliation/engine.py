"""The comparison, pure: our books and the exchange's answers in, findings (with the correction each one calls for)
out. No ORM, no I/O, so the scenario generator and the benchmark exercise it fast; `reconciliation.runs`
loads the inputs, calls these functions and carries out the corrections through the trading services.

Two phases, so a difference is reported once, where it starts:
1. `compare_orders`: every exchange order seen (OpenOrders, ClosedOrders in the window, targeted QueryOrders)
   against our order (by exchange id, else client order id), every exchange trade against our fills, every open
   local order the exchange did not show. The order state is compared with the state our order reaches once the
   missing fills are applied (a missing fill that completes an order is one finding, not two).
2. `compare_balances` and `compare_positions`, on the books after phase 1's corrections: what is left is a balance
   moved outside trading (rewards, staking, deposits), rounding dust, or a broken book.

Severity: INFO = within tolerance (recorded, corrected, auto-resolved); WARNING = beyond tolerance but explained
and safe to correct (an event the exchange proves); CRITICAL = not safe to correct: trading is halted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ingest.kraken.rest_types import OrderInfo, TradeInfo
from trading.order_states import OrderState

ZERO = Decimal(0)

# Kinds (the values of `reconciliation.models.DiscrepancyKind`).
MISSING_FILL = "missing_fill"
UNKNOWN_EXCHANGE_ORDER = "unknown_exchange_order"
ORDER_MISSING_ON_EXCHANGE = "order_missing_on_exchange"
STATE_MISMATCH = "state_mismatch"
QUANTITY_MISMATCH = "quantity_mismatch"
FEE_MISMATCH = "fee_mismatch"
BALANCE_MISMATCH = "balance_mismatch"
POSITION_MISMATCH = "position_mismatch"
UNKNOWN_LOCAL_FILL = "unknown_local_fill"

INFO, WARNING, CRITICAL = "info", "warning", "critical"

# Planned actions (the values of `Discrepancy.Action`).
A_NONE = "none"
A_FILL = "fill_applied"
A_STATE = "state_advanced"
A_ADOPT = "order_adopted"
A_AMEND = "quantity_amended"
A_FEE = "fee_corrected"
A_BALANCE = "balance_set"
A_REJECT = "order_rejected"

# Kraken balance suffixes of assets held outside spot trading (PROTOCOL.md §1.3): staked, opt-in rewards,
# yield-bearing, Kraken Rewards, tokenized.
EARN_SUFFIXES = (".S", ".M", ".B", ".F", ".T")

S = OrderState
_UNCONFIRMED = {S.CREATED, S.SUBMITTED, S.UNKNOWN}
_LIVE = {S.ACCEPTED, S.PARTIALLY_FILLED, S.PENDING_CANCEL}
LOCAL_OPEN = {S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.PENDING_CANCEL, S.UNKNOWN}


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    symbol: str
    base: str
    quote: str
    names: tuple[str, ...] = ()  # REST key, altname, v1 name: what `descr.pair` / `pair` may say


@dataclass(frozen=True, slots=True)
class LocalOrder:
    pk: int
    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    state: str
    filled_qty: Decimal
    created_at: datetime
    submitted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LocalFill:
    exec_id: str
    order_pk: int
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    executed_at: datetime


@dataclass(frozen=True)
class Tolerances:
    qty: Decimal = Decimal("0.00000001")
    fee: Decimal = ZERO
    balance_default: Decimal = Decimal("0.01")
    balance: Mapping[str, Decimal] = field(default_factory=dict)

    def balance_for(self, asset: str) -> Decimal:
        return self.balance.get(asset, self.balance_default)


@dataclass
class ExchangeView:
    """What the exchange said in this run."""

    open_txids: set[str]
    orders: dict[str, OrderInfo]  # every order seen: open, closed in the window, queried
    trades: dict[str, TradeInfo]  # trades in the window plus those queried for specific orders
    unknown_txids: set[str] = field(default_factory=set)  # txids the exchange said it does not know
    window_start: datetime | None = None


@dataclass
class Finding:
    kind: str
    severity: str
    action: str = A_NONE
    within_tolerance: bool = False
    symbol: str = ""
    asset: str = ""
    order_pk: int | None = None
    exchange_order_id: str = ""
    exec_id: str = ""
    local_value: str = ""
    exchange_value: str = ""
    difference: Decimal | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)  # what the executor needs (ids, target state, values)

    @property
    def key(self) -> tuple[str, str]:
        """A stable identity: (kind, subject), for comparing a run with what a scenario injected."""
        return self.kind, self.exec_id or self.exchange_order_id or self.asset or self.symbol


def symbol_lookup(instruments: Iterable[InstrumentInfo]) -> dict[str, InstrumentInfo]:
    out: dict[str, InstrumentInfo] = {}
    for inst in instruments:
        for name in (inst.symbol, *inst.names):
            if name:
                out[name.upper()] = inst
    return out


def order_evidence(info: OrderInfo) -> dict[str, Any]:
    return {
        "txid": info.txid,
        "status": info.status,
        "cl_ord_id": info.cl_ord_id,
        "pair": info.descr.pair,
        "type": info.descr.type,
        "ordertype": info.descr.ordertype,
        "price": str(info.descr.price) if info.descr.price is not None else None,
        "vol": str(info.vol),
        "vol_exec": str(info.vol_exec),
        "cost": str(info.cost),
        "fee": str(info.fee),
        "reason": info.reason,
        "trades": list(info.trades),
    }


def trade_evidence(trade: TradeInfo) -> dict[str, Any]:
    return {
        "txid": trade.txid,
        "ordertxid": trade.ordertxid,
        "pair": trade.pair,
        "time": str(trade.time),
        "type": trade.type,
        "price": str(trade.price),
        "vol": str(trade.vol),
        "cost": str(trade.cost),
        "fee": str(trade.fee),
        "maker": trade.maker,
    }


def projected_state(state: str, filled: Decimal, quantity: Decimal, qty_tol: Decimal) -> OrderState:
    """The state our order reaches once fills bring it to `filled` (as `execution_report_apply` moves it)."""
    current = OrderState(state)
    if filled > 0 and quantity - filled <= qty_tol and current not in (S.REJECTED,):
        return S.FILLED
    if filled > 0 and current in _UNCONFIRMED | {S.ACCEPTED}:
        return S.PARTIALLY_FILLED
    return current


def _state_class(state: OrderState) -> str:
    if state in _UNCONFIRMED:
        return "unconfirmed"
    if state in _LIVE:
        return "open"
    if state == S.FILLED:
        return "filled"
    if state in (S.CANCELED, S.EXPIRED):
        return "canceled"
    return "rejected"


def _exchange_class(info: OrderInfo) -> str:
    if info.status in ("open", "pending"):
        return "open"
    if info.status == "closed":
        return "filled"
    return "canceled"  # canceled, expired


def adoptable(info: OrderInfo, lookup: Mapping[str, InstrumentInfo]) -> bool:
    return info.descr.ordertype in ("limit", "market") and info.descr.pair.upper() in lookup and info.vol > 0


def compare_orders(
    *,
    local_orders: Iterable[LocalOrder],
    local_fills: Mapping[str, LocalFill],
    exchange: ExchangeView,
    instruments: Iterable[InstrumentInfo],
    tolerances: Tolerances,
    now: datetime,
    grace: timedelta = timedelta(seconds=10),
) -> list[Finding]:
    lookup = symbol_lookup(instruments)
    orders = list(local_orders)
    by_txid = {o.exchange_order_id: o for o in orders if o.exchange_order_id}
    by_cl = {o.client_order_id: o for o in orders}
    trades_of: dict[str, list[TradeInfo]] = defaultdict(list)
    for trade in exchange.trades.values():
        trades_of[trade.ordertxid].append(trade)
    for group in trades_of.values():
        group.sort(key=lambda t: (t.time, t.txid))

    findings: list[Finding] = []
    matched: set[int] = set()
    for txid in sorted(exchange.orders, key=lambda t: (exchange.orders[t].opentm or ZERO, t)):
        info = exchange.orders[txid]
        local = by_txid.get(txid) or (by_cl.get(info.cl_ord_id) if info.cl_ord_id else None)
        inst = lookup.get(info.descr.pair.upper())
        symbol = inst.symbol if inst else ""
        order_trades = trades_of.get(txid, [])
        if local is None:
            ok = adoptable(info, lookup)
            findings.append(
                Finding(
                    kind=UNKNOWN_EXCHANGE_ORDER,
                    severity=WARNING if ok else CRITICAL,
                    action=A_ADOPT if ok else A_NONE,
                    symbol=symbol,
                    exchange_order_id=txid,
                    local_value="",
                    exchange_value=f"{info.status} {info.descr.type} {info.vol} ({info.vol_exec} executed)",
                    difference=info.vol_exec,
                    evidence={"order": order_evidence(info), "trades": [trade_evidence(t) for t in order_trades]},
                    plan={"txid": txid, "trades": [t.txid for t in order_trades]},
                )
            )
            continue
        matched.add(local.pk)
        findings.extend(_compare_one(local, info, order_trades, local_fills, symbol, tolerances))

    for local in orders:
        if local.pk in matched or OrderState(local.state) not in LOCAL_OPEN:
            continue
        since = local.submitted_at or local.created_at
        if now - since < grace:
            continue  # in flight: the exchange may not show it yet
        denied = bool(local.exchange_order_id) and local.exchange_order_id in exchange.unknown_txids
        never_acked = not local.exchange_order_id and OrderState(local.state) in (S.SUBMITTED, S.UNKNOWN)
        safe = never_acked and not denied
        findings.append(
            Finding(
                kind=ORDER_MISSING_ON_EXCHANGE,
                severity=WARNING if safe else CRITICAL,
                action=A_REJECT if safe else A_NONE,
                symbol=local.symbol,
                order_pk=local.pk,
                exchange_order_id=local.exchange_order_id,
                local_value=f"{local.state} {local.side} {local.quantity}",
                exchange_value="not found (open orders, closed orders, targeted query)",
                evidence={
                    "client_order_id": local.client_order_id,
                    "exchange_order_id": local.exchange_order_id,
                    "denied_by_exchange": denied,
                },
                plan={"order_pk": local.pk},
            )
        )

    window_start = exchange.window_start
    if window_start is not None:
        margin = window_start + timedelta(seconds=1)
        for fill in local_fills.values():
            if fill.executed_at > margin and fill.exec_id not in exchange.trades:
                findings.append(
                    Finding(
                        kind=UNKNOWN_LOCAL_FILL,
                        severity=CRITICAL,
                        symbol=fill.symbol,
                        order_pk=fill.order_pk,
                        exec_id=fill.exec_id,
                        local_value=f"{fill.side} {fill.quantity}@{fill.price}",
                        exchange_value="not in the exchange's trade history",
                        difference=-fill.quantity,
                        evidence={"executed_at": fill.executed_at.isoformat()},
                    )
                )
    return findings


def _compare_one(
    local: LocalOrder,
    info: OrderInfo,
    order_trades: list[TradeInfo],
    local_fills: Mapping[str, LocalFill],
    symbol: str,
    tol: Tolerances,
) -> list[Finding]:
    out: list[Finding] = []
    txid = info.txid
    filled = local.filled_qty
    common: dict[str, Any] = {"symbol": symbol or local.symbol, "order_pk": local.pk, "exchange_order_id": txid}
    for trade in order_trades:
        fill = local_fills.get(trade.txid)
        if fill is None:
            filled += trade.vol
            out.append(
                Finding(
                    kind=MISSING_FILL,
                    severity=WARNING,
                    action=A_FILL,
                    exec_id=trade.txid,
                    local_value="",
                    exchange_value=f"{trade.type} {trade.vol}@{trade.price} fee {trade.fee}",
                    difference=trade.vol,
                    evidence={"trade": trade_evidence(trade), "order": order_evidence(info)},
                    plan={"txid": txid, "trade": trade.txid},
                    **common,
                )
            )
            continue
        if abs(fill.quantity - trade.vol) > tol.qty or fill.price != trade.price:
            out.append(
                Finding(
                    kind=QUANTITY_MISMATCH,
                    severity=CRITICAL,
                    exec_id=trade.txid,
                    local_value=f"{fill.quantity}@{fill.price}",
                    exchange_value=f"{trade.vol}@{trade.price}",
                    difference=trade.vol - fill.quantity,
                    evidence={"trade": trade_evidence(trade)},
                    **common,
                )
            )
        diff = trade.fee - fill.fee
        if diff != 0:
            within = abs(diff) <= tol.fee
            out.append(
                Finding(
                    kind=FEE_MISMATCH,
                    severity=INFO if within else WARNING,
                    within_tolerance=within,
                    action=A_FEE,
                    exec_id=trade.txid,
                    local_value=str(fill.fee),
                    exchange_value=str(trade.fee),
                    difference=diff,
                    evidence={"trade": trade_evidence(trade)},
                    plan={"trade": trade.txid, "fee": str(trade.fee)},
                    **common,
                )
            )

    quantity = local.quantity
    if info.vol != local.quantity:
        safe = info.vol >= filled and info.vol > 0
        out.append(
            Finding(
                kind=QUANTITY_MISMATCH,
                severity=WARNING if safe else CRITICAL,
                action=A_AMEND if safe else A_NONE,
                local_value=f"quantity {local.quantity}",
                exchange_value=f"quantity {info.vol}",
                difference=info.vol - local.quantity,
                evidence={"order": order_evidence(info)},
                plan={"txid": txid, "order_qty": str(info.vol)},
                **common,
            )
        )
        quantity = info.vol
    if abs(info.vol_exec - filled) > tol.qty:
        out.append(
            Finding(
                kind=QUANTITY_MISMATCH,
                severity=CRITICAL,
                local_value=f"filled {filled} (fills found)",
                exchange_value=f"vol_exec {info.vol_exec}",
                difference=info.vol_exec - filled,
                evidence={"order": order_evidence(info), "unexplained": True},
                **common,
            )
        )
        return out

    target = projected_state(local.state, filled, quantity, tol.qty)
    local_class, exchange_class = _state_class(target), _exchange_class(info)
    if local_class == exchange_class:
        return out
    if exchange_class == "open" and local_class == "unconfirmed":
        if info.status == "pending":
            return out
        plan_state, severity = "new", WARNING
    elif exchange_class == "canceled" and local_class in ("open", "unconfirmed"):
        plan_state, severity = info.status if info.status in ("canceled", "expired") else "canceled", WARNING
    else:
        plan_state, severity = "", CRITICAL
    out.append(
        Finding(
            kind=STATE_MISMATCH,
            severity=severity,
            action=A_STATE if plan_state else A_NONE,
            local_value=f"{local.state}" + (f" (-> {target} with missing fills)" if target != local.state else ""),
            exchange_value=info.status,
            evidence={"order": order_evidence(info)},
            plan={"txid": txid, "exec_type": plan_state, "reason": info.reason or ""},
            **common,
        )
    )
    return out


def compare_balances(
    *,
    local: Mapping[str, Decimal],
    exchange: Mapping[str, Decimal],
    traded_assets: Iterable[str],
    tolerances: Tolerances,
    correct_untraded: bool = True,
) -> list[Finding]:
    """Balances after the order corrections. Within tolerance: INFO (set to the exchange's). Beyond it, an asset no
    instrument trades (staking and rewards `.S/.M/.B/.F/.T`, or any asset we never trade): WARNING, set to the
    exchange's. A traded asset beyond tolerance is unexplained by any fill: CRITICAL."""
    traded = set(traded_assets)
    out: list[Finding] = []
    for asset in sorted(set(local) | set(exchange)):
        mine, theirs = local.get(asset, ZERO), exchange.get(asset, ZERO)
        diff = theirs - mine
        if diff == 0:
            continue
        within = abs(diff) <= tolerances.balance_for(asset)
        untraded = asset not in traded or asset.upper().endswith(EARN_SUFFIXES)
        if within:
            severity, action = INFO, A_BALANCE
        elif untraded and correct_untraded:
            severity, action = WARNING, A_BALANCE
        else:
            severity, action = CRITICAL, A_NONE
        out.append(
            Finding(
                kind=BALANCE_MISMATCH,
                severity=severity,
                action=action,
                within_tolerance=within,
                asset=asset,
                local_value=str(mine),
                exchange_value=str(theirs),
                difference=diff,
                evidence={"traded": not untraded, "tolerance": str(tolerances.balance_for(asset))},
                plan={"asset": asset, "total": str(theirs)},
            )
        )
    return out


def compare_positions(
    *, positions: Mapping[str, Decimal], from_fills: Mapping[str, Decimal], tolerances: Tolerances
) -> list[Finding]:
    """Each instrument's position against the signed sum of its fills (the position our fills prove)."""
    out: list[Finding] = []
    for symbol in sorted(set(positions) | set(from_fills)):
        held, proved = positions.get(symbol, ZERO), from_fills.get(symbol, ZERO)
        diff = proved - held
        if diff == 0:
            continue
        within = abs(diff) <= tolerances.qty
        out.append(
            Finding(
                kind=POSITION_MISMATCH,
                severity=INFO if within else CRITICAL,
                within_tolerance=within,
                symbol=symbol,
                local_value=str(held),
                exchange_value=f"{proved} (signed sum of fills)",
                difference=diff,
            )
        )
    return out
