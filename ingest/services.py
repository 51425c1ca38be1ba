"""The ingest worker's writes to the database (sync: called from the worker's event loop through a thread).

Kept off the market-data hot path: quotes are flushed on a timer, execution reports go through the journal
first, and the heartbeat is written every few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from core.audit import audit_actor
from ingest.journal import Journal
from ingest.kraken.messages import BalanceUpdate, Execution
from ingest.kraken.rest_types import AssetPair
from ingest.models import BackfillRecord, IngestStatus, MissedDecision
from trading.accounts import balance_set
from trading.alerts import alert_raise
from trading.execution_reports import execution_report_apply
from trading.executions import ExecutionEvent, InvalidExecutionEvent
from trading.instruments import instrument_sync_from_asset_pair, market_quote_set
from trading.models import Instrument
from trading.selectors import decision_list

logger = logging.getLogger(__name__)
ACTOR = "ingest"


def instruments_sync(*, pairs: Iterable[AssetPair], symbols: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Upsert the instruments of `symbols` from REST AssetPairs; returns their (price, qty) precisions."""
    wanted = set(symbols)
    precisions: dict[str, tuple[int, int]] = {}
    with audit_actor(ACTOR, reason="instrument sync at start-up"):
        for pair in pairs:
            if not pair.wsname:
                continue
            instrument = instrument_sync_from_asset_pair(pair=pair)
            if instrument.symbol in wanted:
                precisions[instrument.symbol] = (instrument.price_precision, instrument.qty_precision)
    missing = wanted - set(precisions)
    if missing:
        raise ValueError(f"the exchange does not list {', '.join(sorted(missing))}")
    return precisions


def quotes_flush(quotes: Mapping[str, tuple[Decimal, Decimal, datetime]]) -> int:
    """Write the latest top of book per symbol (the risk manager's mid and its age)."""
    written = 0
    instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in=list(quotes))}
    for symbol, (bid, ask, at) in quotes.items():
        instrument = instruments.get(symbol)
        if instrument is None or bid <= 0 or ask < bid:
            continue
        market_quote_set(instrument=instrument, bid=bid, ask=ask, at=at)
        written += 1
    return written


@dataclass(slots=True)
class JournalResult:
    applied: int = 0
    invalid: int = 0
    failed: int = 0


def executions_apply_pending(journal: Journal) -> JournalResult:
    """Apply every journaled execution report not yet applied, in order. A database failure stops the pass
    (the rest stays journaled for the next one); an invalid report is logged, counted and skipped."""
    result = JournalResult()
    for seq, record in journal.pending():
        try:
            event = ExecutionEvent.from_json(record)
        except (InvalidExecutionEvent, KeyError, TypeError, ValueError) as exc:
            logger.error("invalid journaled execution report skipped", extra={"seq": seq, "error": str(exc)})
            result.invalid += 1
            journal.mark_applied(seq)
            continue
        try:
            execution_report_apply(event=event, actor=ACTOR)
        except DatabaseError as exc:
            logger.warning("execution report not applied yet", extra={"seq": seq, "error": str(exc)})
            result.failed += 1
            close_old_connections()
            break
        journal.mark_applied(seq)
        result.applied += 1
    return result


def execution_to_record(execution: Execution) -> dict[str, Any] | None:
    """The journal record of a Kraken execution message (None when it cannot be normalised)."""
    try:
        return ExecutionEvent.from_kraken(execution).to_json()
    except InvalidExecutionEvent as exc:
        logger.error(
            "execution message cannot be normalised", extra={"order_id": execution.order_id, "error": str(exc)}
        )
        return None


def balances_apply(
    updates: Iterable[BalanceUpdate], *, snapshot: bool, as_of: datetime | None, received: datetime
) -> int:
    """Apply what the `balances` channel says, without counting a trade twice.

    Fills already move balances (`execution_report_apply`), so a `trade` ledger entry is not applied again. A
    snapshot (on every (re)subscription) states the exchange's balance as of `as_of` (the exchange's time of the
    subscription; the receipt time when unknown), and so does the resulting balance of any other ledger entry
    (deposit, withdrawal, staking, reward, ...) as of its time: `balance_set` counts each fill once whichever of
    the statement and the fill comes first. Reconciliation corrects any drift."""
    applied = 0
    for update in updates:
        if not snapshot and update.type == "trade":
            continue
        stated = (as_of if snapshot else update.timestamp) or received
        balance_set(asset=update.asset, total=update.balance, actor=ACTOR, as_of=stated)
        applied += 1
    return applied


def status_save(
    *,
    name: str,
    connection_state: str,
    exchange_status: str,
    symbols: list[str],
    stats: dict[str, Any],
    last_message_at: datetime | None,
    disconnected_since: datetime | None,
    started_at: datetime,
    now: datetime,
) -> None:
    IngestStatus.objects.update_or_create(
        name=name,
        defaults={
            "connection_state": connection_state,
            "exchange_status": exchange_status,
            "symbols": symbols,
            "stats": stats,
            "last_message_at": last_message_at,
            "disconnected_since": disconnected_since,
            "started_at": started_at,
            "updated_at": now,
        },
    )


def disconnection_alert(*, name: str, since: datetime, now: datetime) -> None:
    alert_raise(
        kind="exchange_disconnected",
        severity="critical",
        message=f"ingest worker {name} has been disconnected from the exchange since {since.isoformat()}",
        context={"worker": name, "since": since.isoformat(), "seconds": int((now - since).total_seconds())},
        fingerprint=f"exchange_disconnected:{name}",  # alerting.rules.ingest resolves it on reconnection
    )


def close_broken_connections() -> None:
    """Drop this thread's database connections that a database restart (or `pg_terminate_backend`) broke, so
    the next query reconnects instead of failing forever."""
    close_old_connections()


def backfill_record_save(
    *,
    worker: str,
    symbol: str,
    reason: str,
    source: str,
    gap_start: datetime,
    gap_end: datetime | None,
    rest_calls: int,
    trades_fetched: int,
    trades_added: int,
    ohlc_bars: int,
    bars_written: int,
    error: str,
    started_at: datetime,
) -> BackfillRecord:
    """Record one gap repair (done, or failed with its error)."""
    return BackfillRecord.objects.create(
        worker=worker,
        symbol=symbol,
        reason=reason,
        source=source,
        gap_start=gap_start,
        gap_end=gap_end if gap_end is None or gap_end >= gap_start else gap_start,
        rest_calls=rest_calls,
        trades_fetched=trades_fetched,
        trades_added=trades_added,
        ohlc_bars=ohlc_bars,
        bars_written=bars_written,
        status=BackfillRecord.Status.FAILED if error else BackfillRecord.Status.DONE,
        error=error,
        started_at=started_at,
        finished_at=timezone.now(),
    )


def decided_bar_starts(*, symbol: str, starts: list[datetime]) -> set[datetime]:
    """Which of `symbol`'s bars (by start) have a decision already (any model version, any status)."""
    if not starts:
        return set()
    decisions = decision_list(filters={"symbol": symbol, "bar_after": min(starts)}).filter(bar_time__in=starts)
    return set(decisions.values_list("bar_time", flat=True))


def missed_decision_record(
    *,
    worker: str,
    symbol: str,
    interval_seconds: int,
    bar_start: datetime,
    reason: str,
    age_s: float,
    max_age_s: float,
    detected_at: datetime,
) -> bool:
    """Record that a closed bar was found without a decision, too old to decide; once per bar. True if new."""
    _, created = MissedDecision.objects.get_or_create(
        symbol=symbol,
        interval_seconds=interval_seconds,
        bar_start=bar_start,
        defaults={
            "worker": worker,
            "bar_end": bar_start + timedelta(seconds=interval_seconds),
            "reason": reason,
            "age_seconds": Decimal(str(round(age_s, 3))),
            "max_age_seconds": Decimal(str(round(max_age_s, 3))),
            "detected_at": detected_at,
        },
    )
    return created
