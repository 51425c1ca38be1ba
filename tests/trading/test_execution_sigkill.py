"""A real worker process SIGKILLed between sending an order and learning the answer: the exchange has the order,
our books have nothing; the redelivered task finds it by client order id instead of placing a second one.

The worker is a separate Python process running the `execute_order` task against the same PostgreSQL test
database and Redis cache; the simulator holds back the answer (after applying the order) so the kill lands in the
window: the REST AddOrder answer (`rest_delay`) or, with the order sent over the private WebSocket, every frame to
the socket (`silence`). PostgreSQL only: the subprocess must see the committed test data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

from tests.conftest import ROOT
from tests.trading.factories import InstrumentFactory
from tests.trading.sim_support import ThreadedSim, point_settings_at, sim  # noqa: F401  (fixture)
from tests.waiting import wait_for
from trading.accounts import balance_set
from trading.models import Fill, Order
from trading.order_states import OrderState
from trading.orders import order_create, order_mark_submitted
from trading.tasks import execute_order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services("postgres", "redis")]


@pytest.mark.parametrize("transport", ["rest", "ws"])
def test_sigkilled_worker_after_the_exchange_accepted_leaves_one_exchange_order(
    settings: Any, request: pytest.FixtureRequest, tmp_path: Path, transport: str
) -> None:
    exchange_sim: ThreadedSim = request.getfixturevalue("sim")
    point_settings_at(settings, exchange_sim, tmp_path, mode="live", ws=transport == "ws")
    instrument = InstrumentFactory()
    balance_set(asset="USD", total=Decimal("100000"))
    exchange_sim.place("sell", "100.0", "1")
    order = order_mark_submitted(
        order_id=order_create(
            client_order_id="gf-sigkill-1",
            instrument=instrument,
            side="buy",
            order_type="market",
            quantity=Decimal("0.2"),
        ).pk
    )
    if transport == "rest":
        # Every REST answer held back 5 s after the call is applied: AddOrder's (the first send asks nothing before
        # it) is held while the kill lands.
        exchange_sim.fault("rest_delay", ms=5_000, count=None, phase="after")
    else:
        # Nothing reaches the worker's private socket (its add_order ack included) while the kill lands; the token
        # comes over REST, undelayed.
        exchange_sim.fault("silence", seconds=60, scope="private", mode="hold")

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "TRADING_MODE": "live",
        "KRAKEN_REST_URL": exchange_sim.rest_url,
        "KRAKEN_WS_AUTH_URL": exchange_sim.ws_auth_url,
        "GALFRIDAY_EXECUTION_WS": "true" if transport == "ws" else "false",
        "GALFRIDAY_EXECUTION_POST_ACK_SYNC_S": "0",
        "KRAKEN_API_KEY": exchange_sim.sim.config.api_key,
        "KRAKEN_API_SECRET": exchange_sim.sim.config.api_secret,
        "KRAKEN_NONCE_FILE": settings.KRAKEN_NONCE_FILE,
        "KRAKEN_TIMEOUT": "60",
        "GALFRIDAY_KRAKEN_TIER": "pro",
        "GALFRIDAY_EXECUTION_MUTEX_TTL_S": "2",
        "GALFRIDAY_VAR_DIR": str(tmp_path / "worker-var"),
        "GALFRIDAY_ENV_FILE": "/dev/null",
        "DJANGO_SETTINGS_MODULE": "galfriday_site.settings",
    }
    script = textwrap.dedent(
        f"""
        import django
        django.setup()
        from trading.tasks import execute_order
        execute_order({order.pk})
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
    try:
        wait_for(lambda: len(exchange_sim.orders("gf-sigkill-1")) == 1, 30, "the exchange to accept the order")
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
    exchange_sim.clear_faults()

    order.refresh_from_db()
    assert order.exchange_order_id == ""  # the worker died before recording anything
    assert order.state in (OrderState.SUBMITTED, OrderState.UNKNOWN)
    assert order.send_attempts == 1  # ...but it did commit its send attempt first
    # The dead worker's lock expires on its own (2 s here); the redelivered task then runs.
    wait_for(lambda: cache.get(f"trading:execution:order:{order.pk}") is None, 10, "the dead worker's lock to expire")
    outcome = execute_order(order.pk)

    order.refresh_from_db()
    assert outcome["action"] == "found"
    exchange = exchange_sim.orders("gf-sigkill-1")
    assert len(exchange) == 1, "a second order was placed"
    assert order.exchange_order_id == exchange[0]["order_id"]
    assert order.state == OrderState.FILLED
    assert Fill.objects.filter(order=order).count() == 1
    assert Order.objects.count() == 1
    assert exchange[0]["source"] == ("ws" if transport == "ws" else "api")
