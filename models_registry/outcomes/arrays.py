"""A version's matured outcomes as numpy arrays in bar-time order: what live metrics and the degradation check read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from django.db import connection

from models_registry.models import ModelVersion, PredictionOutcome
from models_registry.outcomes.rules import outcome_column


@dataclass(frozen=True)
class MaturedArrays:
    bar_time: np.ndarray  # datetime64[us, UTC] as int64 microseconds
    proba: np.ndarray  # n x 3, LABEL_CLASSES order
    label: np.ndarray
    forward_return: np.ndarray
    net: np.ndarray

    def tail(self, n: int) -> MaturedArrays:
        start = max(len(self.label) - n, 0)
        return MaturedArrays(
            self.bar_time[start:], self.proba[start:], self.label[start:], self.forward_return[start:], self.net[start:]
        )

    def since(self, cutoff: datetime) -> MaturedArrays:
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


def matured_arrays(version: ModelVersion) -> MaturedArrays:
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
        return no_matured_arrays()
    times, *numbers = zip(*rows, strict=True)
    micros = pd.to_datetime(list(times), utc=True).as_unit("us").asi8
    values = np.array(numbers, dtype=np.float64)
    return MaturedArrays(micros, values[0:3].T.copy(), values[3].copy(), values[4].copy(), values[5].copy())


def no_matured_arrays() -> MaturedArrays:
    empty = np.zeros(0)
    return MaturedArrays(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), empty, empty, empty)


def _matured_arrays_copy(version_id: int) -> MaturedArrays:
    qn = connection.ops.quote_name
    meta = PredictionOutcome._meta
    columns = ", ".join(f"CAST({qn(outcome_column(c))} AS double precision)" for c in _ARRAY_COLUMNS)
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
        return no_matured_arrays()
    lengths = [rows[n] for n in _COPY_ROW.names or () if n.startswith("len_")]
    if (rows["fields"] != 7).any() or any((length != 8).any() for length in lengths):
        raise ValueError("COPY BINARY rows are not 7 non-null 8-byte fields")
    micros = rows["t"].astype(np.int64) + _PG_EPOCH_US
    proba = np.column_stack([rows[c].astype(np.float64) for c in _ARRAY_COLUMNS[:3]])
    return MaturedArrays(
        micros,
        proba,
        rows["realised_label"].astype(np.float64),
        rows["forward_return"].astype(np.float64),
        rows["net_return"].astype(np.float64),
    )
