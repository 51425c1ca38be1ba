"""Missed decisions (issue 18 item 6): after a restart, the bars that closed while the worker was down, and the last
bar the previous run closed, are checked for a decision. One that ended within the decision age limit is decided
(the real `trading.tasks.decide_on_bar`, run by name); older ones are recorded as missed, counted and reported.

The simulator runs in-process with its clock pinned minute by minute (as in `test_ohlc_check`), so the bars are
1-minute bars whose ages are exact; the worker's decision clock is pinned to the same exchange time."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections

from galfriday_site.celery import app as celery_app
from ingest.models import IngestStatus, MissedDecision
from ingest.worker import IngestWorker
from kraken_sim import SimConfig, Simulator
from tests.ingest.test_gaps import SYMBOLS, config, start
from tests.ingest.test_ohlc_check import first_minute, trade_in_minute
from tests.kraken.conftest import SIM_UNLIMITED
from tests.waiting import until
from timeseries.relational import RelationalStore
from trading.models import Decision

pytestmark = pytest.mark.django_db(transaction=True)
DECIDE = "trading.tasks.decide_on_bar"
MAX_AGE_S = 30.0


@pytest.fixture
async def sim():  # type: ignore[no-untyped-def]
    simulator = Simulator(SimConfig(market="generate", rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED))
    await simulator.start()
    yield simulator
    await simulator.stop()


def lost(task: str, args: list[Any]) -> None:
    """The broker took the task and it never ran (a stop, an expiry): nothing happens."""


def run_by_name(task: str, args: list[Any]) -> None:
    """What a Celery worker does with the task: look it up by name and run it (here, in the enqueue thread)."""
    celery_app.loader.import_default_modules()  # the apps' tasks modules, as a worker imports them at start
    try:
        celery_app.tasks[task](*args)
    finally:
        connections.close_all()


def decided(minute: datetime) -> set[str]:
    return set(Decision.objects.filter(bar_time=minute).values_list("instrument__symbol", flat=True))


async def test_bars_closed_while_down_are_decided_within_the_age_limit_and_older_ones_recorded_missed(
    sim: Simulator, tmp_path: Path
) -> None:
    base = first_minute()
    minutes = [base + timedelta(minutes=i) for i in range(6)]
    store = RelationalStore()
    cfg = config(sim, tmp_path, bar_intervals=(60,), ohlc_check=False, bar_closed_task=DECIDE)
    cfg.decision_max_age_s = MAX_AGE_S
    try:
        # The first run closes minute 0; its decision task is lost (the run stops, the broker drops it).
        worker = IngestWorker(cfg, store=store, channel_layer=InMemoryChannelLayer(), enqueue=lost)
        stop, task = await start(worker)
        for minute in minutes[:2]:
            await trade_in_minute(sim, minute)
        await until(
            lambda: all(worker.checkpoint.saved.get(f"{s}@60", ("",))[0] == minutes[0].isoformat() for s in SYMBOLS),
            what="minute 0 closed and checkpointed",
        )
        stop.set()
        await asyncio.wait_for(task, timeout=20)
        assert worker.counters["decisions_enqueued"] == len(SYMBOLS)

        # While nobody listens the market trades through minutes 2 and 3 and into minute 4.
        for minute in minutes[2:5]:
            await trade_in_minute(sim, minute)

        # The restart finds minutes 1, 2 and 3 closed by its repair, and minute 0 from its checkpoint. It is now
        # 10 s into minute 4 on the exchange: minute 3 ended 10 s ago (decided), the others minutes ago (missed).
        worker = IngestWorker(cfg, store=store, channel_layer=InMemoryChannelLayer(), enqueue=run_by_name)
        now = minutes[4] + timedelta(seconds=10)
        worker.missed_decisions.clock = lambda: now
        stop, task = await start(worker)
        await until(lambda: worker.counters["decisions_recovered"] == len(SYMBOLS), what="recovered decisions")
        await until(lambda: worker.counters["decisions_enqueued"] == len(SYMBOLS), what="decision tasks run")
        stop.set()
        await asyncio.wait_for(task, timeout=20)
    finally:
        sim.clock.set_override(None)

    assert worker.counters["enqueue_failures"] == 0
    assert await sync_to_async(decided)(minutes[3]) == set(SYMBOLS), "the bar that closed while down is decided"
    for minute in minutes[:3]:
        assert await sync_to_async(decided)(minute) == set(), "too old: no decision"
    missed = await sync_to_async(list)(MissedDecision.objects.order_by("bar_start", "symbol"))
    assert [(m.symbol, m.bar_start) for m in missed] == [(s, m) for m in minutes[:3] for s in sorted(SYMBOLS)]
    for record in missed:
        assert record.reason == "startup"
        assert record.interval_seconds == 60
        assert record.bar_end == record.bar_start + timedelta(minutes=1)
        assert float(record.age_seconds) == (now - record.bar_end).total_seconds() > MAX_AGE_S
        assert float(record.max_age_seconds) == MAX_AGE_S

    # Counted, in the health report and in the heartbeat row that /metrics exports.
    assert worker.counters["decisions_missed"] == 3 * len(SYMBOLS)
    health = worker.health()
    assert health["decisions"] == {
        "enqueued": len(SYMBOLS),
        "recovered": len(SYMBOLS),
        "missed": 3 * len(SYMBOLS),
        "check_failures": 0,
    }
    status = await sync_to_async(IngestStatus.objects.get)(name=cfg.name)
    assert status.stats["ingest"]["decisions_missed"] == 3 * len(SYMBOLS)
    assert status.stats["health"]["decisions"]["recovered"] == len(SYMBOLS)
    await sync_to_async(connections.close_all)()


async def test_after_a_reconnect_the_bars_the_repair_closed_are_decided_or_recorded_missed(
    sim: Simulator, tmp_path: Path
) -> None:
    base = first_minute()
    minutes = [base + timedelta(minutes=i) for i in range(3)]
    cfg = config(sim, tmp_path, bar_intervals=(60,), ohlc_check=False, bar_closed_task=DECIDE)
    cfg.decision_max_age_s = MAX_AGE_S
    worker = IngestWorker(cfg, store=RelationalStore(), channel_layer=InMemoryChannelLayer(), enqueue=run_by_name)
    now = minutes[2] + timedelta(seconds=10)
    worker.missed_decisions.clock = lambda: now
    stop, task = await start(worker)
    try:
        await trade_in_minute(sim, minutes[0])
        # The socket stops delivering trades (minute 0 stays open live), the market trades through minute 1 into
        # minute 2, then the connection drops: the repair after the reconnect closes minutes 0 and 1 from REST.
        for symbol in SYMBOLS:
            sim.faults.withhold_market("trade", symbol, 10_000)
        for minute in minutes[1:]:
            await trade_in_minute(sim, minute)
        assert worker.counters["bars_closed"] == 0
        sim.faults.clear()
        assert sim.faults.drop_connections(scope="public", mode="abort") >= 1
        await until(lambda: worker.counters["backfills"] >= len(SYMBOLS), what="the reconnect's repairs")
        await until(lambda: worker.counters["decisions_enqueued"] == len(SYMBOLS), what="decision tasks run")
    finally:
        sim.clock.set_override(None)
        stop.set()
        await asyncio.wait_for(task, timeout=20)

    assert worker.counters["enqueue_failures"] == 0
    assert worker.counters["decisions_recovered"] == len(SYMBOLS)
    assert worker.counters["decisions_missed"] == len(SYMBOLS)
    assert await sync_to_async(decided)(minutes[1]) == set(SYMBOLS), "ended 10 s ago: decided"
    assert await sync_to_async(decided)(minutes[0]) == set()
    missed = await sync_to_async(list)(MissedDecision.objects.order_by("symbol"))
    assert [(m.symbol, m.bar_start, m.reason) for m in missed] == [
        (s, minutes[0], "reconnect") for s in sorted(SYMBOLS)
    ]
    await sync_to_async(connections.close_all)()
