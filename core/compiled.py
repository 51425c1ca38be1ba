"""Querysets compiled once: for the few statements on the way to the exchange that run on every order.

Building a queryset and compiling it (`filter`/`annotate` clones, joins, `as_sql`) costs more CPU than running the
statement on a loopback PostgreSQL: ~0.4-0.8 ms per statement, several per order. `CompiledQuery` takes the
queryset as the ORM builds it, with marker values where the variable values go, compiles it once per thread's
connection, and then runs that SQL with the values put in the markers' places: the same statement, the same lock
clause, the same converters (Decimal, datetime) as the queryset, on every database backend.

    _LOOKUP = CompiledQuery(lambda symbol: Instrument.objects.filter(symbol=symbol).values_list("pk"), "\\x01symbol")
    rows = _LOOKUP.rows("BTC/USD")

`model_from_row` makes a model instance from a slice of a row selected with `values_list(*field_names(Model))`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet
from django.db.transaction import TransactionManagementError

M = TypeVar("M", bound=Model)

# A marker for a primary key: no row has it, and it fits any integer key (Django 5 compiles a lookup with an
# out-of-range value to an empty result, which would leave no place for the value).
PK_MARKER = -2_147_000_001


# The range a value compared with an integer column can have; the ORM compiles a lookup outside it to an empty
# result (Django 5), and so does `rows` (SQLite's driver would raise instead).
_INT_RANGE = range(-(2**63), 2**63)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[int | None, ...]  # for each parameter: the index of the value that goes there, or None (a constant)
    compiler: Any
    converters: Any
    locks: bool  # select_for_update: only inside a transaction, as the queryset itself insists


class CompiledQuery:
    """`build(*markers)` returns the queryset with the markers where the values go; each marker must reach the
    SQL parameters exactly once, unchanged (pick values of the field's type that no real value takes: a string
    like "\\x01name", or a negative integer for a key)."""

    def __init__(self, build: Callable[..., QuerySet[Any]], *markers: str | int) -> None:
        if any(type(m) not in (str, int) for m in markers):
            raise TypeError("markers are strings or integers")
        self._build = build
        self._markers = markers
        self._local = threading.local()

    def rows(self, *values: Any) -> list[tuple[Any, ...]]:
        if len(values) != len(self._markers):
            raise TypeError(f"expected {len(self._markers)} values, got {len(values)}")
        if any(type(v) is int and v not in _INT_RANGE for v in values):
            return []  # no row has it
        wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's connection
        compiled: _Compiled | None = getattr(self._local, "compiled", None)
        if compiled is None or getattr(self._local, "wrapper", None) is not wrapper:
            compiled = self._compile(wrapper)
            self._local.compiled, self._local.wrapper = compiled, wrapper
        if compiled.locks and wrapper.get_autocommit():  # on every call, as the queryset would (on every backend)
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = [p if slot is None else values[slot] for p, slot in zip(compiled.params, compiled.slots, strict=True)]
        with wrapper.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if compiled.converters:
            rows = [tuple(row) for row in compiled.compiler.apply_converters(rows, compiled.converters)]
        return rows

    def _compile(self, wrapper: Any) -> _Compiled:
        compiler = self._build(*self._markers).query.get_compiler(connection=wrapper)
        sql, params = compiler.as_sql()
        slots: list[int | None] = []
        for param in params:
            hits = [i for i, marker in enumerate(self._markers) if type(param) is type(marker) and param == marker]
            slots.append(hits[0] if hits else None)
        found = sorted(s for s in slots if s is not None)
        if found != list(range(len(self._markers))):
            raise RuntimeError(f"the compiled statement does not use each marker exactly once: {sql!r} {params!r}")
        columns = [s[0] for s in compiler.select]
        locks = bool(compiler.query.select_for_update)
        return _Compiled(sql, tuple(params), tuple(slots), compiler, compiler.get_converters(columns), locks)


def field_names(model: type[Model]) -> list[str]:
    """The attribute names of the model's columns, in order (what `model_from_row` expects)."""
    return [f.attname for f in model._meta.concrete_fields]


def model_from_row(model: type[M], values: Sequence[Any]) -> M:
    """An instance of `model` as loaded from the database, from its columns' values in `field_names` order."""
    return model.from_db(DEFAULT_DB_ALIAS, field_names(model), list(values))
