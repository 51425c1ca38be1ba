"""A Celery worker keeps running when its Redis restarts while it holds an unacknowledged message.

Found by the fault campaign (RELIABILITY.md): the trading worker, holding a `sync_order` with a countdown, stopped
with "Unrecoverable error: AttributeError('NoneType' object has no attribute 'hostname')" when Redis restarted
(kombu 5.7.0; the cause and the fix in `galfriday_site.broker`). A real worker (the campaign's flags: solo pool,
no gossip or mingle) with the project's configuration (`make_celery_app`, in `celery_restart_app`) on a private
`redis-server` of its own (a restart touches nobody else): a task with a countdown is held, Redis is restarted,
then the worker must still be running and must run a new task. About 20 s: a real worker's start and a restart."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.faults.services import RedisServer, port_open
from tests.conftest import REQUIRE_SERVICES, ROOT, free_port
from tests.reliability.celery_restart_app import app, hold

pytestmark = pytest.mark.timeout(120)


def redis_port() -> int:
    """A free port: `GALFRIDAY_TEST_REDIS_PORTS` ("9140-9149") keeps it in a given range, else any free one."""
    wanted = os.environ.get("GALFRIDAY_TEST_REDIS_PORTS", "")
    if not wanted:
        return free_port()
    low, high = (int(p) for p in wanted.split("-"))
    for port in range(low, high + 1):
        if not port_open(port):
            return port
    raise RuntimeError(f"no free port in {wanted}")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = RedisServer(redis_port(), tmp_path / "redis", tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_worker_keeps_running_when_redis_restarts_while_it_holds_a_message(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = dict(os.environ, RESTART_TEST_BROKER=f"{redis_server.url}/0", PYTHONPATH=str(ROOT))
    log = tmp_path / "worker.log"
    argv = [
        sys.executable, "-m", "celery", "-A", "tests.reliability.celery_restart_app", "worker", "--pool", "solo",
        "--without-gossip", "--without-mingle", "--loglevel", "INFO", "-Q", "restart-test", "-n",
        f"restart-test-{os.getpid()}@%h",
    ]  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: b" ready." in log.read_bytes() or worker.poll() is not None, 60, "the worker")
        assert worker.poll() is None, log.read_text()[-3000:]

        def send(marker: Path, **options: object) -> None:
            with app.connection_for_write(env["RESTART_TEST_BROKER"]) as connection:
                hold.apply_async(args=[0.0, str(marker)], queue="restart-test", connection=connection, **options)

        send(tmp_path / "held", countdown=60)  # held by the worker, unacknowledged, meanwhile
        wait_for(lambda: b"received" in log.read_bytes(), 20, "the held task")
        time.sleep(0.5)
        redis_server.restart(2)
        wait_for(lambda: b"Connection to broker lost" in log.read_bytes(), 20, "the worker to see Redis go")

        after = tmp_path / "after"
        send(after)
        wait_for(lambda: Path(f"{after}.done").exists() or worker.poll() is not None, 40, "a task after the restart")
        assert worker.poll() is None, "the worker stopped:\n" + log.read_text()[-3000:]
        assert b"Unrecoverable error" not in log.read_bytes()
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
