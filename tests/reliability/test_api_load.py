"""The load test's CI subset (issue 18): `bench/bench_api_load.py` for 15 s at a lower rate against the real ASGI
server (uvicorn, DEBUG off, PostgreSQL, Redis, the production throttles) with locust as a subprocess (locust
gevent-patches the standard library on import: nothing here imports it). Asserts no failed request, no more of the
web's PostgreSQL connections at once than clients and none left after (the bench exits 1 on each); no latency
assertion (the bench measures that on a quiet machine).

The bench empties its database: it uses `<DATABASE_URL's database>_load`, never the test database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.services("postgres", "redis")


@pytest.mark.timeout(300)
def test_api_reads_under_load_fail_none_and_leave_no_connection(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    env = {**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"].split("?", 1)[0] + "_load"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [
            sys.executable, "bench/bench_api_load.py", "--seconds", "15", "--rate", "40", "--users", "8",
            "--orders", "2000", "--runs", "200", "--port", str(free_port()), "--json", str(out),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert out.exists(), f"no result (exit {proc.returncode}): {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    overall = result["all"]
    assert overall["requests"] > 0
    assert overall["failures"] == 0, result.get("failure_kinds")
    assert set(result["endpoints"]) >= {"orders list", "order detail", "health"}, sorted(result["endpoints"])
    connections = result["connections"]
    assert connections["after"]["web"] <= connections["before"]["web"], connections
    during = connections["during"]
    assert during["web_max"] <= 8, during  # one connection per request in flight, one request per client
    assert proc.returncode == 0, proc.stderr[-2000:]
