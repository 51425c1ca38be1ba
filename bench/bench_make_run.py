"""Benchmark: `make run` on the default scenario, from start to the first model promoted on merit (target: under 2
minutes on this machine), and closed bar → paper fill under it (target: under 1 s).

    .venv/bin/python bench/bench_make_run.py [--timeout 6000] [--fills 5]

Runs what `make run` runs (`manage.py migrate`, then `manage.py standalone`) as a new user would: embedded defaults
(SQLite, the embedded Redis that `standalone` starts, no PostgreSQL, Redis or InfluxDB URLs), a fresh var/
directory, the simulator on its default scenario with its 14 days of history, free loopback ports. Polls the SQLite
database (read-only) until every symbol's model has a production version and `--fills` decisions have their first
paper fill (0: promotions only), then stops the system with Ctrl-C (SIGINT). Prints JSON: seconds from the start of
`migrate` to each promotion, the promoted versions' gate metrics, how long `migrate` took, and closed bar → paper
fill per decision (to the fill's `recorded_at` from the bar's close, its end plus the ingest worker's 2 s grace,
and from its end: p50, p95, max; with the bar end to the decision row and the order sent, and the decision
row to the fill), with the system's own `galfriday_bar_to_ack_seconds` histogram (from the bar's
end) read from its `/metrics` at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVICE_URLS: tuple[str, ...] = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL")
SERVICE_URLS += ("CHANNEL_LAYER_URL", "INFLUXDB_URL", "INFLUXDB_DATABASE", "INFLUXDB_TOKEN")
SHOWN = ("psr", "dsr", "net_pnl", "excess_net_pnl_vs_hold", "excess_net_pnl_vs_momentum", "ece", "n_oos_trades")


PORT_BASE: int | None = None  # --port-base: consecutive ports from here instead of free ones


def free_port() -> int:
    global PORT_BASE
    if PORT_BASE is not None:
        PORT_BASE += 1
        return PORT_BASE - 1
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


BAR_LENGTH = timedelta(minutes=1)
# The ingest worker closes a bar at its end plus this grace (ingest.worker's bar_grace_s), for late trades; a quiet
# market's bar is closed by the bar clock at the same time (the grace covers the clock margin: ingest.worker.
# clock_margin), at end + 2 s.
BAR_GRACE_SECONDS = 2.0


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def bar_to_fill(db: Path) -> list[dict[str, Any]]:
    """Per decision that placed an order with a fill: its symbol, bar, and seconds from the bar's end to the first
    fill recorded (SQLite keeps naive UTC datetimes)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute(
                "SELECT d.decision_id, i.symbol, d.bar_time, d.created_at, o.created_at, o.submitted_at, "
                "MIN(f.recorded_at) FROM trading_decision d JOIN trading_order o ON o.id = d.order_id "
                "JOIN trading_fill f ON f.order_id = d.order_id JOIN trading_instrument i ON i.id = d.instrument_id "
                "GROUP BY d.decision_id, i.symbol, d.bar_time, d.created_at, o.created_at, o.submitted_at"
            ).fetchall()
    except sqlite3.Error:
        return []

    def since_end(bar_time: str, at: str | None) -> float | None:
        return None if at is None else round((_utc(at) - (_utc(bar_time) + BAR_LENGTH)).total_seconds(), 3)

    return [
        {
            "decision": decision,
            "symbol": symbol,
            "bar_time": bar_time,
            "seconds": since_end(bar_time, filled),
            # Where the time goes, each from the bar's end (local clock): the decision row written, the order
            # created and sent to the exchange.
            "decision_created": since_end(bar_time, decided),
            "order_created": since_end(bar_time, ordered),
            "order_submitted": since_end(bar_time, submitted),
        }
        for decision, symbol, bar_time, decided, ordered, submitted, filled in rows
    ]


def quantiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p95": None, "max": None}

    def at(q: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "max": ordered[-1]}


def scraped_histogram(port: int, name: str) -> dict[str, float]:
    """The `_bucket`, `_count` and `_sum` samples of a histogram in the running system's /metrics (a loopback
    client needs no token)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            text = response.read().decode()
    except OSError as exc:
        return {"error": repr(exc)}  # type: ignore[dict-item]
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            found[key[len(name) :]] = float(value)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--symbols", default="BTC/USD,ETH/USD")
    # The default scenario's first model trades a few times an hour: allow about 20 minutes per fill.
    parser.add_argument("--fills", type=int, default=5, help="decisions with a paper fill to wait for (0: none)")
    parser.add_argument("--port-base", type=int, help="take the system's 5 ports from here (default: free ports)")
    args = parser.parse_args()
    global PORT_BASE
    PORT_BASE = args.port_base
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
                "GALFRIDAY_EMBEDDED_REDIS_PORT": str(free_port()),
                "PYTHONUNBUFFERED": "1",
            }
        )
        log = Path(tmp) / "standalone.log"
        started = time.monotonic()
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        migrated = time.monotonic() - started
        web_port = free_port()
        process = subprocess.Popen(
            [sys.executable, "manage.py", "standalone", "--port", str(web_port)],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        promoted: dict[str, dict[str, Any]] = {}
        fills: list[dict[str, Any]] = []
        ack: dict[str, float] = {}
        try:
            deadline = started + args.timeout
            while time.monotonic() < deadline and (len(promoted) < expected or len(fills) < args.fills):
                for row in production_versions(var / "galfriday.sqlite3"):
                    if row["model"] not in promoted:
                        promoted[row["model"]] = {**row, "seconds": round(time.monotonic() - started, 1)}
                fills = bar_to_fill(var / "galfriday.sqlite3")
                if process.poll() is not None:
                    break
                time.sleep(0.5)
            ack = scraped_histogram(web_port, "galfriday_bar_to_ack_seconds")
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
            "bar_end_to_paper_fill_seconds": quantiles([f["seconds"] for f in fills]),
            # The figure the target is about: from the moment the ingest worker closes the bar (end + grace).
            "closed_bar_to_paper_fill_seconds": (
                latency := quantiles([round(f["seconds"] - BAR_GRACE_SECONDS, 3) for f in fills])
            ),
            "bar_end_to_decision_created_seconds": quantiles(
                [f["decision_created"] for f in fills if f["decision_created"] is not None]
            ),
            # The decision pipeline's part: from the decision row written to the paper fill recorded.
            "decision_written_to_paper_fill_seconds": quantiles(
                [round(f["seconds"] - f["decision_created"], 3) for f in fills if f["decision_created"] is not None]
            ),
            "bar_end_to_order_submitted_seconds": quantiles(
                [f["order_submitted"] for f in fills if f["order_submitted"] is not None]
            ),
            "closed_bar_to_paper_fill_target_met": latency["p95"] is not None and latency["p95"] < 1.0,
            "fills": fills[-args.fills :] if args.fills else fills,
            "bar_to_ack_histogram_from_metrics": ack,
        }
        if not report["all_promoted"] or len(fills) < args.fills:
            report["log_tail"] = log.read_text()[-3000:]
        print(json.dumps(report, indent=2))
        return 0 if report["all_promoted"] and len(fills) >= args.fills else 1


if __name__ == "__main__":
    sys.exit(main())
