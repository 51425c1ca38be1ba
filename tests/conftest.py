"""Shared test fixtures and the backing-service policy.

Tests that need a real service carry `@pytest.mark.services("postgres", "redis", "influxdb")`. A service is
"configured" when its URL is in the environment (DATABASE_URL pointing at PostgreSQL, REDIS_URL, INFLUXDB_URL)
and must then answer. When a service is absent the test is skipped with the reason, unless
GALFRIDAY_REQUIRE_SERVICES=1 (CI), where it fails instead: CI never passes by skipping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("GALFRIDAY_REQUIRE_SERVICES") == "1"

SERVICE_URLS = {
    "postgres": "DATABASE_URL",
    "redis": "REDIS_URL",
    "influxdb": "INFLUXDB_URL",
}


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def service_problem(name: str) -> str | None:
    """Why the service cannot be used, or None when it is configured and answers."""
    variable = SERVICE_URLS[name]
    url = os.environ.get(variable, "")
    if name == "postgres" and not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        return f"{variable} does not point at PostgreSQL"
    if not url:
        return f"{variable} is not set"
    default_port = {"postgres": 5432, "redis": 6379, "influxdb": 8086}[name]
    if not _reachable(url, default_port):
        return f"{name} at {url} does not answer"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "services(*names): needs these real services")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers(name="services"):
        for name in marker.args:
            if name not in SERVICE_URLS:
                pytest.fail(f"unknown service {name!r} in @pytest.mark.services")
            problem = service_problem(name)
            if problem is None:
                continue
            if REQUIRE_SERVICES:
                pytest.fail(f"required service {name} unavailable: {problem}")
            pytest.skip(f"{name} unavailable: {problem}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


EMBEDDED_UNSET = (
    "DATABASE_URL",
    "REDIS_URL",
    "CACHE_URL",
    "CHANNEL_LAYER_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "INFLUXDB_URL",
    "DJANGO_SETTINGS_MODULE",
)


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a process that runs on the embedded defaults, with its own var/ directory."""
    env = {k: v for k, v in os.environ.items() if k not in EMBEDDED_UNSET}
    env.update(
        {
            "GALFRIDAY_VAR_DIR": str(tmp_path / "var"),
            "GALFRIDAY_ENV_FILE": "/dev/null",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def staff_user(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(username="staff", password="pw-staff-123", is_staff=True)


@pytest.fixture
def plain_user(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(username="viewer", password="pw-viewer-123")


@contextmanager
def kraken_sim_process(*args: str) -> Iterator[dict[str, str]]:
    """`python -m kraken_sim <args>` as a user runs it, on free ports; yields the URLs it prints first, and
    stops it after."""
    import json

    process = subprocess.Popen(
        [sys.executable, "-m", "kraken_sim", *args, "--log-level", "WARNING"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        pytest.fail("the simulator exited before printing its URLs")
    try:
        yield json.loads(line)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[dict[str, str]]:
    """The simulator with no background market; yields its URLs."""
    with kraken_sim_process("--market", "none", "--warmup", "0") as urls:
        yield urls


@pytest.fixture(autouse=True)
def _time_series_isolation(request: pytest.FixtureRequest, settings) -> None:  # type: ignore[no-untyped-def]
    """Tests keep their bars in the relational store, rolled back with the test's transaction, unless they are
    about InfluxDB (marked `services("influxdb")`): those give themselves a database of their own."""
    names = {name for marker in request.node.iter_markers(name="services") for name in marker.args}
    if "influxdb" not in names:
        settings.INFLUXDB_URL = ""
