"""History backfill from the exchange REST API (the real simulator over HTTP) into the time-series store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ingest.bars import BAR_MEASUREMENT
from models_registry.history import backfill_history, bar_tags, load_bars
from models_registry.models import HistoryBackfill
from timeseries import get_store
from timeseries.models import TimeSeriesPoint

pytestmark = pytest.mark.django_db


def _committed_ohlc(client, symbol="BTC/USD"):  # type: ignore[no-untyped-def]
    result = client.ohlc(symbol, interval=1)
    return [b for b in result.bars if b.time <= result.last]


def test_backfill_writes_committed_bars_as_bar_points(exchange_client):  # type: ignore[no-untyped-def]
    committed = _committed_ohlc(exchange_client)
    assert len(committed) > 600  # the fixture's history: ~680 candles

    result = backfill_history(symbol="BTC/USD", client=exchange_client)

    span_minutes = (committed[-1].time - committed[0].time) // 60 + 1
    assert result.fetched == len(committed)
    assert result.gaps_filled == span_minutes - len(committed)
    assert result.written == span_minutes
    points = get_store().query_range(
        BAR_MEASUREMENT, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC), bar_tags("BTC/USD")
    )
    assert len(points) == span_minutes
    first = points[0]
    assert first.time == datetime.fromtimestamp(committed[0].time, tz=UTC)
    assert first.tags == {"symbol": "BTC/USD", "interval": "1m"}
    assert first.fields["close"] == committed[0].close
    assert first.fields["trades"] == committed[0].count
    assert first.fields["revision"] == 0
    assert isinstance(first.fields["volume"], Decimal)
    record = HistoryBackfill.objects.get(pk=result.record_id)
    assert (record.calls, record.fetched, record.written, record.error) == (
        result.calls,
        len(committed),
        span_minutes,
        "",
    )
    assert record.finished_at is not None


def test_backfill_run_twice_writes_the_bars_once(exchange_client):  # type: ignore[no-untyped-def]
    first = backfill_history(symbol="BTC/USD", client=exchange_client)
    rows_after_first = TimeSeriesPoint.objects.filter(measurement=BAR_MEASUREMENT).count()

    second = backfill_history(symbol="BTC/USD", client=exchange_client)

    assert first.written > 0
    assert second.written == 0
    assert second.already_stored == first.written
    assert TimeSeriesPoint.objects.filter(measurement=BAR_MEASUREMENT).count() == rows_after_first
    assert HistoryBackfill.objects.count() == 2


def test_backfill_respects_the_requested_window(exchange_client):  # type: ignore[no-untyped-def]
    committed = _committed_ohlc(exchange_client)
    start = datetime.fromtimestamp(committed[100].time, tz=UTC)
    end = start + timedelta(minutes=30)

    result = backfill_history(symbol="BTC/USD", client=exchange_client, start=start, end=end)

    loaded = load_bars(symbol="BTC/USD", start=datetime(2000, 1, 1, tzinfo=UTC), end=datetime(2100, 1, 1, tzinfo=UTC))
    assert loaded.bars.index[0] == start
    assert loaded.bars.index[-1] < end
    assert result.written == len(loaded.bars) == 30


def test_backfill_of_an_unknown_pair_fails_clearly_and_is_recorded(exchange_client):  # type: ignore[no-untyped-def]
    from models_registry.history import HistoryError

    with pytest.raises(HistoryError, match="NOPE/USD"):
        backfill_history(symbol="NOPE/USD", client=exchange_client)

    record = HistoryBackfill.objects.get()
    assert record.error
    assert record.written == 0
