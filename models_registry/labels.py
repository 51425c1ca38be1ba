"""Training labels: the sign of the forward return over a horizon, with a dead zone of round-trip fees.

Forward return (simple, close to close): ``r_t = close[t + h] / close[t] - 1`` (``kind="log"`` gives
``log(close[t + h] / close[t])``). Simple is the default because fees are proportional to notional, so a move
must beat the round-trip fee in simple-return terms to pay.

Label: ``+1`` when ``r_t > dead_zone``, ``-1`` when ``r_t < -dead_zone``, ``0`` otherwise (a move of exactly the
dead zone does not pay its fees, so it is 0). The dead zone defaults to a round trip at the taker fee,
``2 x 0.40% = 0.80%``; pass ``taker_fee`` or ``dead_zone`` to change it.

The last ``h`` rows have no future close: their forward return and label are NaN, never filled. Labels are
float64 (so they can hold NaN); drop the NaN rows before fitting. Sample t's label uses closes t..t+h, which is
the span the purged cross-validation (``evaluation.splits``) removes from training around a test fold.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

DEFAULT_TAKER_FEE = 0.004
LABEL_CLASSES: tuple[int, ...] = (-1, 0, 1)

ReturnKind = Literal["simple", "log"]


def round_trip_dead_zone(taker_fee: float = DEFAULT_TAKER_FEE) -> float:
    """The return a position must make to cover entering and leaving at the taker fee."""
    if not (0.0 <= taker_fee < 0.5):
        raise ValueError(f"taker_fee must be in [0, 0.5), got {taker_fee!r}")
    return 2.0 * taker_fee


def _closes(close: pd.Series) -> np.ndarray:
    if not isinstance(close, pd.Series):
        raise TypeError(f"close must be a pandas Series, got {type(close).__name__}")
    try:
        values = np.asarray(close.to_numpy(), dtype=np.float64)  # Decimal -> float: labels are ML targets
    except (TypeError, ValueError) as exc:
        raise ValueError(f"close has non-numeric values: {exc}") from exc
    if not np.isfinite(values).all() or (values <= 0).any():
        raise ValueError("close must be finite and > 0 on every bar")
    return values


def forward_return(close: pd.Series, horizon: int, *, kind: ReturnKind = "simple") -> pd.Series:
    """Return from close[t] to close[t + horizon]; NaN for the last `horizon` rows."""
    if not isinstance(horizon, int | np.integer) or isinstance(horizon, bool) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer number of bars, got {horizon!r}")
    if kind not in ("simple", "log"):
        raise ValueError(f"kind must be 'simple' or 'log', got {kind!r}")
    values = _closes(close)
    out = np.full(values.shape, np.nan)
    if len(values) > horizon:
        ratio = values[horizon:] / values[:-horizon]
        out[:-horizon] = ratio - 1.0 if kind == "simple" else np.log(ratio)
    return pd.Series(out, index=close.index, name=f"fwd_{kind}_return_{horizon}")


def sign_labels(returns: pd.Series, dead_zone: float) -> pd.Series:
    """+1 / -1 / 0 by the dead zone; NaN stays NaN."""
    if not (np.isfinite(dead_zone) and dead_zone >= 0):
        raise ValueError(f"dead_zone must be a finite number >= 0, got {dead_zone!r}")
    r = returns.to_numpy(dtype=np.float64)
    labels = np.where(r > dead_zone, 1.0, np.where(r < -dead_zone, -1.0, 0.0))
    labels[np.isnan(r)] = np.nan
    return pd.Series(labels, index=returns.index, name="label")


def make_labels(
    close: pd.Series,
    horizon: int,
    *,
    taker_fee: float = DEFAULT_TAKER_FEE,
    dead_zone: float | None = None,
    kind: ReturnKind = "simple",
) -> pd.DataFrame:
    """Columns ``forward_return`` and ``label`` (float64, NaN on the last `horizon` rows).

    `dead_zone` overrides the round-trip fee (2 x `taker_fee`). With ``kind="log"`` the dead zone is compared
    with the log return as given.
    """
    zone = round_trip_dead_zone(taker_fee) if dead_zone is None else dead_zone
    fwd = forward_return(close, horizon, kind=kind)
    return pd.DataFrame({"forward_return": fwd, "label": sign_labels(fwd, zone)}, index=close.index)
