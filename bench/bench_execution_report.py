"""Benchmark: Kraken execution report received → order, fill and position committed → event published.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_bench \\
        .venv/bin/python bench/bench_execution_report.py [--orders N] [--warmup N]

Target (trading issue): p99 under 20 ms. PostgreSQL (the database is created if missing, migrated, then flushed:
never point this at a database you care about) and the Redis channel layer (``REDIS_URL``, default db 8).

Each order is created and risk-free submitted the way the pipeline leaves it (``order_create`` +
``order_mark_submitted``, untimed); then two Kraken v2 ``executions`` messages are fed to the ingest worker's own
handler (``worker.private_stream.on_executions``, ``ingest/private_stream.py``): ``new``, then a single ``trade``
that fills it (``order_status: filled``). Each timed sample is one message: raw JSON received →
``ingest.kraken.messages.parse``
→ ``ExecutionEvent.from_kraken`` normalised → journal append (fsynced) and ``execution_report_apply`` (through
``executions_apply_pending``), in one ``sync_to_async`` hop when no apply pass is in flight →
``OrderUpdateEvent`` handed to the channel layer (the worker submits it to its publisher's sender task after the
commit; the bench waits for that task to have sent it). Runs with DEBUG off, like production (``--debug`` for the
settings' default). The per-step split comes from timing wrappers around the worker's journal and apply pass, and
from the wait for the sender ("publish": what is left of the send once the handler returned). ``--profile FILE``
writes cProfile data of the timed messages: FILE for the event loop, FILE.apply for the database thread.

Prints one JSON object. No assertion on the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.stats import percentiles  # noqa: E402  (also imported from here by bench_bar_to_ack, bench_decide)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/galfriday_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"
FORBIDDEN_DATABASES = {"galfriday_ci", "test_galfriday_ci"}


def bench_environment(var_dir: str) -> dict[str, str]:
    """The environment both benchmarks (and the Celery worker of bench_bar_to_ack) run Django with."""
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if database_url.rstrip("/").rsplit("/", 1)[-1] in FORBIDDEN_DATABASES:
        raise SystemExit(f"refusing to benchmark on {database_url}: it is flushed")
    return {
        "DJANGO_SETTINGS_MODULE": "galfriday_site.settings",
        "GALFRIDAY_ENV_FILE": "/dev/null",
        "GALFRIDAY_VAR_DIR": var_dir,
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        "INFLUXDB_URL": "",
        # Production's settings: DEBUG off (no query log on every cursor) with a key of its own for the run.
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        # and a model-artifact key (a production start refuses to run without one: galfriday.E007)
        "MODELS_REGISTRY_ARTIFACT_KEYS": "bench:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
    }


def btc_usd_upsert() -> None:
    """BTC/USD with Kraken's rules (the benchmarks' instrument; call after django.setup())."""
    from trading.instruments import instrument_upsert

    instrument_upsert(
        symbol="BTC/USD",
        base="BTC",
        quote="USD",
        rest_symbol="XXBTZUSD",
        altname="XBTUSD",
        v1_symbol="XBT/USD",
        price_precision=1,
        qty_precision=8,
        tick_size=Decimal("0.1"),
        qty_increment=Decimal("0.00000001"),
        ordermin=Decimal("0.0001"),
        costmin=Decimal("0.5"),
    )


def prepare_database() -> None:
    """Create the benchmark database if missing, migrate it, and empty it (call after django.setup())."""
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit("these benchmarks are for PostgreSQL")
    name = db["NAME"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=int(db["PORT"] or 5432),
        user=db["USER"] or "postgres",
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _message(item: dict[str, Any], sequence: int) -> str:
    return json.dumps({"channel": "executions", "type": "update", "data": [item], "sequence": sequence})


async def bench(orders: int, warmup: int, var_dir: Path) -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer
    from django.db import connections

    from ingest import services as ingest_services
    from ingest import worker as worker_module
    from ingest.kraken.messages import parse
    from ingest.worker import IngestConfig, IngestWorker
    from timeseries.relational import RelationalStore
    from trading.accounts import balance_set
    from trading.models import Fill, Instrument, Order, Position
    from trading.orders import order_create, order_mark_submitted

    def setup_orders() -> list[int]:
        btc_usd_upsert()
        balance_set(asset="USD", total=Decimal(10**7))
        instrument = Instrument.objects.get(symbol="BTC/USD")
        ids = []
        for i in range(warmup + orders):
            order = order_create(
                client_order_id=f"bench-exec-{i}",
                instrument=instrument,
                side="buy",
                order_type="limit",
                quantity=Decimal("0.01"),
                limit_price=Decimal("100.0"),
            )
            order_mark_submitted(order_id=order.pk)
            ids.append(order.pk)
        return ids

    order_pks = await sync_to_async(setup_orders)()
    layer = get_channel_layer()
    consumer = await layer.new_channel()
    await layer.group_add("orders", consumer)  # one listening client, as a dashboard would be
    config = IngestConfig(
        symbols=["BTC/USD"], rest_url="http://127.0.0.1:9", ws_url="", ws_auth_url="", var_dir=var_dir
    )
    worker = IngestWorker(config, store=RelationalStore(), channel_layer=layer)

    steps: dict[str, list[int]] = {"journal_append": [], "apply": [], "publish": []}
    timing = [False]  # past the warm-up
    profiler = apply_profiler = None
    if PROFILE_TO:
        import cProfile

        # cProfile sees one thread: one profiler for the event loop, one for the database thread's apply pass.
        profiler, apply_profiler = cProfile.Profile(), cProfile.Profile()
    journal_append = worker.journal.append_many
    apply_pending = ingest_services.executions_apply_pending

    def timed_append(records: list[dict[str, Any]]) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return journal_append(records)
        finally:
            steps["journal_append"].append(time.perf_counter_ns() - t0)

    def timed_apply(journal: Any) -> Any:
        if apply_profiler is not None and timing[0]:
            apply_profiler.enable()
        t0 = time.perf_counter_ns()
        try:
            return apply_pending(journal)
        finally:
            steps["apply"].append(time.perf_counter_ns() - t0)
            if apply_profiler is not None:
                apply_profiler.disable()

    worker.journal.append_many = timed_append  # type: ignore[method-assign]
    worker_module.services.executions_apply_pending = timed_apply  # type: ignore[attr-defined]

    totals: dict[str, list[int]] = {"new": [], "trade_filled": []}
    cpu_times: list[int] = []  # this process's CPU time per message, all threads (less sensitive to load)
    split: dict[str, list[int]] = {k: [] for k in steps}
    sequence = 0
    try:
        for i, _pk in enumerate(order_pks):
            txid = f"OBENCH-{i:05d}-XXXXXX"
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z"
            new = {
                "order_id": txid,
                "cl_ord_id": f"bench-exec-{i}",
                "exec_id": f"EBENCH-{i:05d}-NEW",
                "exec_type": "new",
                "order_status": "new",
                "symbol": "BTC/USD",
                "side": "buy",
                "order_type": "limit",
                "order_qty": 0.01,
                "limit_price": 100.0,
                "time_in_force": "GTC",
                "timestamp": stamp,
                "cum_qty": 0,
                "cum_cost": 0,
                "avg_price": 0,
            }
            trade = {
                "order_id": txid,
                "cl_ord_id": f"bench-exec-{i}",
                "exec_id": f"TBENCH-{i:05d}-FILL",
                "exec_type": "trade",
                "trade_id": 1000 + i,
                "symbol": "BTC/USD",
                "side": "buy",
                "order_type": "limit",
                "last_qty": 0.01,
                "last_price": 100.0,
                "cost": 1.0,
                "liquidity_ind": "m",
                "timestamp": stamp,
                "order_status": "filled",
                "cum_qty": 0.01,
                "cum_cost": 1.0,
                "avg_price": 100.0,
                "fee_usd_equiv": 0.0025,
                "fees": [{"asset": "USD", "qty": 0.0025}],
            }
            for kind, item in (("new", new), ("trade_filled", trade)):
                sequence += 1
                raw = _message(item, sequence)
                for values in steps.values():
                    values.clear()
                timing[0] = i >= warmup
                if profiler is not None and timing[0]:
                    profiler.enable()
                t0 = time.perf_counter_ns()
                c0 = time.process_time_ns()
                await worker.private_stream.on_executions(parse(raw))
                t1 = time.perf_counter_ns()
                await worker.publisher.drain()  # until the event was handed to the channel layer (sender task)
                steps["publish"].append(time.perf_counter_ns() - t1)
                elapsed = time.perf_counter_ns() - t0
                cpu = time.process_time_ns() - c0
                if profiler is not None:
                    profiler.disable()
                await layer.receive(consumer)  # drain (untimed): the event did reach a listener
                if i >= warmup:
                    totals[kind].append(elapsed)
                    cpu_times.append(cpu)
                    for name, values in steps.items():
                        split[name].append(sum(values))
            if i < warmup:
                continue
    finally:
        await layer.group_discard("orders", consumer)
        worker_module.services.executions_apply_pending = apply_pending  # type: ignore[attr-defined]

    def check() -> dict[str, Any]:
        timed = Order.objects.filter(pk__in=order_pks)
        position = Position.objects.filter(instrument__symbol="BTC/USD").first()
        return {
            "orders_filled": timed.filter(state="filled").count(),
            "fills": Fill.objects.filter(order__in=timed).count(),
            "position_qty": str(position.quantity) if position else "0",
        }

    if profiler is not None and apply_profiler is not None:
        profiler.dump_stats(PROFILE_TO[0])
        apply_profiler.dump_stats(PROFILE_TO[0] + ".apply")
    outcome = await sync_to_async(check)()
    await sync_to_async(connections.close_all)()
    both = totals["new"] + totals["trade_filled"]
    return {
        "benchmark": "execution report received -> order/fill/position committed -> OrderUpdateEvent published",
        "target": "p99 < 20 ms",
        "code_path": "worker.private_stream.on_executions: parse, from_kraken, journal fsync, execution_report_apply, "
        "group_send",
        "all_messages": percentiles(both),
        "new": percentiles(totals["new"]),
        "trade_filled": percentiles(totals["trade_filled"]),
        "cpu_time_in_this_process": percentiles(cpu_times),
        "split": {name: percentiles(values) for name, values in split.items()},
        "outcome": outcome,
        "counters": {k: v for k, v in worker.counters.items() if v},
        "published": dict(worker.publisher.published),
        "dropped": dict(worker.publisher.dropped),
        "conditions": {
            "orders": orders,
            "warmup_orders": warmup,
            "database": "PostgreSQL " + os.environ["DATABASE_URL"].rsplit("/", 1)[-1],
            "channel_layer": "channels_redis " + os.environ["REDIS_URL"],
            "journal_dir": str(var_dir / "journal"),
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "load_average_at_start": LOAD_AT_START,
        },
    }


LOAD_AT_START: list[float] = []
PROFILE_TO: list[str] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000, help="timed orders, two messages each (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed orders first (default 50)")
    parser.add_argument(
        "--debug", action="store_true", help="run with DEBUG on (the settings' default; production runs with it off)"
    )
    parser.add_argument("--profile", metavar="FILE", help="cProfile the timed messages into FILE (pstats)")
    args = parser.parse_args()
    LOAD_AT_START.extend(round(x, 2) for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="galfriday-bench-") as var_dir:
        os.environ.update(bench_environment(var_dir))
        # Production runs with DEBUG off: with it on, Django records every statement's SQL and timing on the
        # connection (CursorDebugWrapper), a cost the worker does not pay in production. A throwaway key, since
        # DEBUG off needs one (nothing here signs anything).
        os.environ["DEBUG"] = "1" if args.debug else "0"
        os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
        import django

        django.setup()
        prepare_database()
        PROFILE_TO[:] = [args.profile] if args.profile else []
        result = asyncio.run(bench(args.orders, args.warmup, Path(var_dir)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
