"""Reads of the Overview and Market & trades pages: the instruments a person can chart, the candles of one symbol
with the decisions and fills in their window, and "why did this trade happen": from a fill (or a decision) to its
order, its risk check, its decision and the model's prediction. Bounded, indexed reads only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q

from dashboard.formatting import instrument_places
from models_registry.models import Prediction
from timeseries import get_store
from trading.models import Decision, Fill, Instrument, Order, OrderEvent
from trading.predictor import read_bars
from trading.risk import RiskCode
from trading.selectors import risk_limits_effective

BAR_FIELDS = ("open", "high", "low", "close", "volume")
MAX_BARS = 2000
DEFAULT_BARS = 480
MAX_MARKERS = 500
ORDER_EVENT_LIMIT = 50
INTERVAL = timedelta(minutes=1)

# What `trading.risk.check_order` checks; a passed check records only "passed" (with the mid and position).
RISK_CHECKS = [code.value for code in RiskCode]


def chartable_instruments() -> list[dict[str, Any]]:
    return [
        {"symbol": i.symbol, "base": i.base, "quote": i.quote, "places": instrument_places(i)}
        for i in Instrument.objects.order_by("symbol")[:200]
    ]


def _latest_bar_time(symbol: str) -> datetime | None:
    store = get_store()
    try:
        point = store.latest("bars", {"symbol": symbol, "interval": "1m"})
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    return point.time if point is not None else None


def candles(*, instrument: Instrument, bars: int = DEFAULT_BARS, until: datetime | None = None) -> dict[str, Any]:
    """The newest `bars` one-minute candles of `instrument` ending at `until` (default: its latest stored bar), and
    the decisions (those that traded or signalled) and fills inside their window, as chart markers."""
    bars = max(1, min(bars, MAX_BARS))
    end_bar = until or _latest_bar_time(instrument.symbol)
    if end_bar is None:
        return {"symbol": instrument.symbol, "candles": [], "decisions": [], "fills": [], "from": None, "to": None}
    end = end_bar + INTERVAL
    window = read_bars(
        symbol=instrument.symbol,
        start=end - 3 * bars * INTERVAL,
        end=end,
        fields=BAR_FIELDS,
        require="close",
        last=bars,
    )
    points = [p for p in window.points if {"open", "high", "low", "close"} <= set(p.fields)]
    if not points:
        return {"symbol": instrument.symbol, "candles": [], "decisions": [], "fills": [], "from": None, "to": None}
    start = points[0].time
    rows = [
        {
            "time": int(p.time.timestamp()),
            "open": str(p.fields["open"]),
            "high": str(p.fields["high"]),
            "low": str(p.fields["low"]),
            "close": str(p.fields["close"]),
            "volume": str(p.fields.get("volume", "")),
        }
        for p in points
    ]
    decisions = (
        Decision.objects.filter(instrument=instrument, bar_time__gte=start, bar_time__lt=end)
        .filter(Q(status=Decision.Status.ORDERED) | ~Q(signal=0))
        .order_by("-bar_time", "-id")
        .values("id", "bar_time", "signal", "status", "model_version", "order_id", "reason")[:MAX_MARKERS]
    )
    fills = (
        Fill.objects.filter(instrument=instrument, executed_at__gte=start, executed_at__lt=end)
        .order_by("-executed_at", "-id")
        .values("id", "executed_at", "side", "quantity", "price", "order_id")[:MAX_MARKERS]
    )
    return {
        "symbol": instrument.symbol,
        "from": start,
        "to": end,
        "candles": rows,
        "decisions": [{**d, "time": int(d["bar_time"].timestamp())} for d in reversed(list(decisions))],
        "fills": [
            {
                **f,
                "time": int(f["executed_at"].timestamp()) // 60 * 60,
                "quantity": str(f["quantity"]),
                "price": str(f["price"]),
            }
            for f in reversed(list(fills))
        ],
    }


# --- why did this trade happen ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    fill: Fill | None
    order: Order | None
    decision: Decision | None


def chain_from_fill(fill_id: int) -> Chain | None:
    fill = Fill.objects.select_related("order", "instrument").filter(pk=fill_id).first()
    if fill is None:
        return None
    decision = Decision.objects.select_related("instrument").filter(order_id=fill.order_id).first()
    return Chain(fill=fill, order=fill.order, decision=decision)


def chain_from_decision(decision_pk: int) -> Chain | None:
    decision = Decision.objects.select_related("instrument", "order").filter(pk=decision_pk).first()
    if decision is None:
        return None
    fill = (
        Fill.objects.filter(order_id=decision.order_id).order_by("executed_at", "id").first()
        if decision.order_id
        else None
    )
    return Chain(fill=fill, order=decision.order, decision=decision)


def prediction_of(decision: Decision) -> Prediction | None:
    """The prediction the decision was made on: the pipeline records it under the decision id without its
    trailing `:<model version>` (the id it asked the predictor with), by the decision's model version."""
    if not decision.model_name or decision.model_version_number is None:
        return None
    suffix = f":{decision.model_version}"
    provisional = (
        decision.decision_id[: -len(suffix)] if decision.decision_id.endswith(suffix) else decision.decision_id
    )
    return (
        Prediction.objects.select_related("version", "version__model")
        .filter(
            decision_id=provisional,
            version__model__name=decision.model_name,
            version__version=decision.model_version_number,
        )
        .first()
    )


def _risk(order: Order, events: list[OrderEvent]) -> dict[str, Any]:
    """What the order's events say of its risk check: passed (with the mid and position it saw) or rejected
    (with every failure), or unknown for an order that never went through it (external, or older rows)."""
    for event in events:
        risk = (event.payload or {}).get("risk") if isinstance(event.payload, dict) else None
        if risk == "passed":
            return {
                "status": "passed",
                "at": event.recorded_at,
                "mid": event.payload.get("mid"),
                "position": event.payload.get("position"),
                "checks": RISK_CHECKS,
            }
        if isinstance(risk, dict):
            return {"status": "rejected", "at": event.recorded_at, "result": risk, "checks": RISK_CHECKS}
    return {"status": "unknown", "checks": RISK_CHECKS, "note": "no risk-check event recorded for this order"}


def _features(prediction: Prediction) -> list[dict[str, Any]]:
    vector = prediction.feature_vector()
    if vector is None:
        return []
    names = prediction.version.feature_names
    values = [float(v) for v in vector.reshape(-1)]
    return [{"name": names[i] if i < len(names) else f"feature_{i}", "value": v} for i, v in enumerate(values)]


def explanation(chain: Chain) -> dict[str, Any]:
    """The whole chain as the page shows it; each missing link says why it is missing."""
    order, decision, fill = chain.order, chain.decision, chain.fill
    instrument = (fill or decision or order).instrument  # type: ignore[union-attr]
    out: dict[str, Any] = {"symbol": instrument.symbol, "places": instrument_places(instrument)}
    out["fill"] = None
    if fill is not None:
        out["fill"] = {
            "id": fill.pk,
            "exec_id": fill.exec_id,
            "side": fill.side,
            "quantity": fill.quantity,
            "price": fill.price,
            "cost": fill.cost,
            "fee": fill.fee,
            "liquidity": fill.get_liquidity_display(),
            "realised_pnl": fill.realised_pnl,
            "executed_at": fill.executed_at,
        }
    out["order"] = None
    out["risk"] = None
    if order is not None:
        events = list(order.events.order_by("sequence")[:ORDER_EVENT_LIMIT])
        out["order"] = {
            "id": order.pk,
            "client_order_id": order.client_order_id,
            "exchange_order_id": order.exchange_order_id,
            "side": order.side,
            "order_type": order.order_type,
            "quantity": order.quantity,
            "limit_price": order.limit_price,
            "state": order.state,
            "filled_qty": order.filled_qty,
            "avg_price": order.avg_price,
            "fees": order.fees,
            "reason": order.reason,
            "external": order.external,
            "created_at": order.created_at,
            "events": [
                {
                    "sequence": e.sequence,
                    "kind": e.kind,
                    "source": e.source,
                    "from_state": e.from_state,
                    "to_state": e.to_state,
                    "reason": e.reason,
                    "recorded_at": e.recorded_at,
                }
                for e in events
            ],
        }
        out["risk"] = _risk(order, events)
    out["decision"] = None
    out["prediction"] = None
    if decision is None:
        out["no_decision"] = (
            "placed by hand (no decision made this order)"
            if order is not None and not order.external
            else "an order first learned from the exchange (external): no decision of ours"
        )
        return out
    limits = risk_limits_effective(instrument=decision.instrument)
    out["decision"] = {
        "id": decision.pk,
        "decision_id": decision.decision_id,
        "bar_time": decision.bar_time,
        "status": decision.status,
        "reason": decision.reason,
        "model_version": decision.model_version,
        "signal": decision.signal,
        "confidence": decision.confidence,
        "probabilities": decision.probabilities,
        "expected_edge": decision.expected_edge,
        "cost": decision.cost,
        "edge_net_of_cost": (
            decision.expected_edge - decision.cost
            if decision.expected_edge is not None and decision.cost is not None
            else None
        ),
        "price": decision.price,
        "equity": decision.equity,
        "current_qty": decision.current_qty,
        "target_qty": decision.target_qty,
        "order_qty": decision.order_qty,
        "capped_by": decision.capped_by,
        "capped_by_limit_now": getattr(limits, decision.capped_by, None) if decision.capped_by else None,
        "created_at": decision.created_at,
    }
    prediction = prediction_of(decision)
    if prediction is None:
        out["no_prediction"] = (
            f"{decision.model_version} is not a registered model version: no prediction row is stored"
            if not decision.model_name
            else "no prediction row is stored for this decision"
        )
        return out
    version = prediction.version
    out["prediction"] = {
        "id": prediction.pk,
        "model_name": version.model.name,
        "version": version.version,
        "stage": version.stage,
        "bar_time": prediction.bar_time,
        "horizon": prediction.horizon,
        "probabilities": prediction.probabilities,
        "predicted_class": prediction.predicted_class,
        "signal": prediction.signal,
        "confidence": prediction.confidence,
        "features": _features(prediction),
        "features_hash": prediction.features_hash,
        "created_at": prediction.created_at,
    }
    return out
