"""The exact single-row evaluators: a compiled HistGradientBoosting model gives the probabilities scikit-learn
gives (missing values, values exactly on split thresholds, infinities), the prediction service uses it for one
row and scikit-learn for batches, and forms it cannot reproduce are refused (scikit-learn then predicts)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from models_registry.fast_paths import FastPathRefused, TreeEnsembleFastPath
from models_registry.features import FEATURE_NAMES, compute_features, drop_warmup
from models_registry.prediction import PredictionService
from models_registry.services import model_version_promote
from models_registry.training import TrainingConfig, build_estimator, evaluate_and_fit
from tests.models_registry.factories import make_model, make_version, registry_settings  # noqa: F401
from tests.models_registry.synthetic import make_bars

BARS = make_bars(1500, seed=5)
FEATURES = drop_warmup(compute_features(BARS))
# What `train_model` registers for model="hgb" (fewer iterations, to keep the test quick): 3 classes.
TRAINED = evaluate_and_fit(
    BARS, TrainingConfig(model="hgb", horizon=15, dead_zone="auto", n_splits=2, hyperparameters={"max_iter": 40})
).estimator


def _thresholds(model: HistGradientBoostingClassifier) -> dict[int, np.ndarray]:
    """Every split threshold per feature, to put values exactly on them."""
    out: dict[int, list[float]] = {}
    for iteration in model._predictors:
        for predictor in iteration:
            nodes = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
            for f, t in zip(nodes["feature_idx"], nodes["num_threshold"], strict=True):
                out.setdefault(int(f), []).append(float(t))
    return {f: np.array(v) for f, v in out.items()}


def _hard_rows(model: HistGradientBoostingClassifier, base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Rows drawn from `base`, then: a share of values exactly on a split threshold of their feature, a share
    one ulp either side, some NaN (the model's missing-value routing), some +-inf, and a few all-NaN rows."""
    rng = np.random.default_rng(seed)
    X = base[rng.integers(0, len(base), n)].astype(np.float64).copy()
    thresholds = _thresholds(model)
    for f, values in thresholds.items():
        on = rng.random(n) < 0.3
        X[on, f] = rng.choice(values, on.sum())
        nudge = rng.random(n) < 0.1
        X[nudge, f] = np.nextafter(rng.choice(values, nudge.sum()), rng.choice([-np.inf, np.inf], nudge.sum()))
    X[rng.random(X.shape) < 0.08] = np.nan
    X[rng.random(X.shape) < 0.01] = np.inf
    X[rng.random(X.shape) < 0.01] = -np.inf
    X[:3] = np.nan
    return X


def _assert_same(fast: TreeEnsembleFastPath, estimator: Any, X: np.ndarray) -> None:
    expected = estimator.predict_proba(X)
    got = np.vstack([fast.proba_one(row) for row in X])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_a_trained_multiclass_model_gives_scikit_learns_probabilities_row_by_row() -> None:
    fast = TreeEnsembleFastPath.compile(TRAINED)
    assert len(TRAINED.classes_) == 3
    assert fast.n_trees_per_iteration == 3

    X = _hard_rows(TRAINED, FEATURES.to_numpy(), 3000, seed=1)
    on_threshold = sum(np.isin(X[:, f], v).sum() for f, v in _thresholds(TRAINED).items())
    assert on_threshold > 1000
    assert np.isnan(X).any()

    _assert_same(fast, TRAINED, X)


def test_a_binary_model_gives_scikit_learns_probabilities() -> None:
    close = BARS["close"].reindex(FEATURES.index)
    y = np.where((close.shift(-5) > close).to_numpy(), 1, -1)  # up or not over 5 bars: two classes
    X = FEATURES.to_numpy().copy()
    X[np.random.default_rng(2).random(X.shape) < 0.05] = np.nan  # so missing values get their own routing
    model = build_estimator("hgb", {"max_iter": 30, "min_samples_leaf": 20}, seed=0).fit(X, y)
    fast = TreeEnsembleFastPath.compile(model)
    assert fast.n_classes == 2

    _assert_same(fast, model, _hard_rows(model, X, 2000, seed=3))


def test_a_scaler_in_front_of_the_trees_is_applied_exactly() -> None:
    X = FEATURES.to_numpy()
    y = np.arange(len(X)) % 3 - 1
    pipeline = make_pipeline(
        StandardScaler(), HistGradientBoostingClassifier(max_iter=20, early_stopping=False, random_state=0)
    ).fit(X, y)
    fast = TreeEnsembleFastPath.compile(pipeline)

    rows = np.random.default_rng(4).normal(size=(500, X.shape[1])) * X.std(axis=0) + X.mean(axis=0)
    _assert_same(fast, pipeline, rows)


def test_forms_it_cannot_reproduce_are_refused_and_left_to_scikit_learn() -> None:
    X = FEATURES.to_numpy()[:, :3].copy()
    y = np.arange(len(X)) % 2
    categorical = X.copy()
    categorical[:, 0] = np.arange(len(X)) % 4
    cat_model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0], early_stopping=False).fit(
        categorical, y
    )
    with pytest.raises(FastPathRefused, match="categorical"):
        TreeEnsembleFastPath.compile(cat_model)
    assert TreeEnsembleFastPath.of(cat_model) is None

    other_step = make_pipeline(MinMaxScaler(), HistGradientBoostingClassifier(max_iter=5, early_stopping=False))
    with pytest.raises(FastPathRefused, match="MinMaxScaler"):
        TreeEnsembleFastPath.compile(other_step.fit(X, y))

    with pytest.raises(FastPathRefused, match="not a HistGradientBoostingClassifier"):
        TreeEnsembleFastPath.compile(HistGradientBoostingRegressor(max_iter=5).fit(X, y.astype(float)))
    assert TreeEnsembleFastPath.of(build_estimator("logreg", {}, seed=0).fit(X, y)) is None


@pytest.mark.django_db
@pytest.mark.usefixtures("registry_settings")
def test_the_service_answers_one_row_with_the_compiled_trees_and_batches_with_scikit_learn(
    django_capture_on_commit_callbacks: Any,
) -> None:
    model = make_model(gates={})
    make_version(
        model,
        estimator=TRAINED,
        signature=[{"name": n, "type": "float64"} for n in FEATURE_NAMES],
        hyperparameters={"signal_threshold": 0.0},
        feature_set_name="kraken_bars_1m",
    )
    with django_capture_on_commit_callbacks(execute=True):
        model_version_promote(model_name=model.name, version=1, reason="first", actor="test")
    service = PredictionService()
    loaded = service.resolve(model.name)
    assert loaded.fast_one is not None
    assert loaded.fast is None
    rows = FEATURES.iloc[:50]
    expected = TRAINED.predict_proba(rows.to_numpy())  # the fitted object that was registered
    batch_expected = service.predict_batch(rows, model_name=model.name)[[-1, 0, 1]].to_numpy()

    # The single-row path must not reach scikit-learn at all (that is where the milliseconds went).
    def refuse(X: Any) -> Any:
        raise AssertionError("predict_proba called for a single row")

    original = loaded.estimator.predict_proba
    loaded.estimator.predict_proba = refuse
    try:
        singles = [service.predict_one(row.to_dict(), model_name=model.name) for _, row in rows.iterrows()]
    finally:
        loaded.estimator.predict_proba = original

    got = np.array([[o.probabilities[c] for c in (-1, 0, 1)] for o in singles])
    cols = [list(TRAINED.classes_).index(c) for c in (-1, 0, 1)]
    np.testing.assert_allclose(got, expected[:, cols], rtol=0, atol=1e-12)
    np.testing.assert_allclose(batch_expected, expected[:, cols], rtol=0, atol=1e-12)
