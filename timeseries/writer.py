"""Batching, never-losing writer in front of a time-series store, for the ingest worker's event loop.

`add(point)` never blocks and never touches the network: points wait in memory until a batch is full
(`max_batch`) or old enough (`max_delay` seconds), then one `write_batch` runs in a worker thread so a slow store
never stalls socket reading. When the store is down the batch is spooled to local disk (one fsynced JSON-lines
file per batch, written atomically) and replayed, oldest first, once the store answers again. While anything is
spooled, new batches are spooled behind it, so a replay never overwrites a newer value (bar revisions) with an
older one. A batch the store rejects as bad data (not retryable) goes to `dead-letter/` for inspection: counted and
logged, never silently dropped. `close()` flushes, or spools what it cannot write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from timeseries.base import Point, TimeSeriesError, TimeSeriesStore
from timeseries.relational_codec import decode_fields, encode_fields

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class WriterStats:
    points_added: int = 0
    points_written: int = 0
    batches_written: int = 0
    points_spooled: int = 0
    points_replayed: int = 0
    points_dead_lettered: int = 0
    write_failures: int = 0
    last_error: str = ""


def _encode_point(point: Point) -> str:
    return json.dumps(
        {
            "m": point.measurement,
            "t": point.time.isoformat(),
            "tags": dict(point.tags),
            "f": encode_fields(point.fields),
        },
        separators=(",", ":"),
    )


def _decode_point(line: str) -> Point:
    raw: dict[str, Any] = json.loads(line)
    return Point(raw["m"], datetime.fromisoformat(raw["t"]).astimezone(UTC), decode_fields(raw["f"]), raw["tags"])


class TimeSeriesWriter:
    def __init__(
        self,
        store: TimeSeriesStore,
        *,
        spool_dir: Path,
        max_batch: int = 5000,
        max_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_thread_exit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.spool_dir = Path(spool_dir)
        self.dead_letter_dir = self.spool_dir / "dead-letter"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.max_batch = max_batch
        self.max_delay = max_delay
        self._clock = clock
        self._pending: list[Point] = []
        self._oldest: float | None = None
        self._lock = asyncio.Lock()
        # One thread of its own for the store: writes stay ordered, and a store that uses per-thread database
        # connections (the relational one) uses exactly one, which `on_thread_exit` releases at `close()`.
        self._on_thread_exit = on_thread_exit
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="timeseries-writer")
        self._wake = asyncio.Event()
        self._sequence = count()
        self._closed = False
        self.stats = WriterStats()

    # -- producer side (hot path) ------------------------------------------------------------------------
    def add(self, point: Point) -> None:
        if not self._pending:
            self._oldest = self._clock()
        self._pending.append(point)
        self.stats.points_added += 1
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def spooled_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.jsonl"))

    # -- consumer side ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Flush whenever a batch is full or old enough; retry the spool every `max_delay`. Runs until cancelled."""
        while True:
            timeout = self.max_delay
            if self._oldest is not None:
                timeout = max(0.0, self._oldest + self.max_delay - self._clock())
            with contextlib.suppress(TimeoutError):  # a timeout is the "batch is old enough" signal
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()
            await self.flush()

    async def flush(self, *, only: Collection[str] | None = None) -> None:
        """Write what is pending (replaying the spool first); spool it when the store is down.

        With `only` (measurement names) just those points are written now, ahead of the others, which stay
        pending in their order for the next batch: a closed bar is persisted before the decision pipeline is
        triggered without waiting for the second of trades queued with it. Points of one measurement never
        overtake each other (and an identity is within one measurement), so replacement order is kept."""
        async with self._lock:
            if only is None:
                batch, self._pending, self._oldest = self._pending, [], None
            else:
                batch = [p for p in self._pending if p.measurement in only]
                if len(batch) == len(self._pending):
                    self._pending, self._oldest = [], None
                elif batch:
                    self._pending = [p for p in self._pending if p.measurement not in only]
            if self._closed:  # points added after close (a late bar): kept on disk, replayed by the next run
                if batch:
                    await asyncio.to_thread(self._spool, batch)
                return
            replayed_all = await self._replay_spool()
            if not batch:
                return
            if not replayed_all:
                await asyncio.to_thread(self._spool, batch)
                return
            await self._write_or_spool(batch)

    async def close(self) -> None:
        """Flush (or spool) everything, then release the store's resources in the writer's thread."""
        await self.flush()
        close = getattr(self.store, "close", None)
        if close is not None:
            await self._in_thread(close)
        if self._on_thread_exit is not None:
            await self._in_thread(self._on_thread_exit)
        self._closed = True
        self._executor.shutdown(wait=True)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- internals -------------------------------------------------------------------------------------
    async def _write_or_spool(self, batch: list[Point]) -> None:
        try:
            await self._in_thread(self.store.write_batch, batch)
        except TimeSeriesError as exc:
            self._record_failure(exc, len(batch))
            if exc.retryable:
                await asyncio.to_thread(self._spool, batch)
            else:
                await asyncio.to_thread(self._dead_letter, batch, str(exc))
            return
        self.stats.points_written += len(batch)
        self.stats.batches_written += 1

    async def _replay_spool(self) -> bool:
        """Replay spooled batches oldest first; False as soon as one cannot be written (the rest stays)."""
        for path in self.spooled_files():
            batch = await asyncio.to_thread(self._read_spool, path)
            try:
                await self._in_thread(self.store.write_batch, batch)
            except TimeSeriesError as exc:
                self._record_failure(exc, len(batch))
                if exc.retryable:
                    return False
                await asyncio.to_thread(self._dead_letter, batch, str(exc))
            else:
                self.stats.points_replayed += len(batch)
                self.stats.points_written += len(batch)
                self.stats.batches_written += 1
                logger.info("replayed spooled time-series batch", extra={"file": path.name, "points": len(batch)})
            path.unlink()
        return True

    def _record_failure(self, exc: TimeSeriesError, points: int) -> None:
        self.stats.write_failures += 1
        self.stats.last_error = str(exc)
        logger.warning(
            "time-series write failed", extra={"error": str(exc), "points": points, "retryable": exc.retryable}
        )

    def _write_file(self, directory: Path, batch: list[Point]) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{next(self._sequence):06d}.jsonl"
        final = directory / name
        partial = directory / (name + ".partial")
        with partial.open("w", encoding="utf-8") as handle:
            handle.writelines(_encode_point(p) + "\n" for p in batch)
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(final)
        return final

    def _spool(self, batch: list[Point]) -> None:
        path = self._write_file(self.spool_dir, batch)
        self.stats.points_spooled += len(batch)
        logger.warning("time-series batch spooled to disk", extra={"file": path.name, "points": len(batch)})

    def _dead_letter(self, batch: list[Point], reason: str) -> None:
        path = self._write_file(self.dead_letter_dir, batch)
        path.with_suffix(".reason").write_text(reason)
        self.stats.points_dead_lettered += len(batch)
        logger.error("time-series batch rejected; kept in dead-letter", extra={"file": path.name, "reason": reason})

    @staticmethod
    def _read_spool(path: Path) -> list[Point]:
        with path.open(encoding="utf-8") as handle:
            return [_decode_point(line) for line in handle if line.strip()]
