from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.trading.doubles import RecordingGateway
from tests.trading.factories import InstrumentFactory
from trading.accounts import balance_set
from trading.instruments import market_quote_set
from trading.models import Instrument


@pytest.fixture
def gateway(settings) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """The execution gateway replaced by a recorder (see tests.trading.doubles); returns its call list."""
    settings.GALFRIDAY_EXECUTION_GATEWAY = "tests.trading.doubles.RecordingGateway"
    RecordingGateway.calls.clear()
    return RecordingGateway.calls


def quote(instrument: Instrument, mid: str, *, at: datetime | None = None, spread: str = "0.2") -> None:
    half = Decimal(spread) / 2
    market_quote_set(instrument=instrument, bid=Decimal(mid) - half, ask=Decimal(mid) + half, at=at or timezone.now())


@pytest.fixture
def market(db) -> Instrument:  # type: ignore[no-untyped-def]
    """BTC/USD quoted at 100 now, with 10,000 USD and 10 BTC on the account."""
    instrument = InstrumentFactory()
    quote(instrument, "100")
    balance_set(asset="USD", total=Decimal("10000"))
    balance_set(asset="BTC", total=Decimal("10"))
    return instrument
