"""Missed decisions: a closed bar must get a decision, or a record that it never will.

A live bar is handed to the decision task when it closes (:class:`~ingest.bar_feed.BarFeed`). The bars that a gap
repair closes (at start-up: the ones that closed while the worker was down; after a reconnect: while the socket
was gone) and the last bar a previous run closed (its task may have been lost at the stop) are checked after the
repair instead: each one without a decision is handed to the same task (by name; the pipeline is idempotent by
decision id) when it ended within the decision age limit, and recorded as missed (``ingest.MissedDecision``,
counted in ``decisions_missed``) when it is older. Ages are measured on the exchange's clock as the worker sees it,
the clock its bars close on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async

from ingest import services
from ingest.bar_feed import BarFeed, flush
from ingest.bars import BAR_MEASUREMENT, Bar
from ingest.checkpoint import ResumeState

__all__ = ["MissedDecisions"]

logger = logging.getLogger(__name__)


class MissedDecisions:
    """After each repair: decide what is still worth deciding, record the rest as missed."""

    def __init__(
        self,
        *,
        worker: str,
        feed: BarFeed,
        max_age_s: float,
        counters: dict[str, int],
        clock: Callable[[], datetime],
    ) -> None:
        self.worker = worker
        self.feed = feed
        self.interval = feed.intervals[0]  # the interval whose bars are decided
        self.max_age_s = max_age_s
        self.counters = counters
        self.clock = clock
        self._resumed: dict[str, datetime] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.feed.decision_task) and self.feed.handover.enabled

    def resume_from(self, resume: ResumeState) -> None:
        """At start-up: the last bar each series' previous run closed (from its checkpoint) is checked too."""
        self._resumed = {
            symbol: point.start
            for (symbol, interval), point in resume.items()
            if interval == self.interval and point.checkpointed
        }

    async def after_repair(self, symbol: str, reason: str, bars: list[Bar]) -> None:
        """A :class:`~ingest.gap_repair.GapRepair` listener: check the decision bars the repair closed."""
        if not self.enabled:
            return
        starts = {b.start for b in bars if b.interval_seconds == self.interval and not b.revision}
        resumed = self._resumed.pop(symbol, None) if reason == "startup" else None
        if resumed is not None:
            starts.add(resumed)
        if not starts:
            return
        try:
            await self._check(symbol, reason, sorted(starts))
        except Exception as exc:  # the decisions stay unchecked: logged and counted, never silent
            self.counters["decision_check_failures"] += 1
            logger.error("missed decisions not checked", extra={"symbol": symbol, "reason": reason, "error": repr(exc)})
            await sync_to_async(services.close_broken_connections)()

    async def _check(self, symbol: str, reason: str, starts: list[datetime]) -> None:
        decided = await sync_to_async(services.decided_bar_starts)(symbol=symbol, starts=starts)
        now = self.clock()
        length = timedelta(seconds=self.interval)
        flushed = False
        for start in starts:
            if start in decided:
                continue
            age_s = (now - (start + length)).total_seconds()
            if age_s <= self.max_age_s:
                if not flushed:  # persist first: the decision reads the bars it decides on
                    await flush(self.feed.writer, only={BAR_MEASUREMENT})
                    flushed = True
                self.feed.decide(symbol, start)
                self.counters["decisions_recovered"] += 1
                continue
            created = await sync_to_async(services.missed_decision_record)(
                worker=self.worker,
                symbol=symbol,
                interval_seconds=self.interval,
                bar_start=start,
                reason=reason,
                age_s=age_s,
                max_age_s=self.max_age_s,
                detected_at=now,
            )
            if created:
                self.counters["decisions_missed"] += 1
                logger.warning(
                    "bar closed without a decision, too old to decide",
                    extra={"symbol": symbol, "bar_start": start.isoformat(), "age_s": round(age_s, 3)},
                )
