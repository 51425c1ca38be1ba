from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.trading.doubles import RecordingGateway
from tests.trading.factories import InstrumentFactory, placed_order, status, trade
from trading.accounts import balance_set
from trading.execution_reports import execution_report_apply
from trading.executions import ExecType
from trading.instruments import market_quote_set
from trading.models import Instrument, Order


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


@pytest.fixture
def book(market) -> dict[str, Order]:  # type: ignore[no-untyped-def]
    """Orders in every interesting state."""
    submitted = placed_order(instrument=market)
    accepted = placed_order(instrument=market, side="sell")
    execution_report_apply(event=status("OK-A", ExecType.NEW, cl_ord_id=accepted.client_order_id))
    partial = placed_order(instrument=market, qty="2")
    execution_report_apply(event=trade("OK-P", "T-p1", "1", "100", cl_ord_id=partial.client_order_id))
    unsent = placed_order(instrument=market, submit=False)
    done = placed_order(instrument=market)
    execution_report_apply(event=trade("OK-D", "T-d1", "1", "100", cl_ord_id=done.client_order_id))
    return {
        name: Order.objects.get(pk=o.pk)
        for name, o in {
            "submitted": submitted,
            "accepted": accepted,
            "partial": partial,
            "unsent": unsent,
            "done": done,
        }.items()
    }


def states(book: dict[str, Order]) -> dict[str, str]:
    return {name: Order.objects.get(pk=o.pk).state for name, o in book.items()}
