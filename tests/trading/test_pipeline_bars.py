"""The decision path reads the bars once (issue #5): the pipeline reads the window the predictor and the sizing
need in one statement and hands it to both, and what they compute from it is exactly what they compute when they
read the store themselves. The narrowed read (`query_fields`) returns the same values, Decimals exact, as the
full `query_range`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from models_registry.models import Prediction as RecordedPrediction
from models_registry.predictor import PipelinePredictor
from tests.models_registry.conftest import store_bars
from tests.models_registry.factories import registry_settings  # noqa: F401
from tests.models_registry.test_prediction import BARS, served  # noqa: F401
from tests.trading.factories import InstrumentFactory
from timeseries import Point
from timeseries.base import query_fields
from timeseries.relational import RelationalStore
from trading.accounts import balance_set, equity_snapshot_take
from trading.instruments import market_quote_set
from trading.models import Decision
from trading.pipeline import decide_on_bar
from trading.predictor import closes_window, read_bars, recent_closes

pytestmark = pytest.mark.django_db
D = Decimal
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TAGS = {"symbol": "BTC/USD", "interval": "1m"}


@pytest.fixture(autouse=True)
def _relational_time_series(settings) -> None:  # type: ignore[no-untyped-def]
    settings.INFLUXDB_URL = ""  # the relational store: its narrowed read is what this tests


class _RangeOnly:
    """The relational store seen through `query_range` only (as a store without `query_fields` is): the
    generic narrowing in `timeseries.base.query_fields` is the reference for the relational one."""

    def __init__(self, store: RelationalStore) -> None:
        self.query_range = store.query_range


def _mixed_points() -> list[Point]:
    points = []
    for i in range(30):
        fields: dict[str, Decimal | int | bool | str] = {
            "open": D("29430.20") + i,
            "trades": i,
            "final": i % 2 == 0,
            "note": f"n{i}",
        }
        if i % 7 != 3:  # some points have no close
            fields["close"] = D("29430.123456789") + D(i) / 1000
        points.append(Point("bars", T0 + timedelta(minutes=i), fields, dict(TAGS)))
    points.append(
        Point("bars", T0 + timedelta(minutes=5), {"close": D("1.5")}, {"symbol": "ETH/USD", "interval": "1m"})
    )
    return points


@pytest.mark.parametrize(("require", "last"), [(None, None), ("close", None), ("close", 7), (None, 4), ("close", 1000)])
def test_narrowed_read_returns_exactly_the_values_of_the_full_read(require, last) -> None:  # type: ignore[no-untyped-def]
    store = RelationalStore()
    store.write_batch(_mixed_points())
    fields = ("close", "trades", "final", "note", "absent")
    args = ("bars", T0 + timedelta(minutes=2), T0 + timedelta(minutes=25), TAGS, fields)

    narrowed = store.query_fields(*args, require=require, last=last)
    reference = query_fields(_RangeOnly(store), *args, require=require, last=last)  # type: ignore[arg-type]

    assert [(p.time, dict(p.fields), dict(p.tags)) for p in narrowed] == [
        (p.time, dict(p.fields), dict(p.tags)) for p in reference
    ]
    assert narrowed, "the range holds points"
    assert all(
        type(a) is type(b)
        for p, q in zip(narrowed, reference, strict=True)
        for a, b in zip(p.fields.values(), q.fields.values(), strict=True)
    )
    written = {p.time: p.fields.get("close") for p in _mixed_points() if p.tags["symbol"] == "BTC/USD"}
    for point in narrowed:  # Decimals exactly as written (15 significant digits), absent fields absent
        assert point.fields.get("close") == written[point.time]
        assert "absent" not in point.fields


def test_recent_closes_from_the_pipelines_bars_equal_those_read_from_the_store() -> None:
    store = RelationalStore()
    store.write_batch(_mixed_points())
    until = T0 + timedelta(minutes=20)
    start, end = closes_window(until=until, count=6)
    window = read_bars(symbol="BTC/USD", start=start - timedelta(minutes=5), end=end, fields=("close", "open"))

    with CaptureQueriesContext(connection) as shared:
        from_window = recent_closes(symbol="BTC/USD", until=until, count=6, bars=window)
    own = recent_closes(symbol="BTC/USD", until=until, count=6)

    assert from_window == own
    assert len(own) == 6
    assert own[-1].time == until
    assert len(shared.captured_queries) == 0  # the window covered the range: no read
    # A window that does not cover the range (or lacks the field) is not used: the store is read.
    narrow = read_bars(symbol="BTC/USD", start=until - timedelta(minutes=2), end=end, fields=("close",))
    assert recent_closes(symbol="BTC/USD", until=until, count=6, bars=narrow) == own


@pytest.mark.usefixtures("registry_settings")
def test_the_predictor_given_the_pipelines_bars_predicts_exactly_as_reading_them(served, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    model, v1, _ = served
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    store_bars(BARS)
    bar_time = BARS.index[-1].to_pydatetime()
    predictor = PipelinePredictor()
    start, end = predictor.bars_range(bar_time=bar_time)
    window = read_bars(
        symbol="BTC/USD", start=start - timedelta(hours=1), end=end, fields={"close", *predictor.bars_fields}
    )

    with CaptureQueriesContext(connection) as shared:
        given = predictor.predict(symbol="BTC/USD", bar_time=bar_time, decision_id="d-given", bars=window)
    read = predictor.predict(symbol="BTC/USD", bar_time=bar_time, decision_id="d-read")
    for prediction in (given, read):  # the pipeline records each inside its decision's transaction
        assert prediction.record is not None
        prediction.record()

    assert given == read
    assert given.model_version == f"{model.name} v{v1.version}"
    hashes = dict(RecordedPrediction.objects.values_list("decision_id", "features_hash"))
    assert hashes["d-given"] == hashes["d-read"]  # the very same feature row went to the model
    assert not any("ingest_timeseriespoint" in q["sql"] for q in shared.captured_queries)


@pytest.mark.usefixtures("registry_settings")
def test_a_decision_reads_the_bars_once(served, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    model, v1, _ = served
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    settings.GALFRIDAY_PREDICTOR = "models_registry.predictor.PipelinePredictor"
    settings.GALFRIDAY_EXECUTION_GATEWAY = "tests.trading.doubles.RecordingGateway"
    store_bars(BARS)
    bar_time = BARS.index[-1].to_pydatetime()
    instrument = InstrumentFactory()
    last = Decimal(f"{BARS['close'].iloc[-1]:.1f}")
    market_quote_set(instrument=instrument, bid=last - Decimal("0.1"), ask=last + Decimal("0.1"), at=timezone.now())
    balance_set(asset="USD", total=Decimal("10000"))
    equity_snapshot_take(marks={"BTC/USD": last})

    with CaptureQueriesContext(connection) as queries:
        decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time)

    bar_reads = [q for q in queries.captured_queries if "ingest_timeseriespoint" in q["sql"]]
    assert len(bar_reads) == 1
    assert decision.model_version == f"{model.name} v{v1.version}"
    assert decision.status in (Decision.Status.ORDERED, Decision.Status.NO_TRADE)
    # the prediction was recorded with the decision (in its transaction)
    assert RecordedPrediction.objects.filter(decision_id=decision.decision_id.rsplit(":", 1)[0]).count() == 1
