"""Artifact blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2), the same contract as the
local directory backend (see `storage`).

Objects live at `<prefix><aa>/<bb>/<sha256>.gfa`, the local layout under a key prefix, so a directory synced
to a bucket (or back) needs no renaming. Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and ~/.aws, or an instance or pod role): nothing
secret is kept in Django settings.

Why it is safe to trust the bucket this little: every blob is AES-GCM encrypted with the artifact's SHA-256 as
authenticated data and re-hashed on every load by the layer above, so a tampered, swapped or truncated object
is refused there. This module adds only transport integrity on upload (Content-MD5, which every S3-compatible
service checks) and keeps "not there" apart from "could not ask" (`StorageUnavailableError`).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from models_registry.artifacts.base import StorageUnavailableError, check_address

# A missing object; anything else (missing bucket, access refused, throttling, 5xx) is "could not ask".
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""
    endpoint_url: str = ""
    region: str = ""

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where


def normalise_prefix(prefix: str) -> str:
    """'models/x' and '/models/x/' both become 'models/x/'; empty stays empty (the bucket's root)."""
    prefix = prefix.strip().strip("/")
    return f"{prefix}/" if prefix else ""


def _client_config(endpoint_url: str) -> Config:
    return Config(
        connect_timeout=5,
        read_timeout=60,
        # A few quick retries for transient faults; an unreachable endpoint is reported within seconds.
        retries={"max_attempts": 3, "mode": "standard"},
        # Path-style requests (http://host/bucket/key) for a custom endpoint: MinIO and Ceph need them unless
        # wildcard DNS is set up, and R2 accepts them. AWS itself (no endpoint) keeps botocore's default.
        s3={"addressing_style": "path"} if endpoint_url else {},
        # botocore's default flexible checksums (aws-chunked uploads) are refused by several S3-compatible
        # services; Content-MD5 (sent by `put`) protects the upload everywhere instead.
        request_checksum_calculation="when_required",
        user_agent_extra="gal-friday-artifacts",
    )


class S3ArtifactStorage:
    """Blobs at `s3://<bucket>/<prefix><aa>/<bb>/<sha256>.gfa`. A PUT replaces an object atomically (readers see
    the old or the new blob), which is what re-encryption after a key rotation needs."""

    def __init__(self, location: S3Location, *, client: Any = None) -> None:
        if not location.bucket:
            raise ImproperlyConfigured("the s3 artifact storage needs a bucket (MODELS_REGISTRY_S3_BUCKET)")
        self.location = S3Location(
            bucket=location.bucket,
            prefix=normalise_prefix(location.prefix),
            endpoint_url=location.endpoint_url,
            region=location.region,
        )
        self.client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint_url or None,
            region_name=location.region or None,
            config=_client_config(location.endpoint_url),
        )

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def key(self, sha256: str) -> str:
        check_address(sha256)
        return f"{self.location.prefix}{sha256[:2]}/{sha256[2:4]}/{sha256}.gfa"

    def _unavailable(
        self, action: str, sha256: str, exc: Exception, *, reason: str | None = None
    ) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"artifact storage {self.location.describe()} could not {action} {sha256}: {reason or self._reason(exc)}"
        )

    def _reason(self, exc: Exception) -> str:
        if not isinstance(exc, ClientError):
            return f"{type(exc).__name__}: {exc}"
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        if code == "NoSuchBucket":
            return f"bucket {self.bucket!r} does not exist"
        if code in {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return f"access refused ({code}): check the credentials and the bucket policy"
        return f"{code}: {error.get('Message', '') or exc}"

    def put(self, sha256: str, blob: bytes) -> None:
        key = self.key(sha256)
        md5 = base64.b64encode(hashlib.md5(blob, usedforsecurity=False).digest()).decode("ascii")
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=blob, ContentMD5=md5, ContentType="application/octet-stream"
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("store", sha256, exc) from exc

    def get(self, sha256: str) -> bytes | None:
        key = self.key(sha256)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                return None
            raise self._unavailable("read", sha256, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("read", sha256, exc) from exc
        return body

    def exists(self, sha256: str) -> bool:
        key = self.key(sha256)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) not in _NOT_FOUND_CODES:
                raise self._unavailable("check", sha256, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("check", sha256, exc) from exc
        # A HEAD answers a bare 404 for a missing bucket as for a missing key: tell them apart.
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            missing = str(exc.response.get("Error", {}).get("Code", "")) in _NOT_FOUND_CODES
            reason = f"bucket {self.bucket!r} does not exist" if missing else None
            raise self._unavailable("check", sha256, exc, reason=reason) from exc
        except BotoCoreError as exc:
            raise self._unavailable("check", sha256, exc) from exc
        return False


def location_from_settings() -> S3Location:
    return S3Location(
        bucket=str(settings.MODELS_REGISTRY_S3_BUCKET or "").strip(),
        prefix=str(settings.MODELS_REGISTRY_S3_PREFIX or ""),
        endpoint_url=str(settings.MODELS_REGISTRY_S3_ENDPOINT_URL or "").strip(),
        region=str(settings.MODELS_REGISTRY_S3_REGION or "").strip(),
    )


@cache
def _storage_at(location: S3Location) -> S3ArtifactStorage:
    return S3ArtifactStorage(location)


def s3_storage_from_settings() -> S3ArtifactStorage:
    """The bucket the settings name; one client per distinct location (boto3 clients are thread-safe)."""
    return _storage_at(location_from_settings())
