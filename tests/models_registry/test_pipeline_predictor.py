"""The registry serves the trading pipeline through trading's own Predictor interface: features from stored bars,
the serving version decides, and the baseline stands in (and says so) while no version serves."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from models_registry.predictor import PipelinePredictor
from tests.models_registry.conftest import store_bars
from tests.models_registry.factories import registry_settings  # noqa: F401
from tests.models_registry.test_prediction import BARS, served  # noqa: F401
from tests.trading.factories import InstrumentFactory
from trading.models import Decision
from trading.pipeline import decide_on_bar
from trading.predictor import MomentumBaseline
from trading.risk_services import market_quote_set
from trading.services import balance_set, equity_snapshot_take

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]

BAR_TIME = BARS.index[-1].to_pydatetime()


@pytest.fixture(autouse=True)
def _bars(settings) -> None:  # type: ignore[no-untyped-def]
    settings.INFLUXDB_URL = ""  # the relational store (the InfluxDB adapter has its own tests)
    store_bars(BARS)


def test_the_serving_version_decides_from_stored_bars(served, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    model, v1, _ = served
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    prediction = PipelinePredictor().predict(symbol="BTC/USD", bar_time=BAR_TIME, decision_id="d-1")
    assert prediction.model_version == f"model-version-{v1.pk}"
    assert prediction.signal in (-1, 0, 1)
    assert 0 <= prediction.confidence <= 1


def test_without_a_serving_version_the_named_baseline_decides() -> None:
    prediction = PipelinePredictor().predict(symbol="BTC/USD", bar_time=BAR_TIME, decision_id="d-2")
    assert prediction.model_version == MomentumBaseline.version


def test_too_little_history_falls_back_to_the_baseline(served, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    model, _, _ = served
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    early = BARS.index[100].to_pydatetime()  # fewer bars before it than the feature warm-up
    assert PipelinePredictor().predict(symbol="BTC/USD", bar_time=early, decision_id="d-3").model_version == (
        MomentumBaseline.version
    )


def test_decisions_record_the_model_version_that_decided(served, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    model, v1, _ = served
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    settings.GALFRIDAY_PREDICTOR = "models_registry.predictor.PipelinePredictor"
    settings.GALFRIDAY_EXECUTION_GATEWAY = "tests.trading.doubles.RecordingGateway"
    instrument = InstrumentFactory()
    last = Decimal(f"{BARS['close'].iloc[-1]:.1f}")
    market_quote_set(instrument=instrument, bid=last - Decimal("0.1"), ask=last + Decimal("0.1"), at=timezone.now())
    balance_set(asset="USD", total=Decimal("10000"))
    equity_snapshot_take(marks={"BTC/USD": last})
    decision = decide_on_bar(symbol="BTC/USD", bar_time=BAR_TIME, now=BAR_TIME)
    assert decision.model_version == f"model-version-{v1.pk}"
    assert decision.decision_id.endswith(f":model-version-{v1.pk}")
    assert Decision.objects.count() == 1
