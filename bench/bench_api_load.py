"""Load on loopback (issue 18): API reads at a fixed rate against the real ASGI server, latency percentiles, errors,
and the PostgreSQL connection count before, during and after.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_load REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python bench/bench_api_load.py [--rate 200] [--seconds 300] [--users 20] [--port 18730] \\
        [--json out.json]

Target: p99 under 50 ms at 200 requests/s for 5 minutes, no error, a flat connection count. Needs a quiet machine.

What runs:
* the database (`DATABASE_URL`, created if missing, migrated and emptied: never point it at a database you want)
  filled with realistic sizes (`--orders` orders, each with a fill and a decision, reconciliation runs, balances, a
  position, equity snapshots) and `--users` read-only users (no group: reads only), each with an API token;
* the web process as production runs it: `uvicorn galfriday_site.asgi:application --proxy-headers` (one process,
  the Dockerfile's command; `--workers N` runs N), `DEBUG=false`, PostgreSQL, Redis (`REDIS_URL`: cache,
  throttles, channel layer), the production throttle rates (1,200/min per user: the load is spread over the
  users so none is throttled);
* locust (`bench/locustfile.py`, a subprocess: it gevent-patches on import) with `--users` clients at `--rate /
  --users` requests per second each, a mix of list, detail and health reads sent as a TLS proxy forwards them;
* this process samples `pg_stat_activity` for the database every second (the web's connections by their
  application name, and all of them).

Prints one JSON object: requests, failures, requests/s, p50/p95/p99/max overall and per endpoint (locust's
percentiles), the connection counts (before, during: per-second samples, max, mean, first and second half max;
after). Exits 1 on any failed request, when the web held more connections at once than there are clients (each
has at most one request in flight, and a request holds one connection: more is a leak), or when more are left after
than before. (Until session 7 it compared the run's second half with its first, which a slower second half, more
requests in flight on a loaded machine, tripped without a leak.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APP_NAME = "gf-load-web"
FORBIDDEN = {"galfriday_ci", "galfriday_bench", "galfriday"}


def environment(database_url: str, redis_url: str, var_dir: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "GALFRIDAY_PROCESS"))}
    return {
        **keep,
        "DJANGO_SETTINGS_MODULE": "galfriday_site.settings",
        "GALFRIDAY_ENV_FILE": "/dev/null",
        "GALFRIDAY_VAR_DIR": var_dir,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MODELS_REGISTRY_ARTIFACT_KEYS": "load:" + secrets.token_urlsafe(32)[:43],
        "DATABASE_URL": f"{database_url}?application_name={APP_NAME}",
        "REDIS_URL": redis_url,
        "INFLUXDB_URL": "",
        "PYTHONUNBUFFERED": "1",
    }


def prepare(orders: int, users: int, runs: int) -> dict[str, Any]:
    """Create, migrate and empty the database, fill it, make the read-only users; returns the locust fixture."""
    import psycopg  # reason: set-up only, after django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from bench.bench_execution_report import btc_usd_upsert
    from galfriday_site.tokens import api_token_issue
    from reconciliation.models import ReconciliationRun
    from trading.accounts import balance_set
    from trading.models import Decision, EquitySnapshot, Fill, Instrument, Order, Position

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=int(db["PORT"] or 5432), user=db["USER"] or "postgres",
        dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db["NAME"],)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    btc_usd_upsert()
    instrument = Instrument.objects.get(symbol="BTC/USD")
    now = datetime.now(UTC)
    price = Decimal("60000.0")
    qty = Decimal("0.00100000")
    rows = [
        Order(
            client_order_id=f"load-{i:07d}",
            exchange_order_id=f"OLOAD-{i:07d}",
            instrument=instrument,
            side="buy" if i % 2 else "sell",
            order_type="market",
            quantity=qty,
            state="filled",
            filled_qty=qty,
            filled_cost=qty * price,
            avg_price=price,
            fees=qty * price * Decimal("0.004"),
            reason=f"decision load:{i}",
            send_attempts=1,
            submitted_at=now - timedelta(seconds=5 * (orders - i)),
            accepted_at=now - timedelta(seconds=5 * (orders - i)),
            closed_at=now - timedelta(seconds=5 * (orders - i)),
        )
        for i in range(orders)
    ]
    created = Order.objects.bulk_create(rows, batch_size=2000)
    Fill.objects.bulk_create(
        [
            Fill(
                order=o,
                instrument=instrument,
                exec_id=f"TLOAD-{i:07d}",
                trade_id=i,
                side=o.side,
                quantity=qty,
                price=price,
                cost=qty * price,
                fee=qty * price * Decimal("0.004"),
                liquidity="t",
                source="exchange",
                executed_at=o.closed_at or now,
            )
            for i, o in enumerate(created)
        ],
        batch_size=2000,
    )
    Decision.objects.bulk_create(
        [
            Decision(
                decision_id=f"BTC/USD:load:{i}",
                instrument=instrument,
                bar_time=now - timedelta(minutes=orders - i),
                model_version="load v1",
                signal=1 if o.side == "buy" else -1,
                confidence=Decimal("0.6"),
                status="ordered",
                order=o,
            )
            for i, o in enumerate(created)
        ],
        batch_size=2000,
    )
    run_rows = ReconciliationRun.objects.bulk_create(
        [
            ReconciliationRun(
                trigger="schedule",
                status="clean",
                started_at=now - timedelta(minutes=runs - i),
                finished_at=now - timedelta(minutes=runs - i) + timedelta(seconds=1),
                duration_ms=850.0,
                rest_calls=6,
                counts={"exchange_orders": 50, "local_orders": 50},
            )
            for i in range(runs)
        ],
        batch_size=2000,
    )
    balance_set(asset="USD", total=Decimal("100000"))
    balance_set(asset="BTC", total=Decimal("1"))
    Position.objects.update_or_create(instrument=instrument, defaults={"quantity": Decimal(0), "avg_price": Decimal(0)})
    EquitySnapshot.objects.bulk_create(
        [
            EquitySnapshot(
                currency="USD",
                equity=Decimal("160000"),
                realised_pnl=Decimal(0),
                unrealised_pnl=Decimal(0),
                fees=Decimal(0),
                high_water_mark=Decimal("160000"),
                drawdown=Decimal(0),
                taken_at=now - timedelta(minutes=i),
            )
            for i in range(1440)
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:  # statistics as a database that has been running has them (autovacuum's)
        cursor.execute("ANALYZE")
    user_model = get_user_model()
    tokens = []
    for i in range(users):
        user = user_model.objects.create_user(username=f"load-reader-{i}", password=secrets.token_urlsafe(16))
        tokens.append(api_token_issue(user=user)[0])
    return {"tokens": tokens, "order_ids": [o.pk for o in created], "run_ids": [r.pk for r in run_rows]}


class ConnectionSampler(threading.Thread):
    """Every `interval` seconds: the web's connections to the database (by application name) and all of them."""

    def __init__(self, dsn: dict[str, Any], database: str, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.dsn, self.database, self.interval = dsn, database, interval
        self.samples: list[tuple[float, int, int]] = []
        self.stopping = threading.Event()

    def count(self) -> tuple[int, int]:
        import psycopg  # reason: only the sampler talks to pg_stat_activity directly

        with psycopg.connect(**self.dsn, dbname="postgres", autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE application_name = %s), count(*) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (APP_NAME, self.database),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            web, total = self.count()
            self.samples.append((time.monotonic(), web, total))


def start_server(env: dict[str, str], port: int, log: Path, workers: int) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "galfriday_site.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--proxy-headers", "--no-access-log", "--workers", str(workers),
        ],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the web server exited; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health/", timeout=5).status_code < 600:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the web server did not answer within 90 s")
        time.sleep(0.3)


def read_stats(prefix: str) -> dict[str, Any]:
    """Locust's stats CSV: the aggregate row and one per endpoint (milliseconds)."""

    def row_of(r: dict[str, str]) -> dict[str, Any]:
        return {
            "requests": int(r["Request Count"]),
            "failures": int(r["Failure Count"]),
            "rps": round(float(r["Requests/s"]), 1),
            "p50_ms": float(r["50%"]),
            "p95_ms": float(r["95%"]),
            "p99_ms": float(r["99%"]),
            "max_ms": round(float(r["Max Response Time"]), 1),
        }

    with open(f"{prefix}_stats.csv") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, Any] = {"endpoints": {r["Name"]: row_of(r) for r in rows if r["Name"] != "Aggregated"}}
    out["all"] = next(row_of(r) for r in rows if r["Name"] == "Aggregated")
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        out["failure_kinds"] = [dict(r) for r in csv.DictReader(failures.open())][:10]
    return out


def summarise(samples: list[tuple[float, int, int]], before: tuple[int, int], after: tuple[int, int]) -> dict[str, Any]:
    web = [w for _, w, _ in samples]
    half = len(web) // 2
    return {
        "before": {"web": before[0], "all": before[1]},
        "during": {
            "samples": len(web),
            "web_max": max(web, default=0),
            "web_mean": round(statistics.fmean(web), 2) if web else 0,
            "web_first_half_max": max(web[:half], default=0),
            "web_second_half_max": max(web[half:], default=0),
            "all_max": max((a for _, _, a in samples), default=0),
            "web_per_second": web,
        },
        "after": {"web": after[0], "all": after[1]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second in all (default 200)")
    parser.add_argument("--seconds", type=int, default=300, help="duration (default 300)")
    parser.add_argument("--users", type=int, default=20, help="simulated clients, one read-only user each")
    parser.add_argument("--port", type=int, default=18730)
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn processes (default 1: the Dockerfile's command runs one)"
    )
    parser.add_argument("--orders", type=int, default=20000, help="orders (each with a fill and a decision)")
    parser.add_argument("--runs", type=int, default=2000, help="reconciliation runs")
    parser.add_argument("--json", default="", help="write the result here too")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/galfriday_load"
    database = urlparse(database_url).path.lstrip("/")
    if database in FORBIDDEN:
        raise SystemExit(f"refusing to load-test on {database_url}: it is emptied")
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/3"
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="galfriday-load-") as tmp:
        env = environment(database_url, redis_url, tmp)
        os.environ.update(env)
        import django

        django.setup()
        started = time.monotonic()
        fixture = prepare(args.orders, args.users, args.runs)
        seeded_s = time.monotonic() - started
        from django.db import connections

        connections.close_all()
        fixture_path = Path(tmp) / "fixture.json"
        fixture_path.write_text(json.dumps(fixture))
        u = urlparse(database_url)
        dsn = {"host": u.hostname or "127.0.0.1", "port": u.port or 5432, "user": u.username or "postgres"}
        if u.password:
            dsn["password"] = u.password
        sampler = ConnectionSampler(dsn, database)
        server = start_server(env, args.port, Path(tmp) / "web.log", args.workers)
        try:
            base = f"http://127.0.0.1:{args.port}"
            headers = {"Authorization": f"Token {fixture['tokens'][0]}", "X-Forwarded-Proto": "https"}
            warm = httpx.get(f"{base}/api/trading/orders/?limit=50", headers=headers, timeout=30)
            if warm.status_code != 200:
                raise SystemExit(f"warm-up request: {warm.status_code} {warm.text[:300]}")
            time.sleep(1.0)
            before = sampler.count()
            sampler.start()
            prefix = str(Path(tmp) / "locust")
            locust = subprocess.run(
                [
                    str(Path(sys.executable).with_name("locust")), "-f", str(ROOT / "bench" / "locustfile.py"),
                    "--headless", "-u", str(args.users), "-r", str(args.users), "--run-time", f"{args.seconds}s",
                    "--host", base, "--csv", prefix, "--only-summary", "--stop-timeout", "5",
                    "--loglevel", "WARNING",
                ],
                cwd=ROOT,
                env={
                    **os.environ,
                    "GALFRIDAY_LOAD_FIXTURE": str(fixture_path),
                    "GALFRIDAY_LOAD_RPS_PER_USER": str(args.rate / args.users),
                },
                capture_output=True,
                text=True,
                timeout=args.seconds + 120,
                check=False,
            )  # fmt: skip
            sampler.stopping.set()
            sampler.join(timeout=5)
            time.sleep(2.0)
            after = sampler.count()
            if not Path(f"{prefix}_stats.csv").exists():
                raise SystemExit(f"locust wrote no stats (exit {locust.returncode}): {locust.stderr[-2000:]}")
            stats = read_stats(prefix)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    conns = summarise(sampler.samples, before, after)
    result = {
        "benchmark": "API reads on loopback: uvicorn galfriday_site.asgi (DEBUG off, PostgreSQL, Redis) under locust",
        "target": "p99 < 50 ms at 200 requests/s for 5 minutes, no error, flat connection count",
        "offered_rate_rps": args.rate,
        "seconds": args.seconds,
        **stats,
        "connections": conns,
        "conditions": {
            "users": args.users,
            "orders_fills_decisions": args.orders,
            "reconciliation_runs": args.runs,
            "seed_seconds": round(seeded_s, 1),
            "server": f"uvicorn galfriday_site.asgi:application --proxy-headers --workers {args.workers}",
            "database": database,
            "redis": redis_url,
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    problems = []
    if stats["all"]["failures"]:
        problems.append(f"{stats['all']['failures']} failed requests")
    during = conns["during"]
    if during["web_max"] > args.users:
        problems.append(f"{during['web_max']} web connections at once for {args.users} clients")
    if conns["after"]["web"] > conns["before"]["web"]:
        problems.append(f"connections left: {conns['before']['web']} before, {conns['after']['web']} after")
    if problems:
        print("bench_api_load: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
