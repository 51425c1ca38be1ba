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

from django.db import connection, models
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


def history_rows_insert(
    model: type[models.Model],
    pks: Sequence[Any],
    *,
    history_type: str = "~",
    when: datetime | None = None,
    instance: Any = None,
) -> None:
    """Record the audit rows of the rows `pks` of the audited `model` as they are now in the table, attributed like
    `_stamp_actor` does for a single `save()`: the current actor (else the request's user, or
    `instance`'s explicit history user, else the system), the current reason, `history_type` ("+" created, "~"
    changed) and `when`.

    The one way every fast path writes audit rows, on every database: after the write and under the row locks the
    writer holds, ``INSERT INTO <history> (...) SELECT <tracked columns>, <attribution> FROM <table> WHERE <pk>
    IN (...)``, so an audit row holds exactly what was written (simple-history's `bulk_history_create` builds a
    model instance per row: ~1.4 ms of CPU a row on the execution-report path). Statements are built once per
    model and row count."""
    if not pks:
        return
    attribution = _attribution_params(
        instance if instance is not None else model(), history_type, when or timezone.now()
    )
    for i in range(0, len(pks), _PKS_PER_STATEMENT):
        chunk = list(pks[i : i + _PKS_PER_STATEMENT])
        key = ("history", model, len(chunk), connection.vendor)
        sql = _SQL.get(key)
        if sql is None:
            qn = connection.ops.quote_name
            meta: Any = model._meta
            rows = f"{qn(meta.db_table)} WHERE {qn(meta.pk.column)} IN ({', '.join(['%s'] * len(chunk))})"
            sql = _SQL[key] = _history_insert_from(model, rows)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*attribution, *chunk])


_PKS_PER_STATEMENT = 5000  # under every backend's limit of bound parameters


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
    """Write `names` of existing rows `objs` (one audited model) and record their audit rows ("changed", by
    `history_rows_insert`: what the table holds after the write); `inserting`: new rows of another, unaudited
    model (an order's events) written with them. A row that is gone raises `DoesNotExist` (the caller holds the
    row locks, so it never should). The statements are built once per model, field list and row count."""
    if not objs:
        return
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
    key = ("update", model, tuple(names), len(objs), connection.vendor)
    sql = _SQL.get(key)
    if sql is None:
        sql = _SQL[key] = _update_sql(model, fields, len(objs))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        written = cursor.rowcount
    if written != len(objs):
        raise model.DoesNotExist(f"{model.__name__}: {len(objs) - written} of the rows to update are gone")
    history_rows_insert(model, [obj.pk for obj in objs], history_type="~", when=when, instance=objs[0])
    if inserting:
        extra_sql, extra_params = rows_insert_sql(inserting)
        with connection.cursor() as cursor:
            cursor.execute(extra_sql, extra_params)


def _update_sql(model: Any, fields: list[Any], rows: int) -> str:
    qn = connection.ops.quote_name
    meta = model._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    if rows == 1:
        sets = ", ".join(f"{qn(f.column)} = %s" for f in fields)
        return f"UPDATE {table} SET {sets} WHERE {pk} = %s"
    cases = " ".join(["WHEN %s THEN %s"] * rows)
    sets = ", ".join(f"{qn(f.column)} = CASE {pk} {cases} END" for f in fields)
    return f"UPDATE {table} SET {sets} WHERE {pk} IN ({', '.join(['%s'] * rows)})"


def audited_write(
    model: type[models.Model], write: str, params: Sequence[Any] = (), *, history_type: str, when: datetime
) -> int:
    """Run `write` (an ``INSERT`` or ``UPDATE`` of `model`'s table, an audited model, without a ``RETURNING``
    clause; `params` its parameters) and record the audit row of every row it wrote (`history_rows_insert`, by the
    keys the write returns). For bulk writes whose rows are not model instances, e.g. rows COPYed into a temporary
    table then written with ``INSERT ... SELECT`` or ``UPDATE ... FROM``. Returns the number of rows written."""
    meta: Any = model._meta
    pk = connection.ops.quote_name(meta.pk.column)
    table = connection.ops.quote_name(meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"{write} RETURNING {table}.{pk}", list(params))
        pks = [row[0] for row in cursor.fetchall()]
    history_rows_insert(model, pks, history_type=history_type, when=when)
    return len(pks)


def _attribution_params(obj: Any, history_type: str, when: datetime) -> list[Any]:
    """The values of the attribution columns (`_history_columns`' order) of audit rows of `obj`'s model."""
    user, actor, reason = _attribution(obj)
    values = [actor, when, reason, history_type, user.pk if user is not None else None]
    history = _history_columns(type(obj).history.model)
    return [f.get_db_prep_save(v, connection) for f, v in zip(history, values, strict=True)]


def _history_insert_from(model: Any, rows: str) -> str:
    """`INSERT INTO <history> (...) SELECT <tracked columns>, <attribution> FROM <rows>`: the audit rows of the
    rows `rows` names (a table and a condition), with the attribution values as the statement's first parameters
    (they come first in the text)."""
    qn = connection.ops.quote_name
    historical = model.history.model
    hmeta = historical._meta
    tracked = [hmeta.get_field(f.name) for f in historical.tracked_fields]
    history = _history_columns(historical)
    columns = ", ".join(qn(f.column) for f in [*tracked, *history])
    selected = ", ".join([*(qn(f.column) for f in tracked), *(_typed_placeholder(f) for f in history)])
    return f"INSERT INTO {qn(hmeta.db_table)} ({columns}) SELECT {selected} FROM {rows}"


def _typed_placeholder(field: Any) -> str:
    """A parameter in a SELECT list, typed as its column: PostgreSQL types an untyped one as text (which no
    timestamp column takes); SQLite takes values as they are (and its CAST to a column type name would change
    them, e.g. a date text to a number)."""
    if connection.vendor == "postgresql":
        return f"CAST(%s AS {field.db_type(connection)})"
    return "%s"


def audited_row_insert(obj: Any, *, when: datetime, children: list[Any] | None = None) -> None:
    """Insert the new row `obj` of an audited model with its audit row ("created", by `history_rows_insert`), and
    `children`: new rows of another, unaudited model whose foreign key to `obj` is filled in here (a new order's
    events). `obj` comes back saved with its key; the children's keys are not read back. Fields' `pre_save`
    (`auto_now`, `auto_now_add`) and conversions apply as in `save()`. Statements built once per model and count."""
    model = type(obj)
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    key = ("insert", model, connection.vendor)
    sql = _SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        columns = ", ".join(qn(f.column) for f in fields)
        values = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES ({values}) RETURNING {qn(meta.pk.column)}"
        _SQL[key] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (pk,) = cursor.fetchone()
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias
    history_rows_insert(model, [pk], history_type="+", when=when, instance=obj)
    if children:
        link = _child_link(type(children[0]), model)
        for child in children:
            setattr(child, link.attname, pk)
        child_sql, child_params = rows_insert_sql(children)
        with connection.cursor() as cursor:
            cursor.execute(child_sql, child_params)


def _child_link(child_model: Any, model: Any) -> Any:
    links = [f for f in child_model._meta.concrete_fields if f.is_relation and f.related_model is model]
    if len(links) != 1:
        raise ValueError(f"{child_model.__name__} needs exactly one foreign key to {model.__name__}")
    return links[0]


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
