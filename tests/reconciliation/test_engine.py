"""The pure comparison (no database, no exchange): each kind of finding, its severity and planned action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ingest.kraken.rest_types import OrderInfo, TradeInfo
from reconciliation import engine
from reconciliation.engine import ExchangeView, InstrumentInfo, LocalFill, LocalOrder, Tolerances

NOW = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)
BTC = InstrumentInfo("BTC/USD", "BTC", "USD", ("XXBTZUSD", "XBTUSD", "XBT/USD"))


def info(txid: str, status: str, vol: str = "1", vol_exec: str = "0", cl: str | None = None, trades=()) -> OrderInfo:
    return OrderInfo.from_api(
        txid,
        {
            "status": status,
            "cl_ord_id": cl,
            "opentm": "1735819000",
            "descr": {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "100.0"},
            "vol": vol,
            "vol_exec": vol_exec,
            "trades": list(trades),
        },
    )


def trade(txid: str, order: str, vol: str, fee: str = "0.1") -> TradeInfo:
    return TradeInfo.from_api(
        txid,
        {
            "ordertxid": order,
            "pair": "XXBTZUSD",
            "time": "1735819100",
            "type": "buy",
            "ordertype": "limit",
            "price": "100.00000",
            "cost": str(Decimal(vol) * 100),
            "fee": fee,
            "vol": vol,
        },
    )


def local(pk: int, txid: str, state: str, filled: str = "0", qty: str = "1", cl: str = "") -> LocalOrder:
    return LocalOrder(
        pk,
        cl or f"gf-{pk}",
        txid,
        "BTC/USD",
        "buy",
        Decimal(qty),
        state,
        Decimal(filled),
        NOW - timedelta(minutes=5),
        NOW - timedelta(minutes=5),
    )


def compare(orders, fills, view):
    return engine.compare_orders(
        local_orders=orders, local_fills=fills, exchange=view, instruments=[BTC], tolerances=Tolerances(), now=NOW
    )


def view(*infos: OrderInfo, trades=(), unknown=()) -> ExchangeView:
    return ExchangeView(
        open_txids={i.txid for i in infos if i.status == "open"},
        orders={i.txid: i for i in infos},
        trades={t.txid: t for t in trades},
        unknown_txids=set(unknown),
    )


def test_a_missing_fill_that_completes_the_order_is_one_finding_not_a_state_mismatch() -> None:
    found = compare(
        [local(1, "O1", "accepted")], {}, view(info("O1", "closed", vol_exec="1"), trades=[trade("T1", "O1", "1")])
    )
    assert [(f.kind, f.severity, f.action, f.exec_id) for f in found] == [
        ("missing_fill", "warning", "fill_applied", "T1")
    ]


def test_an_exchange_order_we_do_not_know_is_adopted() -> None:
    found = compare([], {}, view(info("O9", "open")))
    assert [(f.kind, f.action, f.exchange_order_id) for f in found] == [
        ("unknown_exchange_order", "order_adopted", "O9")
    ]


def test_canceled_on_the_exchange_but_open_here_is_a_state_mismatch_advanced_by_event() -> None:
    found = compare([local(1, "O1", "pending_cancel")], {}, view(info("O1", "canceled")))
    assert [(f.kind, f.plan["exec_type"]) for f in found] == [("state_mismatch", "canceled")]


def test_open_on_the_exchange_but_never_confirmed_here_is_matched_by_client_order_id() -> None:
    found = compare([local(1, "", "submitted", cl="gf-x")], {}, view(info("O1", "open", cl="gf-x")))
    assert [(f.kind, f.plan["exec_type"], f.order_pk) for f in found] == [("state_mismatch", "new", 1)]


def test_a_re_priced_fee_is_a_fee_mismatch_corrected() -> None:
    fill = LocalFill("T1", 1, "BTC/USD", "buy", Decimal(1), Decimal(100), Decimal("0.1"), NOW)
    found = compare(
        [local(1, "O1", "filled", filled="1")],
        {"T1": fill},
        view(info("O1", "closed", vol_exec="1"), trades=[trade("T1", "O1", "1", fee="0.05")]),
    )
    assert [(f.kind, f.action, f.difference) for f in found] == [("fee_mismatch", "fee_corrected", Decimal("-0.05"))]


def test_executed_volume_our_fills_cannot_explain_is_critical() -> None:
    found = compare([local(1, "O1", "accepted")], {}, view(info("O1", "open", vol_exec="0.5")))
    assert [(f.kind, f.severity) for f in found] == [("quantity_mismatch", "critical")]


def test_an_unacknowledged_order_absent_everywhere_is_missing_and_rejected_but_an_acked_one_is_critical() -> None:
    found = compare([local(1, "", "submitted"), local(2, "O2", "accepted")], {}, view(unknown=["O2"]))
    assert {(f.kind, f.order_pk, f.severity, f.action) for f in found} == {
        ("order_missing_on_exchange", 1, "warning", "order_rejected"),
        ("order_missing_on_exchange", 2, "critical", "none"),
    }


def test_an_order_submitted_within_the_grace_period_is_in_flight_not_missing() -> None:
    fresh = LocalOrder(1, "gf-1", "", "BTC/USD", "buy", Decimal(1), "submitted", Decimal(0), NOW, NOW)
    assert compare([fresh], {}, view()) == []


def test_balances_dust_is_info_rewards_are_corrected_traded_assets_beyond_tolerance_halt() -> None:
    found = engine.compare_balances(
        local={"USD": Decimal("100.0000"), "BTC": Decimal(1)},
        exchange={"USD": Decimal("100.0004"), "BTC": Decimal("1.5"), "DOT.S": Decimal(3)},
        traded_assets={"USD", "BTC"},
        tolerances=Tolerances(balance={"BTC": Decimal("0.00000001")}),
    )
    assert {(f.asset, f.severity, f.action, f.within_tolerance) for f in found} == {
        ("USD", "info", "balance_set", True),
        ("DOT.S", "warning", "balance_set", False),
        ("BTC", "critical", "none", False),
    }


def test_a_position_that_its_fills_do_not_prove_is_critical() -> None:
    found = engine.compare_positions(
        positions={"BTC/USD": Decimal(2)}, from_fills={"BTC/USD": Decimal(1)}, tolerances=Tolerances()
    )
    assert [(f.kind, f.severity) for f in found] == [("position_mismatch", "critical")]
