"""The private channels of the ingest worker: each ``executions`` message is journaled (fsynced) first, then applied
to orders, fills and positions in a database thread, then published; ``balances`` are applied, then published. The
journal makes an execution durable before anything else: what a crash leaves unapplied is applied at the next
start (:meth:`PrivateStream.apply_journal`)."""

from __future__ import annotations

import asyncio
import logging
import time

from asgiref.sync import sync_to_async

from core.metrics import EXECUTION_REPORT_COMMIT
from ingest import services
from ingest.events import BalanceEvent, OrderUpdateEvent, utcnow
from ingest.journal import Journal
from ingest.kraken.messages import BalanceUpdate, ChannelMessage, Execution
from ingest.publisher import EventPublisher

__all__ = ["PrivateStream"]

logger = logging.getLogger(__name__)


class PrivateStream:
    """Executions and balances from the private socket into the database, then onto the channel layer."""

    def __init__(self, journal: Journal, publisher: EventPublisher, counters: dict[str, int]) -> None:
        self.journal = journal
        self.publisher = publisher
        self.counters = counters
        self._apply_lock = asyncio.Lock()

    async def on_executions(self, message: ChannelMessage[Execution]) -> None:
        received = utcnow()
        started = time.perf_counter()
        records = []
        for execution in message.items:
            record = services.execution_to_record(execution)
            if record is None:
                self.counters["executions_invalid"] += 1
                continue
            records.append(record)
        if records and not self._apply_lock.locked():
            # The usual case (no apply pass in flight): journal the message's items (one fsync) and apply them in
            # one hop to the database thread. The lock is free, so taking it does not wait: journaling is never
            # held up by a pass. The events are published after the commit, as below.
            def journal_then_apply() -> services.JournalResult:
                self.journal.append_many(records)
                return services.executions_apply_pending(self.journal)

            async with self._apply_lock:
                result = await sync_to_async(journal_then_apply)()
            self.counters["executions_journaled"] += len(records)
            self.counters["executions_applied"] += result.applied
            self.counters["executions_invalid"] += result.invalid
            self.counters["execution_apply_failures"] += result.failed
            if result.applied:  # from the frame's handler to its effect committed: a latency target
                EXECUTION_REPORT_COMMIT.observe(time.perf_counter() - started)
        else:
            if records:  # journaled at once (durable), applied after the pass in flight
                await asyncio.to_thread(self.journal.append_many, records)
                self.counters["executions_journaled"] += len(records)
            await self.apply_journal()
        # After the commit, handed to the publisher's sender task (in order, batched): the next message is not
        # held up by the Redis round trip. Lossy like the layer itself (a full queue is counted as dropped).
        for execution in message.items:
            self.publisher.submit(
                OrderUpdateEvent(
                    execution.order_id,
                    execution.cl_ord_id,
                    execution.exec_type,
                    execution.order_status,
                    execution.symbol,
                    execution.last_qty,
                    execution.last_price,
                    execution.timestamp,
                    received,
                )
            )

    async def apply_journal(self) -> None:
        async with self._apply_lock:
            result = await sync_to_async(services.executions_apply_pending)(self.journal)
        self.counters["executions_applied"] += result.applied
        self.counters["executions_invalid"] += result.invalid
        self.counters["execution_apply_failures"] += result.failed

    async def on_balances(self, message: ChannelMessage[BalanceUpdate]) -> None:
        received = utcnow()
        try:
            applied = await sync_to_async(services.balances_apply)(
                message.items, snapshot=message.type == "snapshot", as_of=message.as_of, received=received
            )
            self.counters["balance_updates"] += applied
        except Exception as exc:  # the next snapshot or reconciliation restates balances; counted and logged
            self.counters["balance_failures"] += 1
            logger.error("balances not applied", extra={"error": repr(exc)})
        for item in message.items:
            await self.publisher.publish(
                BalanceEvent(item.asset, item.balance, item.amount, item.ledger_id, item.timestamp, received)
            )
