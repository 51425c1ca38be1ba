"""Model artifacts: serialised with skops (no arbitrary code runs on load), content-addressed by the SHA-256 of
the serialised bytes, encrypted at rest (`crypto`), kept on a storage backend (`storage`: a local directory by
default, or an S3-compatible bucket, `s3`), and verified on every load whatever the backend: the blob must
authenticate, its plaintext must hash to the recorded address, and skops must load it with nothing outside the
trusted-types list. A backend that cannot be asked is `ArtifactStorageError`, never "missing".

Why skops is safe to load: it does not unpickle. It rebuilds objects from a JSON schema and refuses any type
that is not on its default list (scikit-learn, numpy and scipy types it knows how to rebuild) or on our explicit
MODELS_REGISTRY_TRUSTED_TYPES list; `get_untrusted_types` is checked first so a refusal names the types.
"""

from __future__ import annotations

import hashlib
from typing import Any

import skops.io as sio
from django.conf import settings
from rest_framework import status

from core.errors import ApplicationError
from models_registry.artifacts import crypto
from models_registry.artifacts.base import ArtifactStorage, StorageUnavailableError
from models_registry.artifacts.storage import get_storage

FORMAT_SKOPS = "skops"

# Types beyond skops' defaults that scikit-learn tree models need (checked against scikit-learn 1.9).
# Extend through settings, never with something that can run code on load.
DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "models_registry.baselines.MomentumClassifier",  # the project's own baseline model: plain arrays and numbers
)


class ArtifactError(ApplicationError):
    code = "artifact_error"
    http_status: int = status.HTTP_422_UNPROCESSABLE_ENTITY


class ArtifactMissingError(ArtifactError):
    code = "artifact_missing"


class ArtifactUnloadableError(ArtifactError):
    code = "artifact_unloadable"


class ArtifactIntegrityError(ArtifactError):
    code = "artifact_integrity_failed"
    http_status = status.HTTP_409_CONFLICT


class ArtifactKeyError(ArtifactError):
    code = "artifact_key_unavailable"
    http_status = status.HTTP_409_CONFLICT


class ArtifactStorageError(ArtifactError):
    """The storage backend could not be asked (unreachable, missing bucket, refused); the artifact may be
    intact, so this is not `ArtifactMissingError`."""

    code = "artifact_storage_unavailable"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE


def trusted_types() -> list[str]:
    extra = settings.MODELS_REGISTRY_TRUSTED_TYPES or []
    return sorted({*DEFAULT_TRUSTED_TYPES, *extra})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize(estimator: Any) -> bytes:
    """An estimator as skops bytes."""
    try:
        return sio.dumps(estimator)
    except Exception as exc:  # skops raises many types for unsupported objects
        raise ArtifactUnloadableError(
            f"the model cannot be serialised with skops: {exc}", details={"type": type(estimator).__name__}
        ) from exc


def deserialize(data: bytes) -> Any:
    """Load skops bytes, refusing any type outside the trusted lists (nothing runs before the check)."""
    if not data:
        raise ArtifactMissingError("the artifact is empty")
    trusted = trusted_types()
    try:
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in trusted]
    except Exception as exc:
        raise ArtifactUnloadableError(f"the artifact is not a readable skops file: {exc}") from exc
    if untrusted:
        raise ArtifactUnloadableError(
            "the artifact contains types that are not trusted; refusing to load it",
            details={"untrusted_types": untrusted},
        )
    try:
        model = sio.loads(data, trusted=trusted)
    except Exception as exc:
        raise ArtifactUnloadableError(f"the artifact does not load: {exc}") from exc
    if not callable(getattr(model, "predict", None)):
        raise ArtifactUnloadableError(
            f"the artifact loads as {type(model).__name__}, which has no predict()",
            details={"type": type(model).__name__},
        )
    return model


def _get(storage: ArtifactStorage, sha256: str) -> bytes | None:
    try:
        return storage.get(sha256)
    except StorageUnavailableError as exc:
        raise ArtifactStorageError(str(exc), details={"sha256": sha256}) from exc


def _put(storage: ArtifactStorage, sha256: str, blob: bytes) -> None:
    try:
        storage.put(sha256, blob)
    except StorageUnavailableError as exc:
        raise ArtifactStorageError(str(exc), details={"sha256": sha256}) from exc


def store(data: bytes, *, storage: ArtifactStorage | None = None) -> str:
    """Encrypt and store plaintext artifact bytes under their SHA-256 (idempotent); read back and verify."""
    storage = storage or get_storage()
    sha = sha256_hex(data)
    keyring = crypto.get_keyring()
    existing = _get(storage, sha)
    if existing is not None:
        try:
            if sha256_hex(crypto.decrypt(existing, sha256=sha, keyring=keyring)) == sha:
                return sha  # already stored and intact
        except (crypto.DecryptionError, crypto.UnknownKeyError):
            pass  # unreadable copy: replace it with a fresh one
    _put(storage, sha, crypto.encrypt(data, sha256=sha, keyring=keyring))
    fetch(sha, storage=storage)  # read-back check: what is stored loads back to the same bytes
    return sha


def fetch(sha256: str, *, storage: ArtifactStorage | None = None) -> bytes:
    """The verified plaintext bytes of the artifact at `sha256`, or a clear error saying why not."""
    storage = storage or get_storage()
    blob = _get(storage, sha256)
    if blob is None:
        raise ArtifactMissingError(f"artifact {sha256} is not in the artifact store", details={"sha256": sha256})
    try:
        data = crypto.decrypt(blob, sha256=sha256, keyring=crypto.get_keyring())
    except crypto.UnknownKeyError as exc:
        raise ArtifactKeyError(
            f"artifact {sha256} cannot be decrypted: {exc}", details={"sha256": sha256, "key_id": exc.key_id}
        ) from exc
    except crypto.DecryptionError as exc:
        raise ArtifactIntegrityError(
            f"artifact {sha256} failed its integrity check: {exc}", details={"sha256": sha256}
        ) from exc
    actual = sha256_hex(data)
    if actual != sha256:
        raise ArtifactIntegrityError(
            f"artifact {sha256} failed its integrity check: content hashes to {actual}",
            details={"sha256": sha256, "actual": actual},
        )
    return data


def reencrypt(sha256: str, *, storage: ArtifactStorage | None = None, dry_run: bool = False) -> bool:
    """Rewrite the artifact at `sha256` under the newest key (key rotation), if another key encrypted it.
    Returns whether it was (or, with `dry_run`, would be) rewritten. The plaintext is hash-verified before the
    write and read back after it; the write replaces the blob atomically, so a reader sees the old or the new
    blob, both readable while the old key is still configured. Safe to run twice."""
    storage = storage or get_storage()
    blob = _get(storage, sha256)
    if blob is None:
        raise ArtifactMissingError(f"artifact {sha256} is not in the artifact store", details={"sha256": sha256})
    keyring = crypto.get_keyring()
    try:
        current = crypto.blob_key_id(blob) == keyring.current_id
    except crypto.DecryptionError as exc:
        raise ArtifactIntegrityError(f"artifact {sha256} has a bad header: {exc}", details={"sha256": sha256}) from exc
    if current:
        return False
    data = fetch(sha256, storage=storage)  # decrypts with the old key and verifies the hash
    if not dry_run:
        _put(storage, sha256, crypto.encrypt(data, sha256=sha256, keyring=keyring))
        fetch(sha256, storage=storage)
    return True


def load(sha256: str, *, storage: ArtifactStorage | None = None) -> Any:
    """The model stored at `sha256`: decrypted, hash-verified and loaded with the trusted-types list."""
    return deserialize(fetch(sha256, storage=storage))
