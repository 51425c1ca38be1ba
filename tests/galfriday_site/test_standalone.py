"""`manage.py standalone` on embedded defaults: an embedded Redis, the simulator, web, a real Celery worker and beat,
stopped cleanly by Ctrl-C.

Runs the command as a user would, in a process of its own with an empty environment (no PostgreSQL, Redis or
InfluxDB URLs) and its own var/ directory, and talks to it over HTTP and through its embedded Redis."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from galfriday_site.celery import make_celery_app
from galfriday_site.management.commands.standalone import embedded_redis_url
from tests import waiting
from tests.conftest import ROOT, free_port

# A fresh start migrates a new SQLite database before anything listens: about a minute on a loaded two-core machine.
START_TIMEOUT = 240


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """The standalone system is starting: refused connections are "not yet"."""
    return waiting.wait_for(predicate, timeout, what, interval=0.25, retry_on=(httpx.HTTPError, OSError))


class Standalone:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.redis_url = embedded_redis_url(Path(env["GALFRIDAY_VAR_DIR"]), int(env["GALFRIDAY_EMBEDDED_REDIS_PORT"]))
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "standalone", "--port", str(port), "--concurrency", "1"],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=40)


def serving(system: Standalone, what: str) -> httpx.Response:
    return wait_for(lambda: httpx.get(f"http://127.0.0.1:{system.port}/api/health/", timeout=10), START_TIMEOUT, what)


@pytest.fixture
def standalone(embedded_env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[Standalone] = []

    def start() -> Standalone:
        env = {
            **embedded_env,
            "KRAKEN_SIM_REST_PORT": str(free_port()),
            "KRAKEN_SIM_WS_PORT": str(free_port()),
            "KRAKEN_SIM_WS_AUTH_PORT": str(free_port()),
            "GALFRIDAY_EMBEDDED_REDIS_PORT": str(free_port()),
        }
        instance = Standalone(env, free_port(), tmp_path / f"standalone-{len(started)}.log")
        started.append(instance)
        return instance

    yield start
    for instance in started:
        if instance.process.poll() is None:
            instance.process.kill()
            instance.process.wait()


def child_pids(parent: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False).stdout
    return {int(pid) for pid in out.split()}


def test_standalone_serves_admin_and_health_runs_tasks_and_stops_cleanly(
    standalone, embedded_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    system = standalone()
    base = f"http://127.0.0.1:{system.port}"

    anonymous = wait_for(lambda: httpx.get(f"{base}/api/health/", timeout=10), START_TIMEOUT, "the web server")
    assert anonymous.json() == {"status": "ok"}, anonymous.text  # the components are for staff
    # The admin user is created with a generated password that is printed once: staff see the components.
    password = wait_for(
        lambda: re.search(r"generated password: (\S+)", system.output()), 30, "the admin password"
    ).group(1)
    token = httpx.post(f"{base}/api/auth/token/", data={"username": "admin", "password": password}, timeout=10)
    staff = {"Authorization": f"Token {token.json()['token']}"}
    health = httpx.get(f"{base}/api/health/", headers=staff, timeout=10)
    assert health.status_code == 200, health.text
    components = health.json()["components"]
    required = {name: c["status"] for name, c in components.items() if c["required"]}
    assert required == dict.fromkeys(required, "ok")
    assert components["database"]["backend"] == "sqlite"
    assert components["timeseries"]["backend"] == "relational"
    # Broker, cache and channel layer are the embedded Redis, shared by every process (not per-process memory).
    assert components["broker"]["backend"] == "redis"
    assert components["cache"]["backend"] == "RedisCache"
    assert components["channel_layer"]["backend"] == "RedisChannelLayer"
    assert components["exchange"]["backend"].startswith("sim (http://127.0.0.1:")
    # The ingest worker reports in and stores bars from the simulator's market.
    ingest = wait_for(
        lambda: (
            (c := httpx.get(f"{base}/api/health/", headers=staff, timeout=10).json()["components"]["ingest"])["status"]
            == "ok"
            and c
        ),
        60,
        "the ingest worker's heartbeat",
    )
    assert ingest["backend"].endswith("(online)")
    assert httpx.get(f"{base}/admin/login/", timeout=10).status_code == 200

    # The admin user is created with a generated password that is printed once.
    assert "generated password" in wait_for(lambda: system.output(), 5, "output")

    # The worker consumes from the embedded Redis (its password is kept under var/, owner only).
    app = make_celery_app("standalone_client", broker_url=system.redis_url, result_backend=system.redis_url)
    token = uuid.uuid4().hex
    assert app.send_task("galfriday_site.ping", args=[token], queue="trading").get(timeout=60)["token"] == token
    assert (Path(embedded_env["GALFRIDAY_VAR_DIR"]) / "redis" / "password").stat().st_mode & 0o077 == 0

    children = child_pids(system.process.pid)
    assert len(children) == 7  # redis, simulator, ingest, web, worker, lifecycle worker, beat
    assert system.stop() == 0
    assert "stopped" in system.output()
    for pid in children:
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True, check=False).returncode != 0


def test_second_start_does_not_print_a_new_password(standalone) -> None:  # type: ignore[no-untyped-def]
    first = standalone()
    serving(first, "first start")
    assert first.stop() == 0
    second = standalone()
    serving(second, "second start")
    assert second.stop() == 0
    assert "generated password" in first.output()
    assert "generated password" not in second.output()


def test_children_stop_when_the_supervisor_is_killed(standalone) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL leaves the supervisor no chance to stop its children (each in a session of its own, so Ctrl-C
    reaches only the supervisor): the kernel sends them SIGTERM when it dies, and nothing is left running, the
    embedded Redis included."""
    system = standalone()
    serving(system, "the web server")
    children = wait_for(lambda: (pids := child_pids(system.process.pid)) and len(pids) == 7 and pids, 30, "children")
    system.process.kill()
    system.process.wait(timeout=10)

    def all_gone() -> bool:
        return all(
            subprocess.run(["kill", "-0", str(p)], capture_output=True, check=False).returncode for p in children
        )

    wait_for(all_gone, 40, "the children to stop after the supervisor was killed")
