"""The faults reconciliation needs: balance moves outside trading (rewards, staking) and re-priced fees."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from kraken_sim import Simulator


async def test_balance_move_adds_a_reward_asset_visible_in_rest_and_on_balances(
    sim: Simulator, rest: Any, admin: Any, kit: SimpleNamespace
) -> None:
    answer = await kit.fault(admin, "balance_move", asset="DOT.S", amount="1.25", type="reward")
    assert answer["asset"] == "DOT.S"
    assert Decimal(answer["balance"]) == Decimal("1.25")
    assert Decimal((await rest.ok("Balance"))["DOT.S"]) == Decimal("1.25")
    assert Decimal((await rest.ok("BalanceEx"))["DOT.S"]["balance"]) == Decimal("1.25")
    assert sim.state()["ledger"][-1]["type"] == "reward"


async def test_balance_move_refuses_a_negative_balance(admin: Any) -> None:
    r = await admin.post("/_sim/faults", json={"fault": "balance_move", "asset": "USD.M", "amount": "-1"})
    assert r.status_code == 400


async def test_fee_adjust_re_prices_a_trade_and_moves_the_quote_balance(
    sim: Simulator, rest: Any, admin: Any, kit: SimpleNamespace
) -> None:
    await kit.place(admin, "BTC/USD", "sell", "60000.0", "0.1")
    await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.01")
    trades = (await rest.ok("TradesHistory"))["trades"]
    txid, row = next(iter(trades.items()))
    usd_before = Decimal((await rest.ok("Balance"))["ZUSD"])
    answer = await kit.fault(admin, "fee_adjust", txid=txid, fee=str(Decimal(row["fee"]) + 1))
    assert Decimal(answer["fee"]) == Decimal(row["fee"]) + 1
    assert Decimal((await rest.ok("TradesHistory"))["trades"][txid]["fee"]) == Decimal(row["fee"]) + 1
    assert Decimal((await rest.ok("Balance"))["ZUSD"]) == usd_before - 1
    assert sim.state()["ledger"][-1]["type"] == "adjustment"


async def test_fee_adjust_on_an_unknown_trade_is_refused(admin: Any) -> None:
    r = await admin.post("/_sim/faults", json={"fault": "fee_adjust", "txid": "TNOPE", "fee": "1"})
    assert r.status_code == 400


@pytest.mark.parametrize("fault", ["balance_move", "fee_adjust"])
def test_faults_are_listed(fault: str) -> None:
    from kraken_sim.admin import FAULTS

    assert fault in FAULTS
