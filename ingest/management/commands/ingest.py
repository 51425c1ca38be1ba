from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from galfriday_site.celery import app as celery_app
from ingest.worker import IngestConfig, IngestWorker
from timeseries import get_store


def enqueue(task: str, args: list[Any]) -> None:
    """The ingest worker's hand-over to Celery, by task name. Nothing here reads a result: without
    `ignore_result` each send would also subscribe this process to the task's result channel on Redis (a round
    trip and a subscription per bar)."""
    celery_app.send_task(task, args=args, ignore_result=True)


class Command(BaseCommand):
    help = (
        "Keep Kraken's WebSocket connections open (public market data; private executions and balances when API "
        "keys are set) and turn the stream into events, bars and time series. SIGTERM or Ctrl-C stops it cleanly."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--symbols", default=",".join(settings.INGEST_SYMBOLS), help="e.g. BTC/USD,ETH/USD")
        parser.add_argument("--depth", type=int, default=settings.INGEST_BOOK_DEPTH, choices=[10, 25, 100, 500, 1000])
        parser.add_argument(
            "--exchange",
            choices=["kraken", "sim"],
            default=settings.GALFRIDAY_EXCHANGE,
            help="informational: endpoints come from KRAKEN_*_URL (the simulator's by default with sim)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        symbols = [s.strip() for s in options["symbols"].split(",") if s.strip()]
        if not symbols or any("/" not in s for s in symbols):
            raise CommandError(f"--symbols must list WebSocket v2 symbols like BTC/USD, got {options['symbols']!r}")
        if options["exchange"] != settings.GALFRIDAY_EXCHANGE:
            raise CommandError(
                f"--exchange {options['exchange']} differs from GALFRIDAY_EXCHANGE={settings.GALFRIDAY_EXCHANGE}; "
                "set the environment instead so every process agrees"
            )
        live = settings.TRADING_MODE == "live"
        config = IngestConfig(
            symbols=symbols,
            depth=options["depth"],
            rest_url=settings.KRAKEN_REST_URL,
            ws_url=settings.KRAKEN_WS_URL,
            ws_auth_url=settings.KRAKEN_WS_AUTH_URL,
            # Private channels (executions, balances) only when trading live: in paper mode the paper broker makes
            # the fills and the exchange account is not ours to follow.
            api_key=settings.KRAKEN_API_KEY if live else "",
            api_secret=settings.KRAKEN_API_SECRET if live else "",
            var_dir=Path(settings.VAR_DIR),
            bar_intervals=tuple(settings.INGEST_BAR_INTERVALS),
            bar_closed_task=settings.INGEST_BAR_CLOSED_TASK,
            reconcile_task=settings.INGEST_RECONCILE_TASK,
            disconnect_alert_s=settings.INGEST_DISCONNECT_ALERT_SECONDS,
            decision_max_age_s=settings.GALFRIDAY_DECISION_MAX_AGE_S,
        )
        asyncio.run(self._run(config))

    async def _run(self, config: IngestConfig) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        worker = IngestWorker(config, store=get_store(), channel_layer=get_channel_layer(), enqueue=enqueue)
        self.stdout.write(f"ingest: {', '.join(config.symbols)} from {config.ws_url} (Ctrl-C stops)")
        self.stdout.flush()
        await worker.run(stop)
        self.stdout.write("ingest: stopped")
