"""galfriday_site.watchdog: the gauges alerts.yml needs beyond the rest of /metrics, read from real rows: the
exchange status each ingest worker reports (the market open or not) and the time of the latest decision per
ingested symbol."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import cast

import pytest
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from galfriday_site.watchdog import WatchdogCollector
from ingest.models import IngestStatus
from tests.trading.factories import EthInstrumentFactory, InstrumentFactory
from trading.models import Decision, Instrument

pytestmark = pytest.mark.django_db


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatchdogCollector())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def decide(instrument: Instrument, n: int) -> Decision:
    return Decision.objects.create(
        decision_id=f"{instrument.symbol}:{n}",
        instrument=instrument,
        bar_time=timezone.now() - timedelta(minutes=n),
        model_version="test v1",
        signal=0,
        confidence=Decimal("0.5"),
        status=Decision.Status.NO_TRADE,
    )


def test_exchange_status_per_worker_marks_the_current_one() -> None:
    now = timezone.now()
    IngestStatus.objects.create(
        name="a:1", connection_state="connected", exchange_status="maintenance", started_at=now, updated_at=now
    )
    got = samples()
    assert got[("galfriday_ingest_exchange_status", (("status", "maintenance"), ("worker", "a:1")))] == 1.0
    assert got[("galfriday_ingest_exchange_status", (("status", "online"), ("worker", "a:1")))] == 0.0


def test_last_decision_time_per_ingested_symbol_only() -> None:
    now = timezone.now()
    IngestStatus.objects.create(
        name="a:1",
        connection_state="connected",
        exchange_status="online",
        symbols=["BTC/USD"],
        started_at=now,
        updated_at=now,
    )
    btc, eth = cast(Instrument, InstrumentFactory()), cast(Instrument, EthInstrumentFactory())
    decide(btc, 1)
    latest = decide(btc, 0)
    decide(eth, 0)  # ETH/USD is not ingested any more: its silence is expected
    got = {k: v for k, v in samples().items() if k[0] == "galfriday_trading_last_decision_timestamp_seconds"}
    assert got == {
        ("galfriday_trading_last_decision_timestamp_seconds", (("symbol", "BTC/USD"),)): latest.created_at.timestamp()
    }
