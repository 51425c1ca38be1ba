"""The prediction service: serves the version a stage or alias names, keeps loaded models cached, follows
promotions made elsewhere within a second, checks inputs against the signature, records predictions once."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from django.db import connection
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models_registry.features import FEATURE_NAMES, compute_features, drop_warmup
from models_registry.labels import make_labels
from models_registry.models import Prediction
from models_registry.prediction import FeatureValueError, NoServingVersion, PredictionService
from models_registry.predictor import RegistryPredictor
from models_registry.selectors import SignatureMismatchError
from models_registry.services import model_alias_set, model_version_promote
from tests.models_registry.factories import (
    make_model,
    make_version,
    registry_settings,  # noqa: F401
)
from tests.models_registry.synthetic import make_bars

pytestmark = pytest.mark.usefixtures("registry_settings")

SIGNATURE = [{"name": n, "type": "float64"} for n in FEATURE_NAMES]
BARS = make_bars(900, seed=3)
FEATURES = drop_warmup(compute_features(BARS))


def _estimator(C: float) -> Any:
    labels = make_labels(BARS["close"], 15, dead_zone=0.002)["label"].reindex(FEATURES.index)
    usable = labels.notna()
    X, y = FEATURES[usable].to_numpy(), labels[usable].to_numpy()
    return make_pipeline(StandardScaler(), LogisticRegression(C=C)).fit(X, y)


ESTIMATORS = {1: _estimator(1.0), 2: _estimator(0.01)}


def _version(model: Any, n: int) -> Any:
    return make_version(
        model,
        estimator=ESTIMATORS[n],
        signature=SIGNATURE,
        hyperparameters={"signal_threshold": 0.0},
        feature_set_name="kraken_bars_1m",
    )


def _row(i: int = 0) -> dict[str, float]:
    return FEATURES.iloc[i].to_dict()


@pytest.fixture
def served(django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    model = make_model(gates={})
    v1, v2 = _version(model, 1), _version(model, 2)
    with django_capture_on_commit_callbacks(execute=True):
        model_version_promote(model_name=model.name, version=1, reason="first", actor="test")
    return model, v1, v2


@pytest.mark.django_db
def test_serves_the_production_version_with_probabilities_signal_and_confidence(served) -> None:  # type: ignore[no-untyped-def]
    model, v1, _ = served
    service = PredictionService()

    out = service.predict_one(_row(), model_name=model.name, decision_id="d-1", symbol="BTC/USD")

    assert out.version_id == v1.pk
    assert set(out.probabilities) == {-1, 0, 1}
    assert sum(out.probabilities.values()) == pytest.approx(1.0)
    assert out.signal in (-1, 0, 1)
    assert out.confidence == pytest.approx(max(out.probabilities.values()))
    expected = ESTIMATORS[1].predict_proba(FEATURES.iloc[[0]].to_numpy())[0]
    assert [out.probabilities[c] for c in (-1, 0, 1)] == pytest.approx(list(expected))


@pytest.mark.django_db
def test_promotion_in_process_is_noticed_at_once_through_the_signal(served, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    model, v1, v2 = served
    service = PredictionService(check_interval_ms=60_000, resolve_ttl_s=3600)
    assert service.predict_one(_row(), model_name=model.name).version_id == v1.pk

    with django_capture_on_commit_callbacks(execute=True):
        model_version_promote(model_name=model.name, version=2, reason="better", actor="test")

    assert service.predict_one(_row(), model_name=model.name).version_id == v2.pk
    assert service.stats()["reloads"] == 1


@pytest.mark.django_db(transaction=True)
def test_promotion_by_another_connection_is_noticed_within_a_second_without_the_signal() -> None:
    model = make_model(gates={})
    v1, v2 = _version(model, 1), _version(model, 2)
    model_version_promote(model_name=model.name, version=1, reason="first", actor="test")
    service = PredictionService(check_interval_ms=200, resolve_ttl_s=3600, listen=False)  # as in another process
    assert service.predict_one(_row(), model_name=model.name).version_id == v1.pk
    committed = threading.Event()
    errors: list[BaseException] = []

    def promote() -> None:
        try:
            model_version_promote(model_name=model.name, version=2, reason="better", actor="other worker")
            committed.set()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=promote)
    worker.start()
    worker.join(timeout=30)
    assert errors == []
    assert committed.is_set()
    promoted_at = time.monotonic()
    deadline = promoted_at + 1.0
    version_id = v1.pk
    while version_id != v2.pk and time.monotonic() < deadline:
        version_id = service.predict_one(_row(), model_name=model.name).version_id

    assert version_id == v2.pk, "the service still served v1 a second after the promotion committed"
    assert service.stats()["generation_checks"] >= 1


@pytest.mark.django_db
def test_aliases_select_versions(served) -> None:  # type: ignore[no-untyped-def]
    model, v1, v2 = served
    model_alias_set(model_name=model.name, alias="challenger", version=2, reason="try it", actor="test")
    service = PredictionService()

    assert service.predict_one(_row(), model_name=model.name, selector="challenger").version_id == v2.pk
    assert service.predict_one(_row(), model_name=model.name, selector="production").version_id == v1.pk
    with pytest.raises(NoServingVersion, match="champion"):
        service.predict_one(_row(), model_name=model.name, selector="champion")


@pytest.mark.django_db
def test_mismatching_features_are_rejected_with_a_clear_error(served) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = served
    service = PredictionService()
    missing = _row()
    del missing["rsi_14"]
    extra = {**_row(), "sentiment": 0.3}

    with pytest.raises(SignatureMismatchError, match="missing.*rsi_14"):
        service.predict_one(missing, model_name=model.name)
    with pytest.raises(SignatureMismatchError, match="unexpected.*sentiment"):
        service.predict_one(extra, model_name=model.name)
    with pytest.raises(FeatureValueError, match="not finite.*vol_60"):
        service.predict_one({**_row(), "vol_60": float("nan")}, model_name=model.name)
    with pytest.raises(FeatureValueError, match="mapping of feature name"):
        service.predict_one(np.zeros(len(FEATURE_NAMES)), model_name=model.name)
    with pytest.raises(SignatureMismatchError, match="order"):
        service.predict_batch(FEATURES[list(reversed(FEATURE_NAMES))], model_name=model.name)
    with pytest.raises(SignatureMismatchError, match="types"):
        service.predict_batch(FEATURES.astype("float32"), model_name=model.name)
    with pytest.raises(FeatureValueError, match="trained on"):
        service.predict_one(_row(), model_name=model.name, symbol="ETH/USD")
    assert not Prediction.objects.exists()


@pytest.mark.django_db
def test_predictions_are_recorded_once_per_decision_and_version(served) -> None:  # type: ignore[no-untyped-def]
    model, v1, _ = served
    service = PredictionService()

    first = service.predict_one(_row(3), model_name=model.name, decision_id="dec-42", symbol="BTC/USD")
    replay = service.predict_one(_row(3), model_name=model.name, decision_id="dec-42", symbol="BTC/USD")

    assert replay == first
    stored = Prediction.objects.get()
    assert (stored.decision_id, stored.version_id, stored.symbol) == ("dec-42", v1.pk, "BTC/USD")
    assert stored.features_hash == first.features_hash
    assert stored.probabilities == {str(c): p for c, p in first.probabilities.items()}
    assert (stored.signal, stored.predicted_class) == (first.signal, first.predicted_class)
    assert service.stats()["record_duplicates"] == 1


@pytest.mark.django_db
def test_batch_prediction_matches_single_rows_and_records_with_decision_ids(served) -> None:  # type: ignore[no-untyped-def]
    model, v1, _ = served
    service = PredictionService()
    batch = FEATURES.iloc[:20]

    out = service.predict_batch(batch, model_name=model.name, decision_ids=[f"b-{i}" for i in range(20)])

    assert list(out.index) == list(batch.index)
    single = service.predict_one(_row(7), model_name=model.name)
    assert [out.iloc[7][c] for c in (-1, 0, 1)] == pytest.approx([single.probabilities[c] for c in (-1, 0, 1)])
    assert out.iloc[7]["signal"] == single.signal
    assert set(out["version_id"]) == {v1.pk}
    assert Prediction.objects.filter(version=v1).count() == 20


@pytest.mark.django_db
def test_models_are_loaded_once_and_the_hit_rate_is_reported(served) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = served
    service = PredictionService()

    for i in range(50):
        service.predict_one(_row(i), model_name=model.name)

    stats = service.stats()
    assert stats["loads"] == 1
    assert stats["cache_misses"] == 1
    assert stats["cache_hits"] == 50
    assert stats["hit_rate"] == pytest.approx(50 / 51)
    assert stats["latency_ms"]["count"] == 50
    assert stats["latency_ms"]["p99"] > 0


@pytest.mark.django_db
def test_no_production_version_is_a_clear_error() -> None:
    model = make_model(gates={})
    _version(model, 1)

    with pytest.raises(NoServingVersion, match="has no version for 'production'"):
        PredictionService().predict_one(_row(), model_name=model.name)


@pytest.mark.django_db
def test_registry_predictor_returns_signal_confidence_and_version(served, settings) -> None:  # type: ignore[no-untyped-def]
    model, v1, _ = served
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    predictor = RegistryPredictor(service=PredictionService())

    signal, confidence, version_id = predictor.predict("BTC/USD", "decision-7", _row(5))

    assert signal in (-1, 0, 1)
    assert 0.0 <= confidence <= 1.0
    assert version_id == v1.pk
    assert Prediction.objects.filter(decision_id="decision-7", version_id=v1.pk).exists()


@pytest.mark.django_db
def test_feature_rows_from_incremental_features_are_accepted(served) -> None:  # type: ignore[no-untyped-def]
    from models_registry.features import IncrementalFeatures

    model, _, _ = served
    inc = IncrementalFeatures.from_history(BARS.iloc[:-1])
    row = inc.update(BARS.index[-1].to_pydatetime(), BARS.iloc[-1].to_dict())

    out = PredictionService().predict_one(row, model_name=model.name)

    expected = ESTIMATORS[1].predict_proba(FEATURES.iloc[[-1]].to_numpy())[0]
    assert [out.probabilities[c] for c in (-1, 0, 1)] == pytest.approx(list(expected), rel=1e-6)


@pytest.mark.django_db
def test_the_linear_fast_path_equals_scikit_learn(served) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = served
    loaded = PredictionService().resolve(model.name)
    X = FEATURES.to_numpy()[:200]

    assert loaded.fast is not None
    fast = loaded.probabilities(X)
    assert np.allclose(fast, ESTIMATORS[1].predict_proba(X), rtol=1e-9, atol=1e-12)


@pytest.mark.django_db
def test_stats_are_shaped_for_a_metrics_exporter(served) -> None:  # type: ignore[no-untyped-def]
    from models_registry.prediction import COUNTER_NAMES, LATENCY_BUCKETS_S

    model, _, _ = served
    service = PredictionService()
    empty = service.stats()
    assert all(empty[name] == 0 for name in COUNTER_NAMES)  # every counter present before the first call
    assert empty["hit_rate"] is None
    assert empty["latency_seconds"]["count"] == 0

    for i in range(30):
        service.predict_one(_row(i), model_name=model.name)
    stats = service.stats()

    assert stats["predictions"] == 30
    assert stats["loads"] == 1
    assert stats["reloads"] == 0
    histogram = stats["latency_seconds"]
    counts = list(histogram["buckets"].values())
    assert list(histogram["buckets"]) == [repr(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == histogram["count"] == 30
    assert 0 < histogram["sum"] <= 30 * stats["latency_ms"]["max"] / 1000.0 + 1e-9
