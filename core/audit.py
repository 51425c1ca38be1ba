"""Audit trail infrastructure: who or what changed a row, when, why, and its state before and after.

Models that must be audited (orders, positions, balances, model stages, experiments, risk limits) declare

    history = audited_history()

which keeps an append-only historical table through django-simple-history. Each historical row carries the
actor: the authenticated user of the request (set by simple-history's middleware), or the system actor named
with `audit_actor("celery:trading.submit_order")` around service calls made by tasks, the ingest worker or
reconciliation. `audit_trail(instance)` answers with every change as before/after pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from django.db import NotSupportedError, connection, models
from django.dispatch import receiver
from django.utils import timezone
from simple_history.manager import HistoryManager
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record

_actor: ContextVar[str | None] = ContextVar("galfriday_audit_actor", default=None)
_reason: ContextVar[str | None] = ContextVar("galfriday_audit_reason", default=None)

SYSTEM_ACTOR = "system"
USER_ACTOR_PREFIX = "user:"  # how a person is named as an actor (and told apart from system components)


def user_actor(user: Any) -> str:
    return f"{USER_ACTOR_PREFIX}{user.get_username()}"


@contextmanager
def audit_actor(actor: str, *, reason: str | None = None) -> Iterator[None]:
    """Attribute every audited change made inside the block to `actor` (e.g. "ingest", "celery:<task>",
    "reconciliation:<run id>"), with an optional reason."""
    if not actor:
        raise ValueError("audit_actor needs a non-empty actor name")
    actor_token = _actor.set(actor)
    reason_token = _reason.set(reason)
    try:
        yield
    finally:
        _actor.reset(actor_token)
        _reason.reset(reason_token)


def current_actor() -> str | None:
    return _actor.get()


def current_reason() -> str | None:
    return _reason.get()


class AuditedHistoricalModel(models.Model):
    """Base of every historical table: adds the actor (user or system component) to simple-history's
    `history_user`, `history_date`, `history_type` and `history_change_reason`."""

    actor = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        abstract = True


class CachedHistoryManager(HistoryManager):
    """simple-history builds its manager class anew (`from_queryset`, which walks the queryset with `inspect`) on
    every access to `.history`, i.e. for every audit record saved: ~0.6 ms of CPU each on the trading hot paths.
    Built once per queryset class instead (Django builds its own managers once, at class creation)."""

    _built: ClassVar[dict[tuple[Any, ...], Any]] = {}

    @classmethod
    def from_queryset(cls, queryset_class: Any, class_name: str | None = None) -> Any:
        key = (cls, queryset_class, class_name)
        built = cls._built.get(key)
        if built is None:
            built = cls._built[key] = super().from_queryset(queryset_class, class_name)
        return built


def audited_history(**kwargs: Any) -> HistoricalRecords:
    kwargs.setdefault("bases", [AuditedHistoricalModel])
    kwargs.setdefault("cascade_delete_history", False)
    kwargs.setdefault("history_manager", CachedHistoryManager)
    return HistoricalRecords(**kwargs)


@receiver(pre_create_historical_record)
def _stamp_actor(sender: Any, instance: Any, history_instance: Any, **kwargs: Any) -> None:
    if not hasattr(history_instance, "actor"):
        return
    actor = _actor.get()
    user = getattr(history_instance, "history_user", None)
    if actor is None:
        actor = user_actor(user) if user is not None else SYSTEM_ACTOR
    history_instance.actor = actor
    if not getattr(history_instance, "history_change_reason", None) and _reason.get():
        history_instance.history_change_reason = _fitted_reason()


def _attribution(obj: Any) -> tuple[Any, str, str | None]:
    """(history user, actor, reason) for audit rows written outside `save()`, as `_stamp_actor` would set them."""
    user = type(obj).history.model.get_default_history_user(obj)
    actor = _actor.get()
    if actor is None:
        actor = user_actor(user) if user is not None else SYSTEM_ACTOR
    return user, actor, _fitted_reason()


REASON_MAX_LENGTH = 100  # simple-history's history_change_reason column


def _fitted_reason() -> str | None:
    """The current reason, shortened to fit the audit column (the full text stays where the change keeps it, e.g.
    a stage event's reason): an audit row is never refused for a long reason."""
    reason = _reason.get()
    if reason is None or len(reason) <= REASON_MAX_LENGTH:
        return reason
    return reason[: REASON_MAX_LENGTH - 1] + "…"


def history_rows_insert(objs: list[Any], *, history_type: str = "~", when: datetime | None = None) -> None:
    """Record the audit rows of `objs` (saved rows of one audited model, in their new state) in one INSERT,
    attributed like `_stamp_actor` does for a single `save()`: the current actor (else the request's user, else the
    system) and the current reason.

    simple-history's `bulk_history_create` builds a model instance per row and goes through `bulk_create`: ~1.4 ms
    of CPU a row on the execution-report path. The statement here is built once per model and row count; values
    go through each field's own conversion."""
    if not objs:
        return
    historical = type(objs[0]).history.model
    user, actor, reason = _attribution(objs[0])
    when = when or timezone.now()
    meta = historical._meta
    tracked = [meta.get_field(f.name) for f in historical.tracked_fields]
    fields = [*tracked, *_history_columns(historical)]
    params: list[Any] = []
    for obj in objs:
        values = [getattr(obj, f.attname) for f in tracked]
        values += [actor, when, reason, history_type, user.pk if user is not None else None]
        params += [f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True)]
    key = ("insert", historical, len(objs), connection.vendor)
    sql = _SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        columns = ", ".join(qn(f.column) for f in fields)
        sql = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES {', '.join([row] * len(objs))}"
        _SQL[key] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _history_columns(historical: Any) -> list[Any]:
    meta = historical._meta
    return [
        meta.get_field(n) for n in ("actor", "history_date", "history_change_reason", "history_type", "history_user")
    ]


def rows_insert_sql(objs: list[Any]) -> tuple[str, list[Any]]:
    """`INSERT INTO <table> (...) VALUES (...), ...` for new rows of one model whose keys nobody reads back (order
    events), built once per model and row count; each field's `pre_save` (`auto_now_add`) and conversion apply as
    in `bulk_create`, without its per-call ORM work (~1 ms of CPU on the execution-report path)."""
    model = type(objs[0])
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs for f in fields]
    key = ("rows", model, len(objs), connection.vendor)
    sql = _SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        columns = ", ".join(qn(f.column) for f in fields)
        sql = f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * len(objs))}"
        _SQL[key] = sql
    return sql, params


def audited_rows_update(
    objs: list[Any], names: list[str], *, when: datetime, inserting: list[Any] | None = None
) -> None:
    """Write `names` of existing rows `objs` (one audited model) and record their audit rows ("changed");
    `inserting`: new rows of another, unaudited model (an order's events) written with them.

    On PostgreSQL one statement does it all: `WITH changed AS (UPDATE ... RETURNING *), new AS (INSERT <rows>)
    INSERT INTO <history> SELECT ... FROM changed`, so the audit row holds exactly what was written, in one round
    trip. Elsewhere (SQLite) an UPDATE, then `history_rows_insert`, then the rows. A row that is gone raises
    `DoesNotExist` (the caller holds the row locks, so it never should). The statements are built once per
    model, field list and row count."""
    if not objs:
        return
    extra_sql, extra_params = rows_insert_sql(inserting) if inserting else ("", [])
    model = type(objs[0])
    meta = model._meta
    fields = [meta.get_field(n) for n in names]
    params: list[Any] = []
    if len(objs) == 1:
        params = [f.get_db_prep_save(getattr(objs[0], f.attname), connection) for f in fields]
        params.append(objs[0].pk)
    else:
        for f in fields:
            for obj in objs:
                params += [obj.pk, f.get_db_prep_save(getattr(obj, f.attname), connection)]
        params += [obj.pk for obj in objs]
    combined = connection.vendor == "postgresql"
    key = ("update", model, tuple(names), len(objs), combined, extra_sql)
    sql = _SQL.get(key)
    if sql is None:
        sql = _SQL[key] = _update_sql(model, fields, len(objs), combined, extra_sql if combined else "")
    if combined:
        params += extra_params
        params += _attribution_params(objs[0], "~", when)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        written = cursor.rowcount
    if written != len(objs):
        raise model.DoesNotExist(f"{model.__name__}: {len(objs) - written} of the rows to update are gone")
    if not combined:
        history_rows_insert(objs, when=when)
        if extra_sql:
            with connection.cursor() as cursor:
                cursor.execute(extra_sql, extra_params)


def _update_sql(model: Any, fields: list[Any], rows: int, combined: bool, extra_sql: str) -> str:
    qn = connection.ops.quote_name
    meta = model._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    if rows == 1:
        sets = ", ".join(f"{qn(f.column)} = %s" for f in fields)
        sql = f"UPDATE {table} SET {sets} WHERE {pk} = %s"
    else:
        cases = " ".join(["WHEN %s THEN %s"] * rows)
        sets = ", ".join(f"{qn(f.column)} = CASE {pk} {cases} END" for f in fields)
        sql = f"UPDATE {table} SET {sets} WHERE {pk} IN ({', '.join(['%s'] * rows)})"
    if not combined:
        return sql
    also = f", new AS ({extra_sql}) " if extra_sql else " "
    return f"WITH changed AS ({sql} RETURNING {table}.*){also}{_history_insert_from(model, 'changed')}"


def audited_write_sql(
    model: type[models.Model], write: str, params: Sequence[Any] = (), *, history_type: str, when: datetime
) -> tuple[str, list[Any]]:
    """One PostgreSQL statement that runs `write` (an ``INSERT`` or ``UPDATE`` of `model`'s table, an audited
    model, without a ``RETURNING`` clause; `params` its parameters) and records the audit row of every row it
    wrote, holding exactly what was written::

        WITH written AS (<write> RETURNING <table>.*) INSERT INTO <history> (...) SELECT ... FROM written

    For bulk writes whose rows are not model instances, e.g. rows COPYed into a temporary table then written
    with ``INSERT ... SELECT`` or ``UPDATE ... FROM``. The audit rows are attributed like `history_rows_insert`'s
    (the actor current when this is called, else the request's user, else the system; the current reason), with
    `history_type` ("+" created, "~" changed) and `when`. Returns the statement and all its parameters; the
    cursor's rowcount after it is the number of rows written. PostgreSQL only (a data-modifying ``WITH``);
    elsewhere write the rows, then call `history_rows_insert` with them."""
    if connection.vendor != "postgresql":
        raise NotSupportedError("audited_write_sql needs PostgreSQL; elsewhere use history_rows_insert")
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"WITH written AS ({write} RETURNING {table}.*) {_history_insert_from(model, 'written')}"
    return sql, [*params, *_attribution_params(model(), history_type, when)]


def _attribution_params(obj: Any, history_type: str, when: datetime) -> list[Any]:
    """The values of the attribution columns (`_history_columns`' order) of audit rows of `obj`'s model."""
    user, actor, reason = _attribution(obj)
    values = [actor, when, reason, history_type, user.pk if user is not None else None]
    history = _history_columns(type(obj).history.model)
    return [f.get_db_prep_save(v, connection) for f, v in zip(history, values, strict=True)]


def _history_insert_from(model: Any, rows: str) -> str:
    """`INSERT INTO <history> (...) SELECT ... FROM <rows>`: the audit rows of what the CTE `rows` returned
    (`RETURNING *` of the model's table), with the attribution values as the statement's last parameters."""
    qn = connection.ops.quote_name
    historical = model.history.model
    hmeta = historical._meta
    tracked = [hmeta.get_field(f.name) for f in historical.tracked_fields]
    history = _history_columns(historical)
    columns = ", ".join(qn(f.column) for f in [*tracked, *history])
    # The tracked columns have the same names in both tables; the attribution values are cast to their
    # columns' types (an untyped parameter in a SELECT list would be text).
    selected = ", ".join([*(qn(f.column) for f in tracked), *(f"CAST(%s AS {f.db_type(connection)})" for f in history)])
    return f"INSERT INTO {qn(hmeta.db_table)} ({columns}) SELECT {selected} FROM {rows}"


def audited_row_insert(obj: Any, *, when: datetime, children: list[Any] | None = None) -> None:
    """Insert the new row `obj` of an audited model with its audit row ("created"), and `children`: new rows of
    another, unaudited model whose foreign key to `obj` is filled in here (a new order's events).

    On PostgreSQL one statement: `WITH created AS (INSERT ... RETURNING *), audit AS (INSERT INTO <history> SELECT
    ... FROM created), children AS (INSERT ... VALUES ((SELECT id FROM created), ...)) SELECT id FROM created`: the
    audit row holds exactly what was inserted. Elsewhere `save()` (the history signal writes the audit row) and
    `bulk_create`. `obj` comes back saved with its key; the children's keys are not read back. Fields' `pre_save`
    (`auto_now`, `auto_now_add`) and conversions apply as in `save()`. Statements built once per model and count."""
    model = type(obj)
    child_model = type(children[0]) if children else None
    link = _child_link(child_model, model) if child_model is not None else None
    if connection.vendor != "postgresql":
        obj.save()
        if children:
            for child in children:
                setattr(child, link.attname, obj.pk)  # type: ignore[union-attr]
            child_model._default_manager.bulk_create(children)  # type: ignore[union-attr]
        return
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    params += _attribution_params(obj, "+", when)
    child_fields: list[Any] = []
    if children:
        child_fields = [f for f in child_model._meta.concrete_fields if not f.primary_key and f is not link]  # type: ignore[union-attr]
        params += [f.get_db_prep_save(f.pre_save(c, True), connection) for c in children for f in child_fields]
    key = ("insert-audited", model, child_model, len(children or ()))
    sql = _SQL.get(key)
    if sql is None:
        sql = _SQL[key] = _insert_sql(model, fields, child_model, link, child_fields, len(children or ()))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (pk,) = cursor.fetchone()
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias
    for child in children or ():
        setattr(child, link.attname, pk)  # type: ignore[union-attr]


def _child_link(child_model: Any, model: Any) -> Any:
    links = [f for f in child_model._meta.concrete_fields if f.is_relation and f.related_model is model]
    if len(links) != 1:
        raise ValueError(f"{child_model.__name__} needs exactly one foreign key to {model.__name__}")
    return links[0]


def _insert_sql(model: Any, fields: list[Any], child_model: Any, link: Any, child_fields: list[Any], n: int) -> str:
    qn = connection.ops.quote_name
    meta = model._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    columns = ", ".join(qn(f.column) for f in fields)
    sql = f"WITH created AS (INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))}) RETURNING *)"
    sql += f", audit AS ({_history_insert_from(model, 'created')})"
    if n:
        c_columns = ", ".join(qn(f.column) for f in [link, *child_fields])
        row = "((SELECT " + pk + " FROM created), " + ", ".join(["%s"] * len(child_fields)) + ")"
        child_table = qn(child_model._meta.db_table)
        sql += f", children AS (INSERT INTO {child_table} ({c_columns}) VALUES {', '.join([row] * n)})"
    return sql + f" SELECT {pk} FROM created"


_SQL: dict[tuple[Any, ...], str] = {}


@dataclass(frozen=True)
class AuditEntry:
    when: datetime
    actor: str
    action: str  # "created", "changed" or "deleted"
    reason: str
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (before, after)


_ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}


def audit_trail(instance: models.Model) -> list[AuditEntry]:
    """Every recorded change of `instance`, oldest first, with the before and after value of each field."""
    records = list(instance.history.order_by("history_date", "history_id"))  # type: ignore[attr-defined]
    entries: list[AuditEntry] = []
    previous = None
    kept = {f.attname for f in instance.history.model._meta.concrete_fields}  # type: ignore[attr-defined]
    tracked = [f.attname for f in instance._meta.concrete_fields if f.attname in kept]  # minus excluded_fields
    for record in records:
        if previous is None:
            changes = {name: (None, getattr(record, name)) for name in tracked}
        else:
            changes = {
                name: (getattr(previous, name), getattr(record, name))
                for name in tracked
                if getattr(previous, name) != getattr(record, name)
            }
        entries.append(
            AuditEntry(
                when=record.history_date,
                actor=getattr(record, "actor", "") or SYSTEM_ACTOR,
                action=_ACTIONS[record.history_type],
                reason=record.history_change_reason or "",
                changes=changes,
            )
        )
        previous = record
    return entries
