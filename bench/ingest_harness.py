"""Shared set-up of the ingest benchmarks (bench_ingest_sustained, bench_ingest_latency, bench_bar_to_decision).

The simulator (`python -m kraken_sim --market none --rate 0`, ports 9401-9403) runs in a child process pinned to
CPU 1 and produces load with its `flood` action (`kraken_sim.flood`: a synthetic trade tape at a fixed message
rate, with its own per-second record of what it sent). The ingest worker (`ingest.worker.IngestWorker`, the object
`manage.py ingest` runs, built the same way) runs in the benchmark process pinned to CPU 0, with PostgreSQL,
Redis (channel layer, Celery broker) and InfluxDB from the environment:

    DATABASE_URL   default postgres://postgres@127.0.0.1:5432/galfriday_bench_ingest (created if missing, migrated)
    REDIS_URL      default redis://127.0.0.1:6379/6
    INFLUXDB_URL   default http://127.0.0.1:8086; INFLUXDB_DATABASE default galfriday_bench_ingest (dropped and
                   recreated at the start of every run)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.stats import percentiles  # noqa: F401  (the ingest benchmarks use it as h.percentiles)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FORBIDDEN = {"galfriday_ci", "galfriday_bench"}
DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/galfriday_bench_ingest",
    "REDIS_URL": "redis://127.0.0.1:6379/6",
    "INFLUXDB_URL": "http://127.0.0.1:8086",
    "INFLUXDB_DATABASE": "galfriday_bench_ingest",
}
SIM_PORTS = (9401, 9402, 9403)


def setup_django(var_dir: Path) -> None:
    """Environment defaults (refusing the CI and shared benchmark databases), then django.setup()."""
    for key, value in DEFAULTS.items():
        os.environ[key] = os.environ.get(key) or value
    for key in ("DATABASE_URL", "INFLUXDB_DATABASE"):
        if os.environ[key].rstrip("/").rsplit("/", 1)[-1] in FORBIDDEN:
            raise SystemExit(f"refusing to benchmark on {os.environ[key]}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")
    os.environ["GALFRIDAY_ENV_FILE"] = "/dev/null"
    os.environ["GALFRIDAY_VAR_DIR"] = str(var_dir)
    os.environ["TRADING_MODE"] = "paper"
    import django

    django.setup()


def prepare_database() -> None:
    """Create the PostgreSQL database if missing and migrate it (call after setup_django)."""
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit("the ingest benchmarks are for PostgreSQL")
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=int(db["PORT"] or 5432), user=db["USER"] or "postgres",
        dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db["NAME"],)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
    call_command("migrate", verbosity=0, interactive=False)


def fresh_influx() -> Any:
    """The InfluxDB store of the settings, its database dropped and recreated."""
    from timeseries import get_store

    store = get_store()
    if store.backend != "influxdb":
        raise SystemExit("set INFLUXDB_URL: the ingest benchmarks persist to InfluxDB")
    store._query(f'DROP DATABASE "{store.database}"', write=True)
    store._database_ready = False
    store.ensure_database()
    return store


def pin(cpu: int | None) -> None:
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


class Simulator:
    """`python -m kraken_sim` in a child process (pinned with taskset when `cpu` is given)."""

    def __init__(self, cpu: int | None, log: Path, symbols: list[str], queue_limit: int = 200_000) -> None:
        rest, ws, ws_auth = SIM_PORTS
        args = [
            sys.executable, "-m", "kraken_sim", "--market", "none", "--rate", "0", "--warmup", "0",
            "--no-rate-limits", "--log-level", "WARNING", "--instruments", ",".join(symbols),
            "--rest-port", str(rest), "--ws-port", str(ws), "--ws-auth-port", str(ws_auth),
            "--ws-queue-limit", str(queue_limit),
        ]  # fmt: skip
        if cpu is not None:
            args = ["taskset", "-c", str(cpu), *args]
        self._log = log.open("w")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the simulator did not start; see {log}")
        self.urls: dict[str, Any] = json.loads(line)

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        response = httpx.request(method, self.urls["admin_url"] + path, json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def worker_config(sim: Simulator, var_dir: Path, symbols: list[str], bar_seconds: int, bar_task: str = "") -> Any:
    from ingest.worker import IngestConfig

    return IngestConfig(
        symbols=symbols,
        rest_url=sim.urls["rest_url"],
        ws_url=sim.urls["ws_url"],
        ws_auth_url=sim.urls["ws_auth_url"],
        var_dir=var_dir,
        depth=10,
        bar_intervals=(bar_seconds,),
        bar_closed_task=bar_task,
    )


async def wait_subscribed(sim: Simulator, symbols: list[str], timeout: float = 30.0) -> None:
    """Until the simulator lists a connection subscribed to every symbol's trades."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(sim.admin, "GET", "/state?messages=0")
        subscribed = {
            s.get("symbol") for c in state["connections"] for s in c.get("subscriptions", []) if s["channel"] == "trade"
        }
        if set(symbols) <= subscribed:
            return
        await asyncio.sleep(0.2)
    raise SystemExit("the worker did not subscribe to trades in time")


def rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, summed by thread name (Linux /proc)."""
    import threading

    names = {t.native_id: t.name.split("_")[0] for t in threading.enumerate()}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            name = names.get(int(task.name)) or (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out
