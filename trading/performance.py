"""Reads of the account's performance for people and integrations: the equity curve with its drawdown (bucketed
in SQL), PnL over today / this week / this month split into realised, unrealised and fees, and the open positions
at their marks. Every aggregate runs in the database on indexed columns (`EquitySnapshot.taken_at`,
`Fill.executed_at`); the rows returned are bounded by the bucket size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Avg, BigIntegerField, Count, ExpressionWrapper, F, Max, Min, Q, Sum
from django.db.models.functions import Trunc

from trading.models import EquitySnapshot, Fill, Position
from trading.pnl import ZERO, q_money, unrealised_pnl
from trading.selectors import utc_day_start

# The equity curve's bucket by the window's length: at most ~2,900 points whatever the window.
BUCKETS = (
    (timedelta(days=2), "minute"),
    (timedelta(days=120), "hour"),
)
MAX_WINDOW = timedelta(days=3660)


def equity_bucket(window: timedelta) -> str:
    for longest, kind in BUCKETS:
        if window <= longest:
            return kind
    return "day"


@dataclass(frozen=True)
class EquityPoint:
    at: datetime  # the bucket's start
    equity: Decimal  # the bucket's average
    equity_low: Decimal
    equity_high: Decimal
    drawdown: Decimal  # the bucket's worst (largest) drawdown, fraction of the high-water mark
    high_water_mark: Decimal
    snapshots: int


# Above this many snapshots in the window (the risk monitor writes one every 10 s: about 4 days), the curve is
# drawn from a sample of them: every k-th snapshot by id, so each read aggregates at most about this many rows.
EQUITY_SAMPLE_ROWS = 3_000


def equity_series(*, currency: str, since: datetime, until: datetime) -> tuple[str, list[EquityPoint]]:
    """The equity curve of `currency` between `since` and `until`, bucketed by minute, hour or day (by the window's
    length): one GROUP BY over the snapshots' time index.

    Downsampled in SQL for long windows: when the window's snapshots span more than `EQUITY_SAMPLE_ROWS` ids,
    only every k-th snapshot (id mod k = 0, k = span / EQUITY_SAMPLE_ROWS rounded up) is aggregated, so a 7-day
    read (60,480 snapshots) aggregates about 2,900 instead of every one (the numeric MIN/MAX/AVG were its cost);
    a bucket's average, low, high and worst drawdown are then those of its sampled snapshots (about 17 per hour
    at 10 s snapshots over 7 days), and `snapshots` counts the sampled ones. Minute buckets (windows up to 2
    days) are exact."""
    bucket = equity_bucket(until - since)
    window = EquitySnapshot.objects.filter(currency=currency, taken_at__gte=since, taken_at__lt=until)
    if bucket != "minute":
        ids = window.order_by().values_list("id", flat=True)
        first, last = ids.order_by("taken_at").first(), ids.order_by("-taken_at").first()  # two seeks on taken_at
        if first is not None and last is not None and abs(last - first) >= EQUITY_SAMPLE_ROWS:
            every = -(-(abs(last - first) + 1) // EQUITY_SAMPLE_ROWS)
            window = window.alias(sample=ExpressionWrapper(F("id") % every, output_field=BigIntegerField()))
            window = window.filter(sample=0)
    rows = (
        window.annotate(bucket=Trunc("taken_at", bucket))
        .values("bucket")
        .annotate(
            avg_equity=Avg("equity"),
            low_equity=Min("equity"),
            high_equity=Max("equity"),
            worst_drawdown=Max("drawdown"),
            top_high_water_mark=Max("high_water_mark"),
            snapshots=Count("id"),
        )
        .order_by("bucket")
    )
    return bucket, [
        EquityPoint(
            at=row["bucket"],
            equity=q_money(Decimal(row["avg_equity"])),
            equity_low=row["low_equity"],
            equity_high=row["high_equity"],
            drawdown=row["worst_drawdown"],
            high_water_mark=row["top_high_water_mark"],
            snapshots=row["snapshots"],
        )
        for row in rows
    ]


def equity_latest(*, currency: str) -> EquitySnapshot | None:
    return EquitySnapshot.objects.filter(currency=currency).order_by("-taken_at", "-id").first()


@dataclass(frozen=True)
class PositionMark:
    symbol: str
    quote: str
    price_precision: int
    qty_precision: int
    quantity: Decimal
    avg_price: Decimal
    mark: Decimal | None  # the last mid (None: no quote yet; the position then counts at its entry price)
    marked_at: datetime | None
    unrealised_pnl: Decimal
    realised_pnl: Decimal
    fees: Decimal
    opened_at: datetime | None


def positions_marked(*, include_flat: bool = False) -> list[PositionMark]:
    """The positions (open ones by default) with their mark (the last mid) and unrealised PnL: one query."""
    qs = Position.objects.select_related("instrument", "instrument__quote_top").order_by("instrument__symbol")
    if not include_flat:
        qs = qs.exclude(quantity=0)
    marked: list[PositionMark] = []
    for position in qs[:500]:
        instrument = position.instrument
        quote = getattr(instrument, "quote_top", None)  # the reverse one-to-one: None without a quote
        mark = quote.mid if quote is not None else None
        unrealised = (
            unrealised_pnl(quantity=position.quantity, avg_price=position.avg_price, mark=mark)
            if mark is not None and position.quantity != 0
            else ZERO
        )
        marked.append(
            PositionMark(
                symbol=instrument.symbol,
                quote=instrument.quote,
                price_precision=instrument.price_precision,
                qty_precision=instrument.qty_precision,
                quantity=position.quantity,
                avg_price=position.avg_price,
                mark=mark,
                marked_at=quote.quoted_at if quote is not None else None,
                unrealised_pnl=unrealised,
                realised_pnl=position.realised_pnl,
                fees=position.fees,
                opened_at=position.opened_at,
            )
        )
    return marked


@dataclass(frozen=True)
class PnlPeriod:
    name: str  # "today" | "week" | "month"
    start: datetime
    realised: Decimal  # gross, of the fills since `start`
    fees: Decimal  # of the fills since `start`
    unrealised: Decimal  # the change of the open positions' unrealised PnL since `start`
    fills: int
    unrealised_at_start_known: bool  # False: no equity snapshot at or before `start` (counted from zero)

    @property
    def net(self) -> Decimal:
        return self.realised - self.fees + self.unrealised


def period_starts(now: datetime) -> dict[str, datetime]:
    """Today, this ISO week (from Monday) and this month, in UTC."""
    day = utc_day_start(now)
    return {"today": day, "week": day - timedelta(days=day.weekday()), "month": day.replace(day=1)}


def pnl_periods(*, currency: str, now: datetime, positions: list[PositionMark] | None = None) -> list[PnlPeriod]:
    """PnL of today, this week and this month in `currency`: realised and fees summed from the fills in one
    statement (conditional aggregates over the fills' time index); unrealised as the open positions' unrealised PnL
    now (at the last mids) minus the unrealised PnL of the last equity snapshot at or before the period's start.
    realised - fees + unrealised is the period's PnL (the equity change, deposits and withdrawals aside)."""
    starts = period_starts(now)
    earliest = min(starts.values())
    aggregates: dict[str, Sum | Count] = {}
    for name, start in starts.items():
        in_period = Q(executed_at__gte=start)
        aggregates[f"{name}_realised"] = Sum("realised_pnl", filter=in_period)
        aggregates[f"{name}_fees"] = Sum("fee", filter=in_period)
        aggregates[f"{name}_fills"] = Count("id", filter=in_period)
    sums = Fill.objects.filter(executed_at__gte=earliest, instrument__quote=currency).aggregate(**aggregates)
    marked = positions_marked() if positions is None else positions
    unrealised_now = sum((p.unrealised_pnl for p in marked if p.quote == currency), ZERO)
    periods = []
    for name, start in starts.items():
        before = (
            EquitySnapshot.objects.filter(currency=currency, taken_at__lte=start)
            .order_by("-taken_at", "-id")
            .values_list("unrealised_pnl", flat=True)
            .first()
        )
        periods.append(
            PnlPeriod(
                name=name,
                start=start,
                realised=sums[f"{name}_realised"] or ZERO,
                fees=sums[f"{name}_fees"] or ZERO,
                unrealised=q_money(unrealised_now - (before if before is not None else ZERO)),
                fills=sums[f"{name}_fills"] or 0,
                unrealised_at_start_known=before is not None,
            )
        )
    return periods
