"""The artifact storage contract every backend keeps (see `storage` for the local one and the choice by settings,
`s3` for the bucket): the protocol, the content address check and the "could not ask" error."""

from __future__ import annotations

import re
from typing import Protocol

_SHA = re.compile(r"^[0-9a-f]{64}$")


class StorageUnavailableError(Exception):
    """The backend could not be asked (unreachable, missing bucket, no credentials, access refused): the
    artifact may well be there, so this is never reported as "missing"."""


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
