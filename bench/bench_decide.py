"""Benchmark: the `decide_on_bar` task body (closed bar → decision → order created, risk-checked, `submitted`,
committed, execution enqueued), on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_bench_db REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/bench_decide.py [--bars N] [--warmup N] [--predictor registry|always-buy] \\
        [--gateway celery|record] [--profile]

This is the worker-side part of bench_bar_to_ack.py's "closed bar → exchange ack" (whose target is p99 < 50 ms),
without the broker hops or ``execute_order``: the same setup (BTC/USD at 100, 1,000,000 USD, the feature warm-up
of 1-minute bars in the relational time-series store, the order-rate limit raised) and the same predictor:

* ``--predictor registry`` (default): ``models_registry.predictor.PipelinePredictor`` with the production version
  ``bench_bar_to_ack.register_bench_model`` registers (features from the stored bars, the cached version's
  probabilities, the prediction recorded with its probabilities, bar time and feature row, the expected return
  weighed against the round trip), its sizing settings (``registry_environment``: ~0.01 BTC per bar, no-trade
  band off). As in bench_bar_to_ack.py no fills are applied (a constant target would be reached after one fill and
  no later bar would order): the position stays flat and the orders stay ``submitted``. The run fails unless one
  complete prediction row is recorded per bar;
* ``--predictor always-buy``: ``bench.bench_bar_to_ack.AlwaysBuy`` buying 0.01 BTC per bar (an expected return
  above the round trip, the no-trade band off), and after each bar,
  untimed, the order's fill applied through ``execution_report_apply`` (as the exchange's report would), so the
  position, the balances, the fills of the day and the open orders look like a live run's.

Per bar, untimed: the bar and a fresh quote written; timed: the task function ``trading.tasks.decide_on_bar``
called in this process (as the solo worker runs it). With ``--gateway celery`` (default)
the execution task is really enqueued on Redis after commit (the queue is purged at the end); ``record`` only
collects the ids. The database is created if missing, migrated and **flushed** (``galfriday_ci`` is refused).

Prints one JSON object: runtime percentiles and statements per decision (the SQL statements the decision runs,
counted with a connection execute wrapper). ``--profile`` adds the top of a cProfile
of the timed calls (cumulative time). No assertion on the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
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
    cpu_model,
    percentiles,
    prepare_database,
)

SYMBOL = "BTC/USD"
PRICE = Decimal("100.0")


class RecordingGateway:
    """Collects the order ids handed to execution (``--gateway record``)."""

    submitted: list[int] = []

    def submit_order(self, *, order_id: int) -> None:
        self.submitted.append(order_id)

    def cancel_order(self, *, order_id: int) -> None:
        pass


def run(
    bars: int,
    warmup: int,
    first_bar: datetime,
    profile: bool,
    sort: str = "cumulative",
    predictor: str = "registry",
    profile_lines: int = 45,
) -> dict[str, Any]:
    from django.db import connection, connections
    from django.utils import timezone

    from bench.bench_bar_to_ack import _bar, predictions_recorded, register_bench_model, seed_market
    from models_registry.features import WARMUP_BARS
    from timeseries.relational import RelationalStore
    from trading.accounts import equity_snapshot_take
    from trading.execution_reports import execution_report_apply
    from trading.executions import ExecType, ExecutionEvent, FeeAmount
    from trading.instruments import market_quote_set
    from trading.models import Decision, Order, Position
    from trading.tasks import decide_on_bar

    instrument = seed_market()
    equity_snapshot_take(marks={SYMBOL: PRICE})
    model = register_bench_model() if predictor == "registry" else None
    store = RelationalStore()
    history = max(61, WARMUP_BARS + 1)  # the features' warm-up and the bar before; 60 closes for the volatility
    store.write_batch([_bar(first_bar - timedelta(minutes=history - i)) for i in range(history)])

    runtimes: list[int] = []
    cpu_times: list[int] = []  # this process's CPU time in the call (less sensitive to the machine's load)
    queries: list[int] = []
    statuses: dict[str, int] = {}
    profiler = cProfile.Profile() if profile else None
    statements: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    last_sql: list[str] = []
    for i in range(warmup + bars):
        bar_time = first_bar + timedelta(minutes=i)
        store.write_batch([_bar(bar_time)])
        market_quote_set(
            instrument=instrument, bid=PRICE - Decimal("0.1"), ask=PRICE + Decimal("0.1"), at=timezone.now()
        )
        statements.clear()
        with connection.execute_wrapper(count):
            if profiler is not None and i >= warmup:
                profiler.enable()
            t0 = time.perf_counter_ns()
            c0 = time.process_time_ns()
            result = decide_on_bar(SYMBOL, bar_time.isoformat())
            elapsed = time.perf_counter_ns() - t0
            cpu = time.process_time_ns() - c0
            if profiler is not None:
                profiler.disable()
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        if i >= warmup:
            runtimes.append(elapsed)
            cpu_times.append(cpu)
            queries.append(len(statements))
            last_sql = list(statements)
        order_id = result.get("order_id")
        if order_id is None or model is not None:  # registry: no fills (see the module doc)
            continue
        order = Order.objects.get(pk=order_id)
        if order.state != "submitted":
            continue
        stamp = timezone.now()
        for event in (
            ExecutionEvent(order_id=f"OBENCHDECIDE-{i:05d}", exec_type=ExecType.NEW, cl_ord_id=order.client_order_id),
            ExecutionEvent(
                order_id=f"OBENCHDECIDE-{i:05d}",
                exec_type=ExecType.TRADE,
                cl_ord_id=order.client_order_id,
                exec_id=f"TBENCHDECIDE-{i:05d}",
                timestamp=stamp,
                symbol=SYMBOL,
                side="buy",
                last_qty=order.quantity,
                last_price=PRICE,
                cost=order.quantity * PRICE,
                fees=(FeeAmount("USD", Decimal("0.0025")),),
                order_status="filled",
            ),
        ):
            execution_report_apply(event=event, actor="bench")

    position = Position.objects.filter(instrument=instrument).first()
    outcome = {
        "decisions": dict(statuses),
        "orders": Order.objects.count(),
        "orders_filled": Order.objects.filter(state="filled").count(),
        "position_qty": str(position.quantity) if position else "0",
        "decision_rows": Decision.objects.count(),
        "model_versions": sorted(set(Decision.objects.values_list("model_version", flat=True))),
    }
    predictions = predictions_recorded(model["model_version"] if model is not None else None)
    predictions["expected"] = warmup + bars if model is not None else 0
    top: list[str] = []
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(profile_lines)
        top = out.getvalue().splitlines()
    connections.close_all()
    return {
        "runtimes": runtimes,
        "cpu_times": cpu_times,
        "queries": queries,
        "outcome": outcome,
        "predictions": predictions,
        "model": model,
        "profile": top,
        "sql": last_sql,
    }


LOAD_AT_START: list[float] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=300, help="timed bars (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed bars first (default 10)")
    parser.add_argument("--gateway", choices=("celery", "record"), default="celery")
    parser.add_argument(
        "--predictor",
        choices=("registry", "always-buy"),
        default="registry",
        help="registry: PipelinePredictor with a registered production version (default); always-buy: AlwaysBuy, "
        "fills applied",
    )
    parser.add_argument("--profile", action="store_true", help="add a cProfile of the timed calls")
    parser.add_argument(
        "--profile-sort", default="cumulative", help="pstats sort key of --profile (cumulative, tottime, ...)"
    )
    parser.add_argument("--profile-lines", type=int, default=45, help="lines of --profile (default 45)")
    parser.add_argument("--sql", action="store_true", help="add the statements of the last timed decision")
    args = parser.parse_args()
    LOAD_AT_START.extend(round(x, 2) for x in os.getloadavg())
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first_bar = now - timedelta(minutes=args.warmup + args.bars)
    with tempfile.TemporaryDirectory(prefix="galfriday-bench-") as var_dir:
        from bench.bench_bar_to_ack import NO_TRADE_BAND_OFF, registry_environment

        os.environ.update(
            {
                **bench_environment(var_dir),
                "GALFRIDAY_EXECUTION_GATEWAY": "trading.gateway.CeleryExecutionGateway"
                if args.gateway == "celery"
                else "bench.bench_decide.RecordingGateway",
                "GALFRIDAY_PREDICTOR": "bench.bench_bar_to_ack.AlwaysBuy",
                **NO_TRADE_BAND_OFF,
                **(registry_environment(var_dir) if args.predictor == "registry" else {}),
                "GALFRIDAY_DECISION_MAX_AGE_S": str(7 * 24 * 3600),
                "GALFRIDAY_BENCH_ANCHOR": first_bar.isoformat(),
            }
        )
        import django

        django.setup()
        prepare_database()
        try:
            result = run(
                args.bars,
                args.warmup,
                first_bar,
                args.profile,
                args.profile_sort,
                args.predictor,
                args.profile_lines,
            )
        finally:
            if args.gateway == "celery":
                from galfriday_site.celery import app

                with app.connection_for_write() as conn:
                    conn.default_channel.queue_purge("trading")
    queries = sorted(result["queries"])
    predictions = result["predictions"]
    print(
        json.dumps(
            {
                "benchmark": "decide_on_bar task body: bar -> decision -> order created, risk-checked, submitted, "
                "committed, execution enqueued",
                "runtime": percentiles(result["runtimes"]),
                "cpu_time_in_this_process": percentiles(result["cpu_times"]),
                "statements_per_decision": {
                    "min": queries[0],
                    "p50": queries[len(queries) // 2],
                    "max": queries[-1],
                }
                if queries
                else {},
                "outcome": result["outcome"],
                "predictions_recorded": predictions,
                "profile_top_cumulative": result["profile"],
                "last_decision_sql": result["sql"] if args.sql else [],
                "conditions": {
                    "bars": args.bars,
                    "warmup_bars": args.warmup,
                    "gateway": args.gateway,
                    "predictor": "models_registry.predictor.PipelinePredictor (registered production version)"
                    if args.predictor == "registry"
                    else "bench.bench_bar_to_ack.AlwaysBuy (fills applied)",
                    "model": result["model"],
                    "database": "PostgreSQL " + os.environ["DATABASE_URL"].rsplit("/", 1)[-1],
                    "cpu_model": cpu_model(),
                    "cpus": os.cpu_count(),
                    "load_average_at_start": LOAD_AT_START,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                },
            },
            indent=2,
        )
    )
    count, complete = predictions["count"], predictions["with_probabilities_bar_time_horizon_features"]
    if args.predictor == "registry" and not count == complete == predictions["expected"]:
        print(
            f"bench_decide: {count} predictions recorded ({complete} complete), expected one per bar: "
            f"{predictions['expected']}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
