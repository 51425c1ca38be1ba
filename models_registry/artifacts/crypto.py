"""Encryption at rest: AES-256-GCM with a key id in the blob header.

Keys come from the MODELS_REGISTRY_ARTIFACT_KEYS setting (environment), a list of `<key id>:<urlsafe base64 of
32 bytes>`, newest first. The newest key encrypts; any listed key decrypts the blobs written with its id, so a
rotation is: put the new key first, keep the old ones until every artifact has been re-encrypted (or retired).
Without the setting, a key is generated once into `var/artifact-keys` (development and standalone runs).

Blob layout: b"GFA1" | key-id length (1 byte) | key id (ASCII) | nonce (12 bytes) | ciphertext + GCM tag. The
header and the artifact's SHA-256 are authenticated data, so a blob moved to another address, a flipped byte
or another key with the same id all fail authentication.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MAGIC = b"GFA1"
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class UnknownKeyError(Exception):
    def __init__(self, key_id: str, known: list[str]) -> None:
        super().__init__(f"encrypted with key {key_id!r}, which is not configured (configured: {known})")
        self.key_id = key_id


class DecryptionError(Exception):
    pass


@dataclass(frozen=True)
class Keyring:
    keys: tuple[tuple[str, bytes], ...]  # (key id, 32-byte key), newest first

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    def key(self, key_id: str) -> bytes:
        for kid, key in self.keys:
            if kid == key_id:
                return key
        raise UnknownKeyError(key_id, [kid for kid, _ in self.keys])


def parse_keys(specs: list[str] | tuple[str, ...] | str) -> Keyring:
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    keys: list[tuple[str, bytes]] = []
    for spec in specs:
        kid, sep, encoded = spec.strip().partition(":")
        if not sep or not _KEY_ID.match(kid):
            raise ImproperlyConfigured(f"artifact key {kid!r}: expected '<key id>:<base64 key>'")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as exc:
            raise ImproperlyConfigured(f"artifact key {kid!r} is not base64") from exc
        if len(key) != 32:
            raise ImproperlyConfigured(f"artifact key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
        if any(kid == existing for existing, _ in keys):
            raise ImproperlyConfigured(f"artifact key id {kid!r} listed twice")
        keys.append((kid, key))
    if not keys:
        raise ImproperlyConfigured("no artifact keys configured")
    return Keyring(tuple(keys))


def new_key_spec(key_id: str) -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode().rstrip('=')}"


def _local_key_file() -> list[str]:
    path = Path(settings.VAR_DIR) / "artifact-keys"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(new_key_spec("local-1") + "\n")
    return [line for line in path.read_text().splitlines() if line.strip()]


def get_keyring() -> Keyring:
    configured = settings.MODELS_REGISTRY_ARTIFACT_KEYS
    return parse_keys(configured if configured else _local_key_file())


def encrypt(plaintext: bytes, *, sha256: str, keyring: Keyring) -> bytes:
    kid = keyring.current_id.encode("ascii")
    nonce = os.urandom(NONCE_BYTES)
    header = MAGIC + bytes([len(kid)]) + kid + nonce
    return header + AESGCM(keyring.key(keyring.current_id)).encrypt(nonce, plaintext, header + sha256.encode())


def blob_key_id(blob: bytes) -> str:
    if len(blob) < len(MAGIC) + 1 or not blob.startswith(MAGIC):
        raise DecryptionError("not an artifact blob (bad header)")
    length = blob[len(MAGIC)]
    start = len(MAGIC) + 1
    if length == 0 or len(blob) < start + length + NONCE_BYTES + 16:
        raise DecryptionError("truncated artifact blob")
    try:
        return blob[start : start + length].decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecryptionError("bad key id in artifact header") from exc


def decrypt(blob: bytes, *, sha256: str, keyring: Keyring) -> bytes:
    kid = blob_key_id(blob)
    key = keyring.key(kid)  # UnknownKeyError when the key is not configured
    header_end = len(MAGIC) + 1 + len(kid) + NONCE_BYTES
    header, ciphertext = blob[:header_end], blob[header_end:]
    try:
        return AESGCM(key).decrypt(header[-NONCE_BYTES:], ciphertext, header + sha256.encode())
    except InvalidTag as exc:
        raise DecryptionError(
            f"artifact blob does not authenticate under key {kid!r}: tampered, corrupt, or that key id now "
            "holds a different key"
        ) from exc
