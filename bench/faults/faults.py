"""What a round can inject, each as timed steps (the fault, then what undoes it, as an operator's supervisor or
the end of an outage would), drawn from a seeded `random.Random`.

Processes: SIGKILL of `manage.py ingest`, of either Celery worker, of beat (restarted 1-4 s later). Services:
Redis restarted (SIGTERM, 1-3 s down), every PostgreSQL backend of the campaign's database terminated, InfluxDB
SIGKILLed (3-10 s down). Simulator (`/_sim/faults`): WebSockets dropped, the private socket silenced (messages
held or lost), a sequence gap on executions, executions withheld (with the sequence consumed: a gap), a corrupt
book checksum, maintenance (2-6 s), REST rate-limit answers; on request (`OPT_IN`), a public trade message lost.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.faults.services import pg_terminate_backends
from bench.faults.system import SYMBOL, System


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the round's start
    label: str
    action: Callable[[], object]


def _kill(system: System, name: str, at: float, rng: random.Random) -> list[Step]:
    child = system.processes[name]

    def restart() -> None:
        if not child.running():
            child.start()

    return [Step(at, f"SIGKILL {name}", child.kill), Step(at + rng.uniform(1, 4), f"restart {name}", restart)]


def _sim(system: System, at: float, body: dict[str, object]) -> Step:
    return Step(at, f"sim {body['fault']}", lambda: system.sim_post("/faults", body))


def steps_for(name: str, system: System, at: float, rng: random.Random, pg: dict[str, Any]) -> list[Step]:
    if name.startswith("kill:"):
        return _kill(system, name.removeprefix("kill:"), at, rng)
    if name == "redis_restart":
        down = rng.uniform(1, 3)
        return [Step(at, "redis restart", lambda: system.redis.restart(down_s=down))]
    if name == "pg_terminate":
        database = system.config.database_url.rsplit("/", 1)[-1]
        return [Step(at, "pg_terminate_backend", lambda: pg_terminate_backends(pg, database))]
    if name == "influx_down":
        return [
            Step(at, "influxd SIGKILL", system.influx.down),
            Step(at + rng.uniform(3, 10), "influxd start", system.influx.start),
        ]
    if name == "sim:drop":
        return [_sim(system, at, {"fault": "drop_connections", "scope": rng.choice(["all", "public", "private"])})]
    if name == "sim:silence":
        body = {"fault": "silence", "seconds": round(rng.uniform(2, 5), 1), "scope": "private"}
        return [_sim(system, at, {**body, "mode": rng.choice(["hold", "drop"])})]
    if name == "sim:gap":
        return [_sim(system, at, {"fault": "skip_sequence", "channel": "executions", "count": rng.randint(1, 3)})]
    if name == "sim:withhold":
        return [_sim(system, at, {"fault": "withhold_executions", "count": 1, "consume_sequence": True})]
    if name == "sim:withhold_trade":
        return [_sim(system, at, {"fault": "withhold_market", "channel": "trade", "symbol": SYMBOL, "count": 1})]
    if name == "sim:checksum":
        return [_sim(system, at, {"fault": "corrupt_checksum", "symbol": SYMBOL, "count": rng.randint(1, 3)})]
    if name == "sim:maintenance":
        return [
            _sim(system, at, {"fault": "system_status", "status": "maintenance"}),
            _sim(system, at + rng.uniform(2, 6), {"fault": "system_status", "status": "online"}),
        ]
    if name == "sim:rate_limit":
        return [
            _sim(system, at, {"fault": "rest_errors", "count": rng.randint(1, 5), "error": "EAPI:Rate limit exceeded"})
        ]
    raise ValueError(f"unknown fault {name}")


FAULTS = (
    "kill:ingest",
    "kill:worker-trading",
    "kill:worker-system",
    "kill:beat",
    "redis_restart",
    "pg_terminate",
    "influx_down",
    "sim:drop",
    "sim:silence",
    "sim:gap",
    "sim:withhold",
    "sim:checksum",
    "sim:maintenance",
    "sim:rate_limit",
    # Public trade messages lost on the socket: no sequence tells, only the 1-minute bars' check against the
    # exchange's `ohlc` channel finds and repairs them (needs a 60 s interval: `--bar-intervals 5,60`), so it is
    # not drawn by default: `--schedule sim:withhold_trade` with `--settle-s 75`.
)
OPT_IN = ("sim:withhold_trade",)
