"""Registering versions: lineage recorded, numbers allocated safely under concurrency, and a missing,
non-loading or mismatching artifact refused before anything is written."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from django.db import connection

from core.errors import NotFoundError
from models_registry import selectors
from models_registry.artifacts import ArtifactMissingError, ArtifactUnloadableError, sha256_hex
from models_registry.models import ModelVersion, RegisteredModel, StageEvent
from tests.models_registry.factories import (
    GOOD_METRICS,
    SIGNATURE,
    WINDOW,
    fitted_estimator,
    make_model,
    make_version,
    registry_settings,  # noqa: F401
    sample_rows,
)

pytestmark = pytest.mark.usefixtures("registry_settings")


class NotAModel:
    """A custom class: skops refuses to rebuild it (untrusted type), so nothing of it runs on load."""

    def predict(self, x):  # type: ignore[no-untyped-def]
        return x


def nothing_written(artifact_dir: Path) -> bool:
    stored = [p for p in artifact_dir.rglob("*") if p.is_file()] if artifact_dir.exists() else []
    return not ModelVersion.objects.exists() and not stored and not ModelVersion.history.exists()


@pytest.mark.django_db
def test_registered_version_records_lineage_and_loads_back_the_same_model() -> None:
    model = make_model()
    parent = make_version(model)
    version = make_version(model, parent_version=parent.version, hyperparameters={"C": 0.5}, n_trials=40)

    version.refresh_from_db()
    assert (parent.version, version.version) == (1, 2)
    assert version.parent == parent
    assert (version.data_start, version.data_end) == WINDOW
    assert version.symbols == ["BTC/USD"]
    assert (version.feature_set_name, version.feature_set_version) == ("bars_1m", "1")
    assert version.hyperparameters == {"C": 0.5}
    assert version.metrics == GOOD_METRICS
    assert version.n_trials == 40
    assert version.code_version == "abc123"
    assert version.signature == SIGNATURE
    assert version.stage == "none"
    assert version.created_by == "celery:models_registry.train"
    data = selectors.model_version_artifact(version=version)
    assert sha256_hex(data) == version.artifact_sha256
    assert len(data) == version.artifact_size

    loaded = selectors.model_version_load(version=version)
    rows = sample_rows()
    np.testing.assert_array_equal(loaded.predict_proba(rows), fitted_estimator().predict_proba(rows))


@pytest.mark.django_db
def test_versions_are_numbered_per_model() -> None:
    first, second = make_model(), make_model()
    assert [make_version(first).version for _ in range(2)] == [1, 2]
    assert make_version(second).version == 1


@pytest.mark.django_db
def test_unknown_model_is_refused_and_nothing_is_written(registry_settings: Path) -> None:  # noqa: F811
    with pytest.raises(NotFoundError, match="not registered"):
        make_version("no-such-model")
    assert nothing_written(registry_settings)


@pytest.mark.django_db
def test_missing_artifact_fails_and_writes_nothing(registry_settings: Path, tmp_path: Path) -> None:  # noqa: F811
    model = make_model()
    with pytest.raises(ArtifactMissingError, match="exactly one"):
        make_version(model, estimator=None)
    with pytest.raises(ArtifactMissingError, match="cannot be read"):
        make_version(model, estimator=None, artifact_path=tmp_path / "nope.skops")
    with pytest.raises(ArtifactMissingError, match="empty"):
        make_version(model, estimator=None, artifact=b"")
    assert nothing_written(registry_settings)


@pytest.mark.django_db
def test_non_loading_artifact_fails_and_writes_nothing(registry_settings: Path) -> None:  # noqa: F811
    model = make_model()
    with pytest.raises(ArtifactUnloadableError, match="not a readable skops file"):
        make_version(model, estimator=None, artifact=b"definitely not a model")
    with pytest.raises(ArtifactUnloadableError, match="not trusted") as refused:
        make_version(model, estimator=None, artifact=sio.dumps(NotAModel()))
    assert any("NotAModel" in t for t in refused.value.details["untrusted_types"])
    with pytest.raises(ArtifactUnloadableError, match="no predict"):
        make_version(model, estimator=None, artifact=sio.dumps({"weights": [1, 2]}))
    assert nothing_written(registry_settings)


@pytest.mark.django_db
def test_model_that_disagrees_with_its_signature_is_refused(registry_settings: Path) -> None:  # noqa: F811
    model = make_model()
    with pytest.raises(ArtifactUnloadableError, match="expects 3 features but the signature lists 2"):
        make_version(model, signature=SIGNATURE[:2])
    assert nothing_written(registry_settings)


@pytest.mark.django_db
def test_bad_lineage_is_refused() -> None:
    model = make_model()
    with pytest.raises(Exception, match="start before it ends"):
        make_version(model, data_start=WINDOW[1], data_end=WINDOW[0])
    with pytest.raises(Exception, match="symbol"):
        make_version(model, symbols=[])
    with pytest.raises(Exception, match="finite number"):
        make_version(model, metrics={"sharpe": float("nan")})
    with pytest.raises(NotFoundError):
        make_version(model, parent_version=9)
    assert not ModelVersion.objects.exists()


@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_concurrent_registration_gives_distinct_consecutive_version_numbers() -> None:
    model = make_model()
    threads_n, per_thread = 8, 3
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    numbers: list[int] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        try:
            barrier.wait(timeout=30)
            for k in range(per_thread):
                v = make_version(model.name, estimator=fitted_estimator(seed * 10 + k))
                with lock:
                    numbers.append(v.version)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    expected = list(range(1, threads_n * per_thread + 1))
    assert sorted(numbers) == expected
    stored = sorted(ModelVersion.objects.filter(model=model).values_list("version", flat=True))
    assert stored == expected
    assert RegisteredModel.objects.count() == 1
    assert not StageEvent.objects.exists()
