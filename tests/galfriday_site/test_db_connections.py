"""The ASGI web process leaves no database connection behind: the real server (uvicorn on loopback) under concurrent
requests on PostgreSQL, connections counted in pg_stat_activity; and the start refused when it would keep them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from django.conf import settings
from django.db import connection

from galfriday_site.checks import web_connection_problems
from tests.conftest import ROOT, free_port
from tests.loopback import uvicorn_server

REQUESTS = 400
CONCURRENCY = 16
APP_NAME = "gf-web-conn-test"


def _web_env(**extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "GALFRIDAY_PROCESS"}}
    env.update(
        {
            "DATABASE_URL": f"{url}?application_name={APP_NAME}",
            "GALFRIDAY_ENV_FILE": "/dev/null",
            "GALFRIDAY_THROTTLE_USER": "1000000/min",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


@contextmanager
def web_server(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    log = ROOT / "var" / f"web-conn-test-{port}.log"
    with uvicorn_server(env, port=port, log=log, ready_path="/api/auth/token/") as base:
        yield base


def web_connections() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [settings.DATABASES["default"]["NAME"], APP_NAME],
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.services("postgres", "redis")
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_under_asgi_leave_no_idle_connection(django_user_model) -> None:  # type: ignore[no-untyped-def]
    from galfriday_site.tokens import api_token_issue

    user = django_user_model.objects.create_user(username="loader", password="pw-loader-123")
    token, _ = api_token_issue(user=user)
    with web_server(_web_env()) as base:
        headers = {"Authorization": f"Token {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30, limits=httpx.Limits(max_connections=16)) as http:

            def one(i: int) -> int:
                path = "/api/trading/orders/" if i % 2 else "/api/reconciliation/runs/"
                return http.get(path).status_code

            with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
                statuses = Counter(pool.map(one, range(REQUESTS)))
            assert statuses == Counter({200: REQUESTS}), statuses
            left = web_connections()  # the server is still up: what it keeps between requests
    assert len(left) <= 1, left  # at most one in flight while the server settles; no idle pool per thread


@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_the_web_process_refuses_to_start_with_persistent_connections() -> None:
    port_env = _web_env(DATABASE_WEB_CONN_MAX_AGE="60")
    proc = subprocess.run(
        [sys.executable, "-c", "import galfriday_site.asgi"],
        cwd=ROOT,
        env=port_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "galfriday.E009" in proc.stderr


def test_system_check_refuses_asgi_web_with_persistent_connections() -> None:
    postgres = {"ENGINE": "django.db.backends.postgresql"}
    assert [e.id for e in web_connection_problems(process="web", databases={"default": {**postgres}})] == []
    assert web_connection_problems(process="web", databases={"default": {**postgres, "CONN_MAX_AGE": 0}}) == []
    for age in (60, None):
        errors = web_connection_problems(process="web", databases={"default": {**postgres, "CONN_MAX_AGE": age}})
        assert [e.id for e in errors] == ["galfriday.E009"]
    # The worker, beat and ingest own their threads: persistent connections are theirs to keep.
    assert web_connection_problems(process="", databases={"default": {**postgres, "CONN_MAX_AGE": 60}}) == []


def test_the_web_process_defaults_to_closing_connections(embedded_env: dict[str, str]) -> None:
    env = {**embedded_env, "DATABASE_URL": "postgres://u@127.0.0.1:1/x"}
    code = "from django.conf import settings as s; print(s.DATABASES['default']['CONN_MAX_AGE'])"
    ages = {}
    for process in ("web", ""):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**env, "GALFRIDAY_PROCESS": process, "DJANGO_SETTINGS_MODULE": "galfriday_site.settings"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        ages[process] = out.stdout.strip().splitlines()[-1]
    assert ages == {"web": "0", "": "60"}
