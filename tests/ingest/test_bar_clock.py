"""The ingest worker's bar clock: in a quiet market a bar closes as soon as its end, its grace and what the clock
margin exceeds the grace by have passed on the exchange clock, not at the next heartbeat (the decision of a bar
waits for its close)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from channels.layers import InMemoryChannelLayer

from ingest.worker import CLOCK_MARGIN, IngestWorker, clock_margin, next_bar_close
from kraken_sim import Simulator
from tests.ingest.test_worker import config, sim  # noqa: F401  (fixture)
from tests.waiting import until
from timeseries.relational import RelationalStore

GRACE = timedelta(seconds=2)
MARGIN = timedelta(seconds=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_clock_waits_only_for_the_margin_the_grace_does_not_cover() -> None:
    assert timedelta(seconds=1) == CLOCK_MARGIN
    assert clock_margin(timedelta(seconds=2)) == timedelta(0)  # the default grace: a bar closes at end + 2 s
    assert clock_margin(timedelta(seconds=1)) == timedelta(0)
    assert clock_margin(timedelta(seconds=0.2)) == timedelta(seconds=0.8)
    assert clock_margin(timedelta(0)) == CLOCK_MARGIN
    assert next_bar_close(at("2026-12-07 10:00:30"), (60,), grace=GRACE, margin=clock_margin(GRACE)) == at(
        "2026-12-07 10:01:02"
    )


def test_the_next_close_is_the_next_bar_end_after_grace_and_margin() -> None:
    assert next_bar_close(at("2026-12-07 10:00:30"), (60,), grace=GRACE, margin=MARGIN) == at("2026-12-07 10:01:03")
    # Between an end and its close, the close of that bar comes first.
    assert next_bar_close(at("2026-12-07 10:01:01"), (60,), grace=GRACE, margin=MARGIN) == at("2026-12-07 10:01:03")
    assert next_bar_close(at("2026-12-07 10:01:03"), (60,), grace=GRACE, margin=MARGIN) == at("2026-12-07 10:02:03")
    # The shortest interval decides; longer ones end on its boundaries.
    assert next_bar_close(at("2026-12-07 10:00:30"), (300, 60), grace=GRACE, margin=MARGIN) == at("2026-12-07 10:01:03")
    assert next_bar_close(at("2026-12-07 10:00:00.5"), (1,), grace=GRACE, margin=MARGIN) == at("2026-12-07 10:00:01")


@pytest.mark.django_db(transaction=True)
async def test_a_quiet_markets_bar_closes_without_waiting_for_the_heartbeat(
    sim: Simulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    cfg = config(sim, tmp_path)
    cfg.bar_intervals = (1,)
    cfg.bar_grace_s = 0.2
    cfg.heartbeat_s = 600.0  # no heartbeat during the test: only the bar clock can close the bar
    worker = IngestWorker(cfg, store=RelationalStore(), channel_layer=InMemoryChannelLayer(), enqueue=lambda t, a: None)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: worker.ws.connection_state.value == "connected", timeout=30)
        traded = worker.counters["trades"]

        def step_until_traded() -> bool:
            if worker.counters["trades"] > traded:
                return True
            sim.market.step()  # not every step trades
            return False

        await until(step_until_traded, timeout=20)
        # Then a quiet market: no later trade can close the last bar that traded. A 1-second bar closes 1 s after
        # its end (grace 0.2 s, and the 0.8 s of the clock margin it does not cover); the heartbeat is 10 minutes
        # away.
        closed = worker.feed.counters["bars_closed"]
        await until(lambda: worker.feed.counters["bars_closed"] > closed, timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)
