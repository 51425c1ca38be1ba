"""Maturation: predictions whose horizon has passed get their outcome from the stored bars (see the package doc)."""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import DateTimeField, DecimalField, Q
from django.utils import timezone

from core.audit import audited_write, history_rows_insert
from core.durability import commit_without_flush_wait
from models_registry.evaluation.intervals import (
    direction_hit_array,
)
from models_registry.history import load_bar_fields
from models_registry.labels import LABEL_CLASSES, make_labels
from models_registry.models import ModelVersion, Prediction, PredictionOutcome
from models_registry.outcomes.degradation import version_degradation_check
from models_registry.outcomes.rules import BAR, OUTCOME_FIELDS, OutcomeRule, net_return, outcome_column
from models_registry.signals import outcomes_matured
from timeseries import get_store

logger = logging.getLogger(__name__)

LOCK_KEY = "models_registry:outcomes:mature"
LOCK_TTL_S = 300
_MAX_PARAMS = 30_000  # below PostgreSQL's 65,535 and SQLite's 32,766 bound parameters per statement


@dataclass
class MaturationResult:
    examined: int = 0
    matured: int = 0
    pending: int = 0
    revised: int = 0
    unchanged: int = 0
    not_due: int = 0
    skipped: bool = False
    version_ids: set[int] = field(default_factory=set)
    alerts: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "matured": self.matured,
            "pending": self.pending,
            "revised": self.revised,
            "unchanged": self.unchanged,
            "not_due": self.not_due,
            "skipped": self.skipped,
            "versions": sorted(self.version_ids),
            "alerts": self.alerts,
        }


@dataclass
class _Item:
    prediction_id: int
    version_id: int
    symbol: str
    bar_time: datetime
    horizon: int
    signal: int
    proba: tuple[float, float, float]
    outcome: PredictionOutcome | None


@dataclass(frozen=True)
class _Computed:
    forward_return: float
    label: int
    entry_close: Decimal
    exit_close: Decimal


def _probabilities(raw: Mapping[str, Any]) -> tuple[float, float, float]:
    p = [float(raw.get(str(c), raw.get(c, 0.0)) or 0.0) for c in LABEL_CLASSES]  # type: ignore[call-overload]
    return p[0], p[1], p[2]


def _due_predictions(now: datetime, limit: int) -> list[_Item]:
    rows = (
        Prediction.objects.filter(
            bar_time__isnull=False, horizon__isnull=False, outcome__isnull=True, bar_time__lte=now - 2 * BAR
        )
        .order_by("bar_time", "id")
        .values_list("id", "version_id", "symbol", "bar_time", "horizon", "signal", "probabilities")[:limit]
    )
    out = []
    for pk, version_id, symbol, bar_time, horizon, signal, proba in rows:
        assert bar_time is not None  # filtered on
        assert horizon is not None
        out.append(_Item(pk, version_id, symbol, bar_time, horizon, signal, _probabilities(proba or {}), None))
    return out


def _recheck_outcomes(now: datetime, limit: int) -> list[_Item]:
    recheck = timedelta(minutes=float(settings.MODELS_REGISTRY_OUTCOMES_RECHECK_MINUTES))
    retry = timedelta(minutes=float(settings.MODELS_REGISTRY_OUTCOMES_PENDING_RETRY_MINUTES))
    rows = PredictionOutcome.objects.filter(
        Q(status=PredictionOutcome.Status.MATURED, window_end__gte=now - recheck)
        | Q(status=PredictionOutcome.Status.PENDING, window_end__gte=now - retry)
    ).order_by("window_end", "id")[:limit]
    return [
        _Item(o.prediction_id, o.version_id, o.symbol, o.bar_time, o.horizon, o.signal, (o.p_down, o.p_flat, o.p_up), o)
        for o in rows
    ]


def _price(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _compute(items: list[_Item], rules: Mapping[int, OutcomeRule], store: Any) -> dict[int, _Computed | str]:
    """Per prediction id: the realised figures, or why the outcome must stay pending. One store read per symbol
    and one `make_labels` per (horizon, dead zone, fee) over it; each prediction is then an array lookup."""
    by_symbol: dict[str, list[_Item]] = defaultdict(list)
    for item in items:
        by_symbol[item.symbol].append(item)
    own = store is None
    store = store or get_store()  # one store (and HTTP client) for the pass
    try:
        return _compute_symbols(by_symbol, rules, store)
    finally:
        close = getattr(store, "close", None)
        if own and close is not None:
            close()


def _compute_symbols(
    by_symbol: Mapping[str, list[_Item]], rules: Mapping[int, OutcomeRule], store: Any
) -> dict[int, _Computed | str]:
    out: dict[int, _Computed | str] = {}
    for symbol, group in by_symbol.items():
        if not symbol:
            for item in group:
                out[item.prediction_id] = "no symbol recorded"
            continue
        start = min(i.bar_time for i in group)
        end = max(i.bar_time + i.horizon * BAR for i in group) + BAR
        # the closes only (a bar without one is a missing bar), not every field of every bar
        stored = load_bar_fields(symbol=symbol, start=start, end=end, fields=("close",), require="close", store=store)
        if stored.empty:
            for item in group:
                out[item.prediction_id] = "no stored bars in the window"
            continue
        grid = pd.date_range(stored.index[0], stored.index[-1], freq="min", tz="UTC")
        rows = len(grid)
        present = np.concatenate(([0], np.cumsum(grid.isin(stored.index)))).astype(np.int64)
        # One series on the minute grid, so that `make_labels` pairs t with t + h by position. A missing minute
        # holds the previous close only to keep its input finite: a window that touches one is never matured
        # (`stored_count` below), so no label or return of a gap is ever used.
        close = stored["close"].reindex(grid).ffill()
        closes = np.asarray(close.to_numpy(), dtype=np.float64).tolist()
        keys: dict[tuple[int, float | None, float], list[_Item]] = defaultdict(list)
        for item in group:
            rule = rules[item.version_id]
            keys[(item.horizon, rule.dead_zone, rule.taker_fee)].append(item)
        for (horizon, dead_zone, taker_fee), members in keys.items():
            labels = make_labels(close, horizon, taker_fee=taker_fee, dead_zone=dead_zone)  # training's code
            fwd = labels["forward_return"].to_numpy().tolist()
            lab = labels["label"].to_numpy().tolist()
            positions = grid.get_indexer(pd.DatetimeIndex([m.bar_time for m in members]).tz_convert("UTC"))
            # stored bars from t to t + h (inclusive), read off the running count; meaningful where both ends exist
            stored_count = present[np.clip(positions + horizon + 1, 0, rows)] - present[np.clip(positions, 0, rows)]
            for item, i, count in zip(members, positions.tolist(), stored_count.tolist(), strict=True):
                if i < 0:
                    out[item.prediction_id] = f"no stored bar at {item.bar_time.isoformat()}"
                elif i + horizon >= rows:
                    out[item.prediction_id] = f"no stored bar at {(item.bar_time + horizon * BAR).isoformat()}"
                elif count != horizon + 1:
                    out[item.prediction_id] = f"{horizon + 1 - count} bar(s) missing between t and t+{horizon}"
                else:
                    out[item.prediction_id] = _Computed(
                        fwd[i], int(lab[i]), _price(closes[i]), _price(closes[i + horizon])
                    )
    return out


def _figures(item: _Item, result: _Computed, rule: OutcomeRule, hit: float) -> dict[str, Any]:
    """The fields of a matured outcome (`hit`: `direction_hit_array`'s value for the item, NaN when excluded)."""
    position, net = net_return(item.signal, result.forward_return, rule.round_trip_cost)
    return {
        "status": PredictionOutcome.Status.MATURED,
        "pending_reason": "",
        "forward_return": result.forward_return,
        "realised_label": result.label,
        "dead_zone": rule.effective_dead_zone,
        "direction_hit": None if math.isnan(hit) else bool(hit),
        "position": position,
        "round_trip_cost": rule.round_trip_cost,
        "net_return": net,
        "entry_close": result.entry_close,
        "exit_close": result.exit_close,
    }


def _apply(outcome: PredictionOutcome, figures: Mapping[str, Any], now: datetime) -> None:
    for name, value in figures.items():
        setattr(outcome, name, value)
    outcome.checked_at = now
    if outcome.matured_at is None:
        outcome.matured_at = now


def _hits(items: list[_Item], computed: Mapping[int, _Computed | str]) -> dict[int, float]:
    """`direction_hit_array` over every computed item at once (the rule is per row)."""
    done = [(i, v) for i in items if isinstance(v := computed[i.prediction_id], _Computed)]
    hits = direction_hit_array(
        [i.proba[0] for i, _ in done], [i.proba[2] for i, _ in done], [v.forward_return for _, v in done]
    )
    return {i.prediction_id: h for (i, _), h in zip(done, hits.tolist(), strict=True)}


def _changed(outcome: PredictionOutcome, result: _Computed) -> bool:
    if outcome.forward_return is None or outcome.entry_close is None or outcome.exit_close is None:
        return True
    return (
        not math.isclose(outcome.forward_return, result.forward_return, rel_tol=1e-12, abs_tol=1e-15)
        or outcome.realised_label != result.label
        or Decimal(outcome.entry_close) != result.entry_close
        or Decimal(outcome.exit_close) != result.exit_close
    )


def _chunks(rows: list[Any], width: int) -> Iterable[list[Any]]:
    size = max(1, _MAX_PARAMS // max(width, 1))
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


_NEW_FIELDS = [f for f in PredictionOutcome._meta.concrete_fields if not f.primary_key]
_BATCH_TABLE = "models_registry_outcome_batch"


def _write(created: list[dict[str, Any]], updated: list[PredictionOutcome], now: datetime) -> None:
    """Insert the new outcomes (`created`: field values by attname) and save the changed ones, each with its audit
    row ("+" created, "~" changed) holding exactly what was written."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Outcomes (and their audit rows) are derived data that the next pass recomputes: a crash within
            # ~0.6 s of this commit may lose it whole (never part of it), and the pass then redoes it. So the
            # commit does not wait for its WAL flush (~0.2 s of a 10,000-outcome pass on a loaded machine).
            commit_without_flush_wait()
            defaults = {f.attname: f.get_default() for f in _NEW_FIELDS}
            _audited_copy([f.attname for f in _NEW_FIELDS], [{**defaults, **row} for row in created], "+", now)
            names = ["id", *OUTCOME_FIELDS]
            _audited_copy(names, [{n: getattr(o, n) for n in names} for o in updated], "~", now)
            return
        history_width = len(PredictionOutcome._meta.concrete_fields) + 6
        for chunk in _chunks([PredictionOutcome(**row) for row in created], history_width):
            PredictionOutcome.objects.bulk_create(chunk)
            history_rows_insert(PredictionOutcome, [o.pk for o in chunk], history_type="+", when=now)
        for chunk in _chunks(updated, max(history_width, 2 * len(OUTCOME_FIELDS) + 2)):
            # revisions and late maturations are rare: bulk_update types its CASE values (NULLs too)
            PredictionOutcome.objects.bulk_update(chunk, list(OUTCOME_FIELDS))
            history_rows_insert(PredictionOutcome, [o.pk for o in chunk], history_type="~", when=now)


def _copy_values(names: list[str], rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """`rows` as tuples in the order of `names`, with datetimes and decimals as their text (what psycopg's own
    dumpers send, at ~3 us a value in Python); a naive datetime goes through its field first (Django's warning and
    current time zone)."""
    meta = PredictionOutcome._meta
    for name in names:
        field = meta.get_field(name)
        if isinstance(field, DateTimeField):
            texts: dict[datetime, str] = {}  # checked_at and matured_at are one value for the whole pass
            for row in rows:
                value = row[name]
                if value is not None:
                    text = texts.get(value)
                    if text is None:
                        aware = value if value.tzinfo is not None else field.get_db_prep_save(value, connection)
                        text = texts[value] = aware.isoformat()
                    row[name] = text
        elif isinstance(field, DecimalField):
            for row in rows:
                if row[name] is not None:
                    row[name] = str(row[name])
    values = itemgetter(*names)
    return [values(row) for row in rows]


def _audited_copy(names: list[str], dict_rows: list[dict[str, Any]], history_type: str, when: datetime) -> None:
    """PostgreSQL: COPY `dict_rows` (values of the fields `names`) into a temporary table of the same
    column types, then write them with ``INSERT ... SELECT`` (with ``"id"`` first in `names`: ``UPDATE ... FROM
    <batch> WHERE id = <batch>.id`` instead) and their audit rows from what was written
    (`core.audit.audited_write`: the one way the fast paths record audit rows); COPY replaces ~25 bound
    parameters a row (whose client-side quoting cost ~0.5 ms a row)."""
    if not dict_rows:
        return
    rows = _copy_values(names, dict_rows)
    qn = connection.ops.quote_name
    meta = PredictionOutcome._meta
    table, batch = qn(meta.db_table), qn(_BATCH_TABLE)
    columns = [qn(outcome_column(n)) for n in names]
    listed = ", ".join(columns)
    if names[0] == "id":
        sets = ", ".join(f"{c} = b.{c}" for c in columns[1:])
        write = f"UPDATE {table} SET {sets} FROM {batch} AS b WHERE {table}.{columns[0]} = b.{columns[0]}"
    else:  # the new rows' keys in the order they were listed (as bulk_create gave them)
        write = f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {batch} ORDER BY bar_time, prediction_id"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {batch}")
        cursor.execute(f"CREATE TEMPORARY TABLE {batch} AS SELECT {listed} FROM {table} WITH NO DATA")
        with cursor.copy(f"COPY {batch} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    written = audited_write(PredictionOutcome, write, history_type=history_type, when=when)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {batch}")
    if written != len(rows):
        raise PredictionOutcome.DoesNotExist(f"PredictionOutcome: {len(rows) - written} of the rows to update are gone")


def outcomes_mature(*, now: datetime | None = None, store: Any = None, limit: int | None = None) -> MaturationResult:
    """One maturation pass (see the module doc): new due predictions, pending retries and recent re-checks.
    Returns what it did; ``skipped`` when another pass holds the lock."""
    token = uuid.uuid4().hex
    if not cache.add(LOCK_KEY, token, timeout=LOCK_TTL_S):
        return MaturationResult(skipped=True)
    try:
        result = _mature(now or timezone.now(), store, int(limit or float(settings.MODELS_REGISTRY_OUTCOMES_BATCH)))
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)
    for version_id in sorted(result.version_ids):
        alert = version_degradation_check(version_id=version_id)
        if alert is not None:
            result.alerts.append(alert)
    if result.matured or result.revised:
        _notify(result)
    return result


def _notify(result: MaturationResult) -> None:
    """Send `outcomes_matured` (experiments fold the new outcomes into their statistics) after a pass that matured
    or revised outcomes, whoever ran it; a failing receiver is logged, never fails the pass."""
    for receiver, outcome in outcomes_matured.send_robust(
        sender=outcomes_mature,
        version_ids=sorted(result.version_ids),
        matured=result.matured,
        revised=result.revised,
    ):
        if isinstance(outcome, Exception):
            logger.error("outcomes_matured receiver failed", extra={"receiver": repr(receiver)}, exc_info=outcome)


def _mature(now: datetime, store: Any, limit: int) -> MaturationResult:
    result = MaturationResult()
    fresh = _due_predictions(now, limit)
    again = _recheck_outcomes(now, limit)
    versions = {
        v.pk: OutcomeRule.of(v.hyperparameters)
        for v in ModelVersion.objects.filter(pk__in={i.version_id for i in fresh + again}).only("pk", "hyperparameters")
    }
    due = [i for i in fresh if i.bar_time + (i.horizon + 1) * BAR <= now]
    result.not_due = len(fresh) - len(due)
    items = due + again
    result.examined = len(items)
    if not items:
        return result
    computed = _compute(items, versions, store)
    hits = _hits(items, computed)
    created: list[dict[str, Any]] = []
    updated: list[PredictionOutcome] = []
    for item in items:
        rule = versions[item.version_id]
        value = computed[item.prediction_id]
        outcome = item.outcome
        if outcome is None:
            p_down, p_flat, p_up = item.proba
            row: dict[str, Any] = {
                "prediction_id": item.prediction_id,
                "version_id": item.version_id,
                "symbol": item.symbol,
                "bar_time": item.bar_time,
                "horizon": item.horizon,
                "window_end": item.bar_time + item.horizon * BAR,
                "signal": item.signal,
                "p_down": p_down,
                "p_flat": p_flat,
                "p_up": p_up,
                "round_trip_cost": rule.round_trip_cost,
                "checked_at": now,
            }
            if isinstance(value, str):
                row["pending_reason"] = value[:200]
                result.pending += 1
            else:
                row.update(_figures(item, value, rule, hits[item.prediction_id]), matured_at=now)
                result.matured += 1
                result.version_ids.add(item.version_id)
            created.append(row)
            continue
        if isinstance(value, str):
            # a matured outcome whose bars vanished keeps its figures; a pending one keeps waiting
            if outcome.status == PredictionOutcome.Status.PENDING:
                result.pending += 1
            else:
                result.unchanged += 1
            continue
        if outcome.status == PredictionOutcome.Status.PENDING:
            _apply(outcome, _figures(item, value, rule, hits[item.prediction_id]), now)
            result.matured += 1
        elif _changed(outcome, value):
            _apply(outcome, _figures(item, value, rule, hits[item.prediction_id]), now)
            outcome.revisions += 1
            outcome.revised_at = now
            result.revised += 1
        else:
            result.unchanged += 1
            continue
        updated.append(outcome)
        result.version_ids.add(item.version_id)
    _write(created, updated, now)
    logger.info("outcomes matured", extra={k: v for k, v in result.as_dict().items() if k != "versions"})
    return result
