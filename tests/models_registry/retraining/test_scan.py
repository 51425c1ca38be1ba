"""The scan that turns confirmed drift and due schedules into triggers without an operator: a confirmed report on
the champion triggers once (a second scan adds nothing), a report that is not confirmed or is on a version that is
no longer the champion triggers nothing, a report whose change point is known waits until the bars after it fill
the policy's minimum window, and a schedule triggers when due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from models_registry.models import DriftReport, ModelVersion
from models_registry.retraining.models import RetrainingPolicy, RetrainingRun, RetrainingTrigger
from models_registry.retraining.scan import retraining_scan
from models_registry.services import model_version_promote
from tests.models_registry.factories import make_model, make_version, registry_settings  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis"),
]


@pytest.fixture
def champion() -> ModelVersion:
    model = make_model()
    version = make_version(model)
    model_version_promote(model_name=model.name, version=version.version, reason="champion", actor="test")
    return version


def _report(version: ModelVersion, *, confirmed: bool, minutes_ago: int = 0) -> DriftReport:
    return DriftReport.objects.create(
        model=version.model, version=version, trigger="schedule", actor="drift", status="drift",
        as_of=timezone.now() - timedelta(minutes=minutes_ago), kinds=["feature"], confirmed=confirmed,
        confirmed_by=["sustained"] if confirmed else [], consecutive=2 if confirmed else 1,
    )  # fmt: skip


def test_a_confirmed_report_on_the_champion_triggers_once(champion: ModelVersion) -> None:
    _report(champion, confirmed=False, minutes_ago=15)
    confirmed = _report(champion, confirmed=True)
    done = retraining_scan()
    assert [d["started"] for d in done["drift"]] == [True]
    run = RetrainingRun.objects.get(model=champion.model)
    assert run.trigger == "drift"
    assert run.drift_report == confirmed
    assert retraining_scan()["drift"] == []  # the report already triggered
    assert RetrainingTrigger.objects.filter(model=champion.model).count() == 1


def test_a_report_after_a_clean_check_waits_for_the_minimum_window_after_it(champion: ModelVersion) -> None:
    RetrainingPolicy.objects.create(model=champion.model, min_window_hours=6.0)
    clean = DriftReport.objects.create(
        model=champion.model, version=champion, trigger="schedule", actor="drift", status="ok",
        as_of=timezone.now() - timedelta(minutes=45), kinds=[],
    )  # fmt: skip
    _report(champion, confirmed=False, minutes_ago=30)
    confirmed = _report(champion, confirmed=True, minutes_ago=15)
    done = retraining_scan()
    assert done["drift"] == []
    assert done["waiting"] == [{"drift_report": confirmed.pk, "until": (clean.as_of + timedelta(hours=6)).isoformat()}]
    assert not RetrainingTrigger.objects.exists()
    done = retraining_scan(now=clean.as_of + timedelta(hours=6))
    assert [d["started"] for d in done["drift"]] == [True]
    run = RetrainingRun.objects.get(model=champion.model)
    assert run.change_point_at == clean.as_of  # the window starts after the last check that saw no drift
    assert "waited for 6 h of bars after the change" in run.reason


def test_a_detector_change_point_bounds_the_wait(champion: ModelVersion) -> None:
    RetrainingPolicy.objects.create(model=champion.model, min_window_hours=2.0)
    report = _report(champion, confirmed=True)
    report.change_point_at = report.as_of - timedelta(hours=1)
    report.save(update_fields=["change_point_at"])
    assert retraining_scan()["drift"] == []
    assert retraining_scan(now=report.as_of + timedelta(minutes=59))["drift"] == []
    assert [d["started"] for d in retraining_scan(now=report.as_of + timedelta(hours=1))["drift"]] == [True]
    assert RetrainingRun.objects.get(model=champion.model).change_point_at == report.change_point_at


def test_a_report_on_a_former_champion_triggers_nothing(champion: ModelVersion) -> None:
    _report(champion, confirmed=True)
    successor = make_version(champion.model)
    model_version_promote(model_name=champion.model.name, version=successor.version, reason="new", actor="test")
    assert retraining_scan()["drift"] == []
    assert not RetrainingRun.objects.exists()


def test_a_due_schedule_triggers_and_an_undue_one_does_not(champion: ModelVersion, settings: Any) -> None:
    RetrainingPolicy.objects.create(model=champion.model, schedule_hours=24.0)
    assert retraining_scan()["schedule"] == []  # the champion is younger than a day
    done = retraining_scan(now=timezone.now() + timedelta(hours=25))
    assert [d["started"] for d in done["schedule"]] == [True]
    assert RetrainingRun.objects.get(model=champion.model).trigger == "schedule"
