"""The decision pipeline, run once per closed bar (the ingest worker enqueues `trading.tasks.decide_on_bar`):

    prediction (trading.predictor: the registry's model, or the baseline) → signal with confidence →
    sizing (fixed fraction of equity, scaled by volatility targeting) → order quantity toward the target →
    risk checks and submission in one transaction (`order_place`) → execution (the gateway, after commit)

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

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from galfriday_site.audit import audit_actor
from trading.executions import EventSource
from trading.models import Decision, EquitySnapshot, Instrument, MarketQuote, OrderType, Position, Side
from trading.predictor import Prediction, get_predictor, recent_closes
from trading.risk_services import order_place
from trading.selectors import risk_limits_effective

logger = logging.getLogger(__name__)
ZERO = Decimal(0)
BARS_PER_YEAR = 525_600
ACTOR = "pipeline"


@dataclass(frozen=True)
class SizingPolicy:
    fraction: Decimal = Decimal("0.10")  # of equity at full confidence
    target_volatility: Decimal | None = Decimal("0.50")  # annualised; None disables volatility targeting
    max_scale: Decimal = Decimal("2")  # cap on the volatility scaling
    vol_lookback: int = 60

    @classmethod
    def from_settings(cls) -> SizingPolicy:
        target = getattr(settings, "GALFRIDAY_SIZING_TARGET_VOLATILITY", "0.50")
        return cls(
            fraction=Decimal(str(getattr(settings, "GALFRIDAY_SIZING_FRACTION", "0.10"))),
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
    """Run the pipeline for the closed bar of `symbol` starting at `bar_time`. Safe to run twice."""
    now = now or timezone.now()
    instrument = Instrument.objects.get(symbol=symbol)
    max_age = float(getattr(settings, "GALFRIDAY_DECISION_MAX_AGE_S", 30))
    bar_end = bar_time + timedelta(minutes=1)
    with audit_actor(ACTOR, reason=f"bar {symbol} {bar_time.isoformat()}"):
        if (now - bar_end).total_seconds() > max_age:
            return _record(
                f"{symbol}:{bar_time.isoformat()}:expired",
                instrument,
                bar_time,
                Prediction(0, 0.0, "none"),
                status=Decision.Status.EXPIRED,
                reason=f"bar ended {(now - bar_end).total_seconds():.0f} s ago (limit {max_age:.0f} s)",
            )
        predictor = get_predictor()
        provisional_id = f"{symbol}:{bar_time.isoformat()}"
        prediction = predictor.predict(symbol=symbol, bar_time=bar_time, decision_id=provisional_id)
        decision_id = f"{provisional_id}:{prediction.model_version}"
        existing = Decision.objects.filter(decision_id=decision_id).first()
        if existing is not None:
            return existing
        return _decide(decision_id, instrument, bar_time, prediction)


def _decide(decision_id: str, instrument: Instrument, bar_time: datetime, prediction: Prediction) -> Decision:
    quote = MarketQuote.objects.filter(instrument=instrument).first()
    snapshot = EquitySnapshot.objects.order_by("-taken_at", "-id").first()
    if quote is None or snapshot is None:
        missing = "a market quote" if quote is None else "an equity snapshot"
        return _record(
            decision_id, instrument, bar_time, prediction, status=Decision.Status.SKIPPED, reason=f"no {missing} yet"
        )
    position = Position.objects.filter(instrument=instrument).first()
    current = position.quantity if position else ZERO
    policy = SizingPolicy.from_settings()
    closes = [c.close for c in recent_closes(symbol=instrument.symbol, until=bar_time, count=policy.vol_lookback)]
    volatility = annualised_volatility(closes)
    target = target_quantity(
        prediction=prediction, equity=snapshot.equity, price=quote.mid, policy=policy, volatility=volatility
    )
    # Size within the risk limits rather than have every large signal refused: the position and the order
    # notional are capped here, and the risk manager still checks everything else.
    limits = risk_limits_effective(instrument=instrument)
    target = min(target, limits.max_position_notional / quote.mid)
    delta = order_quantity(instrument=instrument, current=current, target=target, price=quote.mid)
    if abs(delta) * quote.mid > limits.max_order_notional:
        step = Decimal(1).scaleb(-instrument.qty_precision)
        delta = (limits.max_order_notional / quote.mid).quantize(step, rounding=ROUND_DOWN).copy_sign(delta)
    sizing = {
        "price": quote.mid,
        "equity": snapshot.equity,
        "current_qty": current,
        "target_qty": target,
        "order_qty": delta,
    }
    if delta == 0:
        return _record(
            decision_id, instrument, bar_time, prediction, status=Decision.Status.NO_TRADE,
            reason="at target or below the exchange minimums" if prediction.signal else "flat signal", **sizing,
        )  # fmt: skip
    try:
        with transaction.atomic():
            decision = _record(decision_id, instrument, bar_time, prediction, status=Decision.Status.ORDERED, **sizing)
            result = order_place(
                instrument=instrument,
                client_order_id=client_order_id_for(decision_id),
                side=Side.BUY if delta > 0 else Side.SELL,
                order_type=OrderType.MARKET,
                quantity=abs(delta),
                reason=f"decision {decision_id}: signal {prediction.signal} at confidence {prediction.confidence:.3f}",
                source=EventSource.SYSTEM,
                actor=ACTOR,
            )
            decision.order = result.order
            decision.reason = "; ".join(f.reason for f in result.failures)
            decision.save(update_fields=["order", "reason"])
    except IntegrityError:  # the same decision made concurrently by a duplicate task: use that one
        return Decision.objects.get(decision_id=decision_id)
    logger.info(
        "decision made",
        extra={"decision": decision_id, "order_id": decision.order_id, "qty": str(delta), "rejected": result.rejected},
    )
    return decision


def _record(
    decision_id: str,
    instrument: Instrument,
    bar_time: datetime,
    prediction: Prediction,
    *,
    status: str,
    reason: str = "",
    **sizing: Decimal,
) -> Decision:
    decision, _ = Decision.objects.get_or_create(
        decision_id=decision_id,
        defaults={
            "instrument": instrument,
            "bar_time": bar_time,
            "model_version": prediction.model_version,
            "signal": prediction.signal,
            "confidence": Decimal(str(round(prediction.confidence, 6))),
            "status": status,
            "reason": reason,
            **sizing,
        },
    )
    return decision
