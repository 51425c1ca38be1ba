"""What an operator watches of the ingest worker: message rates, exchange-to-receive lag, reconnects, queue depths,
drops, repairs and checks, written every few seconds as the heartbeat row (``ingest.IngestStatus``, which
``/api/health/`` and ``/metrics`` read), and the alert for a disconnection that lasts too long."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async

from ingest import services
from ingest.bar_feed import BarFeed
from ingest.events import utcnow
from ingest.journal import Journal
from ingest.kraken.ws.client import KrakenWsClient
from ingest.kraken.ws.types import ConnectionState
from ingest.publisher import EventPublisher
from timeseries.writer import TimeSeriesWriter

__all__ = ["Health"]

logger = logging.getLogger(__name__)

_LAG_WINDOW = 2048


class Health:
    """Rates, lag windows and the disconnection clock of one worker, and its heartbeat."""

    def __init__(
        self,
        *,
        name: str,
        symbols: list[str],
        ws: KrakenWsClient,
        writer: TimeSeriesWriter,
        publisher: EventPublisher,
        journal: Journal,
        feed: BarFeed,
        counters: dict[str, int],
        disconnect_alert_s: float,
        sections: Callable[[], dict[str, Any]],
    ) -> None:
        self.name = name
        self.symbols = symbols
        self.ws = ws
        self.writer = writer
        self.publisher = publisher
        self.journal = journal
        self.feed = feed
        self.counters = counters
        self.disconnect_alert_s = disconnect_alert_s
        self.sections = sections  # the worker's own parts (queues, repairs, checks, decisions)
        self.started_at = utcnow()
        self.lags: dict[str, deque[float]] = {"trade": deque(maxlen=_LAG_WINDOW), "book": deque(maxlen=_LAG_WINDOW)}
        self.disconnected_since: datetime | None = None
        self._alerted = False
        self._rates: dict[str, float] = {}
        self._rate_base: tuple[float, dict[str, int]] | None = None

    def lag(self, channel: str, milliseconds: float) -> None:
        self.lags[channel].append(milliseconds)

    def connection_changed(self, new: ConnectionState, now: datetime) -> None:
        """Start or stop the disconnection clock (all endpoints connected stops it)."""
        if new == ConnectionState.CONNECTED and self.ws.connection_state == ConnectionState.CONNECTED:
            self.disconnected_since = None
            self._alerted = False
        elif new != ConnectionState.CONNECTED and self.disconnected_since is None and not self.ws.closing:
            self.disconnected_since = now

    def _update_rates(self) -> None:
        """Messages per second per channel since the previous heartbeat."""
        now = time.monotonic()
        counts = dict(self.ws.stats.messages)
        if self._rate_base is not None:
            elapsed = now - self._rate_base[0]
            if elapsed > 0:
                base = self._rate_base[1]
                self._rates = {k: round((v - base.get(k, 0)) / elapsed, 3) for k, v in counts.items()}
        self._rate_base = (now, counts)

    async def beat(self) -> None:
        """Write the heartbeat row (best effort: a database outage shows as a stale row) and raise the alert for
        a disconnection longer than the limit, once."""
        now = utcnow()
        self._update_rates()
        stats = self.stats()
        last_ns = self.ws.stats.last_message_ns
        try:
            await sync_to_async(services.status_save)(
                name=self.name,
                connection_state=self.ws.connection_state.value,
                exchange_status=self.ws.exchange_status.value,
                symbols=self.symbols,
                stats=stats,
                last_message_at=datetime.fromtimestamp(last_ns / 1e9, UTC) if last_ns else None,
                disconnected_since=self.disconnected_since,
                started_at=self.started_at,
                now=now,
            )
            since = self.disconnected_since
            if since is not None and not self._alerted and (now - since).total_seconds() >= self.disconnect_alert_s:
                await sync_to_async(services.disconnection_alert)(name=self.name, since=since, now=now)
                self._alerted = True
        except Exception as exc:  # the heartbeat is best effort: a database outage shows as a stale row
            self.counters["heartbeat_failures"] += 1
            logger.warning("heartbeat not written", extra={"error": repr(exc)})
            # A restarted database leaves this thread's connection broken: drop it so the next beat reconnects.
            await sync_to_async(services.close_broken_connections)()

    def stats(self) -> dict[str, Any]:
        """Everything the heartbeat row carries."""
        ws = self.ws.stats_snapshot()
        ws.pop("lag", None)
        return {
            "health": self.health(ws),
            "ws": ws,
            "ingest": dict(self.counters),
            "writer": {**asdict(self.writer.stats), "pending": self.writer.pending},
            "spooled_files": len(self.writer.spooled_files()),
            "journal_pending": len(self.journal.pending()),
            "published": dict(self.publisher.published),
            "dropped_events": dict(self.publisher.dropped),
            "bars": {f"{symbol}@{interval}s": asdict(b.stats) for (symbol, interval), b in self.feed.builders.items()},
        }

    def health(self, ws: dict[str, Any] | None = None) -> dict[str, Any]:
        """What an operator watches (heartbeat row, `/api/health/` details, `/metrics`): rates, exchange-to-receive
        lag percentiles over the last ~2000 messages, reconnects, checksum failures, queue depths, drops, repairs."""
        ws = ws if ws is not None else self.ws.stats_snapshot()
        lag: dict[str, dict[str, float | int]] = {}
        for channel, window in self.lags.items():
            if window:
                ordered = sorted(window)
                lag[channel] = {
                    "p50": round(ordered[(len(ordered) - 1) // 2], 3),
                    "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
                    "samples": len(ordered),
                }
        sections = self.sections()
        return {
            "messages_per_s": dict(self._rates),
            "lag_ms": lag,
            "reconnects": ws.get("reconnects", 0),
            "checksum_failures": ws.get("checksum_failures", 0),
            "malformed_messages": sum(ws.get("malformed", {}).values()),
            "unknown_messages": sum(ws.get("unknown", {}).values()),
            "last_message_at": ws.get("last_message_at"),
            "queues": {
                "timeseries_pending": self.writer.pending,
                "timeseries_spooled_files": len(self.writer.spooled_files()),
                "held_trades": self.feed.held_trades,
                "events_pending": getattr(self.publisher, "pending", 0),
                "listener_tasks": self.ws.listener_tasks,
                **sections.pop("queues", {}),
            },
            "dropped": {
                "events": sum(self.publisher.dropped.values()),
                "late_trades": sum(b.stats.late_dropped for b in self.feed.builders.values()),
                "timeseries_dead_lettered": self.writer.stats.points_dead_lettered,
            },
            **sections,
        }
