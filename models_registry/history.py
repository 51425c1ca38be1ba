"""Bar history for training: backfill 1-minute OHLC from the exchange REST API into the time-series store, and
load a window of stored bars as the DataFrame the feature code takes.

Backfill
    ``OHLC`` (``KrakenRestClient.ohlc``) returns at most 720 rows after ``since`` (exclusive) and ``last``, the
    start of the newest committed bar; rows after ``last`` are still forming and are not written. Pages are
    followed with ``since = last`` until no new committed bar comes back (or ``max_calls``). Kraken (and the
    simulator) keep only the last 720 bars of an interval, so a backfill reaches back about 12 hours of 1-minute
    bars; older history must come from the store (the ingest worker's bars).

    Bars are written as ``ingest.bars.Bar(...).to_point()`` (measurement ``bars``, tags symbol and interval
    ``1m``, revision 0). A bar already in the store is left alone (the ingest worker's bar, possibly revised by
    late trades, is at least as good), so a second run writes nothing. A minute inside the fetched span without
    a row (no trade on the exchange) is written as a flat bar at the previous close with zero volume, the rule
    the live bar builder applies to quiet intervals, so backfilled and live series look alike. Every run is
    recorded as a :class:`~models_registry.models.HistoryBackfill` row.

Loading
    :func:`load_bars` reads ``[start, end)`` of one symbol's 1-minute bars, converts the Decimal fields to float
    (the feature boundary), and fills the minutes missing inside the window the same way (flat bars), returning
    how many were filled so lineage can show it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pandas as pd
from django.conf import settings
from django.utils import timezone

from ingest.bars import BAR_MEASUREMENT, Bar, BarBuilder
from ingest.gaps import TRADES_PAGE, ohlc_committed, trade_from_rest
from ingest.kraken.rest import KrakenRestClientSync
from models_registry.models import HistoryBackfill
from timeseries import TimeSeriesStore, get_store
from timeseries.base import query_fields
from trading.models import Instrument

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 60
INTERVAL_LABEL = "1m"
OHLC_MAX_ROWS = 720
DEFAULT_MAX_CALLS = 50
BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "vwap", "trades")


class OhlcClient(Protocol):
    """What the backfill needs of the exchange client (``KrakenRestClientSync`` satisfies it)."""

    def ohlc(self, pair: str, *, interval: int = 1, since: int | None = None) -> Any: ...


class HistoryError(Exception):
    """The exchange or the store could not provide the history asked for."""


def bar_tags(symbol: str) -> dict[str, str]:
    return {"symbol": symbol, "interval": INTERVAL_LABEL}


def _utc(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {moment!r}")
    return moment.astimezone(UTC)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(frozen=True)
class BackfillResult:
    symbol: str
    calls: int
    fetched: int
    written: int
    already_stored: int
    gaps_filled: int
    first_bar: datetime | None
    last_bar: datetime | None
    record_id: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "calls": self.calls,
            "fetched": self.fetched,
            "written": self.written,
            "already_stored": self.already_stored,
            "gaps_filled": self.gaps_filled,
            "first_bar": self.first_bar.isoformat() if self.first_bar else None,
            "last_bar": self.last_bar.isoformat() if self.last_bar else None,
            "record_id": self.record_id,
        }


def default_client() -> Any:
    """A REST client for the configured exchange (public calls only: no key needed). Close it when done."""
    return KrakenRestClientSync(base_url=settings.KRAKEN_REST_URL, timeout=float(settings.KRAKEN_TIMEOUT))


def _fetch(client: OhlcClient, symbol: str, since: int | None, end: int | None, max_calls: int) -> tuple[dict, int]:
    """Committed bars by start time (epoch seconds) after `since` and before `end`, and the number of calls."""
    bars: dict[int, Any] = {}
    cursor = since
    calls = 0
    while calls < max_calls:
        result = client.ohlc(symbol, interval=1, since=cursor)
        calls += 1
        committed = ohlc_committed(result, cursor)
        for bar in committed:
            if end is None or bar.time < end:
                bars[bar.time] = bar
        if not committed or (cursor is not None and result.last <= cursor):
            break
        cursor = result.last
        if end is not None and cursor >= end:
            break
    return bars, calls


def _to_bar(symbol: str, raw: Any) -> Bar:
    return Bar(
        symbol=symbol,
        interval_seconds=INTERVAL_SECONDS,
        start=_from_epoch(raw.time),
        open=raw.open,
        high=raw.high,
        low=raw.low,
        close=raw.close,
        volume=raw.volume,
        vwap=raw.vwap,
        trades=int(raw.count),
    )


def _flat_bar(symbol: str, start: int, close: Decimal) -> Bar:
    zero = Decimal(0)
    return Bar(symbol, INTERVAL_SECONDS, _from_epoch(start), close, close, close, close, zero, close, 0)


def _backfill(
    *,
    symbol: str,
    start: datetime | None,
    end: datetime | None,
    source: str,
    client: Any,
    store: TimeSeriesStore | None,
    fetch: Any,
    label: str,
) -> BackfillResult:
    """What both backfills do around their fetch: a ``HistoryBackfill`` row for the run, the bars the store lacks
    written (a stored bar is left alone: the ingest worker's, possibly revised, is at least as good), the
    counts, a failure recorded and raised as `HistoryError`, the client closed when it was made here.

    `fetch(rest) -> (bars in time order, minutes filled as flat bars, calls made)`."""
    store = store or get_store()
    own_client = client is None
    rest: Any = default_client() if client is None else client
    record = HistoryBackfill.objects.create(
        symbol=symbol,
        interval=INTERVAL_LABEL,
        source=source,
        requested_start=start,
        requested_end=end,
        started_at=timezone.now(),
    )
    calls = written = 0
    try:
        bars, filled, calls = fetch(rest)
        record.calls = calls
        stored: set[datetime] = set()
        if bars:
            existing = store.query_range(
                BAR_MEASUREMENT, bars[0].start, bars[-1].start + timedelta(seconds=INTERVAL_SECONDS), bar_tags(symbol)
            )
            stored = {p.time.astimezone(UTC) for p in existing}
        missing_bars = [b for b in bars if b.start not in stored]
        written = store.write_batch([b.to_point() for b in missing_bars]) if missing_bars else 0
        record.fetched = len(bars) - len(filled)
        record.written = written
        record.already_stored = len(bars) - len(missing_bars)
        record.gaps_filled = sum(1 for b in missing_bars if b.start in filled)
        record.first_bar = bars[0].start if bars else None
        record.last_bar = bars[-1].start if bars else None
    except Exception as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:2000]
        record.finished_at = timezone.now()
        record.save()
        logger.warning(f"{label} failed", extra={"symbol": symbol, "error": record.error})
        raise HistoryError(f"{label} of {symbol} failed: {exc}") from exc
    finally:
        if own_client:
            rest.close()
    record.finished_at = timezone.now()
    record.save()
    logger.info(
        label,
        extra={
            "symbol": symbol,
            "calls": calls,
            "fetched": record.fetched,
            "written": written,
            "gaps": record.gaps_filled,
        },
    )
    return BackfillResult(
        symbol=symbol,
        calls=calls,
        fetched=record.fetched,
        written=written,
        already_stored=record.already_stored,
        gaps_filled=record.gaps_filled,
        first_bar=record.first_bar,
        last_bar=record.last_bar,
        record_id=record.pk,
    )


def backfill_history(
    *,
    symbol: str,
    start: datetime | None = None,
    end: datetime | None = None,
    client: OhlcClient | None = None,
    store: TimeSeriesStore | None = None,
    max_calls: int = DEFAULT_MAX_CALLS,
) -> BackfillResult:
    """Fetch committed 1-minute bars of `symbol` in ``[start, end)`` (all the exchange has when None) and write
    those the store lacks. Idempotent: a second run finds every bar stored and writes nothing."""
    start = _utc(start, "start")
    end = _utc(end, "end")
    if start is not None and end is not None and start >= end:
        raise ValueError("the backfill window must start before it ends")

    def fetch(rest: Any) -> tuple[list[Bar], set[datetime], int]:
        since = _epoch(start) - 1 if start is not None else None
        fetched, calls = _fetch(rest, symbol, since, _epoch(end) if end is not None else None, max_calls)
        bars: list[Bar] = []
        filled: set[datetime] = set()
        previous: Any = None
        for t in sorted(fetched):
            raw = fetched[t]
            if previous is not None:
                for missing in range(previous.time + INTERVAL_SECONDS, t, INTERVAL_SECONDS):
                    bars.append(_flat_bar(symbol, missing, previous.close))
                    filled.add(bars[-1].start)
            bars.append(_to_bar(symbol, raw))
            previous = raw
        return bars, filled, calls

    return _backfill(
        symbol=symbol,
        start=start,
        end=end,
        source=str(settings.KRAKEN_REST_URL),
        client=client,
        store=store,
        fetch=fetch,
        label="history backfill",
    )


class TradesClient(Protocol):
    """What the trades backfill needs of the exchange client (``KrakenRestClientSync`` satisfies it)."""

    def trades(self, pair: str, *, since: str | int | None = None, count: int | None = None) -> Any: ...


def _price_precision(symbol: str) -> int:
    found = Instrument.objects.filter(symbol=symbol).values_list("price_precision", flat=True).first()
    return int(found) if found is not None else 8


def backfill_from_trades(
    *,
    symbol: str,
    start: datetime,
    end: datetime,
    client: TradesClient | None = None,
    store: TimeSeriesStore | None = None,
    max_calls: int = 2_000,
) -> BackfillResult:
    """Rebuild 1-minute bars of `symbol` in ``[start, end)`` from the exchange's public trades and write those the
    store lacks: how history older than the 720 bars of ``OHLC`` is had (Kraken serves every trade through
    ``Trades``, 1,000 a call, paged by the ``last`` cursor). The trades go through the ingest worker's bar builder
    (`ingest.bars.BarBuilder`: the same bars, quiet minutes as flat bars), so backfilled and live series are one
    kind of series. Idempotent like :func:`backfill_history`; recorded as a ``HistoryBackfill`` row."""

    start_utc, end_utc = _utc(start, "start"), _utc(end, "end")
    assert start_utc is not None
    assert end_utc is not None
    if start_utc >= end_utc:
        raise ValueError("the backfill window must start before it ends")

    def fetch(rest: Any) -> tuple[list[Bar], set[datetime], int]:
        builder = BarBuilder(symbol, price_precision=_price_precision(symbol), interval_seconds=INTERVAL_SECONDS)
        bars: dict[datetime, Bar] = {}
        calls = 0
        cursor = int(start_utc.timestamp()) * 1_000_000_000 - 1
        while calls < max_calls:
            page = rest.trades(symbol, since=str(cursor))
            calls += 1
            done = False
            for row in page.trades:
                trade = trade_from_rest(symbol, row)
                if trade is None or trade.timestamp < start_utc:
                    continue
                if trade.timestamp >= end_utc:
                    done = True
                    break
                for bar in builder.add_trade(trade):
                    bars[bar.start] = bar
            next_cursor = int(page.last)
            if done or len(page.trades) < TRADES_PAGE or next_cursor <= cursor:
                break
            cursor = next_cursor
        for bar in builder.advance(end_utc + timedelta(minutes=1)):
            bars[bar.start] = bar
        ordered = [bars[t] for t in sorted(bars) if start_utc <= t < end_utc]
        return ordered, {b.start for b in ordered if b.trades == 0}, calls

    return _backfill(
        symbol=symbol,
        start=start_utc,
        end=end_utc,
        source=f"{settings.KRAKEN_REST_URL} Trades",
        client=client,
        store=store,
        fetch=fetch,
        label="history backfill from trades",
    )


# --- loading -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedBars:
    bars: pd.DataFrame  # float64 columns BAR_COLUMNS, indexed by UTC bar start, one row per minute
    stored: int  # rows read from the store
    filled: int  # minutes missing inside the window, filled as flat bars


def bars_frame(points: list[Any], *, columns: Sequence[str] = BAR_COLUMNS) -> pd.DataFrame:
    """Stored bar points as a float DataFrame indexed by bar start (UTC), oldest first, duplicates dropped; one
    column per name in `columns` (NaN where a point lacks the field)."""
    index = pd.DatetimeIndex([p.time for p in points]).tz_convert("UTC") if points else pd.DatetimeIndex([], tz="UTC")
    data = {
        column: np.fromiter((float(p.fields.get(column, np.nan)) for p in points), dtype=np.float64, count=len(points))
        for column in columns
    }
    frame = pd.DataFrame(data, index=index)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    frame.index.name = "time"
    return frame


def fill_gaps(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per minute from the first to the last bar; missing minutes become flat bars at the previous
    close with zero volume and trades. Returns the frame and the number of rows filled."""
    if frame.empty:
        return frame, 0
    grid = pd.date_range(frame.index[0], frame.index[-1], freq="min", tz="UTC")
    if len(grid) == len(frame):
        return frame, 0
    full = frame.reindex(grid)
    missing = full["close"].isna()
    close = full["close"].ffill()
    for column in ("open", "high", "low", "close", "vwap"):
        if column in full:  # a frame of some columns only (bars_frame(columns=...)) fills those
            full[column] = full[column].where(~missing, close)
    for column in ("volume", "trades"):
        if column in full:
            full[column] = full[column].fillna(0.0)
    full.index.name = frame.index.name
    return full, int(missing.sum())


def load_bars(
    *, symbol: str, start: datetime, end: datetime, store: TimeSeriesStore | None = None, fill: bool = True
) -> LoadedBars:
    """The stored 1-minute bars of `symbol` with ``start <= time < end``."""
    start_utc = _utc(start, "start")
    end_utc = _utc(end, "end")
    assert start_utc is not None
    assert end_utc is not None
    if start_utc >= end_utc:
        raise ValueError("the data window must start before it ends")
    store = store or get_store()
    points = store.query_range(BAR_MEASUREMENT, start_utc, end_utc, bar_tags(symbol))
    frame = bars_frame(points)
    filled = 0
    if fill:
        frame, filled = fill_gaps(frame)
    return LoadedBars(bars=frame, stored=len(points), filled=filled)


def load_bar_fields(
    *,
    symbol: str,
    start: datetime,
    end: datetime,
    fields: Sequence[str],
    require: str | None = None,
    store: TimeSeriesStore | None = None,
) -> pd.DataFrame:
    """The stored 1-minute bars of `symbol` with ``start <= time < end``, only the columns `fields` (float64), one
    row per stored bar (nothing filled): `load_bars(fill=False)` for a reader that needs a few fields of many
    bars (outcome maturation needs the close). One read through `timeseries.base.query_fields`, so a store
    that can reads only those fields (InfluxDB's ``SELECT "close"``, the relational store's JSON keys) instead
    of decoding every field of every bar. `require`: only the bars that have that field."""
    start_utc = _utc(start, "start")
    end_utc = _utc(end, "end")
    assert start_utc is not None
    assert end_utc is not None
    if start_utc >= end_utc:
        raise ValueError("the data window must start before it ends")
    store = store or get_store()
    points = query_fields(store, BAR_MEASUREMENT, start_utc, end_utc, bar_tags(symbol), fields, require=require)
    return bars_frame(points, columns=tuple(fields))
