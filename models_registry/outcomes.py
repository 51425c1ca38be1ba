"""Outcome tracking: the truth about every recorded prediction, and live metrics per version beside its
out-of-sample validation metrics.

Maturation (:func:`outcomes_mature`, a service; the Celery task ``outcomes_mature_task`` runs it every minute)
    A prediction with a ``bar_time`` t and a ``horizon`` h matures once the bar starting at t + h has closed
    (t + (h + 1) minutes). Its forward return and label come from the closes of the STORED 1-minute bars
    (``history.load_bar_fields``, nothing filled) through the training's own code, ``labels.make_labels`` with the
    version's recorded ``label_dead_zone`` (and ``taker_fee``); nothing here re-implements a label. Every bar
    from t to t + h must be stored: the ingest worker writes quiet minutes as flat bars, so a missing bar is a
    real gap and the outcome stays ``pending`` (with the reason), never guessed; it is retried while its window
    ended less than ``MODELS_REGISTRY_OUTCOMES_PENDING_RETRY_MINUTES`` (1440) ago.
    Net return of the signal (spot, long-only): position 1 when the signal is +1, else 0;
    ``net = position x forward_return - position x 2 x (taker_fee + slippage_bps / 10^4)``.
    Matured outcomes whose window ended less than ``MODELS_REGISTRY_OUTCOMES_RECHECK_MINUTES`` (120) ago are
    recomputed on every pass; a late or revised bar that changes them is written with ``revisions`` + 1.
    Idempotent: a pass that finds nothing new writes nothing. Batched: one store read per symbol; on
    PostgreSQL the new outcomes are COPYed to a temporary table and one ``INSERT ... RETURNING`` writes them and
    their audit rows, committed without waiting for the WAL flush (``synchronous_commit = off``: a crash may lose
    the last pass whole, which the next pass redoes); elsewhere ``bulk_create`` per chunk and the audit rows.
    Single-flight through a cache lock, so an overlapping beat tick or a redelivered task skips instead of racing.

Live metrics (:func:`version_live_metrics`, a selector)
    Over the matured outcomes of one version, for rolling windows by bar time (1 h, 24 h, 7 d, all) and the last
    N outcomes: direction hit rate (``evaluation.intervals.direction_hits``'s rule) with a Wilson interval on
    the effective sample size (Newey-West, lag ``overlap_max_lag(h)``: forward windows overlap), log loss and
    multiclass Brier score (HAC intervals of their means), top-label calibration buckets and ECE, mean and
    total net return (HAC interval of the mean), per-prediction Sharpe ratio with the HAC interval of Lo
    (2002), the number of outcomes and the data window, beside the validation metrics the version recorded.

Degradation (:func:`version_degradation_check`)
    Over the last ``MODELS_REGISTRY_DEGRADATION_WINDOW`` (1000) outcomes, once there are at least
    ``MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES`` (200): the version is degraded when the upper bound of the live
    hit-rate interval is below (1 - 10 %) x the validation ``direction_hit_rate``, or the upper bound of the
    live mean net return per prediction is below the validation ``net_return_per_prediction`` minus 10 % of its
    magnitude. Then a ``model_degraded`` alert is raised (``trading.alerts.alert_raise``), at most one
    unacknowledged alert per version. Checked after each maturation pass for the versions it touched.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
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
from django.db.models import Count, DateTimeField, DecimalField, Field, Max, Min, Q, QuerySet, Sum
from django.utils import timezone
from threadpoolctl import ThreadpoolController

from core.audit import audited_write_sql, history_rows_insert
from models_registry.evaluation.intervals import (
    calibration_buckets,
    direction_hit_array,
    effective_sample_size,
    expected_calibration_error,
    mean_interval,
    overlap_max_lag,
    sharpe_interval,
    wilson_interval,
)
from models_registry.history import load_bar_fields
from models_registry.labels import DEFAULT_TAKER_FEE, LABEL_CLASSES, make_labels
from models_registry.models import ModelVersion, Prediction, PredictionOutcome
from timeseries import get_store

logger = logging.getLogger(__name__)
_THREADPOOLS = ThreadpoolController()

BAR = timedelta(minutes=1)
LOCK_KEY = "models_registry:outcomes:mature"
LOCK_TTL_S = 300
ALERT_KIND = "model_degraded"
DEGRADATION_MARGIN = 0.10
WINDOWS: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "all": None,
}
LAST_N = (100, 1000)
_MAX_PARAMS = 30_000  # below PostgreSQL's 65,535 and SQLite's 32,766 bound parameters per statement
_OUTCOME_FIELDS = (
    "status",
    "pending_reason",
    "forward_return",
    "realised_label",
    "dead_zone",
    "direction_hit",
    "position",
    "round_trip_cost",
    "net_return",
    "entry_close",
    "exit_close",
    "matured_at",
    "revised_at",
    "revisions",
    "checked_at",
)


# --- costs and label parameters of a version ---------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeRule:
    """How a version's outcomes are computed: its recorded label parameters and costs."""

    horizon: int | None
    dead_zone: float | None
    taker_fee: float
    slippage_bps: float

    @property
    def round_trip_cost(self) -> float:
        return 2.0 * (self.taker_fee + self.slippage_bps / 10_000.0)

    @property
    def effective_dead_zone(self) -> float:
        return self.dead_zone if self.dead_zone is not None else 2.0 * self.taker_fee

    @classmethod
    def of(cls, hyperparameters: Mapping[str, Any] | None) -> OutcomeRule:
        hyper = hyperparameters or {}

        def number(key: str, default: float | None) -> float | None:
            value = hyper.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
            return default

        horizon = hyper.get("horizon")
        return cls(
            horizon=horizon if isinstance(horizon, int) and not isinstance(horizon, bool) and horizon >= 1 else None,
            dead_zone=number("label_dead_zone", None),
            taker_fee=number("taker_fee", DEFAULT_TAKER_FEE) or 0.0,
            slippage_bps=number("slippage_bps", 0.0) or 0.0,
        )


def net_return(signal: int, forward_return: float, round_trip_cost: float) -> tuple[int, float]:
    """(position, net return) of a spot long-only signal: long one unit when the signal is +1, else flat."""
    position = 1 if signal == 1 else 0
    return position, position * forward_return - position * round_trip_cost


# --- maturation --------------------------------------------------------------------------------------------


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
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
            defaults = {f.attname: f.get_default() for f in _NEW_FIELDS}
            _audited_copy([f.attname for f in _NEW_FIELDS], [{**defaults, **row} for row in created], "+", now)
            names = ["id", *_OUTCOME_FIELDS]
            _audited_copy(names, [{n: getattr(o, n) for n in names} for o in updated], "~", now)
            return
        history_width = len(PredictionOutcome._meta.concrete_fields) + 6
        for chunk in _chunks([PredictionOutcome(**row) for row in created], history_width):
            PredictionOutcome.objects.bulk_create(chunk)
            history_rows_insert(chunk, history_type="+", when=now)
        for chunk in _chunks(updated, max(history_width, 2 * len(_OUTCOME_FIELDS) + 2)):
            # revisions and late maturations are rare: bulk_update types its CASE values (NULLs too)
            PredictionOutcome.objects.bulk_update(chunk, list(_OUTCOME_FIELDS))
            history_rows_insert(chunk, history_type="~", when=now)


def _column(name: str) -> str:
    """The database column of the PredictionOutcome field `name` (a concrete field, not a relation's other side)."""
    field = PredictionOutcome._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise ValueError(f"PredictionOutcome.{name} is not a concrete field")
    return field.column


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
    column types, then one statement writes them and their audit rows from what it wrote:
    ``WITH written AS (INSERT ... SELECT ... RETURNING *) INSERT INTO <history> SELECT ... FROM written`` (with
    ``"id"`` first in `names`: ``UPDATE ... FROM <batch> WHERE id = <batch>.id RETURNING *`` instead), built by
    `core.audit.audited_write_sql`, so the audit rows are those of `audited_row_insert` /
    `audited_rows_update`; COPY replaces ~25 bound parameters a row (whose client-side quoting cost ~0.5 ms a row)."""
    if not dict_rows:
        return
    rows = _copy_values(names, dict_rows)
    qn = connection.ops.quote_name
    meta = PredictionOutcome._meta
    table, batch = qn(meta.db_table), qn(_BATCH_TABLE)
    columns = [qn(_column(n)) for n in names]
    listed = ", ".join(columns)
    if names[0] == "id":
        sets = ", ".join(f"{c} = b.{c}" for c in columns[1:])
        write = f"UPDATE {table} SET {sets} FROM {batch} AS b WHERE {table}.{columns[0]} = b.{columns[0]}"
    else:  # the new rows' keys in the order they were listed (as bulk_create gave them)
        write = f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {batch} ORDER BY bar_time, prediction_id"
    sql, params = audited_write_sql(PredictionOutcome, write, history_type=history_type, when=when)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {batch}")
        cursor.execute(f"CREATE TEMPORARY TABLE {batch} AS SELECT {listed} FROM {table} WITH NO DATA")
        with cursor.copy(f"COPY {batch} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(sql, params)
        written = cursor.rowcount
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
    return result


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


# --- selectors ---------------------------------------------------------------------------------------------


def outcome_list(
    *,
    version: ModelVersion,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    direction_hit: bool | None = None,
    signal: int | None = None,
) -> QuerySet[PredictionOutcome]:
    qs = PredictionOutcome.objects.filter(version=version).select_related("prediction")
    if status:
        qs = qs.filter(status=status)
    if since is not None:
        qs = qs.filter(bar_time__gte=since)
    if until is not None:
        qs = qs.filter(bar_time__lt=until)
    if direction_hit is not None:
        qs = qs.filter(direction_hit=direction_hit)
    if signal is not None:
        qs = qs.filter(signal=signal)
    return qs.order_by("-bar_time", "-id")


def pending_count(*, version: ModelVersion, now: datetime | None = None, matured: int | None = None) -> int:
    """Predictions of the version with a bar time and no matured outcome (due or not yet): those with a bar time
    less the version's matured outcomes (an outcome copies its prediction's version and bar time; `matured`: their
    number when the caller has it), counts an index answers instead of an anti-join over every prediction."""
    recorded = Prediction.objects.filter(version=version, bar_time__isnull=False).count()
    if matured is None:
        matured = PredictionOutcome.objects.filter(version=version, status=PredictionOutcome.Status.MATURED).count()
    return recorded - matured


@dataclass(frozen=True)
class _Arrays:
    bar_time: np.ndarray  # datetime64[us, UTC] as int64 microseconds
    proba: np.ndarray  # n x 3, LABEL_CLASSES order
    label: np.ndarray
    forward_return: np.ndarray
    net: np.ndarray

    def tail(self, n: int) -> _Arrays:
        start = max(len(self.label) - n, 0)
        return _Arrays(
            self.bar_time[start:], self.proba[start:], self.label[start:], self.forward_return[start:], self.net[start:]
        )

    def since(self, cutoff: datetime) -> _Arrays:
        micros = int(cutoff.timestamp() * 1_000_000)
        start = int(np.searchsorted(self.bar_time, micros, side="left"))
        return self.tail(len(self.label) - start)


_ARRAY_COLUMNS = ("p_down", "p_flat", "p_up", "realised_label", "forward_return", "net_return")
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC, PostgreSQL's timestamp origin, in Unix microseconds
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
# one row of COPY ... (FORMAT BINARY) with 7 non-null 8-byte fields: a field count, then (length, value) pairs
_COPY_ROW = np.dtype(
    [("fields", ">i2"), ("len_t", ">i4"), ("t", ">i8")]
    + [pair for c in _ARRAY_COLUMNS for pair in ((f"len_{c}", ">i4"), (c, ">f8"))]
)


def _matured_arrays(version: ModelVersion) -> _Arrays:
    """The matured outcomes of `version` in bar-time order, as numpy arrays (one query, no model instances).

    On PostgreSQL through ``COPY (SELECT ...) TO STDOUT (FORMAT BINARY)`` read as one numpy record array (every
    field of a matured outcome is non-null, so the rows have a fixed layout): no text conversion on either side,
    no Python object per value. The query is answered from the index `outcome_version_status_bar_cover`."""
    if connection.vendor == "postgresql":
        return _matured_arrays_copy(int(version.pk))
    qs = PredictionOutcome.objects.filter(version=version, status=PredictionOutcome.Status.MATURED).order_by(
        "bar_time", "id"
    )
    sql, params = qs.values_list("bar_time", *_ARRAY_COLUMNS).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return _no_arrays()
    times, *numbers = zip(*rows, strict=True)
    micros = pd.to_datetime(list(times), utc=True).as_unit("us").asi8
    values = np.array(numbers, dtype=np.float64)
    return _Arrays(micros, values[0:3].T.copy(), values[3].copy(), values[4].copy(), values[5].copy())


def _no_arrays() -> _Arrays:
    empty = np.zeros(0)
    return _Arrays(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), empty, empty, empty)


def _matured_arrays_copy(version_id: int) -> _Arrays:
    qn = connection.ops.quote_name
    meta = PredictionOutcome._meta
    columns = ", ".join(f"CAST({qn(_column(c))} AS double precision)" for c in _ARRAY_COLUMNS)
    status = PredictionOutcome.Status.MATURED.value
    assert status.isalnum()  # a literal: COPY takes no bound parameters
    sql = (
        f"COPY (SELECT {qn('bar_time')}, {columns} FROM {qn(meta.db_table)} "
        f"WHERE {qn('version_id')} = {int(version_id)} AND {qn('status')} = '{status}' "
        f"ORDER BY {qn('bar_time')}, {qn('id')}) TO STDOUT (FORMAT BINARY)"
    )
    data = bytearray()
    with connection.cursor() as cursor, cursor.copy(sql) as copy:
        while chunk := copy.read():
            data += chunk
    # header: signature, flags (int32), extension length (int32, 0); trailer: field count -1 (int16)
    if data[:11] != _COPY_SIGNATURE or data[15:19] != b"\x00\x00\x00\x00" or data[-2:] != b"\xff\xff":
        raise ValueError("unexpected COPY BINARY framing")
    body = memoryview(data)[19:-2]
    if len(body) % _COPY_ROW.itemsize:
        raise ValueError("COPY BINARY rows are not of the expected width")
    rows = np.frombuffer(body, dtype=_COPY_ROW)
    if not len(rows):
        return _no_arrays()
    lengths = [rows[n] for n in _COPY_ROW.names or () if n.startswith("len_")]
    if (rows["fields"] != 7).any() or any((length != 8).any() for length in lengths):
        raise ValueError("COPY BINARY rows are not 7 non-null 8-byte fields")
    micros = rows["t"].astype(np.int64) + _PG_EPOCH_US
    proba = np.column_stack([rows[c].astype(np.float64) for c in _ARRAY_COLUMNS[:3]])
    return _Arrays(
        micros,
        proba,
        rows["realised_label"].astype(np.float64),
        rows["forward_return"].astype(np.float64),
        rows["net_return"].astype(np.float64),
    )


def _log_loss_terms(proba: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy -log p(true class), probabilities clipped and renormalised like scikit-learn."""
    eps = np.finfo(proba.dtype).eps
    p = np.clip(proba, eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    index = np.searchsorted(np.asarray(LABEL_CLASSES), label.astype(np.int64))
    return -np.log(p[np.arange(len(label)), index])


def _brier_terms(proba: np.ndarray, label: np.ndarray) -> np.ndarray:
    onehot = label[:, None] == np.asarray(LABEL_CLASSES, dtype=np.float64)[None, :]
    return ((proba - onehot) ** 2).sum(axis=1)


def _iso(micros: int) -> str:
    return pd.Timestamp(micros, unit="us", tz="UTC").isoformat()


def _window_metrics(a: _Arrays, horizon: int, *, bins: int = 10, buckets: bool = False) -> dict[str, Any]:
    n = len(a.label)
    lags = overlap_max_lag(horizon)
    out: dict[str, Any] = {"n_outcomes": n}
    if n == 0:
        out["data_window"] = None
        return out
    out["data_window"] = {"first_bar": _iso(int(a.bar_time[0])), "last_bar": _iso(int(a.bar_time[-1]))}
    hits = direction_hit_array(a.proba[:, 0], a.proba[:, 2], a.forward_return)
    valid = ~np.isnan(hits)
    series = hits[valid]
    k, m = int(series.sum()), int(valid.sum())
    n_eff = effective_sample_size(series, lags) if m else 0.0
    low, high = wilson_interval(k / m * n_eff, n_eff) if m else (0.0, 1.0)
    out["hit_rate"] = {
        "value": k / m if m else None,
        "hits": k,
        "n": m,
        "n_effective": n_eff,
        "low": low,
        "high": high,
        "interval": "wilson on the Newey-West effective n",
    }
    out["log_loss"] = mean_interval(_log_loss_terms(a.proba, a.label), lags=lags).as_dict()
    out["brier_multiclass"] = mean_interval(_brier_terms(a.proba, a.label), lags=lags).as_dict()
    out["ece"] = expected_calibration_error(a.proba, a.label, bins)
    if buckets:
        out["calibration"] = [b.as_dict() for b in calibration_buckets(a.proba, a.label, bins)]
    net = mean_interval(a.net, lags=lags)
    out["net_return"] = {**net.as_dict(), "total": float(a.net.sum()), "traded": int(np.count_nonzero(a.net))}
    out["sharpe"] = {**sharpe_interval(a.net, lags=lags).as_dict(), "per": "prediction"}
    return out


VALIDATION_KEYS = (
    "direction_hit_rate",
    "direction_n",
    "log_loss",
    "baseline_log_loss",
    "brier_multiclass",
    "ece",
    "sharpe_per_bar",
    "net_return_per_prediction",
    "n_oos_samples",
)


def version_live_metrics(
    *, version: ModelVersion, now: datetime | None = None, last_n: Sequence[int] = LAST_N, bins: int = 10
) -> dict[str, Any]:
    """Live metrics per window beside the version's validation metrics (see the module doc)."""
    now = now or timezone.now()
    rule = OutcomeRule.of(version.hyperparameters)
    horizon = rule.horizon or 1
    arrays = _matured_arrays(version)
    windows: dict[str, Any] = {}
    # The autocovariances are dot products of ~10^5-element vectors: OpenBLAS threads cost more to wake than they
    # save, and on shared cores wait for each other (p50 150 -> 240-400 ms, max 3.6 s for 100,000 outcomes).
    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        for name, span in WINDOWS.items():
            subset = arrays if span is None else arrays.since(now - span)
            windows[name] = {"kind": "time", "span_seconds": span.total_seconds() if span else None}
            windows[name].update(_window_metrics(subset, horizon, bins=bins))
        for n in last_n:
            tail = _window_metrics(arrays.tail(n), horizon, bins=bins)
            windows[f"last_{n}"] = {"kind": "count", "last_n": n, **tail}
    metrics = version.metrics or {}
    return {
        "model": version.model.name,
        "version": version.version,
        "stage": version.stage,
        "horizon": rule.horizon,
        "round_trip_cost": rule.round_trip_cost,
        "as_of": now.isoformat(),
        "pending_outcomes": pending_count(version=version, matured=len(arrays.label)),
        "validation": {k: metrics.get(k) for k in VALIDATION_KEYS},
        "windows": windows,
        "degradation": degradation_assess(version=version, arrays=arrays),
    }


def version_calibration(*, version: ModelVersion, window: str = "all", bins: int = 10) -> dict[str, Any]:
    """Top-label calibration buckets and ECE of one window (see WINDOWS)."""
    now = timezone.now()
    arrays = _matured_arrays(version)
    span = WINDOWS[window]
    subset = arrays if span is None else arrays.since(now - span)
    n = len(subset.label)
    return {
        "model": version.model.name,
        "version": version.version,
        "window": window,
        "bins": bins,
        "n_outcomes": n,
        "data_window": {"first_bar": _iso(int(subset.bar_time[0])), "last_bar": _iso(int(subset.bar_time[-1]))}
        if n
        else None,
        "ece": expected_calibration_error(subset.proba, subset.label, bins) if n else None,
        "validation_ece": (version.metrics or {}).get("ece"),
        "buckets": [b.as_dict() for b in calibration_buckets(subset.proba, subset.label, bins)],
        "kind": "top-label (predicted-class confidence vs whether it was right)",
    }


# --- degradation -------------------------------------------------------------------------------------------


def degradation_assess(*, version: ModelVersion, arrays: _Arrays | None = None) -> dict[str, Any]:
    """Whether live performance is worse than validation by more than 10 % with statistical support."""
    window = int(float(settings.MODELS_REGISTRY_DEGRADATION_WINDOW))
    minimum = int(float(settings.MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES))
    arrays = _matured_arrays(version) if arrays is None else arrays
    recent = arrays.tail(window)
    horizon = OutcomeRule.of(version.hyperparameters).horizon or 1
    lags = overlap_max_lag(horizon)
    metrics = version.metrics or {}
    report: dict[str, Any] = {"window": window, "min_outcomes": minimum, "n_outcomes": len(recent.label)}
    reasons: list[str] = []
    checks: dict[str, Any] = {}
    if len(recent.label) >= minimum:
        val_hit = metrics.get("direction_hit_rate")
        hits = direction_hit_array(recent.proba[:, 0], recent.proba[:, 2], recent.forward_return)
        series = hits[~np.isnan(hits)]
        if isinstance(val_hit, int | float) and math.isfinite(val_hit) and len(series):
            n_eff = effective_sample_size(series, lags)
            _, high = wilson_interval(float(series.mean()) * n_eff, n_eff)
            threshold = (1 - DEGRADATION_MARGIN) * float(val_hit)
            checks["hit_rate"] = {"live": float(series.mean()), "live_high": high, "validation": val_hit}
            checks["hit_rate"]["threshold"] = threshold
            if high < threshold:
                reasons.append(f"hit rate {series.mean():.3f} (upper {high:.3f}) < 0.9 x validation {val_hit:.3f}")
        val_net = metrics.get("net_return_per_prediction")
        if isinstance(val_net, int | float) and math.isfinite(val_net):
            live = mean_interval(recent.net, lags=lags)
            threshold = float(val_net) - DEGRADATION_MARGIN * abs(float(val_net))
            checks["net_return"] = {"live": live.mean, "live_high": live.high, "validation": val_net}
            checks["net_return"]["threshold"] = threshold
            if math.isfinite(live.high) and live.high < threshold:
                reasons.append(
                    f"net return per prediction {live.mean:.6f} (upper {live.high:.6f}) below validation "
                    f"{val_net:.6f} less 10 %"
                )
    report["checks"] = checks
    report["degraded"] = bool(reasons)
    report["reasons"] = reasons
    return report


def open_degradation_alerts(version_ids: Iterable[int] | None = None) -> set[int]:
    """Versions with an unacknowledged `model_degraded` alert."""
    from trading.models import Alert

    rows = Alert.objects.filter(kind=ALERT_KIND, acknowledged_at__isnull=True).values_list("context", flat=True)
    found = {int(c["version_id"]) for c in rows if isinstance(c, dict) and isinstance(c.get("version_id"), int)}
    return found if version_ids is None else found & set(version_ids)


def version_degradation_check(*, version_id: int) -> int | None:
    """Raise a `model_degraded` alert when the version is degraded and has no open one; returns its id."""
    from trading.alerts import alert_raise

    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().select_related("model").filter(pk=version_id).first()
        if version is None:
            return None
        report = degradation_assess(version=version)
        if not report["degraded"] or open_degradation_alerts([version_id]):
            return None
        alert = alert_raise(
            kind=ALERT_KIND,
            severity="warning",
            message=f"{version.model.name} v{version.version} degraded live: " + "; ".join(report["reasons"]),
            context={"version_id": version.pk, "model": version.model.name, "version": version.version, **report},
        )
    return alert.pk if alert is not None else None


def version_outcome_summary() -> list[dict[str, Any]]:
    """Per version with outcomes (or serving): counts, hit rate, net return and the degraded flag, from grouped
    aggregates (cheap enough for every /metrics scrape)."""
    matured = Q(status=PredictionOutcome.Status.MATURED)
    rows = (
        PredictionOutcome.objects.values("version_id")
        .annotate(
            n=Count("id", filter=matured),
            pending=Count("id", filter=Q(status=PredictionOutcome.Status.PENDING)),
            hits=Count("id", filter=matured & Q(direction_hit=True)),
            directional=Count("id", filter=matured & Q(direction_hit__isnull=False)),
            first=Min("bar_time"),
            last=Max("bar_time"),
        )
        .order_by()
    )
    sums = dict(
        PredictionOutcome.objects.filter(matured)
        .values("version_id")
        .annotate(total=Sum("net_return"))
        .order_by()
        .values_list("version_id", "total")
    )
    waiting = dict(
        Prediction.objects.filter(bar_time__isnull=False, outcome__isnull=True)
        .values("version_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("version_id", "n")
    )
    by_version = {r["version_id"]: r for r in rows}
    serving = ModelVersion.objects.filter(Q(stage__in=["production", "staging"]) | Q(pk__in=list(by_version)))
    degraded = open_degradation_alerts()
    out = []
    for v in serving.select_related("model").order_by("model__name", "version"):
        r: dict[str, Any] = dict(by_version.get(v.pk) or {})
        n = int(r.get("n", 0))
        directional = int(r.get("directional", 0))
        out.append(
            {
                "model": v.model.name,
                "version": v.version,
                "stage": v.stage,
                "n_outcomes": n,
                "pending_outcomes": int(r.get("pending", 0)) + int(waiting.get(v.pk, 0)),
                "hit_rate": r["hits"] / directional if directional else None,
                "net_return_total": float(sums.get(v.pk) or 0.0),
                "net_return_mean": float(sums.get(v.pk) or 0.0) / n if n else None,
                "degraded": v.pk in degraded,
            }
        )
    return out
