"""SIGKILL of `manage.py ingest` and a restart, as an operator's processes: the simulator (`python -m kraken_sim`,
market running on its own) and the ingest command are real processes talking over loopback sockets, writing
to the test's PostgreSQL database. After the restart the stored bars and trades equal the simulator's own trade
record (its REST Trades), with no hole and nothing stored twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from ingest.models import BackfillRecord
from tests.conftest import ROOT, kraken_sim_process
from tests.ingest.simtruth import NS, assert_series_equals_tape, stored_bars, tape_within
from tests.waiting import wait_for
from timeseries.relational import RelationalStore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services("postgres")]
SYMBOLS = ["BTC/USD", "ETH/USD"]


@pytest.fixture
def market_sim() -> Iterator[dict[str, Any]]:
    with kraken_sim_process("--rate", "10", "--warmup", "0", "--no-rate-limits") as urls:
        yield urls


def ingest_env(sim: dict[str, Any], var_dir: Path) -> dict[str, str]:
    settings = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "REDIS_", "CELERY_"))}
    env.update(
        {
            "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}",
            "GALFRIDAY_VAR_DIR": str(var_dir),
            "GALFRIDAY_ENV_FILE": "/dev/null",
            "GALFRIDAY_EXCHANGE": "sim",
            "TRADING_MODE": "paper",
            "KRAKEN_REST_URL": sim["rest_url"],
            "KRAKEN_WS_URL": sim["ws_url"],
            "KRAKEN_WS_AUTH_URL": sim["ws_auth_url"],
            "INGEST_SYMBOLS": ",".join(SYMBOLS),
            "INGEST_BAR_INTERVALS": "1",
            "INGEST_BAR_CLOSED_TASK": "",
            "INGEST_RECONCILE_TASK": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_ingest(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "ingest"], cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def tape(sim: dict[str, Any], symbol: str) -> dict[datetime, list[tuple[Decimal, Decimal, int, int]]]:
    """The simulator's record of every trade of `symbol`, by second (its REST Trades from the beginning)."""
    response = httpx.get(f"{sim['rest_url']}/0/public/Trades", params={"pair": symbol, "since": "0"}, timeout=10)
    body = response.json()
    assert body["error"] == []
    [rows] = [v for k, v in body["result"].items() if k != "last"]
    assert len(rows) < 1000, "the simulator's tape overflowed: the reference is incomplete"
    out: dict[datetime, list[tuple[Decimal, Decimal, int, int]]] = {}
    for price, qty, at, _side, _type, _misc, trade_id in rows:
        seconds, _, frac = str(at).partition(".")
        ts_ns = int(seconds) * NS + int(frac.ljust(9, "0")[:9])
        out.setdefault(datetime.fromtimestamp(int(seconds), UTC), []).append(
            (Decimal(price), Decimal(qty), ts_ns, int(trade_id))
        )
    return out


def bars_through(store: RelationalStore, moment: datetime) -> bool:
    return all((points := stored_bars(store, s, "1s")) and points[-1].time >= moment for s in SYMBOLS)


def test_sigkill_then_restart_stores_exactly_what_the_exchange_traded(
    market_sim: dict[str, Any], tmp_path: Path
) -> None:
    env = ingest_env(market_sim, tmp_path / "var")
    log = tmp_path / "ingest.log"
    store = RelationalStore()
    first = start_ingest(env, log)
    try:
        wait_for(lambda: all(len(stored_bars(store, s, "1s")) >= 4 for s in SYMBOLS), what="bars from the first run")
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = time.time_ns()
    # The market goes on while no ingest runs.
    wait_for(
        lambda: all(max(tape(market_sim, s)).timestamp() * NS > killed_at + 2 * NS for s in SYMBOLS),
        what="trades while ingest is down",
    )

    second = start_ingest(env, log)
    try:
        wait_for(
            lambda: BackfillRecord.objects.filter(reason="startup").count() == 2 * len(SYMBOLS),
            what="start-up repairs of both runs",
        )
        wait_for(lambda: bars_through(store, datetime.fromtimestamp(killed_at / NS + 3, UTC)), what="bars after")
        httpx.post(f"{market_sim['admin_url']}/market", json={"action": "pause"}, timeout=10).raise_for_status()
        last = max(max(tape(market_sim, s)) for s in SYMBOLS)
        wait_for(lambda: bars_through(store, last), what="the last traded second stored")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()

    for symbol in SYMBOLS:
        truth = tape(market_sim, symbol)
        points = stored_bars(store, symbol, "1s")
        assert assert_series_equals_tape(points, truth, 1) >= 3
        span = tape_within(truth, points[0].time, points[-1].time)
        assert sum(p.fields["trades"] for p in points) == span
        # The trade series too: each trade of the span exactly once.
        trades = store.query_range("trades", points[0].time, points[-1].time + timedelta(seconds=1), {"symbol": symbol})
        ids = [p.fields["trade_id"] for p in trades]
        assert len(ids) == len(set(ids)), "a trade is stored twice"
        assert len(ids) == span
    second_run = BackfillRecord.objects.filter(reason="startup").order_by("-started_at")[: len(SYMBOLS)]
    assert all(r.status == "done" for r in second_run)
    assert sum(r.trades_added for r in second_run) > 0
