"""Worker-level faults, each against the real simulator over loopback, each ending with the stored bar series
compared with the simulator's own trade record (no hole, nothing duplicated):

- malformed frames and unknown channels (simulator fault injection): counted, logged, ingest keeps running;
- out-of-order and duplicate trades through the socket;
- the time-series store down (InfluxDB behind a TCP proxy the test cuts: spool, then replay) and slow (the proxy
  holds the bytes: socket reading goes on, queue depths show it, nothing is dropped);
- a database restart (the worker's PostgreSQL backends terminated with `pg_terminate_backend`; the shared
  server itself stays up);
- SIGKILL of `manage.py ingest`, then a restart (`test_ingest_process.py`).

The proxy is the only stand-in: InfluxDB itself is real, and an outage of a shared server cannot be caused here
without disturbing other users, so the network path to it is what fails."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psycopg
import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connection, connections

from ingest.models import IngestStatus
from ingest.worker import IngestWorker
from kraken_sim import SimConfig, Simulator
from kraken_sim import messages as sim_messages
from kraken_sim.wire import dumps
from tests.conftest import free_port
from tests.ingest.simtruth import assert_series_equals_tape, stored_bars, tape_by_interval, tape_within
from tests.ingest.test_gaps import SYMBOLS, config, finish, start, trade_for
from tests.kraken.conftest import SIM_UNLIMITED
from tests.waiting import until
from timeseries.base import TimeSeriesStore
from timeseries.influx import InfluxStore
from timeseries.relational import RelationalStore

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def sim():  # type: ignore[no-untyped-def]
    simulator = Simulator(SimConfig(market="generate", rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED))
    await simulator.start()
    yield simulator
    await simulator.stop()


def check_series(sim: Simulator, store: TimeSeriesStore) -> int:
    compared = 0
    for symbol in SYMBOLS:
        points = stored_bars(store, symbol, "1s")
        tape = tape_by_interval(sim, symbol, 1)
        assert len(sim.exchange.marketdata[symbol].tape) < 1000, "the tape overflowed: the reference is incomplete"
        compared += assert_series_equals_tape(points, tape, 1)
        assert sum(p.fields["trades"] for p in points) == tape_within(tape, points[0].time, points[-1].time)
    return compared


# -- bad frames ------------------------------------------------------------------------------------------------


async def test_malformed_frames_and_unknown_channels_are_counted_and_ingest_keeps_running(
    sim: Simulator, tmp_path: Path
) -> None:
    worker = IngestWorker(config(sim, tmp_path), store=RelationalStore(), channel_layer=InMemoryChannelLayer())
    stop, task = await start(worker)
    await trade_for(sim, 0.5)
    frames = [
        '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"',  # cut short
        "not json at all",
        '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","price":"x","qty":1}]}',  # wrong shape
        '{"channel":"level3","type":"update","data":[]}',  # a channel nobody subscribed to
        '{"channel":"futures_ticker","data":{}}',
        "[1,2,3]",
    ]
    for _ in range(3):
        assert sim.faults.inject_frames(frames) >= 1
        await trade_for(sim, 0.5)
    await finish(sim, worker, stop, task)

    ws = worker.ws.stats
    assert sum(ws.malformed.values()) >= 9, ws.malformed
    assert sum(ws.unknown.values()) >= 6, ws.unknown
    health = worker.health()
    assert health["malformed_messages"] == sum(ws.malformed.values())
    assert health["unknown_messages"] == sum(ws.unknown.values())
    assert ws.reconnects == 0, "bad frames must not cost the connection"
    assert await sync_to_async(check_series)(sim, RelationalStore()) >= 3
    await sync_to_async(connections.close_all)()


# -- out of order, duplicates ----------------------------------------------------------------------------------


def trade_frame(sim: Simulator, trades: list[Any]) -> str:
    inst = sim.exchange.books[trades[0].symbol].instrument
    return dumps(sim_messages.trades(inst, trades, "update"))


async def test_out_of_order_and_duplicate_trades_are_stored_once_in_their_bars(sim: Simulator, tmp_path: Path) -> None:
    worker = IngestWorker(config(sim, tmp_path), store=RelationalStore(), channel_layer=InMemoryChannelLayer())
    stop, task = await start(worker)
    await trade_for(sim, 0.5)
    tape = sim.exchange.marketdata["BTC/USD"].tape

    # One trade message is not sent when it happens; it arrives later, after newer trades (out of order).
    sim.faults.withhold_market("trade", "BTC/USD", 1)
    withheld: list[Any] = []
    while not withheld:
        before = len(tape)
        sim.market.step()
        if not sim.faults.describe()["withhold_market"]:
            withheld = list(tape)[before:]
        await asyncio.sleep(0.05)
    await trade_for(sim, 0.4)
    assert tape[-1].trade_id > withheld[-1].trade_id
    duplicates = list(tape)[-3:]
    before_late = worker.builders[("BTC/USD", 1)].stats.late_revisions + worker.builders[("BTC/USD", 1)].stats.trades
    sim.faults.inject_frames([trade_frame(sim, withheld)])
    # Trades already delivered, delivered again (one message with three, then each once more on its own).
    sim.faults.inject_frames([trade_frame(sim, duplicates)] + [trade_frame(sim, [t]) for t in duplicates])
    await until(lambda: worker.builders[("BTC/USD", 1)].stats.duplicates >= 6, what="duplicates seen")
    await trade_for(sim, 0.6)
    await finish(sim, worker, stop, task)

    stats = worker.builders[("BTC/USD", 1)].stats
    assert stats.duplicates >= 6
    assert stats.trades + stats.late_revisions > before_late
    assert stats.late_dropped == 0
    assert await sync_to_async(check_series)(sim, RelationalStore()) >= 3
    await sync_to_async(connections.close_all)()


# -- the time-series store down or slow ------------------------------------------------------------------------


class TcpProxy:
    """A loopback TCP proxy to a real server that the test can cut (`down`: connections refused or reset) or
    hold (`hold`: bytes wait until `release`)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.up = True
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.base_events.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.down()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def down(self) -> None:
        self.up = False
        for link in list(self._links):
            link.transport.abort()

    def restore(self) -> None:
        self.up = True

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links.difference_update({writer, up_writer})


@pytest.fixture
async def influx_proxy() -> AsyncIterator[tuple[TcpProxy, str]]:
    url = urlparse(os.environ["INFLUXDB_URL"])
    database = f"galfriday_dev_ingest_{uuid.uuid4().hex[:8]}"
    async with TcpProxy(url.hostname or "127.0.0.1", url.port or 8086) as proxy:
        yield proxy, database
    async with httpx.AsyncClient() as client:
        await client.post(f"{os.environ['INFLUXDB_URL']}/query", params={"q": f'DROP DATABASE "{database}"'})


@pytest.mark.services("influxdb")
async def test_influxdb_down_spools_bars_and_replays_them(
    sim: Simulator, tmp_path: Path, influx_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, database = influx_proxy
    store = InfluxStore(url=f"http://127.0.0.1:{proxy.port}", database=database, timeout=2)
    worker = IngestWorker(config(sim, tmp_path), store=store, channel_layer=InMemoryChannelLayer())
    stop, task = await start(worker)
    await trade_for(sim, 1.0)
    await until(lambda: worker.writer.stats.points_written > 0, what="first write")

    proxy.down()
    await trade_for(sim, 1.5)
    await until(lambda: worker.writer.stats.points_spooled > 0, what="bars spooled")
    assert worker.health()["queues"]["timeseries_spooled_files"] >= 1
    assert worker.ws.stats.reconnects == 0, "a store outage must not touch the exchange connection"

    proxy.restore()
    await trade_for(sim, 1.0)
    await until(lambda: not worker.writer.spooled_files() and worker.writer.stats.points_replayed > 0, what="replay")
    await finish(sim, worker, stop, task)

    assert worker.writer.stats.points_dead_lettered == 0
    direct = InfluxStore(url=os.environ["INFLUXDB_URL"], database=database)
    try:
        assert await asyncio.to_thread(check_series, sim, direct) >= 3
    finally:
        direct.close()


@pytest.mark.services("influxdb")
async def test_slow_influxdb_does_not_stall_socket_reading(
    sim: Simulator, tmp_path: Path, influx_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, database = influx_proxy
    store = InfluxStore(url=f"http://127.0.0.1:{proxy.port}", database=database, timeout=30)
    worker = IngestWorker(config(sim, tmp_path), store=store, channel_layer=InMemoryChannelLayer())
    stop, task = await start(worker)
    await trade_for(sim, 0.5)
    await until(lambda: worker.writer.stats.points_written > 0, what="first write")

    proxy.hold()  # every write now waits on the network
    written = worker.writer.stats.points_written
    trades_before, frames_before = worker.counters["trades"], sum(worker.ws.stats.messages.values())
    await trade_for(sim, 1.5)
    # While the store does not answer, frames are still read and trades still become bars in memory.
    await until(lambda: worker.counters["trades"] > trades_before + 5, what="trades processed while store is slow")
    assert sum(worker.ws.stats.messages.values()) > frames_before
    assert worker.writer.stats.points_written == written, "the proxy held the writes"
    queues = worker.health()["queues"]
    assert queues["timeseries_pending"] > 0 or queues["listener_tasks"] > 0, queues
    assert worker.health()["dropped"] == {"events": 0, "late_trades": 0, "timeseries_dead_lettered": 0}

    proxy.release()
    await trade_for(sim, 0.5)
    await until(lambda: worker.writer.pending == 0 and worker.writer.stats.points_written > written, what="drained")
    await finish(sim, worker, stop, task)

    assert worker.writer.stats.points_spooled == 0, "slow is not down: nothing had to be spooled"
    direct = InfluxStore(url=os.environ["INFLUXDB_URL"], database=database)
    try:
        assert await asyncio.to_thread(check_series, sim, direct) >= 3
    finally:
        direct.close()


# -- a database restart ----------------------------------------------------------------------------------------


def terminate_backends_since(started: datetime) -> int:
    """Terminate every backend of the test database opened since `started` (the worker's), from a connection
    of our own; the shared server stays up."""
    params = connection.get_connection_params()
    with psycopg.connect(
        host=params.get("host"), port=params.get("port"), user=params.get("user"), dbname=params["dbname"]
    ) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_start > %s",
            [started],
        ).fetchall()
    return len(rows)


@pytest.mark.services("postgres")
async def test_database_restart_while_running_loses_nothing(sim: Simulator, tmp_path: Path) -> None:
    worker_started = datetime.now(UTC)
    worker = IngestWorker(config(sim, tmp_path), store=RelationalStore(), channel_layer=InMemoryChannelLayer())
    stop, task = await start(worker)
    await trade_for(sim, 1.0)
    await until(lambda: worker.writer.stats.points_written > 0, what="first write")

    killed = await asyncio.to_thread(terminate_backends_since, worker_started)
    assert killed >= 1
    after_kill = datetime.now(UTC)
    await trade_for(sim, 2.0)
    await until(
        lambda: worker.writer.stats.write_failures > 0 or worker.counters["heartbeat_failures"] > 0,
        what="the broken connections noticed",
    )
    await trade_for(sim, 1.0)
    await until(lambda: not worker.writer.spooled_files(), what="spool replayed")

    def heartbeat_after_kill() -> bool:
        return IngestStatus.objects.filter(updated_at__gt=after_kill).exists()

    deadline = asyncio.get_running_loop().time() + 10
    while not await sync_to_async(heartbeat_after_kill)():
        assert asyncio.get_running_loop().time() < deadline, "the heartbeat did not recover"
        await asyncio.sleep(0.1)
    await finish(sim, worker, stop, task)

    assert await sync_to_async(check_series)(sim, RelationalStore()) >= 3
    await sync_to_async(connections.close_all)()
