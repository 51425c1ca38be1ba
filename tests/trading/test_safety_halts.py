"""Safety halts stay safe: resuming after a reconciliation, start-up or risk halt needs staff (or the
trading.resume_safety_halt permission) and no open critical discrepancy, or an audited override with a
written reason."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone
from rest_framework.test import APIClient

from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.services import discrepancy_acknowledge, discrepancy_resolve
from trading.kill_switch import trading_state_set
from trading.models import SafetyOverride, TradingState
from trading.permissions import TRADERS_GROUP
from trading.selectors import trading_state_get

pytestmark = pytest.mark.django_db

RESUME = "/api/trading/state/resume/"
LONG_REASON = "exchange support confirmed the balance; discrepancy is a display lag"


def make_trader(django_user_model: Any, name: str, **extra: Any) -> Any:
    user = django_user_model.objects.create_user(username=name, password=f"pw-{name}-123", **extra)
    user.groups.add(Group.objects.get_or_create(name=TRADERS_GROUP)[0])
    return user


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def trader(django_user_model):  # type: ignore[no-untyped-def]
    return make_trader(django_user_model, "tess")


@pytest.fixture
def staff_trader(django_user_model):  # type: ignore[no-untyped-def]
    return make_trader(django_user_model, "stan", is_staff=True)


def halt(actor: str, reason: str = "beyond tolerance") -> None:
    trading_state_set(state=TradingState.State.HALTED, reason=reason, actor=actor)


def open_critical(count: int) -> list[Discrepancy]:
    now = timezone.now()
    run = ReconciliationRun.objects.create(trigger="schedule", status="halted", started_at=now, finished_at=now)
    return [Discrepancy.objects.create(run=run, kind="state_mismatch", severity="critical") for _ in range(count)]


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


@pytest.mark.parametrize("actor", ["reconciliation:run-7", "reconciliation", "risk:monitor"])
def test_a_trader_cannot_lift_a_safety_halt(trader, actor: str) -> None:  # type: ignore[no-untyped-def]
    halt(actor)
    response = client_for(trader).post(RESUME, {"reason": "looks fine"}, format="json")
    assert (response.status_code, error_code(response)) == (403, "safety_halt")
    assert trading_state_get().state == "halted"


def test_a_trader_still_lifts_a_halt_made_by_a_person(trader) -> None:  # type: ignore[no-untyped-def]
    halt("user:bob", "fat finger")
    response = client_for(trader).post(RESUME, {"reason": "x"}, format="json")
    assert response.status_code == 200
    assert trading_state_get().state == "active"


def test_staff_cannot_resume_with_critical_discrepancies_open(staff_trader) -> None:  # type: ignore[no-untyped-def]
    open_critical(34)
    halt("reconciliation:run-1")
    response = client_for(staff_trader).post(RESUME, {"reason": "x"}, format="json")
    assert (response.status_code, error_code(response)) == (409, "open_critical_discrepancies")
    assert response.json()["error"]["details"]["count"] == 34
    assert trading_state_get().state == "halted"


def test_an_override_needs_a_written_reason(staff_trader, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_RESUME_OVERRIDE_MIN_REASON = 20
    open_critical(2)
    halt("reconciliation:run-1")
    response = client_for(staff_trader).post(RESUME, {"reason": "x", "override": True}, format="json")
    assert (response.status_code, error_code(response)) == (400, "validation_error")
    assert trading_state_get().state == "halted"
    assert not SafetyOverride.objects.exists()


def test_an_override_with_a_reason_resumes_and_is_recorded(staff_trader) -> None:  # type: ignore[no-untyped-def]
    found = open_critical(2)
    halt("reconciliation:run-1", "2 discrepancies beyond tolerance")
    response = client_for(staff_trader).post(RESUME, {"reason": LONG_REASON, "override": True}, format="json")
    assert response.status_code == 200, response.json()
    state = trading_state_get()
    assert state.state == "active"
    assert state.reason.startswith("override (2 critical discrepancies open): ")
    record = SafetyOverride.objects.get()
    assert (record.actor, record.reason, record.halted_by) == ("user:stan", LONG_REASON, "reconciliation:run-1")
    assert record.halt_reason == "2 discrepancies beyond tolerance"
    assert record.open_critical == [d.pk for d in found]


def test_staff_resumes_once_the_discrepancies_are_resolved(staff_trader) -> None:  # type: ignore[no-untyped-def]
    found = open_critical(1)
    halt("reconciliation")
    discrepancy_resolve(discrepancy_id=found[0].pk, actor="user:stan", note="fixed at the exchange")
    assert client_for(staff_trader).post(RESUME, {"reason": "resolved"}, format="json").status_code == 200
    assert trading_state_get().state == "active"
    assert not SafetyOverride.objects.exists()


def test_acknowledged_is_still_open(staff_trader) -> None:  # type: ignore[no-untyped-def]
    found = open_critical(1)
    discrepancy_acknowledge(discrepancy_id=found[0].pk, actor="user:stan", note="looking")
    halt("reconciliation:run-3")
    assert client_for(staff_trader).post(RESUME, {"reason": "seen"}, format="json").status_code == 409


def test_the_dedicated_permission_stands_in_for_staff(trader) -> None:  # type: ignore[no-untyped-def]
    trader.user_permissions.add(Permission.objects.get(codename="resume_safety_halt"))
    halt("risk:monitor", "drawdown")
    trader = type(trader).objects.get(pk=trader.pk)  # permissions are cached on the instance
    assert client_for(trader).post(RESUME, {"reason": "limit raised"}, format="json").status_code == 200
