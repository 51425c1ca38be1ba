"""The account: balances (set from exchange snapshots; fills move them in `trading.execution_reports`), equity
snapshots with the high-water mark and drawdown, and the fee corrections reconciliation finds."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError, NotFoundError
from trading import lock_objects
from trading.attribution import attributed
from trading.executions import EventSource
from trading.models import Balance, EquitySnapshot, Fill, Instrument, OrderEvent, Position, Side
from trading.orders import order_event_new
from trading.pnl import ZERO, drawdown, q_money, unrealised_pnl

logger = logging.getLogger(__name__)


def fill_balance_delta(
    *, base: str, quote: str, side: str, qty: Decimal, cost: Decimal, fees: Iterable[tuple[str, Decimal]]
) -> dict[str, Decimal]:
    """How one fill moves the balances: the base by the quantity, the quote by the cost, each fee off its asset."""
    delta: dict[str, Decimal] = {base: qty if side == Side.BUY else -qty, quote: -cost if side == Side.BUY else cost}
    for asset, fee in fees:
        delta[asset] = delta.get(asset, ZERO) - fee
    return delta


def fills_after(asset: str, as_of: datetime) -> Decimal:
    """What our fills executed after `as_of` moved `asset` by (what a balance statement as of then does not hold)."""
    moved = ZERO
    for fill in Fill.objects.filter(executed_at__gt=as_of).select_related("instrument"):
        instrument = fill.instrument
        if asset not in (instrument.base, instrument.quote) and all(f["asset"] != asset for f in fill.fee_details):
            continue
        delta = fill_balance_delta(
            base=instrument.base,
            quote=instrument.quote,
            side=fill.side,
            qty=fill.quantity,
            cost=fill.cost,
            fees=[(f["asset"], Decimal(f["qty"])) for f in fill.fee_details],
        )
        moved += delta.get(asset, ZERO)
    return moved


@transaction.atomic
def balance_set(
    *,
    asset: str,
    total: Decimal,
    source: EventSource = EventSource.EXCHANGE,
    actor: str | None = None,
    as_of: datetime | None = None,
) -> Balance:
    """Set an asset's balance from the exchange (its number wins over our running total).

    `as_of` (a statement of the private `balances` channel: a snapshot, as of the exchange's time it took the
    subscription, or a ledger entry's resulting balance, as of the entry) says which trades `total` includes: those
    executed at or before it. Fills are applied in no guaranteed order with the statements (the two channels after a
    delay or a reconnect, REST syncs, reconciliation), so a trade is counted once either way: a fill executed after
    `as_of` that is already applied is added to `total` here, and a fill at or before it applied later does not
    move the balance again (`execution_report_apply`). A statement older than the last one is ignored. Without
    `as_of` (a REST read, a paper account) `total` is set as given."""
    if not asset:
        raise ApplicationError("Invalid balance.", code="validation_error", details={"asset": "required"})
    with attributed(actor, source, f"balance snapshot {asset}"):
        balance = lock_objects.balances_lock([asset])[asset]
        if as_of is not None:
            if balance.exchange_as_of is not None and as_of < balance.exchange_as_of:
                logger.info(
                    "balance statement older than the last one ignored",
                    extra={"asset": asset, "as_of": as_of.isoformat(), "last": balance.exchange_as_of.isoformat()},
                )
                return balance
            total += fills_after(asset, as_of)
            balance.exchange_as_of = as_of
        if balance.total != total or as_of is not None:
            balance.total = total
            balance.save()
    return balance


@transaction.atomic
def equity_snapshot_take(
    *, marks: Mapping[str, Decimal], currency: str = "USD", at: datetime | None = None
) -> EquitySnapshot:
    """Value the balances and positions at `marks` (v2 symbol → price in `currency`) and record equity, the
    high-water mark and the drawdown from it."""
    instruments = {i.symbol: i for i in Instrument.objects.filter(quote=currency)}
    price_of_asset = {instruments[s].base: Decimal(p) for s, p in marks.items() if s in instruments}
    equity = ZERO
    missing: list[str] = []
    for balance in Balance.objects.all():
        if balance.asset == currency:
            equity += balance.total
        elif balance.total != 0:
            if balance.asset not in price_of_asset:
                missing.append(balance.asset)
                continue
            equity += balance.total * price_of_asset[balance.asset]
    realised = unrealised = fees = ZERO
    for position in Position.objects.select_related("instrument").filter(instrument__quote=currency):
        realised += position.realised_pnl
        fees += position.fees
        if position.quantity != 0:
            mark = marks.get(position.instrument.symbol)
            if mark is None:
                missing.append(position.instrument.symbol)
                continue
            unrealised += unrealised_pnl(quantity=position.quantity, avg_price=position.avg_price, mark=Decimal(mark))
    if missing:
        raise ApplicationError(
            "No mark price for some holdings.", code="missing_marks", details={"missing": sorted(set(missing))}
        )
    equity = q_money(equity)
    previous = lock_objects.equity_snapshot_latest_lock(currency)
    hwm = max(previous.high_water_mark, equity) if previous is not None else equity
    return EquitySnapshot.objects.create(
        taken_at=at or timezone.now(),
        currency=currency,
        equity=equity,
        realised_pnl=q_money(realised),
        unrealised_pnl=q_money(unrealised),
        fees=q_money(fees),
        high_water_mark=hwm,
        drawdown=drawdown(high_water_mark=hwm, equity=equity),
    )


# --- corrections from reconciliation -------------------------------------------------------------------------


@transaction.atomic
def fill_fee_correct(
    *,
    exec_id: str,
    fee: Decimal,
    fee_asset: str,
    source: EventSource = EventSource.RECONCILIATION,
    actor: str | None = None,
    reason: str = "",
) -> Fill:
    """The exchange charged a different fee for a fill than we recorded (a later rebate or correction, found by
    reconciliation): set the fill's fee, and move the order's fees, the position's fees and the fee asset's
    balance by the difference. Recorded as an `amended` order event with the before and after fee; the order,
    position and balance changes are audited. A fee in an asset other than the instrument's quote is refused."""
    fill = Fill.objects.select_related("instrument").filter(exec_id=exec_id).first()
    if fill is None:
        raise NotFoundError(f"fill {exec_id} does not exist")
    instrument = fill.instrument
    if fee_asset != instrument.quote or not fee.is_finite() or fee < 0:
        raise ApplicationError(
            "Invalid fee correction.",
            code="validation_error",
            details={"fee": str(fee), "fee_asset": fee_asset, "quote": instrument.quote},
        )
    with attributed(actor, source, reason or f"fee correction {exec_id}") as who:
        order = lock_objects.order_lock(fill.order_id)
        fill = lock_objects.fill_lock(fill.pk)
        before = fill.fee
        delta = q_money(fee - before)
        if delta == 0:
            return fill
        fill.fee = q_money(fee)
        fill.fee_details = [{"asset": fee_asset, "qty": str(fee)}]
        fill.save(update_fields=["fee", "fee_details"])
        order.fees += delta
        position = lock_objects.position_lock(instrument)
        position.fees += delta
        position.save()
        balance = lock_objects.balances_lock([fee_asset])[fee_asset]
        if balance.exchange_as_of is None or fill.executed_at > balance.exchange_as_of:
            balance.total -= delta
            balance.save()
        # else: a balance statement of the exchange at or after the fill already holds the fee it charged
        amended = order_event_new(
            order,
            kind=OrderEvent.Kind.AMENDED,
            source=source,
            from_state=order.state,
            to_state=order.state,
            actor=who,
            exec_id="",
            reason=reason or "fee corrected",
            payload={"exec_id": exec_id, "changes": {"fee": [str(before), str(fill.fee)]}, "fee_asset": fee_asset},
        )
        order.save()
        amended.save()
    logger.info("fill fee corrected", extra={"exec_id": exec_id, "before": str(before), "after": str(fee)})
    return fill
