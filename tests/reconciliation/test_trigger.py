"""The operator trigger: refused in paper mode, a cool-down between requests, and the run enqueued on the worker,
never run inside the request."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from reconciliation import services
from reconciliation.models import ReconciliationRun
from reconciliation.tasks import reconciliation_run_task

pytestmark = pytest.mark.django_db

URL = "/api/reconciliation/runs/trigger/"


@pytest.fixture
def staff(staff_user) -> APIClient:  # type: ignore[no-untyped-def]
    cache.delete(services.TRIGGER_COOLDOWN_KEY)
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def enqueued() -> Any:
    with mock.patch.object(reconciliation_run_task, "apply_async") as apply_async:
        yield apply_async


def test_url_is_the_trigger() -> None:
    assert reverse("api:reconciliation:run-trigger") == URL


def test_paper_mode_is_refused(staff: APIClient, enqueued, settings, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    settings.TRADING_MODE = "paper"
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(URL, {"reason": "check"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "paper_mode"
    assert enqueued.call_count == 0
    assert not ReconciliationRun.objects.exists()


def test_the_run_is_enqueued_not_run_in_the_request(
    staff: APIClient, enqueued, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(URL, {"reason": "check", "mode": "now"}, format="json")
    assert response.status_code == 202
    assert response.json() == {"queued": True}
    assert not ReconciliationRun.objects.exists()
    assert enqueued.call_args.kwargs == {
        "kwargs": {"trigger": "operator", "requested_by": "user:staff", "reason": "check"},
        "queue": "reconciliation",
    }


def test_a_second_request_within_the_cooldown_is_refused(
    staff: APIClient, enqueued, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S = 120
    with django_capture_on_commit_callbacks(execute=True):
        first = staff.post(URL, {}, format="json")
        second = staff.post(URL, {}, format="json")
    assert first.status_code == 202
    assert second.status_code == 429
    error = second.json()["error"]
    assert error["code"] == "cooldown"
    assert 0 < error["details"]["retry_after_s"] <= 120
    assert enqueued.call_count == 1
    cache.delete(services.TRIGGER_COOLDOWN_KEY)  # the cool-down passed
    with django_capture_on_commit_callbacks(execute=True):
        assert staff.post(URL, {}, format="json").status_code == 202
    assert enqueued.call_count == 2
