"""Server cost of each API read of the load bench's mix (issue 18), measured in-process: Django's test client
through the whole middleware stack, DEBUG off, PostgreSQL and Redis as the bench uses them, on the bench's data
(`bench/bench_api_load.py`'s `prepare`), authenticated with a read-only user's API token as a TLS proxy forwards it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_load REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python bench/profile_api_reads.py [--calls 50] [--reuse] [--profile "orders list"] [--json out.json]

Per endpoint: the process (CPU) time and wall time per call (median and mean over `--calls` calls after a warm-up),
the number of SQL queries, and the mix's weighted mean: what one request of the load costs the server. `--profile
NAME` prints cProfile's top functions for that endpoint. `--reuse` keeps the database as a previous run filled it
(skips the seeding). The database is emptied and filled otherwise: never point it at a database you want.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.api_load_mix import MIX  # noqa: E402
from bench.bench_api_load import FORBIDDEN, environment, prepare  # noqa: E402


def fixture_of_existing() -> dict[str, Any]:
    """The ids and a fresh token of a database an earlier run filled (`--reuse`)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from galfriday_site.tokens import api_token_issue
    from reconciliation.models import ReconciliationRun
    from trading.models import Order

    call_command("migrate", verbosity=0, interactive=False)  # the schema may have moved since the data was made
    user = get_user_model().objects.filter(username__startswith="load-reader-").order_by("pk").first()
    if user is None:
        raise SystemExit("--reuse: no load-reader user in this database; run once without --reuse")
    return {
        "tokens": [api_token_issue(user=user)[0]],
        "order_ids": list(Order.objects.order_by("pk").values_list("pk", flat=True)),
        "run_ids": list(ReconciliationRun.objects.order_by("pk").values_list("pk", flat=True)),
    }


def counting(queries: list[str]) -> Any:
    """An execute wrapper that notes each statement."""

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="measured calls per endpoint (after 5 of warm-up)")
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--reuse", action="store_true", help="keep the data of an earlier run (no seeding)")
    parser.add_argument("--profile", default="", help="an endpoint's name: print cProfile's top functions for it")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    parser.add_argument("--json", default="", help="write the result here too")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/galfriday_load"
    if urlparse(database_url).path.lstrip("/") in FORBIDDEN:
        raise SystemExit(f"refusing to profile on {database_url}: it is emptied")
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/3"
    with tempfile.TemporaryDirectory(prefix="galfriday-profile-") as tmp:
        os.environ.update(environment(database_url, redis_url, tmp))
        os.environ["GALFRIDAY_PROCESS"] = "web"
        import django

        django.setup()
        from django.db import connection
        from django.test import Client

        fixture = fixture_of_existing() if args.reuse else prepare(args.orders, 1, args.runs)
        client = Client(
            HTTP_HOST="127.0.0.1",
            HTTP_AUTHORIZATION=f"Token {fixture['tokens'][0]}",
            HTTP_X_FORWARDED_PROTO="https",
        )
        order_ids, run_ids = fixture["order_ids"], fixture["run_ids"]
        results: dict[str, Any] = {}
        for name, weight, template in MIX:
            paths = [
                template.format(order_id=order_ids[i * 7919 % len(order_ids)], run_id=run_ids[i * 31 % len(run_ids)])
                for i in range(args.calls + 5)
            ]
            for path in paths[:5]:
                response = client.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"{name}: {path} answered {response.status_code}: {response.content[:300]!r}")
            cpu, wall = [], []
            queries: list[str] = []
            with connection.execute_wrapper(counting(queries)):
                client.get(paths[0])
            for path in paths[5:]:
                c0, w0 = time.process_time(), time.perf_counter()
                client.get(path)
                cpu.append((time.process_time() - c0) * 1000)
                wall.append((time.perf_counter() - w0) * 1000)
            results[name] = {
                "weight": weight,
                "cpu_ms_median": round(statistics.median(cpu), 2),
                "cpu_ms_mean": round(statistics.fmean(cpu), 2),
                "wall_ms_median": round(statistics.median(wall), 2),
                "wall_ms_mean": round(statistics.fmean(wall), 2),
                "queries": len(queries),
            }
            if name == args.profile:
                profiler = cProfile.Profile(time.process_time)  # CPU time: the machine may be shared
                profiler.enable()
                for path in paths[5:]:
                    client.get(path)
                profiler.disable()
                stats = pstats.Stats(profiler, stream=sys.stderr)
                stats.sort_stats("cumulative").print_stats(args.top)
                stats.sort_stats("tottime").print_stats(args.top)
        total = sum(r["weight"] for r in results.values())
        result = {
            "benchmark": "server cost per API read of the load mix, in-process (Django test client, DEBUG off)",
            "endpoints": results,
            "mix_cpu_ms_mean": round(sum(r["weight"] * r["cpu_ms_mean"] for r in results.values()) / total, 2),
            "mix_wall_ms_mean": round(sum(r["weight"] * r["wall_ms_mean"] for r in results.values()) / total, 2),
            "conditions": {
                "calls": args.calls,
                "orders": len(order_ids),
                "runs": len(run_ids),
                "cpus": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            },
        }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
