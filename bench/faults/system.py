"""The system under test: a live-mode Gal-Friday trading on the simulator, every process real.

Ports (from `base`): Redis `base`, InfluxDB `base + 1` (RPC `base + 2`), the simulator's REST, WebSocket and
private WebSocket `base + 3 .. base + 5`. Processes, each in its own process group:

- `sim`: `python -m kraken_sim` (generated market, the `pro` tier's rate limits enforced, one symbol); never
  restarted: its account is the truth the checks compare with.
- `ingest`: `manage.py ingest` (public book and trades, private executions and balances; 5-second bars, each
  closed bar enqueues `trading.tasks.decide_on_bar`; a private gap or reconnect enqueues a reconciliation).
- `worker-trading`: `celery worker -Q trading` (decisions, execution over the private WebSocket, the risk monitor).
- `worker-system`: `celery worker -Q default,ingest,lifecycle,reconciliation` (reconciliation: its start engages the
  start-up gate, trading halted until the start-up run is clean or corrected).
- `beat`: `celery beat -S django` (the periodic tasks of `galfriday_site.periodic`: the risk monitor's equity
  snapshots every 10 s, reconciliation every 60 s, ...).

`TRADING_MODE=live`, `DEBUG=false`, PostgreSQL, the campaign's Redis (broker, cache, channel layer, nonces) and
InfluxDB (bars and trades).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.faults.services import ROOT, Child, InfluxServer, RedisServer, port_open, wait_until

SYMBOL = "BTC/USD"
BAR_SECONDS = 5
SIM_API_KEY = "kraken-sim-key"
# Kraken's documented example secret, the simulator's default (public: nobody takes it for a credential).
SIM_API_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
# Each decision buys about 0.05 % of equity (~80 USD at the simulator's balances), then sells it back.
SIZING_FRACTION = "0.0005"
PROCESS_NAMES = ("ingest", "worker-trading", "worker-system", "beat")


@dataclass
class SystemConfig:
    database_url: str
    base_port: int
    work_dir: Path
    seed: int = 1
    market_rate: int = 4
    influx_database: str = "galfriday_campaign"
    bar_intervals: str = str(BAR_SECONDS)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def redis_port(self) -> int:
        return self.base_port

    @property
    def influx_port(self) -> int:
        return self.base_port + 1

    @property
    def sim_ports(self) -> tuple[int, int, int]:
        return self.base_port + 3, self.base_port + 4, self.base_port + 5


class System:
    def __init__(self, config: SystemConfig) -> None:
        self.config = config
        work = config.work_dir
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.logs = work / "logs"
        self.redis = RedisServer(config.redis_port, work / "redis", self.logs / "redis.log")
        self.influx = InfluxServer(config.influx_port, work / "influxdb", self.logs / "influxd.log")
        rest, ws, ws_auth = config.sim_ports
        self.rest_url = f"http://127.0.0.1:{rest}"
        self.admin_url = f"{self.rest_url}/_sim"
        self.env = self._environment(work)
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "galfriday_site"]
        worker_flags = ["--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        tag = f"campaign{config.base_port}"
        self.sim = Child(
            "sim",
            [
                python, "-m", "kraken_sim", "--rest-port", str(rest), "--ws-port", str(ws), "--ws-auth-port",
                str(ws_auth), "--seed", str(config.seed), "--rate", str(config.market_rate), "--warmup", "300",
                "--warmup-seconds", "600", "--tier", "pro", "--instruments", SYMBOL, "--balances", "USD=100000,BTC=1",
                "--log-level", "WARNING",
            ],
            self.env,
            self.logs / "sim.log",
        )  # fmt: skip
        self.processes: dict[str, Child] = {
            "ingest": Child("ingest", [python, "manage.py", "ingest"], self.env, self.logs / "ingest.log"),
            "worker-trading": Child(
                "worker-trading",
                [*celery, "worker", "-Q", "trading", "-n", f"trading-{tag}@%h", *worker_flags],
                self.env,
                self.logs / "worker-trading.log",
            ),
            "worker-system": Child(
                "worker-system",
                [
                    *celery,
                    "worker",
                    "-Q",
                    "default,ingest,lifecycle,reconciliation",
                    "-n",
                    f"system-{tag}@%h",
                    *worker_flags,
                ],
                self.env,
                self.logs / "worker-system.log",
            ),  # fmt: skip
            "beat": Child(
                "beat",
                [*celery, "beat", "-S", "django", "--loglevel", "INFO", "--pidfile", ""],
                self.env,
                self.logs / "beat.log",
            ),
        }
        self.initial_balances: dict[str, Decimal] = {}

    def _environment(self, work: Path) -> dict[str, str]:
        rest, ws, ws_auth = self.config.sim_ports
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "REDIS_", "CELERY_", "KRAKEN_"))}
        return {
            **keep,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "galfriday_site.settings",
            "GALFRIDAY_ENV_FILE": "/dev/null",
            "GALFRIDAY_VAR_DIR": str(work / "var"),
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "MODELS_REGISTRY_ARTIFACT_KEYS": "campaign:"
            + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.config.database_url,
            "REDIS_URL": f"{self.redis.url}/0",
            "INFLUXDB_URL": self.influx.url,
            "INFLUXDB_DATABASE": self.config.influx_database,
            "TRADING_MODE": "live",
            "GALFRIDAY_EXCHANGE": "sim",
            "KRAKEN_REST_URL": self.rest_url,
            "KRAKEN_WS_URL": f"ws://127.0.0.1:{ws}/v2",
            "KRAKEN_WS_AUTH_URL": f"ws://127.0.0.1:{ws_auth}/v2",
            "KRAKEN_API_KEY": SIM_API_KEY,
            "KRAKEN_API_SECRET": SIM_API_SECRET,
            "KRAKEN_TIMEOUT": "5",
            "GALFRIDAY_KRAKEN_TIER": "pro",
            "INGEST_SYMBOLS": SYMBOL,
            "INGEST_BAR_INTERVALS": self.config.bar_intervals,
            "GALFRIDAY_PREDICTOR": "bench.faults.predictor.Alternating",
            "GALFRIDAY_SIZING_FRACTION": SIZING_FRACTION,
            "GALFRIDAY_NO_TRADE_BAND": "0",
            "GALFRIDAY_NO_TRADE_MIN_MULTIPLE": "0",
            **self.config.extra_env,
        }

    # -- life cycle -------------------------------------------------------------------------------------------
    def start_services(self) -> None:
        self.redis.start()
        self.influx.start()
        for port in self.config.sim_ports:
            if port_open(port):
                raise RuntimeError(f"port {port} is taken")
        self.sim.start()
        wait_until(lambda: all(port_open(p) for p in self.config.sim_ports), 60, "the simulator's ports")
        wait_until(lambda: self.sim_get("/state?messages=0") is not None, 30, "the simulator's admin API")

    def start_processes(self) -> None:
        for child in self.processes.values():
            child.start()

    def ensure_running(self) -> list[str]:
        """Start every process that is not running (killed by a fault); returns their names."""
        started = []
        for name, child in self.processes.items():
            if not child.running():
                child.start()
                started.append(name)
        return started

    def stop(self) -> None:
        for child in reversed(list(self.processes.values())):
            child.stop()
        self.sim.stop()
        self.influx.stop()
        self.redis.stop()

    # -- the simulator's own API ----------------------------------------------------------------------------------
    def sim_get(self, path: str) -> Any:
        response = httpx.get(self.admin_url + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def sim_post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(self.admin_url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def sim_clear_faults(self) -> None:
        httpx.delete(self.admin_url + "/faults", timeout=30).raise_for_status()
        self.sim_post("/faults", {"fault": "system_status", "status": "online"})

    def sim_state(self) -> dict[str, Any]:
        return dict(self.sim_get("/state?messages=0"))

    def sim_balances(self) -> dict[str, Decimal]:
        return {asset: Decimal(v["balance"]) for asset, v in self.sim_state()["balances"].items()}

    def public_trades(self, since_ns: int) -> list[tuple[Decimal, Decimal, int, int]]:
        """The simulator's public tape of SYMBOL from `since_ns` on, every page: (price, qty, ts_ns, trade_id)."""
        out: list[tuple[Decimal, Decimal, int, int]] = []
        cursor = str(since_ns)
        for _ in range(100):
            body = httpx.get(
                f"{self.rest_url}/0/public/Trades", params={"pair": SYMBOL, "since": cursor}, timeout=30
            ).json()
            if body.get("error"):
                raise RuntimeError(f"Trades: {body['error']}")
            result = body["result"]
            [rows] = [v for k, v in result.items() if k != "last"]
            for price, qty, at, _side, _type, _misc, trade_id in rows:
                seconds, _, frac = str(at).partition(".")
                out.append((Decimal(price), Decimal(qty), int(seconds) * 10**9 + int(frac.ljust(9, "0")[:9]), trade_id))
            if len(rows) < 1000:
                return out
            cursor = str(result["last"])
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "simulator": f"python -m kraken_sim --tier pro --rate {self.config.market_rate} ({SYMBOL})",
            "processes": {name: " ".join(c.argv[1:]) for name, c in self.processes.items()},
            "redis": self.redis.url,
            "influxdb": self.influx.url,
            "database": self.config.database_url.rsplit("/", 1)[-1],
            "bar_seconds": BAR_SECONDS,
            "bar_intervals": self.config.bar_intervals,
        }


def prepare_database(system: System) -> None:
    """In this (the campaign's) process, with Django set up on the system's environment: create the database if
    missing, migrate and empty it, write the periodic tasks, lift the order-rate limit, and give our books the
    simulator's starting balances (the start-up reconciliation would halt on a traded asset that differs)."""
    import psycopg  # reason: set-up only; Django is configured by the caller first
    from django.conf import settings
    from django.core.management import call_command

    from galfriday_site.periodic import sync_periodic_tasks
    from trading.accounts import balance_set
    from trading.limits import risk_limit_set

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=int(db["PORT"] or 5432), user=db["USER"] or "postgres",
        dbname="postgres", autocommit=True,
    ) as conn:  # fmt: skip
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db["NAME"],)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    sync_periodic_tasks()
    risk_limit_set(instrument=None, values={"max_orders_per_minute": 1000}, reason="fault campaign", actor="campaign")
    system.initial_balances = system.sim_balances()
    for asset, total in system.initial_balances.items():
        balance_set(asset=asset, total=total)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
