"""One round of health checks serves every caller of the web process for HEALTH_CHECK_CACHE_S (issue 18, load):
`/api/health/`, `/metrics` and the dashboard's strip share it, concurrent callers wait for the one round running,
a settings change forgets it, and 0 (the default outside the web process) checks on every call."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from galfriday_site import health
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts the real checks as they run (each still talks to its component)."""
    counted: Counter[str] = Counter()

    def counting(name: str, check: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            counted[name] += 1
            return check()

        return run

    for name, check in list(health.CHECKS.items()):
        monkeypatch.setitem(health.CHECKS, name, counting(name, check))
    health.forget_latest_health()
    yield counted
    health.forget_latest_health()


@override_settings(HEALTH_CHECK_CACHE_S=60)
def test_one_round_serves_the_api_the_metrics_and_the_dashboard(runs: Counter[str], django_user_model) -> None:  # type: ignore[no-untyped-def]
    from dashboard.lifecycle.system import health_components

    staff = APIClient()
    staff.force_authenticate(django_user_model.objects.create_user(username="cache-staff", is_staff=True))
    first = staff.get("/api/health/").json()
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert set(health_components(details=True)["components"]) == set(first["components"])
    second = staff.get("/api/health/").json()
    assert runs == dict.fromkeys(health.CHECKS, 1)
    assert second == first
    assert first["checked_at"]


@override_settings(HEALTH_CHECK_CACHE_S=1.0)
def test_a_round_older_than_the_setting_is_run_again(runs: Counter[str], monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(health, "_clock", lambda: now[0])
    health.run_health_checks()
    now[0] += 0.9
    health.run_health_checks()
    assert runs["database"] == 1
    now[0] += 0.2
    health.run_health_checks()
    assert runs["database"] == 2


@override_settings(HEALTH_CHECK_CACHE_S=0)
def test_zero_checks_on_every_call(runs: Counter[str]) -> None:
    health.run_health_checks()
    health.run_health_checks()
    assert runs["cache"] == 2


@override_settings(HEALTH_CHECK_CACHE_S=60)
def test_concurrent_callers_wait_for_the_round_running(monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        started.set()
        assert release.wait(10)
        return "slow"

    monkeypatch.setattr(health, "CHECKS", {"slow": slow})
    health.forget_latest_health()
    reports: list[list[health.ComponentHealth]] = []
    threads = [threading.Thread(target=lambda: reports.append(health.run_health_checks())) for _ in range(8)]
    for t in threads:
        t.start()
    assert started.wait(10)
    release.set()
    for t in threads:
        t.join(10)
    health.forget_latest_health()
    assert len(calls) == 1
    assert len(reports) == 8
    assert {r[0].checked_at for r in reports} == {reports[0][0].checked_at}


@override_settings(HEALTH_CHECK_CACHE_S=60)
def test_a_settings_change_forgets_the_round(runs: Counter[str]) -> None:
    assert {c.name: c.ok for c in health.run_health_checks()}["broker"]
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with override_settings(CELERY_BROKER_URL=dead, HEALTH_CHECK_TIMEOUT=1.0):
        assert not {c.name: c.ok for c in health.run_health_checks()}["broker"]
    assert {c.name: c.ok for c in health.run_health_checks()}["broker"]
    assert runs["broker"] == 3


@override_settings(HEALTH_CHECK_CACHE_S=1)
def test_a_round_slower_than_the_cache_costs_each_caller_one_round_not_a_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def slow() -> str:  # a check slower than the cache's age (a slow exchange, a timeout)
        calls.append(time.monotonic())
        time.sleep(1.5)
        return "slow"

    monkeypatch.setattr(health, "CHECKS", {"slow": slow})
    health.forget_latest_health()
    waits: list[float] = []

    def ask() -> None:
        started = time.monotonic()
        health.run_health_checks()
        waits.append(time.monotonic() - started)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    health.forget_latest_health()
    assert len(calls) == 1  # the callers that came while it ran took its report
    assert len(waits) == 4
    assert max(waits) < 3.0  # one round each (1.5 s), not one after another (1.5, 3, 4.5, 6 s)
