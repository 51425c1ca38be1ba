from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from galfriday_site.periodic import MANAGED_PREFIX, PERIODIC_TASKS, PeriodicTaskSpec, sync_periodic_tasks

pytestmark = pytest.mark.django_db


def test_setup_periodic_tasks_is_idempotent() -> None:
    call_command("setup_periodic_tasks")
    first = list(PeriodicTask.objects.filter(name__startswith=MANAGED_PREFIX).values("name", "task", "interval_id"))
    assert sync_periodic_tasks() == (0, 0, 0)
    again = list(PeriodicTask.objects.filter(name__startswith=MANAGED_PREFIX).values("name", "task", "interval_id"))
    assert first == again
    assert len(first) == len(PERIODIC_TASKS)


def test_changed_specs_update_and_removed_specs_are_disabled_but_operator_tasks_untouched() -> None:
    sync_periodic_tasks([PeriodicTaskSpec("a", "x.a", 60), PeriodicTaskSpec("b", "x.b", 60)])
    every_hour = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    operator = PeriodicTask.objects.create(name="operator's own", task="x.own", interval=every_hour)
    assert sync_periodic_tasks([PeriodicTaskSpec("a", "x.a", 30, queue="trading")]) == (0, 1, 1)
    a = PeriodicTask.objects.get(name=MANAGED_PREFIX + "a")
    assert (a.interval.every, a.queue, a.enabled) == (30, "trading", True)
    assert PeriodicTask.objects.get(name=MANAGED_PREFIX + "b").enabled is False
    operator.refresh_from_db()
    assert operator.enabled is True
