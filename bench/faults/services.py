"""Child processes, and the campaign's own Redis and InfluxDB servers.

Every child runs in a process group of its own (`start_new_session`), so a SIGKILL reaches it and whatever it
forked (a Celery worker's pool) and nothing else. Redis and InfluxDB are dedicated servers on the campaign's ports
and data directories: restarting them is part of the campaign, so they must never be the machine's shared ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `predicate` until it is truthy; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class Child:
    """One child process (its own session and process group), restartable, its output appended to `log`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.name} #{self.starts + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the child's process group (the child and what it forked), then reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, a grace period, then SIGKILL (to the group: a prefork pool's children too)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        self.kill()


class RedisServer:
    """A dedicated `redis-server` on `port`, with an append-only file in `data_dir` (fsync every second), as a
    production broker keeps its queues across a restart."""

    def __init__(self, port: int, data_dir: Path, log: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        argv = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.child = Child("redis", argv, dict(os.environ), log)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: refusing to share a Redis server")
        self.child.start()
        wait_until(lambda: port_open(self.port), 30, f"redis on port {self.port}")

    def restart(self, down_s: float) -> None:
        """SIGTERM (Redis writes its append-only file and exits), `down_s` seconds down, start again."""
        self.child.stop(grace=10)
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self.child.stop(grace=10)


class InfluxServer:
    """A dedicated `influxd` (InfluxDB 1.x) on `port` (HTTP) and `port + 1` (its RPC bind address), data under
    `data_dir`."""

    def __init__(self, port: int, data_dir: Path, log: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        config = data_dir / "influxdb.conf"
        config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{port + 1}"
[meta]
  dir = "{data_dir}/meta"
[data]
  dir = "{data_dir}/data"
  wal-dir = "{data_dir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""
        )
        self.child = Child("influxd", ["influxd", "run", "-config", str(config)], dict(os.environ), log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: refusing to share an InfluxDB server")
        self.child.start()
        wait_until(lambda: port_open(self.port), 60, f"influxd on port {self.port}")

    def down(self) -> None:
        """SIGKILL: the time-series store is gone at once."""
        self.child.kill()

    def stop(self) -> None:
        self.child.stop(grace=10)


def pg_terminate_backends(dsn: dict[str, Any], database: str) -> int:
    """pg_terminate_backend on every backend of `database` but this one; returns how many were terminated."""
    import psycopg  # reason: only the campaign's process needs the driver directly

    with psycopg.connect(**dsn, dbname="postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def pg_connections(dsn: dict[str, Any], database: str) -> int:
    import psycopg  # reason: as above

    with psycopg.connect(**dsn, dbname="postgres", autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        ).fetchone()
    return int(row[0]) if row else 0
