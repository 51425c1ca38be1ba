"""The lifecycle pages' live events: what the domain apps announce (a stage moved, an experiment changed, a drift
report recorded, a discrepancy resolved) reaches the site-wide `system` group after the change commits, and
nothing is sent for a change that rolls back. A member of the group listens as an open page's websocket does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction

from dashboard.lifecycle import events
from experiments.services import experiment_pause
from galfriday_site.consumers import SYSTEM_GROUP
from models_registry.services import model_version_promote
from reconciliation.services import discrepancy_resolve
from tests.dashboard.lifecycle.support import discrepancy, drift_report, running_experiment
from tests.experiments.support import cheap_model

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_settings")]


def _closing(change: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return change()
        finally:
            connection.close()  # this thread's connection must not outlive the test database

    return run


async def _listen(change: Callable[[], Any], topic: str) -> tuple[Any, list[dict[str, Any]]]:
    events.connect()
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(SYSTEM_GROUP, channel)
    try:
        result = await sync_to_async(_closing(change), thread_sensitive=False)()
        found = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=1.0)
            except TimeoutError:
                break
            if message["event"].get("topic") == topic:
                found.append(message["event"])
        return result, found
    finally:
        await layer.group_discard(SYSTEM_GROUP, channel)


def published(change: Callable[[], Any], topic: str) -> tuple[Any, list[dict[str, Any]]]:
    """Run `change` (synchronous, committed) while listening on the `system` group, in an event loop of a thread of
    its own (the test's thread may hold another one: Playwright's); its result and the events of `topic`."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(_listen(change, topic))).result(timeout=60)


def test_an_experiment_transition_is_published_after_it_commits() -> None:
    experiment = running_experiment()
    _, sent = published(
        lambda: experiment_pause(experiment_id=experiment.pk, actor="user:alice", reason="maintenance"), "experiment"
    )
    assert [(e["experiment_id"], e["status"]) for e in sent] == [(experiment.pk, "paused")]


def test_a_stage_move_and_a_drift_report_are_published() -> None:
    model, versions = cheap_model(2, promote=None)
    _, stages = published(
        lambda: model_version_promote(model_name=model.name, version=2, reason="champion", actor="user:alice"), "stage"
    )
    assert [(e["model"], e["versions"]) for e in stages] == [(model.name, [2])]
    report, drifts = published(lambda: drift_report(versions[1]), "drift")
    assert [e["report_id"] for e in drifts] == [report.pk]


def _rolled_back(d: Any) -> None:
    with transaction.atomic():
        d.resolution_note = "never kept"
        d.save()
        transaction.set_rollback(True)


def test_a_resolved_discrepancy_is_published_and_a_rolled_back_change_is_not() -> None:
    d = discrepancy()
    _, sent = published(
        lambda: discrepancy_resolve(discrepancy_id=d.pk, actor="user:alice", note="checked"), "reconciliation"
    )
    assert [(e["kind"], e["id"], e["status"]) for e in sent] == [("discrepancy", d.pk, "resolved")]
    _, none = published(lambda: _rolled_back(d), "reconciliation")
    assert none == []
