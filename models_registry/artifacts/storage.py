"""Where artifact blobs live. A backend stores opaque (already encrypted) bytes under their content address
(the SHA-256 of the plaintext artifact); it knows nothing about encryption or models.

`LocalArtifactStorage` (the default) writes under a directory, atomically (temporary file + rename). An
S3-compatible backend implements the same three methods over a bucket (not shipped: no boto3 dependency yet)
and is selected with the MODELS_REGISTRY_ARTIFACT_STORAGE setting (a dotted path).
"""

from __future__ import annotations

import os
import re
import tempfile
from functools import cache
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

_SHA = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStorage(Protocol):
    def put(self, sha256: str, blob: bytes) -> None: ...

    def get(self, sha256: str) -> bytes | None:
        """The blob, or None when nothing is stored under the address."""
        ...

    def exists(self, sha256: str) -> bool: ...


def check_address(sha256: str) -> str:
    if not _SHA.match(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return sha256


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
    configured = getattr(settings, "MODELS_REGISTRY_ARTIFACT_DIR", "")
    return Path(configured) if configured else Path(settings.VAR_DIR) / "artifacts"


@cache
def _storage_for(dotted: str, root: str) -> ArtifactStorage:
    backend: ArtifactStorage = import_string(dotted)(root)
    return backend


def get_storage() -> ArtifactStorage:
    """The configured backend (re-read from settings on each call, so tests can override them)."""
    dotted = getattr(settings, "MODELS_REGISTRY_ARTIFACT_STORAGE", "") or (
        "models_registry.artifacts.storage.LocalArtifactStorage"
    )
    return _storage_for(dotted, str(artifact_root()))
