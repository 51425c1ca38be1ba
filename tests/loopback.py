"""Loopback servers for tests and benchmarks: a free port of a fixed range, and the real web process (uvicorn on
`galfriday_site.asgi`) started on it and stopped after. One implementation for the browser harness
(tests/dashboard), the deploy tests, the web connection test and the dashboard benchmarks."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def loopback_port(ports: range) -> int:
    """A free loopback port of `ports` (a fixed range per suite keeps parallel runs' servers apart; the random
    start makes two runs of one suite rarely race for the same port)."""
    candidates = list(ports)
    start = random.randrange(len(candidates))
    for port in candidates[start:] + candidates[:start]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {ports.start}-{ports.stop - 1}")


@contextmanager
def uvicorn_server(
    env: dict[str, str], *, port: int, log: Path, ready_path: str = "/api/health/", timeout: float = 60.0
) -> Iterator[str]:
    """The web process (`uvicorn galfriday_site.asgi:application`) on 127.0.0.1:`port` with `env`, its output in
    `log`; yields its base URL once `ready_path` answers (any status), and terminates it on exit (killed after
    15 s). Raises AssertionError, with the log's tail, when it exits or does not answer within `timeout`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "galfriday_site.asgi:application", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:  # a server starting: poll its port (tests.waiting is for conditions inside a test)
                if proc.poll() is not None:
                    raise AssertionError(f"the web server exited ({log}): {log.read_text()[-3000:]}")
                try:
                    httpx.get(f"{base}{ready_path}", timeout=5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"the web server did not answer within {timeout:.0f} s ({log}): {log.read_text()[-3000:]}"
                        ) from None
                    time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
