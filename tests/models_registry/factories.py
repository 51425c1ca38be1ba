"""Builders for the model-registry tests: a small fitted scikit-learn model, its signature, registered models
and versions made through the services, and isolated artifact storage and keys per test."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from models_registry.artifacts import crypto
from models_registry.models import ModelVersion, RegisteredModel
from models_registry.services import model_version_register, registered_model_create

FEATURES = [("ret_1", "float64"), ("vol_15", "float64"), ("rsi_14", "float64")]
SIGNATURE = [{"name": n, "type": t} for n, t in FEATURES]
WINDOW = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
GOOD_METRICS = {"sharpe": 1.4, "hit_rate": 0.55, "max_drawdown": 0.08}
PRODUCTION_GATES = {"production": {"sharpe": {"min": 1.0}, "max_drawdown": {"max": 0.2}}}

_names = itertools.count()
KEY_A = crypto.new_key_spec("k2024")
KEY_B = crypto.new_key_spec("k2025")


def fitted_estimator(seed: int = 3) -> Pipeline:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, len(FEATURES)))
    y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)


def sample_rows(n: int = 5) -> np.ndarray:
    return np.random.default_rng(11).normal(size=(n, len(FEATURES)))


def model_name() -> str:
    return f"btc-direction-{next(_names)}"


def make_model(name: str | None = None, gates: dict[str, Any] | None = None) -> RegisteredModel:
    return registered_model_create(
        name=name or model_name(), promotion_gates=PRODUCTION_GATES if gates is None else gates, actor="test"
    )


def make_version(model: RegisteredModel | str, **overrides: Any) -> ModelVersion:
    fields: dict[str, Any] = {
        "model_name": model if isinstance(model, str) else model.name,
        "estimator": fitted_estimator(),
        "signature": SIGNATURE,
        "data_start": WINDOW[0],
        "data_end": WINDOW[1],
        "symbols": ["BTC/USD"],
        "feature_set_name": "bars_1m",
        "feature_set_version": "1",
        "hyperparameters": {"C": 1.0},
        "metrics": GOOD_METRICS,
        "n_trials": 12,
        "code_version": "abc123",
        "actor": "celery:models_registry.train",
    }
    fields.update(overrides)
    return model_version_register(**fields)


def blob_path(artifact_dir: Path, sha: str) -> Path:
    return artifact_dir / sha[:2] / sha[2:4] / f"{sha}.gfa"


@pytest.fixture
def registry_settings(settings: Any, tmp_path: Path) -> Path:
    """Artifacts under this test's tmp directory, encrypted with a known key; yields the artifact directory. The
    registry's mechanics are tested without gates (no metric gates, and not the experiment gate that settings add
    by default: tests/experiments test it, and the tests here that want gates set them)."""
    settings.MODELS_REGISTRY_ARTIFACT_DIR = str(tmp_path / "artifacts")
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [KEY_A]
    settings.MODELS_REGISTRY_PROMOTION_GATES = {}
    settings.MODELS_REGISTRY_EXTRA_GATES = []
    return tmp_path / "artifacts"
