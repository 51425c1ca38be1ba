"""Benchmark: closed bar → order acknowledged by the exchange (the simulator), through Celery on Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_bench \\
        .venv/bin/python bench/bench_bar_to_ack.py [--bars N] [--warmup N] [--transport ws|rest] [--post-ack-sync-s S]

Target (trading issue): p99 under 50 ms. Processes, all on this machine:

* ``python -m kraken_sim --market none --rate 0 --warmup 0 --no-rate-limits`` (port 0), with a large resting sell
  at 100.0 placed through its admin ``place`` action so the pipeline's market buys fill;
* a real Celery worker, ``celery -A galfriday_site worker -Q trading --pool solo --concurrency 1``, on the Redis
  broker (``REDIS_URL``, default db 8), PostgreSQL (the database is created if missing, migrated and flushed),
  ``TRADING_MODE=live`` against the simulator (its default key and secret; orders over the worker process's
  private WebSocket with ``--transport ws``, the default, or REST AddOrder with ``rest``), the execution gateway
  ``trading.gateway.CeleryExecutionGateway`` and the predictor ``bench.bench_bar_to_ack.FixedBuy`` (buys 0.01 BTC,
  1 USD, on every bar);
* this process: per bar (untimed) it writes the closed 1-minute bar (relational time-series store) and a fresh
  quote, then (timed) sends ``trading.tasks.decide_on_bar`` by name and polls the database every ``--poll-ms``
  (1 ms) until the decision's order has an exchange order id (the simulator's AddOrder ack applied and committed by
  ``execute_order``).

Bars are minute-aligned, one per minute going back from now, so every bar is a new decision; the decision age
limit (``GALFRIDAY_DECISION_MAX_AGE_S``) is raised for the run so the older synthetic bars are not expired, and
the global ``max_orders_per_minute`` risk limit is raised (the benchmark sends more than 30 a minute). Where the
time goes comes from the rows' own timestamps (same clock): send → ``Order.submitted_at``, the time the risk check
starts (broker and worker pick-up, predictor, bars, inputs and limits read, trading state locked) →
``Decision.created_at`` (risk snapshot and checks, the order and then the decision inserted) → the exchange order id
seen here (commit, ``execute_order`` enqueued after commit and picked up, the send-attempt mark, ``add_order`` over
the socket or REST AddOrder, ack committed, this poll); with REST the post-ack
read-back records the ``accepted`` order event a little later (``send_to_accepted_event_row``; with the WebSocket
that event comes from the executions stream, which no ingest worker applies here); and from the worker's own log
lines (task received, runtime). Each bar starts on an idle worker (``--gap-ms``): bars come once a minute.
``--post-ack-sync-s`` (default 0 here) is ``GALFRIDAY_EXECUTION_POST_ACK_SYNC_S``: with bars every few hundred ms
instead of one a minute, the safety-net ``sync_order`` task it schedules would queue in front of later bars on the
one solo worker, which cannot happen at one bar a minute.

Prints one JSON object. No assertion on the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_execution_report import (  # noqa: E402
    bench_environment,
    btc_usd_upsert,
    cpu_model,
    percentiles,
    prepare_database,
)

SYMBOL = "BTC/USD"
PRICE = Decimal("100.0")


class AlwaysBuy:
    """A deterministic predictor for ``bench_decide.py``, where each order's fill is applied: always buy a tiny
    amount. The pipeline trades toward a target position, so the confidence grows by one step per bar after
    ``GALFRIDAY_BENCH_ANCHOR`` (0.00001: 0.01 BTC more at equity 1,000,000 USD, fraction 0.10, price 100); every
    bar then buys 0.01 BTC (1 USD)."""

    version = "bench-always-buy-v1"
    step = 0.00001

    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Any:
        from trading.predictor import Prediction

        anchor = datetime.fromisoformat(os.environ["GALFRIDAY_BENCH_ANCHOR"])
        bars = int((bar_time - anchor).total_seconds() // 60) + 1
        return Prediction(1, min(1.0, self.step * max(bars, 1)), self.version)


class FixedBuy:
    """The predictor here: no ingest worker applies the executions stream in this benchmark, so the position stays
    flat and the orders stay open (``submitted`` with their exchange ids). A constant target of 0.01 BTC then buys
    0.01 BTC (1 USD) on every bar; the open buys add up to 10 BTC (1,000 USD) after 1,000 bars, well within the
    position and exposure limits (a growing target, as ``AlwaysBuy``'s, would reach the 50,000 USD position limit
    with its open orders after ~315 bars)."""

    version = "bench-fixed-buy-v1"

    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Any:
        from trading.predictor import Prediction

        return Prediction(1, 0.00001, self.version)


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, *, json_line: bool) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE if json_line else self.log,
            stderr=self.log,
            text=True,
        )
        self.info: dict[str, Any] = {}
        if json_line:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"{args[:3]} exited before it was ready (see {log})")
            self.info = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _ms(a: datetime | None, b: datetime | None) -> int | None:
    return None if a is None or b is None else int((b - a).total_seconds() * 1e9)


def run(
    bars: int,
    warmup: int,
    first_bar: datetime,
    log_dir: Path,
    env: dict[str, str],
    poll_s: float,
    gap_s: float,
    transport: str,
) -> dict[str, Any]:
    import httpx
    from django.db import connections
    from django.utils import timezone

    from galfriday_site.celery import app
    from ingest.timeseries.relational import RelationalStore
    from kraken_sim.config import DEFAULT_API_SECRET
    from trading.models import Decision, Order
    from trading.pipeline import client_order_id_for
    from trading.risk_services import market_quote_set
    from trading.services import equity_snapshot_take

    sim = Process(
        [
            sys.executable,
            "-m",
            "kraken_sim",
            "--market",
            "none",
            "--rate",
            "0",
            "--warmup",
            "0",
            "--no-rate-limits",
            "--log-level",
            "WARNING",
        ],
        env,
        log_dir / "sim.log",
        json_line=True,
    )
    worker: Process | None = None
    try:
        info = sim.info
        admin = httpx.Client(base_url=info["admin_url"], timeout=10.0)
        r = admin.post(
            "/market", json={"action": "place", "symbol": SYMBOL, "side": "sell", "price": "100.0", "qty": "5000"}
        )
        r.raise_for_status()

        instrument = seed_market()
        equity_snapshot_take(marks={SYMBOL: PRICE})

        worker_env = {
            **env,
            "TRADING_MODE": "live",
            "KRAKEN_REST_URL": info["rest_url"],
            "KRAKEN_WS_URL": info["ws_url"],
            "KRAKEN_WS_AUTH_URL": info["ws_auth_url"],
            "KRAKEN_API_KEY": info["api_key"],
            "KRAKEN_API_SECRET": DEFAULT_API_SECRET,
            "GALFRIDAY_EXECUTION_WS": "true" if transport == "ws" else "false",
        }
        worker = Process(
            [
                str(Path(sys.executable).with_name("celery")),
                "-A",
                "galfriday_site",
                "worker",
                "-Q",
                "trading",
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
                "--hostname",
                f"bench-{os.getpid()}@%h",
            ],
            worker_env,
            log_dir / "worker.log",
            json_line=False,
        )

        store = RelationalStore()
        total = warmup + bars
        # An hour of history before the first decision (the pipeline reads 60 closes for volatility).
        store.write_batch([_bar(first_bar - timedelta(minutes=61 - i)) for i in range(61)])

        results: dict[str, list[int]] = {
            "send_to_ack_seen": [],
            "send_to_risk_check_start": [],
            "risk_check_start_to_decision_row": [],
            "decision_row_to_exchange_id_seen": [],
            "send_to_accepted_event_row": [],
        }
        samples: list[tuple[str, str, datetime, datetime]] = []
        failures: list[dict[str, Any]] = []
        timed_sends: dict[str, datetime] = {}
        timed_seen: dict[str, datetime] = {}
        for i in range(total):
            time.sleep(gap_s)  # bars come once a minute: let the previous bar's execute_order finish (untimed)
            bar_time = first_bar + timedelta(minutes=i)
            store.write_batch([_bar(bar_time)])
            market_quote_set(
                instrument=instrument, bid=PRICE - Decimal("0.1"), ask=PRICE + Decimal("0.1"), at=timezone.now()
            )
            decision_id = f"{SYMBOL}:{bar_time.isoformat()}:{FixedBuy.version}"
            client_order_id = client_order_id_for(decision_id)
            deadline_s = 60.0 if i == 0 else 10.0  # the first waits for the worker to start
            sent_wall = datetime.now(UTC)
            t0 = time.perf_counter_ns()
            sent = app.send_task("trading.tasks.decide_on_bar", args=[SYMBOL, bar_time.isoformat()])
            order = None
            polls = 0
            while True:
                polls += 1
                if (
                    polls % 20 == 0
                    and Decision.objects.filter(decision_id=decision_id).exclude(status="ordered").exists()
                ):
                    break  # decided not to trade: reported as a failure
                order = Order.objects.filter(client_order_id=client_order_id).only("exchange_order_id", "state").first()
                if order is not None and (order.exchange_order_id or order.state in ("rejected", "unknown")):
                    break
                if (time.perf_counter_ns() - t0) / 1e9 > deadline_s:
                    break
                time.sleep(poll_s)
            elapsed = time.perf_counter_ns() - t0
            seen_wall = datetime.now(UTC)
            if order is None or not order.exchange_order_id:
                decision = Decision.objects.filter(decision_id=decision_id).first()
                failures.append(
                    {
                        "bar": bar_time.isoformat(),
                        "order_state": order.state if order else None,
                        "decision": decision.status if decision else None,
                        "reason": decision.reason if decision else None,
                    }
                )
                if len(failures) >= 5:
                    break
                continue
            if i < warmup:
                continue
            results["send_to_ack_seen"].append(elapsed)
            timed_sends[sent.id] = sent_wall
            timed_seen[sent.id] = seen_wall
            samples.append((decision_id, client_order_id, sent_wall, seen_wall))
        time.sleep(1.0)  # the last execute_order finishes (fill applied) before the rows are read
        for decision_id, client_order_id, sent_wall, seen_wall in samples:
            order = Order.objects.get(client_order_id=client_order_id)
            decision = Decision.objects.get(decision_id=decision_id)
            accepted = order.events.filter(kind="accepted").first()
            accepted_at = accepted.recorded_at if accepted is not None else None
            for name, a, b in (
                ("send_to_risk_check_start", sent_wall, order.submitted_at),
                ("risk_check_start_to_decision_row", order.submitted_at, decision.created_at),
                ("decision_row_to_exchange_id_seen", decision.created_at, seen_wall),
                ("send_to_accepted_event_row", sent_wall, accepted_at),
            ):
                value = _ms(a, b)
                if value is not None:
                    results[name].append(value)
        states = dict(
            (s, Order.objects.filter(state=s).count()) for s in Order.objects.values_list("state", flat=True).distinct()
        )
        admin.close()
    finally:
        if worker is not None:
            worker.stop()
        sim.stop()
        connections.close_all()
    tasks = worker_task_split(log_dir / "worker.log", timed_sends, timed_seen)
    return {
        "benchmark": "closed bar -> decide_on_bar (Celery, Redis) -> order -> execute_order -> simulator AddOrder ack "
        "applied and committed",
        "target": "p99 < 50 ms",
        "send_to_ack": percentiles(results.pop("send_to_ack_seen")),
        "where_the_time_goes": {name: percentiles(values) for name, values in results.items()},
        "worker_tasks": {name: percentiles(values) for name, values in tasks.items()},
        "failures": failures,
        "order_states": states,
        "conditions": {
            "bars": bars,
            "warmup_bars": warmup,
            "one_at_a_time": True,
            "database": "PostgreSQL " + env["DATABASE_URL"].rsplit("/", 1)[-1],
            "broker": "Redis " + env["REDIS_URL"],
            "worker": "celery worker -Q trading --pool solo (one process)",
            "exchange": "kraken_sim on loopback, --market none, liquidity placed, --no-rate-limits",
            "transport": "add_order over the private WebSocket" if transport == "ws" else "REST AddOrder",
            "post_ack_sync_s": env.get("GALFRIDAY_EXECUTION_POST_ACK_SYNC_S"),
            "poll_interval_ms": poll_s * 1000,
            "idle_gap_before_each_bar_ms": gap_s * 1000,
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }


_TASK_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO +celery\.\S+: Task trading\.tasks\.(?P<task>\w+)"
    r"\[(?P<id>[0-9a-f-]+)\] (?:(?P<received>received)|succeeded in (?P<runtime>[0-9.e-]+)s: (?P<result>.*))$"
)
_ORDER_ID = re.compile(r"'order_id': (\d+)")


def worker_task_split(
    log: Path, sends: dict[str, datetime], seen: dict[str, datetime] | None = None
) -> dict[str, list[int]]:
    """From the worker's own INFO lines (received at ms resolution, the machine's clock in UTC; runtimes exact):
    the broker hop to the decision task, its runtime, the hop to execute_order after the decision's commit,
    execute_order's runtime (the whole task, which goes on after the ack is committed: result stored, mutex
    released, with REST the read-back), and execute_order received → the exchange order id seen here (its part of
    the bar-to-ack time, plus this poll)."""
    received: dict[str, datetime] = {}
    runtime: dict[str, int] = {}
    order_of: dict[str, str] = {}
    execute_by_order: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _TASK_LINE.match(line)
        if m is None:
            continue
        task_id = m["id"]
        if m["received"]:
            received[task_id] = datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            continue
        runtime[task_id] = int(float(m["runtime"]) * 1e9)
        order = _ORDER_ID.search(m["result"])
        if order is not None:
            if m["task"] == "decide_on_bar":
                order_of[task_id] = order.group(1)
            elif m["task"] == "execute_order":
                execute_by_order[order.group(1)] = task_id
    split: dict[str, list[int]] = {
        "send_to_decide_received": [],
        "decide_runtime": [],
        "decide_end_to_execute_received": [],
        "execute_order_runtime": [],
        "execute_received_to_exchange_id_seen": [],
    }
    for task_id, sent_at in sends.items():
        execute_id = execute_by_order.get(order_of.get(task_id, ""), "")
        if task_id not in received or task_id not in runtime or execute_id not in received:
            continue
        decide_end = received[task_id] + timedelta(microseconds=runtime[task_id] / 1000)
        split["send_to_decide_received"].append(_ms(sent_at, received[task_id]) or 0)
        split["decide_runtime"].append(runtime[task_id])
        split["decide_end_to_execute_received"].append(_ms(decide_end, received[execute_id]) or 0)
        split["execute_order_runtime"].append(runtime.get(execute_id, 0))
        if seen and task_id in seen:
            split["execute_received_to_exchange_id_seen"].append(_ms(received[execute_id], seen[task_id]) or 0)
    return split


def seed_market() -> Any:
    """The benchmarks' trading set-up (also `bench_decide.py`): BTC/USD with Kraken's rules, 1,000,000 USD,
    trading active, the order-rate limit lifted (the benchmarks send several orders a second), a fresh quote."""
    from django.utils import timezone

    from trading.models import Instrument
    from trading.risk_services import market_quote_set, risk_limit_set
    from trading.services import balance_set, trading_state_set

    btc_usd_upsert()
    instrument = Instrument.objects.get(symbol=SYMBOL)
    balance_set(asset="USD", total=Decimal("1000000"))
    trading_state_set(state="active", reason="benchmark", actor="bench")
    risk_limit_set(
        instrument=None, values={"max_orders_per_minute": 100_000}, reason="benchmark sends fast", actor="bench"
    )
    market_quote_set(instrument=instrument, bid=PRICE - Decimal("0.1"), ask=PRICE + Decimal("0.1"), at=timezone.now())
    return instrument


def _bar(start: datetime) -> Any:
    from ingest.timeseries import Point

    c = PRICE
    return Point(
        "bars", start, {"close": c, "open": c, "high": c, "low": c, "trades": 1}, {"symbol": SYMBOL, "interval": "1m"}
    )


LOAD_AT_START: list[float] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=300, help="timed bars (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed bars first (default 10)")
    parser.add_argument("--gap-ms", type=float, default=300.0, help="idle time before each bar (default 300 ms)")
    parser.add_argument("--log-dir", default="", help="keep the simulator's and worker's logs here")
    parser.add_argument("--poll-ms", type=float, default=1.0, help="database poll interval (default 1 ms)")
    parser.add_argument("--transport", choices=("ws", "rest"), default="ws", help="order transport (default ws)")
    parser.add_argument(
        "--post-ack-sync-s", type=float, default=0.0, help="GALFRIDAY_EXECUTION_POST_ACK_SYNC_S (default 0)"
    )
    args = parser.parse_args()
    LOAD_AT_START.extend(round(x, 2) for x in os.getloadavg())
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first_bar = now - timedelta(minutes=args.warmup + args.bars)
    with tempfile.TemporaryDirectory(prefix="galfriday-bench-") as var_dir:
        env = {
            **os.environ,
            **bench_environment(var_dir),
            "PYTHONPATH": str(ROOT),
            "GALFRIDAY_EXECUTION_GATEWAY": "trading.gateway.CeleryExecutionGateway",
            "GALFRIDAY_PREDICTOR": "bench.bench_bar_to_ack.FixedBuy",
            "GALFRIDAY_DECISION_MAX_AGE_S": str(7 * 24 * 3600),
            "GALFRIDAY_KRAKEN_TIER": "pro",
            "KRAKEN_NONCE_FILE": str(Path(var_dir) / "kraken-nonce"),
            "KRAKEN_TIMEOUT": "5",
            "GALFRIDAY_EXECUTION_POST_ACK_SYNC_S": str(args.post_ack_sync_s),
        }
        os.environ.update(env)
        import django

        django.setup()
        prepare_database()
        log_dir = Path(args.log_dir) if args.log_dir else Path(var_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        result = run(
            args.bars, args.warmup, first_bar, log_dir, env, args.poll_ms / 1000, args.gap_ms / 1000, args.transport
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
