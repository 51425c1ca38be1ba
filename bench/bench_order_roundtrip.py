"""Benchmark: order round trip over the private WebSocket against the simulator, on loopback.

    .venv/bin/python bench/bench_order_roundtrip.py [--orders N] [--warmup N]

The simulator (``python -m kraken_sim --market none --no-rate-limits``) runs in a child process pinned to one
CPU; the client (``KrakenWsClient``, executions subscribed, token from ``GetWebSocketsToken`` through
``KrakenRestClient``) runs here, pinned to the other. Orders are sent one at a time: a limit buy far from the
(empty) market, with a ``cl_ord_id``, then its cancel. Timed with ``perf_counter_ns`` in this process:

* ``add_order_to_ack``: ``add_order`` called → its ack returned;
* ``add_order_to_new``: ``add_order`` called → the ``new`` execution for that ``cl_ord_id`` received (the
  executions listener);
* ``cancel_to_canceled``: ``cancel_order`` called → the ``canceled`` execution received.

Prints one JSON object. No assertion on the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_ws_loopback import Child, _cpu_model, percentiles  # noqa: E402
from ingest.kraken.messages import ChannelMessage, Execution  # noqa: E402
from ingest.kraken.rest import KrakenRestClient  # noqa: E402
from ingest.kraken.ws.client import KrakenWsClient  # noqa: E402
from ingest.kraken.ws.types import WsConfig  # noqa: E402
from ingest.kraken.ws.user_stream import token_provider_from  # noqa: E402


async def bench(orders: int, warmup: int) -> dict[str, Any]:
    allowed = sorted(os.sched_getaffinity(0))
    client_cpu = allowed[0]
    sim_cpu = allowed[1] if len(allowed) > 1 else None
    os.sched_setaffinity(0, {client_cpu})
    args = ["--market", "none", "--rate", "0", "--warmup", "0", "--no-rate-limits", "--log-level", "WARNING"]
    child = Child([sys.executable, "-m", "kraken_sim", *args], sim_cpu)
    info = child.info
    seen: dict[tuple[str, str], int] = {}
    waiters: dict[tuple[str, str], asyncio.Event] = {}

    def on_executions(message: ChannelMessage[Execution]) -> None:
        now = time.perf_counter_ns()
        for item in message.items:
            key = (item.cl_ord_id or item.order_id, item.exec_type)
            seen[key] = now
            event = waiters.get(key)
            if event is not None:
                event.set()

    async def wait_for(ref: str, exec_type: str) -> int:
        key = (ref, exec_type)
        if key not in seen:
            event = waiters[key] = asyncio.Event()
            await asyncio.wait_for(event.wait(), 10)
            del waiters[key]
        return seen.pop(key)

    ack_ns: list[int] = []
    new_ns: list[int] = []
    cancel_ns: list[int] = []
    rest = KrakenRestClient(base_url=info["rest_url"], api_key=info["api_key"], api_secret=_default_secret())
    config = WsConfig(public_url=info["ws_url"], private_url=info["ws_auth_url"], watchdog_timeout_s=30.0)
    try:
        async with KrakenWsClient(config, token_provider=token_provider_from(rest)) as client:
            client.on_executions(on_executions)
            await client.subscribe_executions()
            for i in range(warmup + orders):
                cl_ord_id = f"bench-{i}"
                t0 = time.perf_counter_ns()
                ack = await client.add_order(
                    symbol="BTC/USD",
                    side="buy",
                    order_type="limit",
                    order_qty=Decimal("0.001"),
                    limit_price=Decimal("30000.0"),
                    cl_ord_id=cl_ord_id,
                )
                t_ack = time.perf_counter_ns()
                t_new = await wait_for(cl_ord_id, "new")
                t1 = time.perf_counter_ns()
                assert ack.order_id is not None
                await client.cancel_order(order_id=ack.order_id)
                t_canceled = await wait_for(cl_ord_id, "canceled")
                seen.clear()
                if i >= warmup:
                    ack_ns.append(t_ack - t0)
                    new_ns.append(t_new - t0)
                    cancel_ns.append(t_canceled - t1)
            stats = client.stats_snapshot()
    finally:
        await rest.aclose()
        child.stop()
    return {
        "benchmark": "add_order -> ack / new execution, cancel_order -> canceled, private WS, loopback",
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "client_cpu": client_cpu,
        "simulator_cpu": sim_cpu,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "orders": orders,
        "warmup_orders": warmup,
        "add_order_to_ack": percentiles(ack_ns),
        "add_order_to_new": percentiles(new_ns),
        "cancel_to_canceled": percentiles(cancel_ns),
        "gaps": stats["gaps"],
        "outcome_unknown": stats["outcome_unknown"],
    }


def _default_secret() -> str:
    from kraken_sim.config import DEFAULT_API_SECRET

    return DEFAULT_API_SECRET


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="timed orders (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed orders first (default 100)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(bench(args.orders, args.warmup)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
