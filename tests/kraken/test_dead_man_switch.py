"""The client's dead man's switch (REST ``CancelAllOrdersAfter``, WS v2 ``cancel_all_orders_after``) and WS
``cancel_all`` against the local simulator: the answers parsed (exchange time, trigger time, None when off), the
switch armed and disarmed on the exchange (and firing when the simulator's clock reaches the trigger), bad arguments
refused before anything is sent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest


@pytest.fixture
async def sim(make_sim: Any) -> Any:
    return await make_sim(market="none")


async def test_rest_arm_and_disarm(rest: Any, sim_admin: Any) -> None:
    armed = await rest.cancel_all_orders_after(60)
    assert armed.current_time is not None
    assert armed.trigger_time is not None
    assert (armed.trigger_time - armed.current_time).total_seconds() == 60
    assert (await sim_admin.state())["dead_man_switch"]["trigger"] is not None

    disarmed = await rest.cancel_all_orders_after(0)
    assert disarmed.trigger_time is None
    assert (await sim_admin.state())["dead_man_switch"] == {"trigger": None, "fired": 0}
    with pytest.raises(ValueError):
        await rest.cancel_all_orders_after(-1)


async def test_ws_switch_fires_and_cancel_all_answers_a_count(make_ws: Any, rest: Any, sim_admin: Any) -> None:
    client, _ = make_ws()
    await client.subscribe_executions()
    first = await client.add_order(
        symbol="BTC/USD", side="buy", order_type="limit", order_qty=Decimal("0.1"), limit_price=Decimal("90.0")
    )
    with pytest.raises(ValueError):
        await client.cancel_all_orders_after(True)
    armed = await client.cancel_all_orders_after(1)
    assert armed.trigger_time is not None
    assert armed.current_time is not None
    assert (armed.trigger_time - armed.current_time).total_seconds() == 1
    # The switch counts down on the simulator's clock: let the second pass at once instead of waiting for it.
    advanced = await sim_admin.http.post("/dead_man_switch", json={"advance": 1})
    assert advanced.json()["fired_now"] is True, advanced.text
    orders = {o["order_id"]: o for o in (await sim_admin.state())["orders"]}
    assert orders[first.order_id]["status"] == "canceled"

    await client.add_order(
        symbol="BTC/USD", side="buy", order_type="limit", order_qty=Decimal("0.1"), limit_price=Decimal("90.0")
    )
    await client.add_order(
        symbol="BTC/USD", side="buy", order_type="limit", order_qty=Decimal("0.1"), limit_price=Decimal("91.0")
    )
    assert await client.cancel_all() == 2
    assert [o for o in (await sim_admin.state())["orders"] if o["status"] == "open"] == []
