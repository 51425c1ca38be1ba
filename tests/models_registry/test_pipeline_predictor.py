"""The registry serves the trading pipeline through trading's own Predictor interface: features from stored bars,
the serving version decides with its probabilities and expected return; while no version serves (none passed the
gates) there is no signal, and the prediction says why."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from models_registry.predictor import PipelinePredictor
from tests.models_registry.conftest import store_bars
from tests.models_registry.factories import registry_settings  # noqa: F401
from tests.models_registry.test_prediction import BARS, served  # noqa: F401
from tests.trading.factories import InstrumentFactory
from trading.accounts import balance_set, equity_snapshot_take
from trading.instruments import market_quote_set
from trading.models import Decision
from trading.pipeline import decide_on_bar

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
    assert prediction.model_version == f"{model.name} v{v1.version}"
    assert (prediction.model_name, prediction.version) == (model.name, v1.version)
    assert prediction.signal in (-1, 0, 1)
    assert 0 <= prediction.confidence <= 1
    assert prediction.probabilities is not None
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)


def test_without_a_serving_version_there_is_no_signal_and_the_reason_names_the_failed_gates(settings) -> None:  # type: ignore[no-untyped-def]
    prediction = PipelinePredictor().predict(symbol="BTC/USD", bar_time=BAR_TIME, decision_id="d-2")
    assert (prediction.signal, prediction.model_version, prediction.model_name) == (0, "none", "")
    assert prediction.reason == "no model serves BTC/USD: btc-usd-1m-direction has no trained version yet"


def test_the_reason_lists_the_gates_the_latest_version_failed(served, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    model, v1, v2 = served
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    settings.MODELS_REGISTRY_PREDICTOR_SELECTOR = "champion"  # an alias nobody set: nothing serves
    settings.MODELS_REGISTRY_PROMOTION_GATES = {"production": {"psr": {"min": 0.95}}}
    prediction = PipelinePredictor().predict(symbol="BTC/USD", bar_time=BAR_TIME, decision_id="d-4")
    assert prediction.signal == 0
    latest = max(v1.version, v2.version)
    assert prediction.reason.startswith(f"no model serves BTC/USD: {model.name} v{latest} failed ")
    assert "psr" in prediction.reason


def test_too_little_history_gives_no_signal(served, settings) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    model, _, _ = served
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    early = BARS.index[100].to_pydatetime()  # fewer bars before it than the feature warm-up
    prediction = PipelinePredictor().predict(symbol="BTC/USD", bar_time=early, decision_id="d-3")
    assert (prediction.signal, prediction.model_version) == (0, "none")
    assert "the features need" in prediction.reason


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
    assert decision.model_version == f"{model.name} v{v1.version}"
    assert (decision.model_name, decision.model_version_number) == (model.name, v1.version)
    assert decision.decision_id.endswith(f":{model.name} v{v1.version}")
    assert set(decision.probabilities) == {"-1", "0", "1"}
    assert Decision.objects.count() == 1


def test_a_symbol_without_a_passing_model_is_not_traded_and_the_decision_says_why(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_PREDICTOR = "models_registry.predictor.PipelinePredictor"
    settings.GALFRIDAY_EXECUTION_GATEWAY = "tests.trading.doubles.RecordingGateway"
    instrument = InstrumentFactory()
    last = Decimal(f"{BARS['close'].iloc[-1]:.1f}")
    market_quote_set(instrument=instrument, bid=last - Decimal("0.1"), ask=last + Decimal("0.1"), at=timezone.now())
    balance_set(asset="USD", total=Decimal("10000"))
    equity_snapshot_take(marks={"BTC/USD": last})

    decision = decide_on_bar(symbol="BTC/USD", bar_time=BAR_TIME, now=BAR_TIME)

    assert decision.status == Decision.Status.NO_TRADE
    assert decision.model_version == "none"
    assert decision.reason == "no model serves BTC/USD: btc-usd-1m-direction has no trained version yet"
    assert decision.order is None
