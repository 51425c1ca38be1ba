"""Where each bar series stopped, for the next start: the last closed bar per series, recorded once it is written
or spooled (durable) in ``var/ingest-bars.json``; at start-up, that file, else the store's latest bar."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from django.db import connections

from ingest.bar_feed import flush
from ingest.bars import BAR_MEASUREMENT
from timeseries.writer import TimeSeriesWriter

__all__ = ["BarCheckpoint", "ResumePoint", "ResumeState", "interval_label"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """The last bar a previous run stored for one series: its start and close, and whether it came from the
    checkpoint (a bar an ingest run closed) or from the store."""

    start: datetime
    close: Decimal
    checkpointed: bool = True


#: Per (symbol, interval seconds): where that series stopped.
ResumeState = dict[tuple[str, int], ResumePoint]


def interval_label(interval: int) -> str:
    """The store's `interval` tag: ``1m`` for 60 s, ``5s`` for 5 s."""
    return f"{interval // 60}m" if interval % 60 == 0 else f"{interval}s"


class BarCheckpoint:
    """The durability checkpoint of the last closed bar per series."""

    def __init__(self, path: Path, writer: TimeSeriesWriter, counters: dict[str, int]) -> None:
        self.path = path
        self.writer = writer
        self.counters = counters
        #: What the file holds (`symbol@interval` → start, close).
        self.saved: dict[str, tuple[str, str]] = {}

    def _read(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a damaged checkpoint: fall back to the store's latest bars
            logger.warning("bar checkpoint unreadable", extra={"error": repr(exc)})
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, tuple[str, str]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    async def save(self, last_closed: dict[str, tuple[str, str]]) -> None:
        """Record ``last_closed`` once every bar in it is written or spooled (durable), for the next start."""
        snapshot = dict(last_closed)
        if all(self.saved.get(k) == v for k, v in snapshot.items()):
            return
        await flush(self.writer)  # every bar in `snapshot` was added before: now written or spooled
        merged = {**self.saved, **snapshot}
        try:
            await asyncio.to_thread(self._write, merged)
        except OSError as exc:
            self.counters["checkpoint_failures"] += 1
            logger.warning("bar checkpoint not written", extra={"error": repr(exc)})
            return
        self.saved = merged

    def _store_latest(self, keys: list[tuple[str, int]]) -> ResumeState:
        found: ResumeState = {}
        try:
            for symbol, interval in keys:
                point = self.writer.store.latest(
                    BAR_MEASUREMENT, {"symbol": symbol, "interval": interval_label(interval)}
                )
                if point is not None and isinstance(point.fields.get("close"), Decimal):
                    found[(symbol, interval)] = ResumePoint(
                        point.time.astimezone(UTC), Decimal(point.fields["close"]), checkpointed=False
                    )
        finally:
            connections.close_all()  # this thread's connection (relational store)
        return found

    async def resume_points(self, series: list[tuple[str, int]]) -> ResumeState:
        """Where each series stopped in a previous run: the checkpoint file, else the store's latest bar."""
        checkpoint = await asyncio.to_thread(self._read)
        points: ResumeState = {}
        missing: list[tuple[str, int]] = []
        for symbol, interval in series:
            entry = checkpoint.get(f"{symbol}@{interval}")
            try:
                points[(symbol, interval)] = ResumePoint(datetime.fromisoformat(entry[0]), Decimal(entry[1]))  # type: ignore[index]
            except (TypeError, ValueError, ArithmeticError, IndexError):
                missing.append((symbol, interval))
        if missing:
            try:
                points.update(await asyncio.to_thread(self._store_latest, missing))
            except Exception as exc:  # store down at start-up: repair from the current bar only (logged, recorded)
                logger.warning("latest stored bars not readable", extra={"error": repr(exc)})
        self.saved = {f"{s}@{i}": (p.start.isoformat(), str(p.close)) for (s, i), p in points.items()}
        return points
