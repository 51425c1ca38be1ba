"""The decision task's own send (GALFRIDAY_EXECUTION_INLINE, trading.tasks.decide_on_bar) against the simulator in
live mode: the order it creates carries its first send attempt in its own durable commit, so the send leaves with
no commit of its own before it and without asking the exchange first; a replay of a run that died before sending
asks the exchange first and sends once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.metrics import BAR_TO_ACK
from tests.trading.sim_support import ThreadedSim, point_settings_at, sim  # noqa: F401  (fixture)
from tests.trading.test_pipeline import rising, write_bars
from trading import gateway, tasks, ws_session
from trading.accounts import equity_snapshot_take
from trading.brokers.kraken import KrakenBroker
from trading.models import Decision, Instrument, Order


@pytest.fixture
def live(settings: Any, sim: ThreadedSim, tmp_path: Path, market: Instrument) -> ThreadedSim:  # noqa: F811
    point_settings_at(settings, sim, tmp_path, mode="live", ws=True)  # a WebSocket ack: no read-back after it
    settings.INFLUXDB_URL = ""
    settings.GALFRIDAY_PREDICTOR = "tests.trading.doubles.MomentumTestModel"
    settings.GALFRIDAY_EXECUTION_GATEWAY = "trading.gateway.CeleryExecutionGateway"
    settings.GALFRIDAY_EXECUTION_INLINE = True
    settings.GALFRIDAY_DECISION_MAX_AGE_S = 300  # the bar closed up to a minute ago, whenever the test runs
    equity_snapshot_take(marks={"BTC/USD": Decimal("100")})
    sim.place("sell", "100.0", "50")
    return sim


@pytest.fixture(autouse=True)
def _own_ws_session() -> Iterator[None]:
    """The process's private WebSocket session starts and ends with each test (it would outlive its simulator)."""
    ws_session.close_session()
    yield
    ws_session.close_session()


@pytest.fixture
def queries_to_the_exchange(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    real = KrakenBroker.query_by_client_id

    def spy(self: KrakenBroker, ticket: Any) -> Any:
        asked.append(ticket.client_order_id)
        return real(self, ticket)

    monkeypatch.setattr(KrakenBroker, "query_by_client_id", spy)
    return asked


def bar_to_ack(symbol: str) -> tuple[float, float]:
    """This process's `galfriday_bar_to_ack_seconds` for the symbol: (count, sum)."""
    values = {
        sample.name: sample.value
        for family in BAR_TO_ACK.collect()
        for sample in family.samples
        if sample.labels.get("symbol") == symbol and sample.name.endswith(("_count", "_sum"))
    }
    return values.get("galfriday_bar_to_ack_seconds_count", 0.0), values.get("galfriday_bar_to_ack_seconds_sum", 0.0)


def _bar() -> datetime:
    return timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)


@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_the_first_send_needs_no_commit_and_no_question_of_its_own(
    live: ThreadedSim, queries_to_the_exchange: list[str]
) -> None:
    bar_time = _bar()
    write_bars(rising(), end=bar_time)
    count_before, sum_before = bar_to_ack("BTC/USD")
    with CaptureQueriesContext(connection) as captured:
        result = tasks.decide_on_bar("BTC/USD", bar_time.isoformat())
    waited = (timezone.now() - (bar_time + timedelta(minutes=1))).total_seconds()
    assert result["status"] == Decision.Status.ORDERED, result
    count_after, sum_after = bar_to_ack("BTC/USD")
    assert count_after == count_before + 1  # the latency target's histogram: from the bar's end to the ack
    assert 0 < sum_after - sum_before <= waited
    assert result["sent"] == ["sent"]
    order = Order.objects.get(pk=result["order_id"])
    assert order.exchange_order_id
    assert order.send_attempts == 1  # counted with the order, in its creating commit
    assert len(live.orders(order.client_order_id)) == 1
    assert queries_to_the_exchange == []  # never attempted by anyone else: sent at once
    separate_marks = [q["sql"] for q in captured.captured_queries if '"send_attempts" = (' in q["sql"]]
    assert separate_marks == []


@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_a_replay_of_a_run_that_died_before_sending_asks_first_and_sends_once(
    live: ThreadedSim, queries_to_the_exchange: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bar_time = _bar()
    write_bars(rising(), end=bar_time)
    handed: list[int] = []

    def died(**kwargs: Any) -> Any:
        raise RuntimeError("the worker died before the order left")

    monkeypatch.setattr(tasks, "order_execute", died)
    broker = SimpleNamespace(send_task=lambda name, kwargs, **options: handed.append(kwargs["order_id"]))
    monkeypatch.setattr(gateway, "current_app", broker)  # execute_order's hand-over, recorded instead of enqueued
    first = tasks.decide_on_bar("BTC/USD", bar_time.isoformat())
    order = Order.objects.get(pk=first["order_id"])
    assert (first["sent"], handed) == (["handed_over"], [order.pk])
    assert (order.send_attempts, order.exchange_order_id) == (1, "")
    assert live.orders(order.client_order_id) == []

    monkeypatch.undo()
    monkeypatch.setattr(KrakenBroker, "query_by_client_id", _counting(queries_to_the_exchange))
    again = tasks.decide_on_bar("BTC/USD", bar_time.isoformat())
    assert again["order_id"] == order.pk
    assert again["sent"] == ["sent"]
    assert queries_to_the_exchange == [order.client_order_id]  # maybe sent by the first run: asked first
    order.refresh_from_db()
    assert order.exchange_order_id
    assert order.send_attempts == 2
    assert len(live.orders(order.client_order_id)) == 1


def _counting(asked: list[str]) -> Any:
    real = KrakenBroker.query_by_client_id

    def spy(self: KrakenBroker, ticket: Any) -> Any:
        asked.append(ticket.client_order_id)
        return real(self, ticket)

    return spy
