"""CompiledQuery: a queryset compiled once, run with the values in the markers' places, with the ORM's converters,
on whichever database the tests run on (PostgreSQL in CI, SQLite on the embedded defaults)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connections, transaction
from django.db.models import F
from django.db.transaction import TransactionManagementError

from core.compiled import PK_MARKER, CompiledQuery, field_names, model_from_row
from tests.trading.factories import EthInstrumentFactory, InstrumentFactory
from trading.models import Instrument

pytestmark = pytest.mark.django_db(transaction=True)

BY_SYMBOL = CompiledQuery(
    lambda symbol: Instrument.objects.filter(symbol=symbol).values_list(*field_names(Instrument)), "\x01symbol"
)


def test_rows_are_what_the_queryset_returns_for_each_value() -> None:
    btc, eth = InstrumentFactory(), EthInstrumentFactory()
    for instrument in (btc, eth):
        rows = BY_SYMBOL.rows(instrument.symbol)
        assert rows == list(Instrument.objects.filter(symbol=instrument.symbol).values_list(*field_names(Instrument)))
        rebuilt = model_from_row(Instrument, rows[0])
        assert rebuilt.pk == instrument.pk
        assert rebuilt.tick_size == instrument.tick_size
        assert isinstance(rebuilt.tick_size, Decimal)
        assert rebuilt.updated_at == instrument.updated_at
        assert not rebuilt._state.adding  # loaded, as from the database
    assert BY_SYMBOL.rows("NO/SUCH") == []


def test_values_go_into_subqueries_and_constants_stay() -> None:
    btc = InstrumentFactory()
    EthInstrumentFactory()
    query = CompiledQuery(
        lambda pk, quote: (
            Instrument.objects.filter(quote=quote, ordermin__gt=Decimal("0"))
            .exclude(pk=pk)
            .annotate(step=F("tick_size") * 10)
            .values_list("symbol", "step")
            .order_by("symbol")
        ),
        PK_MARKER,
        "\x01quote",
    )
    assert query.rows(btc.pk, "USD") == [("ETH/USD", Decimal("0.1"))]
    assert query.rows(0, "USD") == [("BTC/USD", Decimal("1.0")), ("ETH/USD", Decimal("0.1"))]
    assert query.rows(0, "EUR") == []


def test_each_thread_compiles_for_its_own_connection() -> None:
    InstrumentFactory()
    results: list[object] = []

    def other() -> None:
        try:
            results.append(BY_SYMBOL.rows("BTC/USD")[0][1])
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert results == ["BTC/USD"] == [BY_SYMBOL.rows("BTC/USD")[0][1]]


def test_a_marker_that_does_not_reach_the_statement_once_is_refused() -> None:
    unused = CompiledQuery(lambda symbol: Instrument.objects.values_list("pk"), "\x01symbol")
    with pytest.raises(RuntimeError, match="exactly once"):
        unused.rows("BTC/USD")
    twice = CompiledQuery(
        lambda symbol: Instrument.objects.filter(symbol=symbol, altname=symbol).values_list("pk"), "\x01symbol"
    )
    with pytest.raises(RuntimeError, match="exactly once"):
        twice.rows("BTC/USD")
    with pytest.raises(TypeError, match="expected 1 values"):
        BY_SYMBOL.rows()


def test_a_locking_query_is_refused_outside_a_transaction_on_every_call() -> None:
    InstrumentFactory()
    locking = CompiledQuery(
        lambda symbol: Instrument.objects.select_for_update().filter(symbol=symbol).values_list("symbol"),
        "\x01symbol",
    )
    with transaction.atomic():
        assert locking.rows("BTC/USD") == [("BTC/USD",)]
    with pytest.raises(TransactionManagementError):
        locking.rows("BTC/USD")  # compiled already: refused all the same


def test_an_integer_no_column_can_hold_finds_nothing_like_the_orm() -> None:
    InstrumentFactory()
    by_pk = CompiledQuery(lambda pk: Instrument.objects.filter(pk=pk).values_list("symbol"), PK_MARKER)
    huge = 10**20
    assert list(Instrument.objects.filter(pk=huge).values_list("symbol")) == []
    assert by_pk.rows(huge) == []
    assert by_pk.rows(-huge) == []
    with pytest.raises(TypeError, match="strings or integers"):
        CompiledQuery(lambda when: Instrument.objects.filter(updated_at=when), 1.5)  # type: ignore[arg-type]
