"""The lifecycle pages in a real browser (Debian's chromium through Playwright, the real web process, PostgreSQL
and the Redis channel layer; tests/dashboard/conftest.py): each page loads with no console error and no failed
request, its charts and probes load, a staff action (conclude an experiment, resolve a discrepancy) works through
the confirmation dialog and the page shows it, and an event published on the channel layer refreshes an open
page. Screenshots go under var/screenshots/ (lifecycle-*.png)."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.models import Experiment, Status
from experiments.services import experiment_pause
from ingest.models import IngestStatus
from reconciliation.models import Discrepancy
from tests.dashboard.conftest import SCREENSHOTS, in_thread, publish_system_event
from tests.dashboard.lifecycle.support import alert, discrepancy, heartbeat, model_with_history, running_experiment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_settings")]


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector('body[data-live="live"]')


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"lifecycle-{name}.png"), full_page=True)


def test_every_lifecycle_page_loads_with_its_charts_and_no_error(browser_page: Any) -> None:
    model, _ = in_thread(model_with_history)  # producers run beside Playwright's loop in threads of their own
    experiment = in_thread(running_experiment)
    in_thread(discrepancy)
    in_thread(heartbeat)
    in_thread(alert)
    page = browser_page

    _open(page, "/models/")
    assert page.locator(f'tr[data-model="{model.name}"]').count() == 1
    _shot(page, "models")

    _open(page, f"/models/{model.name}/")
    page.wait_for_selector("body[data-charts-loaded]")
    assert page.locator('table.live-metrics[data-version="1"]').count() == 1
    assert page.locator("#cumulative-chart canvas").count() == 1
    assert page.locator("#calibration svg circle").count() > 0
    _shot(page, "model-detail")

    _open(page, "/experiments/")
    assert page.locator(f'tr[data-experiment="{experiment.pk}"]').count() == 1
    _shot(page, "experiments")

    _open(page, f"/experiments/{experiment.pk}/")
    assert page.locator("#comparisons .cibar").count() > 0
    assert page.locator("#delta-chart canvas").count() == 1
    _shot(page, "experiment-detail")

    _open(page, "/reconciliation/")
    assert page.locator("#paper-mode").is_visible()  # the web process trades on paper
    assert page.locator("tr[data-discrepancy]").count() == 1
    _shot(page, "reconciliation")

    _open(page, "/system/")
    page.wait_for_selector("body[data-probes]")
    assert page.locator('#health-strip .component[data-component="database"][data-status="ok"]').count() == 1
    assert page.locator('#celery-queues tr[data-queue="trading"] td.num').inner_text() != "…"
    assert page.locator('tr[data-channel="trade"]').count() == 1
    _shot(page, "system")


def test_staff_conclude_an_experiment_with_a_reason_and_the_page_shows_it(browser_page: Any) -> None:
    experiment = in_thread(running_experiment)
    page = browser_page
    _open(page, f"/experiments/{experiment.pk}/")
    page.click('#actions button[data-action="conclude"]')
    page.fill("#gf-confirm textarea", "the treatment is better and the sample is enough")
    page.click("#gf-confirm .gf-confirm-ok")
    page.wait_for_selector('#experiment[data-status="concluded"]')
    assert page.locator("#gf-flash").inner_text().startswith("Done")
    concluded = Experiment.objects.get(pk=experiment.pk)
    assert concluded.status == Status.CONCLUDED
    assert concluded.events.get(action="conclude").reason == "the treatment is better and the sample is enough"
    _shot(page, "experiment-concluded")


def test_a_cancelled_dialog_changes_nothing(browser_page: Any) -> None:
    experiment = in_thread(running_experiment)
    page = browser_page
    _open(page, f"/experiments/{experiment.pk}/")
    page.click('#actions button[data-action="stop"]')
    page.click("#gf-confirm .gf-confirm-cancel")
    assert not page.locator("#gf-confirm").evaluate("d => d.open")
    assert Experiment.objects.get(pk=experiment.pk).status == Status.RUNNING
    assert page.locator('#experiment[data-status="running"]').count() == 1


def test_staff_resolve_a_discrepancy_with_a_note_and_it_leaves_the_list(browser_page: Any) -> None:
    d = in_thread(discrepancy)
    page = browser_page
    _open(page, "/reconciliation/")
    page.click(f'tr[data-discrepancy="{d.pk}"] button[data-action="resolve"]')
    page.fill("#gf-confirm textarea", "checked on the exchange: fill confirmed")
    page.click("#gf-confirm .gf-confirm-ok")
    page.wait_for_selector("#no-discrepancies")
    d.refresh_from_db()
    assert d.status == Discrepancy.Status.RESOLVED
    assert d.resolution_note == "checked on the exchange: fill confirmed"
    _shot(page, "reconciliation-resolved")


def test_an_experiment_event_refreshes_the_open_page(browser_page: Any) -> None:
    experiment = in_thread(running_experiment)
    page = browser_page
    _open(page, f"/experiments/{experiment.pk}/")
    in_thread(lambda: experiment_pause(experiment_id=experiment.pk, actor="user:bob", reason="maintenance window"))
    publish_system_event({"topic": "experiment", "experiment_id": experiment.pk, "status": "paused"})
    page.wait_for_selector('#experiment[data-status="paused"]', timeout=5000)
    assert page.locator('#actions button[data-action="resume"]').count() == 1


def test_a_reconnecting_socket_resyncs_the_page(browser_page: Any) -> None:
    status = in_thread(heartbeat)
    page = browser_page
    _open(page, "/system/")
    assert page.locator('dd[data-metric="reconnects"]').inner_text() == "3"
    resyncs = int(page.evaluate("document.body.dataset.resyncs"))
    # a change that sends no event (the heartbeat row): only the resync after the reconnect can show it
    stats = {**status.stats, "health": {**status.stats["health"], "reconnects": 7}}
    in_thread(lambda: IngestStatus.objects.filter(pk=status.pk).update(stats=stats))
    page.evaluate("window.gfLive.drop()")
    page.wait_for_function(f"Number(document.body.dataset.resyncs) > {resyncs}")
    page.wait_for_function("document.querySelector('dd[data-metric=reconnects]').textContent === '7'")
