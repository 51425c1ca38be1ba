from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from trading.models import Balance
from trading.paper import paper_account_seed, parse_balances

pytestmark = pytest.mark.django_db


def test_a_new_paper_account_is_seeded_once(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_PAPER_BALANCES = "USD=1000,BTC=0.5"
    assert paper_account_seed() == {"USD": Decimal(1000), "BTC": Decimal("0.5")}
    Balance.objects.filter(asset="USD").update(total=Decimal(10))
    assert paper_account_seed() == {}
    assert Balance.objects.get(asset="USD").total == 10


def test_seed_command_refuses_live_mode_and_bad_input(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRADING_MODE = "live"
    with pytest.raises(CommandError, match="not paper"):
        call_command("seed_paper_account")
    settings.TRADING_MODE = "paper"
    with pytest.raises(CommandError, match="ASSET=AMOUNT"):
        call_command("seed_paper_account", balances="USD=-5")
    assert not Balance.objects.exists()


@pytest.mark.parametrize("text", ["USD", "USD=abc", "=5", "USD=NaN"])
def test_parse_balances_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="paper balance"):
        parse_balances(text)
