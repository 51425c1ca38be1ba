"""Artifacts at rest: content-addressed, encrypted, verified on every load; tampering, a wrong key and key
rotation each behave as an operator expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models_registry import selectors
from models_registry.artifacts import (
    ArtifactIntegrityError,
    ArtifactKeyError,
    ArtifactMissingError,
    crypto,
    serialize,
    sha256_hex,
)
from models_registry.selectors import SignatureMismatchError, signature_check
from tests.models_registry.factories import (
    KEY_A,
    KEY_B,
    blob_path,
    fitted_estimator,
    make_model,
    make_version,
    registry_settings,  # noqa: F401
    sample_rows,
)

pytestmark = [pytest.mark.usefixtures("registry_settings"), pytest.mark.django_db]


def test_artifact_is_content_addressed_and_encrypted_at_rest(registry_settings: Path) -> None:  # noqa: F811
    model = make_model()
    data = serialize(fitted_estimator())
    v1 = make_version(model, estimator=None, artifact=data)
    v2 = make_version(model, estimator=None, artifact=data)  # the same bytes: the same address, one blob
    assert v1.artifact_sha256 == v2.artifact_sha256
    files = [p for p in registry_settings.rglob("*.gfa")]
    assert v1.artifact_sha256 == sha256_hex(data)
    assert files == [blob_path(registry_settings, v1.artifact_sha256)]
    blob = files[0].read_bytes()
    plaintext = selectors.model_version_artifact(version=v1)
    assert plaintext[:64] not in blob
    assert b"sklearn" not in blob
    assert crypto.blob_key_id(blob) == "k2024"


def test_flipped_byte_on_disk_is_refused_on_load(registry_settings: Path) -> None:  # noqa: F811
    version = make_version(make_model())
    path = blob_path(registry_settings, version.artifact_sha256)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(ArtifactIntegrityError, match="failed its integrity check.*tampered") as refused:
        selectors.model_version_load(version=version)
    assert refused.value.code == "artifact_integrity_failed"


def test_blob_swapped_to_another_address_is_refused(registry_settings: Path) -> None:  # noqa: F811
    model = make_model()
    a = make_version(model)
    b = make_version(model, estimator=fitted_estimator(seed=99))
    blob_path(registry_settings, b.artifact_sha256).write_bytes(
        blob_path(registry_settings, a.artifact_sha256).read_bytes()
    )
    with pytest.raises(ArtifactIntegrityError):
        selectors.model_version_load(version=b)


def test_deleted_blob_is_a_clear_error(registry_settings: Path) -> None:  # noqa: F811
    version = make_version(make_model())
    blob_path(registry_settings, version.artifact_sha256).unlink()
    with pytest.raises(ArtifactMissingError, match="not in the artifact store"):
        selectors.model_version_load(version=version)


def test_wrong_key_is_refused(settings: Any) -> None:
    version = make_version(make_model())
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [KEY_B]  # k2024 is gone
    with pytest.raises(ArtifactKeyError, match="key 'k2024', which is not configured"):
        selectors.model_version_load(version=version)
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [crypto.new_key_spec("k2024")]  # same id, different key
    with pytest.raises(ArtifactIntegrityError, match="does not authenticate"):
        selectors.model_version_load(version=version)


def test_key_rotation_keeps_old_artifacts_loadable_and_encrypts_new_ones_with_the_new_key(
    settings: Any,
    registry_settings: Path,  # noqa: F811
) -> None:
    model = make_model()
    old = make_version(model)
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [KEY_B, KEY_A]  # rotate: the new key first, the old one kept
    new = make_version(model, estimator=fitted_estimator(seed=42))
    assert crypto.blob_key_id(blob_path(registry_settings, old.artifact_sha256).read_bytes()) == "k2024"
    assert crypto.blob_key_id(blob_path(registry_settings, new.artifact_sha256).read_bytes()) == "k2025"
    rows = sample_rows()
    np.testing.assert_array_equal(
        selectors.model_version_load(version=old).predict(rows), fitted_estimator().predict(rows)
    )
    selectors.model_version_load(version=new)
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [KEY_B]  # the old key retired: only its artifacts stop loading
    selectors.model_version_load(version=new)
    with pytest.raises(ArtifactKeyError):
        selectors.model_version_load(version=old)


def test_reencrypting_finishes_a_rotation_so_the_old_key_can_be_removed(
    settings: Any,
    registry_settings: Path,  # noqa: F811
) -> None:
    import json
    from io import StringIO

    from django.core.management import CommandError, call_command

    from models_registry.services import artifacts_reencrypt

    model = make_model()
    old = make_version(model)
    other = make_version(model, estimator=fitted_estimator(seed=7))
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [KEY_B, KEY_A]
    new = make_version(model, estimator=fitted_estimator(seed=42))
    old_bytes = blob_path(registry_settings, old.artifact_sha256).read_bytes()

    dry = artifacts_reencrypt(dry_run=True)
    assert (dry["checked"], dry["reencrypted"], dry["current"]) == (3, 2, 1)
    assert blob_path(registry_settings, old.artifact_sha256).read_bytes() == old_bytes  # a dry run writes nothing

    out = StringIO()
    call_command("reencrypt_artifacts", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["reencrypted"], report["current"], report["failed"]) == (2, 1, {})
    for version in (old, other, new):
        assert crypto.blob_key_id(blob_path(registry_settings, version.artifact_sha256).read_bytes()) == "k2025"

    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [KEY_B]  # the old key removed: everything still loads
    rows = sample_rows()
    np.testing.assert_array_equal(
        selectors.model_version_load(version=old).predict(rows), fitted_estimator().predict(rows)
    )
    selectors.model_version_load(version=other)
    assert artifacts_reencrypt()["reencrypted"] == 0  # nothing left to do

    blob_path(registry_settings, other.artifact_sha256).unlink()  # a missing artifact is reported, not hidden
    with pytest.raises(CommandError, match="could not be re-encrypted"):
        call_command("reencrypt_artifacts", stdout=StringIO())


def test_signature_check_names_what_does_not_match() -> None:
    import pandas as pd

    version = make_version(make_model())
    good = pd.DataFrame(sample_rows(), columns=["ret_1", "vol_15", "rsi_14"])
    signature_check(version, good)
    signature_check(version, ["ret_1", "vol_15", "rsi_14"])

    with pytest.raises(SignatureMismatchError, match="missing.*rsi_14") as missing:
        signature_check(version, good.drop(columns=["rsi_14"]))
    assert missing.value.details == {"missing": ["rsi_14"]}
    with pytest.raises(SignatureMismatchError, match="unexpected") as extra:
        signature_check(version, good.assign(macd=0.0))
    assert extra.value.details == {"unexpected": ["macd"]}
    with pytest.raises(SignatureMismatchError, match="order"):
        signature_check(version, ["vol_15", "ret_1", "rsi_14"])
    with pytest.raises(SignatureMismatchError) as types:
        signature_check(version, good.astype({"rsi_14": "int64"}))
    assert types.value.details == {"types": {"rsi_14": {"expected": "float64", "given": "int64"}}}
    assert types.value.code == "signature_mismatch"
