"""The decision pipeline, run once per closed bar (the ingest worker enqueues `trading.tasks.decide_on_bar`):

    prediction (trading.predictor: the registry's model, or the baseline) → signal with confidence →
    sizing (fixed fraction of equity, scaled by volatility targeting) → order quantity toward the target →
    risk checks and submission in one transaction (`order_place_in_transaction`) → execution (the gateway, after
    commit)

Keyed by the decision id (symbol + bar time + model version): a replay or a duplicate task finds the decision
already made and trades nothing more. A bar older than `GALFRIDAY_DECISION_MAX_AGE_S` is recorded as expired.
Spot only: the target position is never below zero (a sell signal means flat).
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import audit_actor, audited_row_insert
from core.generations import generations_snapshot
from trading.costs import CostModel, NoTradeBand, trade_check
from trading.executions import EventSource
from trading.models import Decision, Instrument, OrderType, Side
from trading.orders import OrderRequest
from trading.predictor import (
    BarsPredictor,
    BarWindow,
    Prediction,
    closes_window,
    get_predictor,
    read_bars,
    recent_closes,
)
from trading.selectors import DecisionInputs, decision_inputs, risk_limits_effective
from trading.submission import order_place_in_transaction

logger = logging.getLogger(__name__)
ZERO = Decimal(0)
BARS_PER_YEAR = 525_600
ACTOR = "pipeline"
# The decision pipeline's bars: a decision's bar starts at `bar_time` and closes one length later.
BAR_LENGTH = timedelta(minutes=1)
EDGE_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class SizingPolicy:
    fraction: Decimal = Decimal("0.10")  # of equity at full confidence
    target_volatility: Decimal | None = Decimal("0.50")  # annualised; None disables volatility targeting
    max_scale: Decimal = Decimal("2")  # cap on the volatility scaling
    vol_lookback: int = 60

    @classmethod
    def from_settings(cls) -> SizingPolicy:
        target = settings.GALFRIDAY_SIZING_TARGET_VOLATILITY
        return cls(
            fraction=Decimal(str(settings.GALFRIDAY_SIZING_FRACTION)),
            target_volatility=Decimal(str(target)) if target not in ("", None) else None,
        )


def annualised_volatility(closes: list[Decimal]) -> Decimal | None:
    """Annualised standard deviation of 1-minute log returns (a float inside; features may use floats)."""
    if len(closes) < 3 or any(c <= 0 for c in closes):
        return None
    returns = [math.log(float(b) / float(a)) for a, b in zip(closes, closes[1:], strict=False)]
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return Decimal(str(math.sqrt(variance * BARS_PER_YEAR)))


def target_quantity(
    *, prediction: Prediction, equity: Decimal, price: Decimal, policy: SizingPolicy, volatility: Decimal | None
) -> Decimal:
    """The base-asset position the signal asks for (spot: never negative)."""
    if prediction.signal <= 0 or equity <= 0 or price <= 0:
        return ZERO
    weight = policy.fraction * Decimal(str(prediction.confidence))
    if policy.target_volatility is not None and volatility:
        weight *= min(policy.target_volatility / volatility, policy.max_scale)
    return equity * weight / price


def order_quantity(*, instrument: Instrument, current: Decimal, target: Decimal, price: Decimal) -> Decimal:
    """Signed quantity to trade toward the target, at the instrument's lot precision; zero below the minimums."""
    step = Decimal(1).scaleb(-instrument.qty_precision)
    delta = (target - current).quantize(step, rounding=ROUND_DOWN)
    if abs(delta) < instrument.ordermin or (instrument.costmin and abs(delta) * price < instrument.costmin):
        return ZERO
    return delta


def client_order_id_for(decision_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"galfriday:decision:{decision_id}"))


def decide_on_bar(*, symbol: str, bar_time: datetime, now: datetime | None = None) -> Decision:
    """Run the pipeline for the closed bar of `symbol` starting at `bar_time`. Safe to run twice.

    On the latency path (bar closed → order at the exchange): one read of the bars (shared by the predictor, when
    it declares `bars_range`, and the sizing), one query for the inputs (instrument, quote, position, latest
    equity and whether the decision exists), the limits, then one transaction that places the order
    (`order_place_in_transaction`: created, risk-checked, submitted) and records the decision with it."""
    now = now or timezone.now()
    max_age = float(settings.GALFRIDAY_DECISION_MAX_AGE_S)
    bar_end = bar_time + BAR_LENGTH
    # One moment of the cache generations for the whole decision (the router's and the model's in one round trip).
    with audit_actor(ACTOR, reason=f"bar {symbol} {bar_time.isoformat()}"), generations_snapshot():
        if (now - bar_end).total_seconds() > max_age:
            return _record(
                f"{symbol}:{bar_time.isoformat()}:expired",
                Instrument.objects.get(symbol=symbol),
                bar_time,
                Prediction(0, 0.0, "none"),
                status=Decision.Status.EXPIRED,
                reason=f"bar ended {(now - bar_end).total_seconds():.0f} s ago (limit {max_age:.0f} s)",
            )
        predictor = get_predictor()
        policy = SizingPolicy.from_settings()
        provisional_id = f"{symbol}:{bar_time.isoformat()}"
        bars = None
        bars_range = getattr(predictor, "bars_range", None)
        if bars_range is not None:
            # One read of the bars for the predictor's features and the sizing's volatility.
            start, end = bars_range(bar_time=bar_time)
            closes_start, closes_end = closes_window(until=bar_time, count=policy.vol_lookback)
            fields = {"close", *getattr(predictor, "bars_fields", ("close",))}
            bars = read_bars(symbol=symbol, start=min(start, closes_start), end=max(end, closes_end), fields=fields)
            prediction = cast(BarsPredictor, predictor).predict(
                symbol=symbol, bar_time=bar_time, decision_id=provisional_id, bars=bars
            )
        else:
            prediction = predictor.predict(symbol=symbol, bar_time=bar_time, decision_id=provisional_id)
        decision_id = f"{provisional_id}:{prediction.model_version}"
        inputs = decision_inputs(symbol=symbol, decision_id=decision_id)
        if inputs.existing_decision_id is not None:
            return Decision.objects.get(pk=inputs.existing_decision_id)
        return _decide(decision_id, inputs, bar_time, prediction, policy=policy, bars=bars)


def _decide(
    decision_id: str,
    inputs: DecisionInputs,
    bar_time: datetime,
    prediction: Prediction,
    *,
    policy: SizingPolicy,
    bars: BarWindow | None,
) -> Decision:
    instrument, mid = inputs.instrument, inputs.mid
    if not prediction.model_name and prediction.reason:  # no model serves the symbol: nothing is traded
        return _record(decision_id, instrument, bar_time, prediction, status=Decision.Status.NO_TRADE)
    if mid is None or inputs.equity is None:
        missing = "a market quote" if mid is None else "an equity snapshot"
        return _record(
            decision_id, instrument, bar_time, prediction, status=Decision.Status.SKIPPED, reason=f"no {missing} yet"
        )
    current = inputs.position_qty
    closes = [
        c.close for c in recent_closes(symbol=instrument.symbol, until=bar_time, count=policy.vol_lookback, bars=bars)
    ]
    volatility = annualised_volatility(closes)
    target = target_quantity(
        prediction=prediction, equity=inputs.equity, price=mid, policy=policy, volatility=volatility
    )
    capped_by = "signal" if prediction.signal > 0 else ""
    # Size within the risk limits rather than have every large signal refused: the position and the order
    # notional are capped here, and the risk manager still checks everything else.
    limits = risk_limits_effective(instrument=instrument)
    if target > limits.max_position_notional / mid:
        target, capped_by = limits.max_position_notional / mid, "max_position_notional"
    cost = CostModel.for_instrument(taker_fee=instrument.taker_fee, bid=inputs.bid, ask=inputs.ask)
    check = trade_check(
        current_qty=current,
        target_qty=target,
        price=mid,
        equity=inputs.equity,
        expected_return=prediction.expected_return,
        cost=cost,
        band=NoTradeBand.from_settings(),
        ordermin=instrument.ordermin,
        costmin=instrument.costmin,
    )
    delta = order_quantity(instrument=instrument, current=current, target=target, price=mid) if check.allowed else ZERO
    if abs(delta) * mid > limits.max_order_notional:
        step = Decimal(1).scaleb(-instrument.qty_precision)
        delta = (limits.max_order_notional / mid).quantize(step, rounding=ROUND_DOWN).copy_sign(delta)
        capped_by = "max_order_notional"
    sizing: dict[str, Any] = {
        "price": mid,
        "equity": inputs.equity,
        "current_qty": current,
        "target_qty": target,
        "order_qty": delta,
        "cost": cost.round_trip.quantize(EDGE_QUANTUM),
        "capped_by": capped_by,
    }
    if delta == 0:
        if not check.allowed:
            reason = check.reason if prediction.signal or current else "flat signal"
        else:
            reason = "below the exchange minimums"
        return _record(
            decision_id, instrument, bar_time, prediction, status=Decision.Status.NO_TRADE, reason=reason, **sizing
        )
    try:
        # One transaction: the order (created, risk-checked, `submitted` or `rejected`) and the decision that
        # made it, inserted once with its order (one audited row, not an insert and an update). No savepoint
        # inside: a duplicate task deciding the same bar concurrently waits on the trading-state lock, finds the
        # order under the decision's client order id, and fails the insert on the unique decision id, which
        # rolls its whole transaction back.
        with transaction.atomic():
            if prediction.record is not None:
                prediction.record()
            result = order_place_in_transaction(
                OrderRequest(
                    instrument=instrument,
                    client_order_id=client_order_id_for(decision_id),
                    side=Side.BUY if delta > 0 else Side.SELL,
                    order_type=OrderType.MARKET,
                    quantity=abs(delta),
                    reason=f"decision {decision_id}: signal {prediction.signal} at confidence "
                    f"{prediction.confidence:.3f}",
                    source=EventSource.SYSTEM,
                    actor=ACTOR,
                ),
                limits=limits,  # just read for the sizing: the check uses the same values
            )
            decision = Decision(
                **_decision_fields(decision_id, instrument, bar_time, prediction, status=Decision.Status.ORDERED),
                **sizing,
                order=result.order,
                reason="; ".join(f.reason for f in result.failures),
            )
            audited_row_insert(decision, when=timezone.now())  # with its audit row
    except IntegrityError:  # the same decision made concurrently by a duplicate task: use that one
        return Decision.objects.get(decision_id=decision_id)
    logger.info(
        "decision made",
        extra={"decision": decision_id, "order_id": decision.order_id, "qty": str(delta), "rejected": result.rejected},
    )
    return decision


def _decision_fields(
    decision_id: str, instrument: Instrument, bar_time: datetime, prediction: Prediction, *, status: str
) -> dict[str, Any]:
    edge = prediction.expected_return
    return {
        "decision_id": decision_id,
        "instrument": instrument,
        "bar_time": bar_time,
        "model_version": prediction.model_version,
        "model_name": prediction.model_name,
        "model_version_number": prediction.version,
        "signal": prediction.signal,
        "confidence": Decimal(str(round(prediction.confidence, 6))),
        "probabilities": {str(k): round(float(v), 6) for k, v in (prediction.probabilities or {}).items()},
        "expected_edge": Decimal(repr(float(edge))).quantize(EDGE_QUANTUM) if edge is not None else None,
        "status": status,
    }


def _record(
    decision_id: str,
    instrument: Instrument,
    bar_time: datetime,
    prediction: Prediction,
    *,
    status: str,
    reason: str = "",
    **sizing: Any,
) -> Decision:
    fields = _decision_fields(decision_id, instrument, bar_time, prediction, status=status)
    fields.pop("decision_id")
    with transaction.atomic():  # the prediction (if the model's record is deferred) commits with its decision
        if prediction.record is not None:
            prediction.record()
        decision, _ = Decision.objects.get_or_create(
            decision_id=decision_id, defaults={**fields, "reason": reason or prediction.reason, **sizing}
        )
    return decision
