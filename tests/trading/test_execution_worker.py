"""The wiring: a risk-checked order handed to `CeleryExecutionGateway` after commit reaches a real Celery worker
(celery's test worker, on Redis when configured, else on the embedded SQLAlchemy transport), whose
`execute_order` task places it on the simulator and records the fill."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from galfriday_site.celery import make_celery_app
from tests.trading.factories import InstrumentFactory
from tests.trading.sim_support import ThreadedSim, point_settings_at, sim  # noqa: F401  (fixture)
from tests.waiting import wait_for
from trading.accounts import balance_set
from trading.gateway import CeleryExecutionGateway, execution_gateway
from trading.models import Order
from trading.order_states import OrderState
from trading.orders import order_create, order_mark_submitted


# PostgreSQL: the worker thread and the test thread write and read the same rows; SQLite's shared-cache in-memory
# test database locks whole tables between threads ("database table is locked").
@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_gateway_enqueues_execute_order_and_a_real_worker_fills_it_on_the_exchange(
    settings: Any,
    sim: ThreadedSim,  # noqa: F811
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    point_settings_at(settings, sim, tmp_path, mode="live")
    settings.GALFRIDAY_EXECUTION_GATEWAY = "trading.gateway.CeleryExecutionGateway"
    assert isinstance(execution_gateway(), CeleryExecutionGateway)
    url = os.environ.get("REDIS_URL", "")
    if url:
        app = make_celery_app("galfriday_exec_wiring", broker_url=url, result_backend=url)
    else:
        app = make_celery_app(
            "galfriday_exec_wiring",
            broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
            result_backend=f"db+sqlite:///{tmp_path / 'results.sqlite3'}",
        )
    assert app.amqp.router.route({}, "trading.tasks.execute_order")["queue"].name == "trading"
    instrument = InstrumentFactory()
    balance_set(asset="USD", total=Decimal("100000"))
    sim.place("sell", "100.0", "1")
    order = order_create(
        client_order_id="gf-wired-1", instrument=instrument, side="buy", order_type="market", quantity=Decimal("0.1")
    )
    order_mark_submitted(order_id=order.pk)

    with start_worker(app, pool="solo", perform_ping_check=False, queues=["trading"], shutdown_timeout=10):
        execution_gateway().submit_order(order_id=order.pk)
        wait_for(lambda: Order.objects.get(pk=order.pk).state == OrderState.FILLED)

    order.refresh_from_db()
    assert order.filled_qty == Decimal("0.1")
    assert len(sim.orders("gf-wired-1")) == 1
