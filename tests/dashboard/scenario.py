"""A small trading history for the dashboard's tests: one instrument with a quote and an open position, equity
snapshots, and a trade with its whole chain (prediction → decision → order with its events → fill), written as
the services leave the rows (the pages only read them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

from models_registry.models import ModelVersion, Prediction, RegisteredModel, features_encode
from tests.trading.factories import InstrumentFactory
from trading.models import Decision, EquitySnapshot, Fill, Instrument, MarketQuote, Order, OrderEvent, Position

FEATURE_NAMES = ("ret_1", "vol_15", "rsi_14")


@dataclass(frozen=True)
class Scenario:
    instrument: Instrument
    version: ModelVersion
    prediction: Prediction
    decision: Decision
    order: Order
    fill: Fill


def model_version(name: str = "btc-usd-1m-direction", number: int = 3) -> ModelVersion:
    model, _ = RegisteredModel.objects.get_or_create(name=name)
    return ModelVersion.objects.create(
        model=model,
        version=number,
        stage="production",
        artifact_sha256=hashlib.sha256(f"{name}{number}".encode()).hexdigest(),
        artifact_size=1234,
        signature=[{"name": n, "type": "float64"} for n in FEATURE_NAMES],
        data_start=datetime(2026, 1, 1, tzinfo=UTC),
        data_end=datetime(2026, 6, 1, tzinfo=UTC),
        symbols=["BTC/USD"],
        feature_set_name="bars_1m",
        feature_set_version="1",
    )


def trade_chain(
    *, instrument: Instrument, version: ModelVersion, bar_time: datetime, exec_id: str = "EXEC-1"
) -> tuple[Prediction, Decision, Order, Fill]:
    """A prediction that led to a decision that placed an order that filled once."""
    provisional = f"{instrument.symbol}:{bar_time.isoformat()}"
    label = f"{version.model.name} v{version.version}"
    prediction = Prediction.objects.create(
        decision_id=provisional,
        version=version,
        symbol=instrument.symbol,
        features_hash="0" * 64,
        probabilities={"-1": 0.12, "0": 0.23, "1": 0.65},
        predicted_class=1,
        signal=1,
        confidence=0.65,
        bar_time=bar_time,
        horizon=60,
        features=features_encode([0.0012, 0.0042, 61.5]),
    )
    order = Order.objects.create(
        client_order_id=f"gf-{exec_id}",
        exchange_order_id=f"O-{exec_id}",
        instrument=instrument,
        side="buy",
        order_type="limit",
        quantity=Decimal("0.05"),
        limit_price=Decimal("50000.0"),
        state="filled",
        filled_qty=Decimal("0.05"),
        filled_cost=Decimal("2500"),
        avg_price=Decimal("50000.0"),
        fees=Decimal("6.5"),
        reason=f"decision {provisional}:{label}",
        submitted_at=bar_time + timedelta(seconds=61),
        accepted_at=bar_time + timedelta(seconds=61),
        closed_at=bar_time + timedelta(seconds=62),
        last_event_sequence=4,
    )
    steps = [
        ("created", "system", "created", "created", {}),
        ("submitted", "system", "created", "submitted", {"risk": "passed", "mid": "50001.0", "position": "0"}),
        ("accepted", "exchange", "submitted", "open", {}),
        ("fill", "exchange", "open", "filled", {"exec_id": exec_id}),
    ]
    for sequence, (kind, source, before, after, payload) in enumerate(steps, start=1):
        OrderEvent.objects.create(
            order=order,
            sequence=sequence,
            kind=kind,
            source=source,
            from_state=before,
            to_state=after,
            exec_id=exec_id if kind == "fill" else "",
            payload=payload,
        )
    decision = Decision.objects.create(
        decision_id=f"{provisional}:{label}",
        instrument=instrument,
        bar_time=bar_time,
        model_version=label,
        model_name=version.model.name,
        model_version_number=version.version,
        signal=1,
        confidence=Decimal("0.65"),
        probabilities={"-1": 0.12, "0": 0.23, "1": 0.65},
        expected_edge=Decimal("0.00310000"),
        cost=Decimal("0.00520000"),
        capped_by="max_position_notional",
        price=Decimal("50001.0"),
        equity=Decimal("100000"),
        current_qty=Decimal("0"),
        target_qty=Decimal("0.05"),
        order_qty=Decimal("0.05"),
        order=order,
        status="ordered",
    )
    fill = Fill.objects.create(
        order=order,
        instrument=instrument,
        exec_id=exec_id,
        side="buy",
        quantity=Decimal("0.05"),
        price=Decimal("50000.0"),
        cost=Decimal("2500"),
        fee=Decimal("6.5"),
        liquidity="t",
        realised_pnl=Decimal("0"),
        source="exchange",
        executed_at=bar_time + timedelta(seconds=62),
    )
    return prediction, decision, order, fill


def build(now: datetime) -> Scenario:
    """The whole history: the trade a few minutes ago, equity over the last day, a marked open position."""
    instrument = cast(Instrument, InstrumentFactory())
    version = model_version()
    bar_time = (now - timedelta(minutes=5)).replace(second=0, microsecond=0)
    prediction, decision, order, fill = trade_chain(instrument=instrument, version=version, bar_time=bar_time)
    MarketQuote.objects.create(
        instrument=instrument, bid=Decimal("50990.0"), ask=Decimal("51010.0"), mid=Decimal("51000.0"), quoted_at=now
    )
    Position.objects.create(
        instrument=instrument,
        quantity=Decimal("0.05"),
        avg_price=Decimal("50000.0"),
        fees=Decimal("6.5"),
        opened_at=fill.executed_at,
    )
    hwm = Decimal("100000")
    snapshots = []
    for i in range(48):
        at = now - timedelta(minutes=30 * (48 - i))
        equity = hwm - Decimal(i % 7) * Decimal("1234.567890123456")
        snapshots.append(
            EquitySnapshot(
                taken_at=at,
                currency="USD",
                equity=equity,
                realised_pnl=Decimal(0),
                unrealised_pnl=Decimal(0),
                fees=Decimal(0),
                high_water_mark=hwm,
                drawdown=((hwm - equity) / hwm).quantize(Decimal("1e-8")),
            )
        )
    EquitySnapshot.objects.bulk_create(snapshots)
    return Scenario(instrument, version, prediction, decision, order, fill)
