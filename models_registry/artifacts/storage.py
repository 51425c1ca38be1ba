"""Where artifact blobs live. A backend stores opaque (already encrypted) bytes under their content address
(the SHA-256 of the plaintext artifact); it knows nothing about encryption or models. Integrity (the blob must
authenticate and its plaintext hash to the address) is checked by the layer above on every load, so a backend
never has to be trusted.

The MODELS_REGISTRY_ARTIFACT_STORAGE setting chooses the backend: `local` (the default) is
`LocalArtifactStorage`, which writes under a directory atomically (temporary file + rename); `s3` is
`models_registry.artifacts.s3.S3ArtifactStorage` over an S3-compatible bucket (AWS S3, MinIO, Ceph, R2); any
other value is the dotted path of a class built with the local artifact directory.

Every backend has the same contract: `put` replaces the blob at an address atomically (a reader sees the old
or the new blob, never a mix; re-encryption relies on that), `get` answers None only when nothing is stored
there, and a backend that cannot answer (unreachable, missing bucket, refused) raises `StorageUnavailableError`
rather than pretend the artifact is missing.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from models_registry.artifacts.base import ArtifactStorage, check_address


class LocalArtifactStorage:
    """Blobs at `<root>/<aa>/<bb>/<sha256>.gfa`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        check_address(sha256)
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.gfa"

    def put(self, sha256: str, blob: bytes) -> None:
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".gfa")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()


def artifact_root() -> Path:
    configured = settings.MODELS_REGISTRY_ARTIFACT_DIR
    return Path(configured) if configured else Path(settings.VAR_DIR) / "artifacts"


LOCAL = "local"
S3 = "s3"


@cache
def _storage_for(dotted: str, root: str) -> ArtifactStorage:
    backend: ArtifactStorage = import_string(dotted)(root)
    return backend


def get_storage() -> ArtifactStorage:
    """The configured backend (re-read from settings on each call, so tests can override them; a backend for
    the same settings is reused)."""
    choice = (settings.MODELS_REGISTRY_ARTIFACT_STORAGE or LOCAL).strip()
    if choice == LOCAL:
        return _storage_for("models_registry.artifacts.storage.LocalArtifactStorage", str(artifact_root()))
    if choice == S3:
        # by name: the S3 backend (and boto3 with it) is loaded only when it is configured
        s3_storage_from_settings = import_string("models_registry.artifacts.s3.s3_storage_from_settings")
        backend: ArtifactStorage = s3_storage_from_settings()
        return backend
    if "." not in choice:
        raise ImproperlyConfigured(
            f"MODELS_REGISTRY_ARTIFACT_STORAGE is {choice!r}: use 'local', 's3' or the dotted path of a storage class"
        )
    return _storage_for(choice, str(artifact_root()))
