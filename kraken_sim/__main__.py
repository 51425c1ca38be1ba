"""``python -m kraken_sim``: run the simulator until SIGINT/SIGTERM.

On start it prints one JSON line to stdout with the bound URLs and ports (useful with port 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from kraken_sim.config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_BALANCES,
    TIERS,
    SimConfig,
    parse_balances,
    parse_market,
)
from kraken_sim.errors import ConfigError
from kraken_sim.instruments import CATALOGUE, DEFAULT_SYMBOLS, UnknownInstrumentError
from kraken_sim.scenarios import scenario_help
from kraken_sim.server import Simulator
from kraken_sim.wire import dumps

log = logging.getLogger("kraken_sim")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kraken_sim",
        description="A local Kraken (REST + WebSocket v2).",
        epilog="scenarios (--scenario NAME[:k=v,...]; vol and drift per minute, log returns):\n"
        + scenario_help()
        + "\n\nGround truth of the running scenario: GET /_sim/scenario?horizon=15 (see kraken_sim/README.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--rest-port", type=int, default=0, help="REST + admin port (0: any free port)")
    p.add_argument("--ws-port", type=int, default=0, help="public WebSocket port, path /v2 (0: any)")
    p.add_argument("--ws-auth-port", type=int, default=0, help="private WebSocket port, path /v2 (0: any)")
    p.add_argument("--seed", type=int, default=1, help="seed for the market and identifiers (default 1)")
    p.add_argument(
        "--instruments",
        default=",".join(DEFAULT_SYMBOLS),
        help=f"comma-separated v2 symbols (default {','.join(DEFAULT_SYMBOLS)}; known: {','.join(CATALOGUE)})",
    )
    p.add_argument("--balances", default=DEFAULT_BALANCES, help=f"starting balances (default {DEFAULT_BALANCES})")
    p.add_argument("--api-key", default=DEFAULT_API_KEY, help=f"API key (default {DEFAULT_API_KEY})")
    p.add_argument(
        "--api-secret",
        default=DEFAULT_API_SECRET,
        help="base64 API secret (default: the public example secret of Kraken's docs)",
    )
    p.add_argument("--tier", choices=sorted(TIERS), default="intermediate", help="rate-limit tier")
    p.add_argument("--no-rate-limits", action="store_true", help="do not enforce REST/trading rate limits")
    p.add_argument(
        "--history-cost",
        type=int,
        choices=(2, 4),
        default=2,
        help="REST counter cost of TradesHistory/Ledgers calls (default 2)",
    )
    p.add_argument("--market", default="generate", help="generate | replay:FILE | none (default generate)")
    p.add_argument("--no-replay-loop", action="store_true", help="stop at the end of a replay instead of looping")
    p.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="market steps per second per instrument (replay: messages per second; default 10)",
    )
    p.add_argument("--warmup", type=int, default=600, help="back-dated generator steps before start (default 600)")
    p.add_argument(
        "--warmup-seconds",
        type=float,
        default=3600.0,
        help="how far back the warm-up starts, i.e. how much OHLC/trade history exists at start (default 3600)",
    )
    p.add_argument(
        "--scenario",
        default="regimes",
        help="market scenario NAME[:k=v,...] of the generated market (default regimes; list below)",
    )
    p.add_argument(
        "--history-days",
        type=float,
        default=0.0,
        help="days of back-dated 1-minute history of the scenario's path, served by REST Trades/OHLC "
        "(replaces the warm-up; needs a scenario other than regimes; default 0)",
    )
    p.add_argument("--no-ws-compression", action="store_true", help="refuse permessage-deflate on WebSockets")
    p.add_argument(
        "--ws-queue-limit",
        type=int,
        default=20_000,
        help="messages buffered per WebSocket connection before a slow consumer is dropped (default 20000)",
    )
    p.add_argument("--record", action="store_true", help="keep every public message sent (GET /_sim/state)")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO, to stderr)")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The options as a ``SimConfig``; ``Simulator`` checks it as a whole (``config.check_config``)."""
    symbols = tuple(s.strip() for s in args.instruments.split(",") if s.strip())
    market, replay_file = parse_market(args.market)
    return SimConfig(
        host=args.host,
        rest_port=args.rest_port,
        ws_port=args.ws_port,
        ws_auth_port=args.ws_auth_port,
        seed=args.seed,
        instruments=symbols,
        balances=parse_balances(args.balances),
        api_key=args.api_key,
        api_secret=args.api_secret,
        tier=TIERS[args.tier],
        enforce_rate_limits=not args.no_rate_limits,
        history_call_cost=args.history_cost,
        market=market,
        replay_file=replay_file,
        replay_loop=not args.no_replay_loop,
        rate=args.rate,
        warmup_steps=args.warmup,
        warmup_seconds=args.warmup_seconds,
        scenario=args.scenario,
        history_days=args.history_days,
        record_messages=args.record,
        ws_compression=not args.no_ws_compression,
        ws_queue_limit=args.ws_queue_limit,
    )


async def run(config: SimConfig) -> None:
    sim = Simulator(config)
    await sim.start()
    sys.stdout.write(dumps(sim.endpoints()) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        config = config_from_args(args)
        asyncio.run(run(config))
    except (ConfigError, UnknownInstrumentError, ValueError) as exc:
        sys.stderr.write(f"kraken_sim: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
