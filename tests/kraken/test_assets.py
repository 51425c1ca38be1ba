"""Asset names: REST ids and altnames to the WebSocket v2 codes the books and balances use."""

from __future__ import annotations

import pytest

from ingest.kraken.assets import asset_v2_name, rest_asset_to_v2


@pytest.mark.parametrize(("altname", "v2"), [("XBT", "BTC"), ("XDG", "DOGE"), ("ETH", "ETH"), ("USD", "USD")])
def test_altnames_map_to_v2_codes(altname: str, v2: str) -> None:
    assert asset_v2_name(altname) == v2


@pytest.mark.parametrize(
    ("rest_id", "v2"),
    [("XXBT", "BTC"), ("ZUSD", "USD"), ("XETH", "ETH"), ("XXDG", "DOGE"), ("XBT.M", "BTC.M"), ("DOT.S", "DOT.S")],
)
def test_rest_ids_map_to_v2_codes(rest_id: str, v2: str) -> None:
    assert rest_asset_to_v2(rest_id) == v2


def test_the_exchange_altnames_win_over_the_prefix_rule() -> None:
    assert rest_asset_to_v2("XXDG", {"XXDG": "XDG"}) == "DOGE"
    assert rest_asset_to_v2("XTZ", {"XTZ": "XTZ"}) == "XTZ"  # a real asset whose name starts with X
    assert rest_asset_to_v2("XTZ") == "XTZ"
