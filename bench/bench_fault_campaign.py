"""Fault campaign (issue 18): a live-mode system trading on the simulator, faults at seeded random points, the
invariants checked after every round.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_campaign \\
        .venv/bin/python bench/bench_fault_campaign.py --rounds 100 [--seed 1] [--active-s 25] [--max-faults 3] \\
        [--port-base 18710] [--json out.json] [--keep-logs DIR]

The system (`bench.faults.system`): `python -m kraken_sim`, `manage.py ingest`, two Celery workers (trading; the
rest, reconciliation among them) and beat, `TRADING_MODE=live` against the simulator with the key it accepts,
PostgreSQL (`DATABASE_URL`; the database is created if missing, migrated and emptied: never point it at a database
you want), a dedicated Redis and a dedicated InfluxDB on the campaign's own ports and data directories. Decisions
come from 5-second bars (`bench.faults.predictor.Alternating`: buy, then sell back), so the books move every bar.

Each round: `--active-s` seconds of trading during which 1..`--max-faults` faults (`bench.faults.faults.FAULTS`)
strike at random points (seeded: `--seed` and the round number), each undone as it would be (a killed process is
restarted 1-4 s later, a service comes back); then the round goes quiet: the simulator's faults cleared, every
process running, trading halted by the campaign, and the campaign waits (at most `--quiet-timeout-s`) until no
local order is open, our fills match the exchange's trades and the bars reached the end of the round. Then the checks
(`bench.faults.checks`): no duplicate order, no lost fill, balances and position equal the simulator's account, no
hole in the bars (and the round's bars equal the simulator's tape), a reconciliation run of the engine clean. Trading
resumes for the next round.

Prints one line per round and a table at the end; exits 1 on any violation. `--json` writes every round's record.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.faults.faults import FAULTS, OPT_IN, Step, steps_for  # noqa: E402
from bench.faults.services import pg_connections, port_open  # noqa: E402
from bench.faults.system import BAR_SECONDS, System, SystemConfig, prepare_database  # noqa: E402

ACTOR = "fault-campaign"
FORBIDDEN = {"galfriday_ci", "galfriday_bench", "galfriday"}


def pg_dsn(database_url: str) -> dict[str, Any]:
    from urllib.parse import urlparse

    u = urlparse(database_url)
    dsn = {"host": u.hostname or "127.0.0.1", "port": str(u.port or 5432), "user": u.username or "postgres"}
    if u.password:
        dsn["password"] = u.password
    return dsn


def free_port_base(first: int = 18750) -> int:
    """The first base from `first` (in steps of 10) whose six ports nobody listens on."""
    for base in range(first, first + 1000, 10):
        if not any(port_open(p) for p in range(base, base + 6)):
            return base
    raise SystemExit("no free block of six ports")


def trading_set(state: str, reason: str) -> None:
    from trading.kill_switch import trading_state_set

    trading_state_set(state=state, reason=reason, actor=ACTOR)


def private_subscribed(system: System) -> bool:
    connections = system.sim_state()["connections"]
    channels = {s["channel"] for c in connections for s in c.get("subscriptions", [])}
    return {"executions", "trade", "book"} <= channels


def converged(system: System, bars_until: datetime) -> bool:
    from bench.faults.checks import local_orders_unresolved, stored_bars
    from trading.models import Fill

    state = system.sim_state()
    if local_orders_unresolved() or Fill.objects.count() != len(state["trades"]):
        return False
    if any(o["status"] in ("pending", "open") for o in state["orders"] if o["source"] in ("api", "ws")):
        return False
    points = stored_bars(bars_until - timedelta(seconds=BAR_SECONDS), datetime.now(UTC) + timedelta(minutes=1))
    return bool(points) and points[-1].time.astimezone(UTC) >= bars_until


def wait_quiet(system: System, bars_until: datetime, timeout_s: float) -> float:
    """Until the books settle (or `timeout_s`); returns the seconds waited."""
    from django.db import connection

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if private_subscribed(system) and converged(system, bars_until):
                return time.monotonic() - started
        except Exception as exc:  # a database connection terminated by the round's fault: reconnect and retry
            print(f"  (quiet check: {type(exc).__name__}: {exc})", flush=True)
            connection.close()
        time.sleep(1.0)
    return time.monotonic() - started


T = TypeVar("T")


def db_retry(fn: Callable[[], T], what: str, timeout_s: float = 180.0) -> T:
    """`fn()` with the campaign's own database access retried: the PostgreSQL server is shared, and at its
    connection limit ("too many clients", other users' load) it refuses the campaign's checks for a while. The
    system under test meets the same refusal as a fault; the harness waits it out (printed, not a violation)."""
    import psycopg
    from django.db import OperationalError, connection

    started = time.monotonic()
    while True:
        try:
            return fn()
        except (OperationalError, psycopg.OperationalError) as exc:
            if time.monotonic() - started > timeout_s:
                raise
            print(f"  (campaign's database access, {what}: {exc}; retrying)", flush=True)
            connection.close()
            time.sleep(5.0)


def run_steps(steps: list[Step], t0: float, until: float) -> list[dict[str, Any]]:
    done = []
    for step in sorted(steps, key=lambda s: s.at):
        delay = t0 + step.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            step.action()
            done.append({"at": round(step.at, 1), "step": step.label})
        except Exception as exc:
            done.append({"at": round(step.at, 1), "step": step.label, "error": f"{type(exc).__name__}: {exc}"})
    rest = t0 + until - time.monotonic()
    if rest > 0:
        time.sleep(rest)
    return done


def check_round(
    system: System, since: datetime, window: tuple[datetime, datetime], round_started: datetime, interval: int
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    from django.db import connection

    from bench.faults import checks

    connection.close()  # a fresh connection: the round may have terminated this one
    state = system.sim_state()
    violations = {
        "orders": checks.orders(state),
        "fills": checks.fills(state),
    }
    violations["books"], dust = checks.books(state, system.initial_balances)
    violations["bars"], compared = checks.bars(system, since, window, interval)
    reconciliation: list[str] = []
    info: dict[str, Any] = {"bars_compared_with_tape": compared, "balance_dust": dust}
    for _ in range(30):
        try:
            reconciliation, recon_info = checks.reconciliation(round_started)
            info["reconciliation"] = recon_info
            break
        except Exception as exc:  # another run holds the single slot: the scheduled one; wait for it
            info["reconciliation_wait"] = f"{type(exc).__name__}: {exc}"
            time.sleep(2)
    else:
        from reconciliation.models import ReconciliationRun

        held = ReconciliationRun.objects.filter(status="running").first()
        reconciliation = [
            "the reconciliation slot stayed taken for 60 s"
            + (f" by run {held.pk} ({held.trigger}, started {held.started_at.isoformat()})" if held else "")
        ]
    violations["reconciliation"] = reconciliation
    return violations, info


def campaign(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    database_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/galfriday_campaign"
    if database_url.rstrip("/").rsplit("/", 1)[-1] in FORBIDDEN:
        raise SystemExit(f"refusing to run the campaign on {database_url}: it is emptied")
    system = System(
        SystemConfig(
            database_url=database_url,
            base_port=args.port_base,
            work_dir=work,
            seed=args.seed,
            influx_database=os.environ.get("INFLUXDB_DATABASE") or "galfriday_campaign",
            bar_intervals=args.bar_intervals,
        )
    )
    os.environ.update(system.env)
    import django

    django.setup()
    from trading.models import Fill, Order

    pg = pg_dsn(database_url)
    database = database_url.rsplit("/", 1)[-1]
    schedule = [[f for f in part.split(",") if f] for part in args.schedule.split(";") if part] if args.schedule else []
    unknown = {f for part in schedule for f in part} - set(FAULTS) - set(OPT_IN)
    if unknown:
        raise SystemExit(f"unknown faults in --schedule: {sorted(unknown)}; known: {', '.join(FAULTS)}")
    rounds: list[dict[str, Any]] = []
    started_at = time.monotonic()
    startup_s = 0.0
    try:
        system.start_services()
        prepare_database(system)
        system.start_processes()
        from bench.faults.services import wait_until

        wait_until(lambda: private_subscribed(system), 120, "the ingest worker's subscriptions")
        wait_until(lambda: Order.objects.exists(), 180, "the first order (start-up reconciliation, first bars)")
        since = datetime.now(UTC)
        from bench.faults.checks import stored_bars

        first_bars = stored_bars(since - timedelta(minutes=30), since + timedelta(minutes=1))
        since = first_bars[0].time.astimezone(UTC) if first_bars else since
        startup_s = time.monotonic() - started_at
        print(f"system up after {startup_s:.0f} s: {json.dumps(system.describe())}", flush=True)
        for n in range(1, args.rounds + 1):
            if args.max_minutes and (time.monotonic() - started_at) / 60 > args.max_minutes:
                print(f"stopping after {n - 1} rounds: --max-minutes {args.max_minutes}", flush=True)
                break
            rng = random.Random(f"{args.seed}:{n}")
            chosen = rng.sample(FAULTS, rng.randint(1, args.max_faults))
            if schedule:
                chosen = schedule[(n - 1) % len(schedule)]
            steps: list[Step] = []
            for name in chosen:
                steps += steps_for(name, system, rng.uniform(1, args.active_s * 0.7), rng, pg)
            round_started = datetime.now(UTC)
            orders_before, fills_before = db_retry(lambda: (Order.objects.count(), Fill.objects.count()), "counts")
            connections_before = db_retry(partial(pg_connections, pg, database), "connections")
            t0 = time.monotonic()
            done = run_steps(steps, t0, args.active_s)
            active_end = datetime.now(UTC)
            # Quiet: every fault undone, every process running, no new decision.
            system.sim_clear_faults()
            if not system.redis.child.running():
                system.redis.start()
            if not system.influx.child.running():
                system.influx.start()
            restarted = system.ensure_running()
            from django.db import connection

            connection.close()
            from trading.models import TradingState

            state = db_retry(TradingState.objects.first, "trading state")
            state_at_end = {"state": state.state, "reason": state.reason, "by": state.changed_by} if state else {}
            db_retry(lambda: trading_set("halted", "fault campaign: the round's checks"), "halt")
            bar_end = active_end.replace(microsecond=0) - timedelta(seconds=active_end.second % BAR_SECONDS)
            waited = wait_quiet(system, bar_end, args.quiet_timeout_s)
            if args.settle_s:
                time.sleep(args.settle_s)  # repairs that wait for the exchange (the 1-minute ohlc check)
            step = args.check_interval
            lo = datetime.fromtimestamp(int(round_started.timestamp()) // step * step, UTC)
            hi = datetime.fromtimestamp(int(bar_end.timestamp()) // step * step, UTC)
            if step > BAR_SECONDS:  # the bar the round started in, and the last one closed before it ended
                lo, hi = lo - timedelta(seconds=step), max(hi, lo)
            violations, info = db_retry(partial(check_round, system, since, (lo, hi), round_started, step), "checks")
            orders_after, fills_after = db_retry(lambda: (Order.objects.count(), Fill.objects.count()), "counts")
            record = {
                "round": n,
                "faults": chosen,
                "steps": done,
                "exited_unprompted": restarted,
                "trading_at_round_end": state_at_end,
                "orders": orders_after - orders_before,
                "fills": fills_after - fills_before,
                "fills_total": fills_after,
                "quiet_wait_s": round(waited, 1),
                "pg_connections_before": connections_before,
                "pg_connections_after": db_retry(partial(pg_connections, pg, database), "connections"),
                "violations": {k: v for k, v in violations.items() if v},
                **info,
                "seconds": round(time.monotonic() - t0, 1),
            }
            rounds.append(record)
            count = sum(len(v) for v in violations.values())
            print(
                f"round {n:3d} {','.join(chosen):60s} orders {record['orders']:3d} fills {record['fills']:3d} "
                f"quiet {waited:5.1f}s recon {info.get('reconciliation', {}).get('final_run', {}).get('status')} "
                f"violations {count}",
                flush=True,
            )
            for kind, found in violations.items():
                for v in found[:5]:
                    print(f"    {kind}: {v}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps({"rounds": rounds}, indent=2, default=str))
            db_retry(partial(trading_set, "active", f"fault campaign: round {n + 1}"), "resume")
    finally:
        system.stop()
    return {
        "rounds": rounds,
        "system": system.describe(),
        "seed": args.seed,
        "active_s": args.active_s,
        "startup_s": round(startup_s, 1),
        "total_s": round(time.monotonic() - started_at, 1),
    }


def table(result: dict[str, Any]) -> str:
    rounds = result["rounds"]
    faults = Counter(f for r in rounds for f in r["faults"])
    by_check: Counter[str] = Counter()
    for r in rounds:
        for kind, found in r["violations"].items():
            by_check[kind] += len(found)
    bad = [r["round"] for r in rounds if r["violations"]]
    lines = [
        f"rounds: {len(rounds)}  faults injected: {sum(faults.values())}  "
        f"rounds with a violation: {len(bad)} {bad[:20]}",
        f"orders: {sum(r['orders'] for r in rounds)}  fills: {sum(r['fills'] for r in rounds)}  "
        f"bars compared with the tape: {sum(r.get('bars_compared_with_tape', 0) for r in rounds)}",
        "",
        "| fault | rounds |",
        "|---|---|",
        *(f"| {name} | {faults.get(name, 0)} |" for name in (*FAULTS, *OPT_IN) if name in FAULTS or faults.get(name)),
        "",
        "| check | violations |",
        "|---|---|",
        *(f"| {name} | {by_check.get(name, 0)} |" for name in ("orders", "fills", "books", "bars", "reconciliation")),
    ]
    runs: Counter[str] = Counter()
    for r in rounds:
        for status, n in r.get("reconciliation", {}).get("system_runs_by_status", {}).items():
            runs[status] += n
    corrections = sum(r.get("reconciliation", {}).get("system_corrections", 0) for r in rounds)
    dust = [abs(Decimal(v)) for r in rounds for v in r.get("balance_dust", {}).values()]
    final = Counter(r.get("reconciliation", {}).get("final_run", {}).get("status") for r in rounds)
    lines.append("")
    lines.append(
        f"final reconciliation runs: {dict(final)} (corrected: only balance rounding dust within tolerance); rounds "
        f"with balance dust before it: {sum(1 for r in rounds if r.get('balance_dust'))}, "
        f"largest {max(dust, default=0)}"
    )
    lines.append(
        f"the system's own reconciliation runs during the rounds: {dict(runs)}; discrepancies they recorded "
        f"(and corrected): {corrections}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--active-s", type=float, default=25.0, help="trading seconds per round (faults inside)")
    parser.add_argument("--max-faults", type=int, default=3, help="faults per round: 1..N (default 3)")
    parser.add_argument("--quiet-timeout-s", type=float, default=150.0)
    parser.add_argument("--settle-s", type=float, default=0.0, help="wait this long after quiet, before the checks")
    parser.add_argument(
        "--check-interval",
        type=int,
        default=BAR_SECONDS,
        help="the bar series checked for holes and against the tape (seconds; default the decision bars)",
    )
    parser.add_argument(
        "--bar-intervals",
        default="5",
        help="INGEST_BAR_INTERVALS (the first drives decisions; add 60 for the ohlc check)",
    )
    parser.add_argument(
        "--port-base", type=int, default=18710, help="Redis, InfluxDB, simulator: base .. base+5 (0: the first free)"
    )
    parser.add_argument(
        "--schedule",
        default="",
        help="fixed faults per round instead of drawn ones, rounds separated by ';', faults by ',' "
        "(e.g. 'kill:ingest,sim:gap;redis_restart'); repeated when there are more rounds (times stay seeded)",
    )
    parser.add_argument("--max-minutes", type=float, default=0.0, help="stop starting rounds after this long")
    parser.add_argument("--json", default="", help="write every round's record here")
    parser.add_argument("--keep-logs", default="", help="work directory (logs, data) to keep; default temporary")
    args = parser.parse_args()
    # SIGTERM and SIGINT (even when started in the background, where SIGINT is ignored) end the campaign through
    # its `finally`: every process it started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not args.port_base:
        args.port_base = free_port_base()
    if args.keep_logs:
        work = Path(args.keep_logs)
        work.mkdir(parents=True, exist_ok=True)
        result = campaign(args, work)
    else:
        with tempfile.TemporaryDirectory(prefix="galfriday-campaign-") as tmp:
            result = campaign(args, Path(tmp))
    print(table(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 1 if any(r["violations"] for r in result["rounds"]) or not result["rounds"] else 0


if __name__ == "__main__":
    sys.exit(main())
