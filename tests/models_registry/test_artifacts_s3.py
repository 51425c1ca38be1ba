"""Artifacts on an S3-compatible bucket: the same contract as the local directory, the registry's normal paths
(register, load, re-encrypt) end to end, a tampered object refused, and a missing bucket or an unreachable
endpoint reported clearly with nothing registered.

moto stands in for S3 because no S3 service (AWS, MinIO, Ceph) can run on this machine: its server mode
(`ThreadedMotoServer`) is a real S3-compatible HTTP server on a free loopback port, and the code under test talks
to it with boto3 over a real socket exactly as it would to MinIO (custom endpoint, path-style requests). moto
accepts any credentials, so the test sets fake ones in the standard AWS environment variables, which is also
how the backend gets real ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from moto.server import ThreadedMotoServer

from galfriday_site.checks import artifact_storage_problems
from models_registry import selectors
from models_registry.artifacts import (
    ArtifactIntegrityError,
    ArtifactMissingError,
    ArtifactStorageError,
    crypto,
    serialize,
    sha256_hex,
)
from models_registry.artifacts.base import StorageUnavailableError
from models_registry.artifacts.s3 import S3ArtifactStorage, S3Location
from models_registry.artifacts.storage import LocalArtifactStorage, get_storage
from models_registry.models import ModelVersion
from tests.conftest import free_port, run_manage
from tests.models_registry.factories import (
    KEY_A,
    KEY_B,
    fitted_estimator,
    make_model,
    make_version,
    registry_settings,  # noqa: F401
    sample_rows,
)

pytestmark = [pytest.mark.usefixtures("registry_settings"), pytest.mark.django_db]

PREFIX = "gal-friday/artifacts/"
SHA = "ab" + "cd" * 31


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free loopback port, with fake credentials in the standard AWS variables (and the
    machine's own AWS config files kept out of the way)."""
    aws_dir = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "gal-friday-test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "gal-friday-test-secret")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        env.setenv("AWS_CONFIG_FILE", str(aws_dir / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_dir / "credentials"))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, settings: Any) -> tuple[Any, str]:
    """A fresh bucket, and the settings that select it; yields a client of the test's own (to inspect and
    tamper with objects) and the bucket name. Each test has its own bucket, so none sees another's objects."""
    name = f"gf-artifacts-{uuid.uuid4().hex[:12]}"
    client = boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
    )
    client.create_bucket(Bucket=name)
    settings.MODELS_REGISTRY_ARTIFACT_STORAGE = "s3"
    settings.MODELS_REGISTRY_S3_BUCKET = name
    settings.MODELS_REGISTRY_S3_PREFIX = PREFIX
    settings.MODELS_REGISTRY_S3_ENDPOINT_URL = s3_endpoint
    settings.MODELS_REGISTRY_S3_REGION = "us-east-1"
    return client, name


def object_key(sha: str) -> str:
    return f"{PREFIX}{sha[:2]}/{sha[2:4]}/{sha}.gfa"


def keys_in(client: Any, name: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=name).get("Contents", [])]


def read_object(client: Any, name: str, sha: str) -> bytes:
    body: bytes = client.get_object(Bucket=name, Key=object_key(sha))["Body"].read()
    return body


def no_local_files(artifact_dir: Path) -> bool:
    return not artifact_dir.exists() or not any(p.is_file() for p in artifact_dir.rglob("*"))


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_s3_backend_keeps_the_local_backends_contract(
    backend: str,
    request: pytest.FixtureRequest,
    registry_settings: Path,  # noqa: F811
) -> None:
    if backend == "s3":
        client, name = request.getfixturevalue("bucket")
        storage = get_storage()
        assert isinstance(storage, S3ArtifactStorage)
    else:
        storage = get_storage()
        assert isinstance(storage, LocalArtifactStorage)

    assert storage.get(SHA) is None  # nothing there: None, not an error
    assert storage.exists(SHA) is False
    storage.put(SHA, b"blob-1")
    assert storage.get(SHA) == b"blob-1"
    assert storage.exists(SHA) is True
    storage.put(SHA, b"blob-1")  # idempotent
    assert storage.get(SHA) == b"blob-1"
    storage.put(SHA, b"blob-2")  # a replacement (re-encryption) is atomic and complete
    assert storage.get(SHA) == b"blob-2"
    with pytest.raises(ValueError, match="not a SHA-256"):
        storage.put("../../etc/passwd", b"x")
    with pytest.raises(ValueError, match="not a SHA-256"):
        storage.get(SHA.upper())

    if backend == "s3":
        assert keys_in(client, name) == [object_key(SHA)]  # one object, the local layout under the prefix
        assert no_local_files(registry_settings)


def test_version_registered_and_loaded_through_s3(bucket: tuple[Any, str], registry_settings: Path) -> None:  # noqa: F811
    client, name = bucket
    model = make_model()
    data = serialize(fitted_estimator())
    v1 = make_version(model, estimator=None, artifact=data)
    v2 = make_version(model, estimator=None, artifact=data)  # the same bytes: the same address, one object

    assert v1.artifact_sha256 == v2.artifact_sha256 == sha256_hex(data)
    assert keys_in(client, name) == [object_key(v1.artifact_sha256)]
    assert no_local_files(registry_settings)  # nothing went to the local directory
    blob = read_object(client, name, v1.artifact_sha256)
    assert data[:64] not in blob  # encrypted at rest in the bucket too
    assert b"sklearn" not in blob
    assert crypto.blob_key_id(blob) == "k2024"

    rows = sample_rows()
    np.testing.assert_array_equal(
        selectors.model_version_load(version=v2).predict(rows), fitted_estimator().predict(rows)
    )
    assert selectors.model_version_artifact(version=v1) == data


def test_tampered_object_in_bucket_is_refused_on_load(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    model = make_model()
    version = make_version(model)
    other = make_version(model, estimator=fitted_estimator(seed=99))

    blob = bytearray(read_object(client, name, version.artifact_sha256))
    blob[len(blob) // 2] ^= 0x01
    client.put_object(Bucket=name, Key=object_key(version.artifact_sha256), Body=bytes(blob))
    with pytest.raises(ArtifactIntegrityError, match="failed its integrity check.*tampered") as refused:
        selectors.model_version_load(version=version)
    assert refused.value.code == "artifact_integrity_failed"

    # A whole, valid blob moved to another address is refused too (the address is authenticated).
    client.put_object(
        Bucket=name, Key=object_key(other.artifact_sha256), Body=read_object(client, name, version.artifact_sha256)
    )
    with pytest.raises(ArtifactIntegrityError):
        selectors.model_version_load(version=other)


def test_deleted_object_is_reported_missing(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    version = make_version(make_model())
    client.delete_object(Bucket=name, Key=object_key(version.artifact_sha256))
    with pytest.raises(ArtifactMissingError, match="not in the artifact store"):
        selectors.model_version_load(version=version)


def test_missing_bucket_is_a_clear_error_and_nothing_is_registered(bucket: tuple[Any, str], settings: Any) -> None:
    client, name = bucket
    model = make_model()
    registered = make_version(model)  # stored while the bucket is the right one
    settings.MODELS_REGISTRY_S3_BUCKET = f"{name}-absent"

    with pytest.raises(ArtifactStorageError, match=f"bucket '{name}-absent' does not exist") as refused:
        make_version(model, estimator=fitted_estimator(seed=5))
    assert refused.value.code == "artifact_storage_unavailable"
    assert refused.value.http_status == 503
    assert list(ModelVersion.objects.filter(model=model).values_list("version", flat=True)) == [registered.version]
    # Loading names the bucket too, rather than calling the artifact missing.
    with pytest.raises(ArtifactStorageError, match="does not exist"):
        selectors.model_version_load(version=registered)
    # A HEAD cannot tell a missing bucket from a missing object by itself: exists() must not answer False.
    with pytest.raises(StorageUnavailableError, match="does not exist"):
        get_storage().exists(SHA)
    assert keys_in(client, name) == [object_key(registered.artifact_sha256)]


def test_unreachable_endpoint_is_a_clear_error_and_nothing_is_registered(
    bucket: tuple[Any, str], settings: Any
) -> None:
    model = make_model()
    registered = make_version(model)  # stored while the endpoint answers
    dead = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
    settings.MODELS_REGISTRY_S3_ENDPOINT_URL = dead

    with pytest.raises(ArtifactStorageError, match=f"at {dead} could not read") as refused:
        make_version(model, estimator=fitted_estimator(seed=5))
    assert "EndpointConnectionError" in refused.value.message
    assert list(ModelVersion.objects.filter(model=model).values_list("version", flat=True)) == [registered.version]
    # An artifact that is there but cannot be reached is not "missing" (nobody should re-register or delete it).
    with pytest.raises(ArtifactStorageError):
        selectors.model_version_load(version=registered)


def test_reencrypt_artifacts_rewrites_s3_objects_under_the_newest_key(
    bucket: tuple[Any, str],
    settings: Any,
) -> None:
    client, name = bucket
    model = make_model()
    old = make_version(model)
    other = make_version(model, estimator=fitted_estimator(seed=7))
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [KEY_B, KEY_A]  # rotate: the new key first, the old one kept
    new = make_version(model, estimator=fitted_estimator(seed=42))
    old_blob = read_object(client, name, old.artifact_sha256)

    dry = StringIO()
    call_command("reencrypt_artifacts", "--dry-run", stdout=dry)
    assert (json.loads(dry.getvalue())["reencrypted"], json.loads(dry.getvalue())["current"]) == (2, 1)
    assert read_object(client, name, old.artifact_sha256) == old_blob  # a dry run writes nothing

    out = StringIO()
    call_command("reencrypt_artifacts", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["reencrypted"], report["current"], report["failed"]) == (2, 1, {})
    for version in (old, other, new):
        assert crypto.blob_key_id(read_object(client, name, version.artifact_sha256)) == "k2025"
    assert sorted(keys_in(client, name)) == sorted(object_key(v.artifact_sha256) for v in (old, other, new))

    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [KEY_B]  # the old key removed: everything still loads
    rows = sample_rows()
    np.testing.assert_array_equal(
        selectors.model_version_load(version=old).predict(rows), fitted_estimator().predict(rows)
    )
    selectors.model_version_load(version=other)
    again = StringIO()
    call_command("reencrypt_artifacts", stdout=again)
    assert json.loads(again.getvalue())["reencrypted"] == 0  # safe to run twice: nothing left to do


def test_s3_storage_without_a_bucket_is_refused(embedded_env: dict[str, str], settings: Any) -> None:
    result = run_manage(
        "check", env={**embedded_env, "MODELS_REGISTRY_ARTIFACT_STORAGE": "s3", "MODELS_REGISTRY_S3_BUCKET": ""}
    )
    assert result.returncode != 0
    assert "galfriday.E008" in result.stdout + result.stderr
    assert "MODELS_REGISTRY_S3_BUCKET" in result.stdout + result.stderr

    assert artifact_storage_problems(storage="s3", bucket="models") == []
    assert artifact_storage_problems(storage="local", bucket="") == []
    assert artifact_storage_problems(storage="", bucket="") == []

    settings.MODELS_REGISTRY_ARTIFACT_STORAGE = "s3"
    settings.MODELS_REGISTRY_S3_BUCKET = ""
    with pytest.raises(ImproperlyConfigured, match="MODELS_REGISTRY_S3_BUCKET"):
        get_storage()
    settings.MODELS_REGISTRY_ARTIFACT_STORAGE = "gcs"
    with pytest.raises(ImproperlyConfigured, match="use 'local', 's3'"):
        get_storage()


def test_prefix_is_normalised_so_every_spelling_names_the_same_objects(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    endpoint = get_storage().location.endpoint_url  # type: ignore[attr-defined]
    for spelling in ("gal-friday/artifacts", "/gal-friday/artifacts/", " gal-friday/artifacts/ "):
        storage = S3ArtifactStorage(S3Location(bucket=name, prefix=spelling, endpoint_url=endpoint, region="us-east-1"))
        assert storage.key(SHA) == object_key(SHA)
    assert S3ArtifactStorage(S3Location(bucket=name, endpoint_url=endpoint)).key(SHA) == f"ab/cd/{SHA}.gfa"
