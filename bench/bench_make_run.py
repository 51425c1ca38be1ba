"""Benchmark: `make run` on the default scenario, from start to the first model promoted on merit.
Target: under 2 minutes on this machine.

    .venv/bin/python bench/bench_make_run.py [--timeout 600]

Runs what `make run` runs (`manage.py migrate`, then `manage.py standalone`) as a new user would: embedded defaults
(SQLite, the embedded broker, no PostgreSQL, Redis or InfluxDB URLs), a fresh var/ directory, the simulator on
its default scenario with its 14 days of history, free loopback ports. Polls the SQLite database (read-only) until
every symbol's model has a production version, then stops the system with Ctrl-C (SIGINT). Prints JSON: seconds
from the start of `migrate` to each promotion, the promoted versions' gate metrics, and how long `migrate` took.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVICE_URLS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL")
SERVICE_URLS += ("CHANNEL_LAYER_URL", "INFLUXDB_URL", "INFLUXDB_DATABASE", "INFLUXDB_TOKEN")
SHOWN = ("psr", "dsr", "net_pnl", "excess_net_pnl_vs_hold", "excess_net_pnl_vs_momentum", "ece", "n_oos_trades")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def production_versions(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute(
                "SELECT m.name, v.version, v.metrics FROM models_registry_modelversion v "
                "JOIN models_registry_registeredmodel m ON m.id = v.model_id WHERE v.stage = 'production'"
            ).fetchall()
    except sqlite3.Error:
        return []
    return [
        {"model": name, "version": version, "metrics": {k: json.loads(metrics).get(k) for k in SHOWN}}
        for name, version, metrics in rows
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--symbols", default="BTC/USD,ETH/USD")
    args = parser.parse_args()
    expected = len([s for s in args.symbols.split(",") if s])

    with tempfile.TemporaryDirectory(prefix="galfriday-make-run-") as tmp:
        var = Path(tmp) / "var"
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_URLS}
        env.update(
            {
                "GALFRIDAY_VAR_DIR": str(var),
                "GALFRIDAY_ENV_FILE": "/dev/null",
                "GALFRIDAY_ADMIN_PASSWORD": "bench-admin-password",
                "KRAKEN_SIM_REST_PORT": str(free_port()),
                "KRAKEN_SIM_WS_PORT": str(free_port()),
                "KRAKEN_SIM_WS_AUTH_PORT": str(free_port()),
                "PYTHONUNBUFFERED": "1",
            }
        )
        log = Path(tmp) / "standalone.log"
        started = time.monotonic()
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        migrated = time.monotonic() - started
        process = subprocess.Popen(
            [sys.executable, "manage.py", "standalone", "--port", str(free_port())],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        promoted: dict[str, dict[str, Any]] = {}
        try:
            deadline = started + args.timeout
            while time.monotonic() < deadline and len(promoted) < expected:
                for row in production_versions(var / "galfriday.sqlite3"):
                    if row["model"] not in promoted:
                        promoted[row["model"]] = {**row, "seconds": round(time.monotonic() - started, 1)}
                if process.poll() is not None:
                    break
                time.sleep(0.5)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        report = {
            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            "load_at_end": os.getloadavg(),
            "migrate_seconds": round(migrated, 1),
            "first_promotion_seconds": min((p["seconds"] for p in promoted.values()), default=None),
            "promoted": sorted(promoted.values(), key=lambda p: p["seconds"]),
            "all_promoted": len(promoted) == expected,
        }
        if not report["all_promoted"]:
            report["log_tail"] = log.read_text()[-3000:]
        print(json.dumps(report, indent=2))
        return 0 if report["all_promoted"] else 1


if __name__ == "__main__":
    sys.exit(main())
