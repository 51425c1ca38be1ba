"""The invariants checked after each round, once the system is quiet (trading halted by the campaign, nothing in
flight). Each check returns the violations it found, as sentences; none is the pass. They read our books through
the ORM (Django is set up on the system's environment in the campaign's process) and the simulator's account
through its own API (`/_sim/state`), never through the system's client code.

- `orders`: no duplicate order (a client order id at most once on the exchange), every exchange order of the
  account known locally under the same ids, every local order with an exchange id on the exchange, no local order
  left open or unresolved, local and exchange states and filled quantities agree.
- `fills`: no lost fill (every trade of the account is a local fill, same quantity and price) and none invented.
- `books`: balances equal the simulator's (rounding dust within the reconciliation's tolerance is recorded, not
  a violation: see `books`), the position equals the simulator's base balance moved since the start
  (and the signed sum of the fills).
- `bars`: the decision bars have no hole and no duplicate from the first to the last stored, and in the round's
  window each bar holds exactly the trades of the simulator's public tape.
- `reconciliation`: a reconciliation run of the engine now is `clean` (or corrected only that balance dust), and no
  earlier run left a critical discrepancy open.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench.faults.system import BAR_SECONDS, SYMBOL, System

OPEN_STATES = ("created", "submitted", "accepted", "partially_filled", "pending_cancel", "unknown")
SIM_CLOSED = {"closed": "filled", "canceled": "canceled", "expired": "expired"}


def local_orders_unresolved() -> int:
    from trading.models import Order

    return Order.objects.filter(state__in=OPEN_STATES).count()


def orders(state: dict[str, Any]) -> list[str]:
    from trading.models import Order

    out: list[str] = []
    account = [o for o in state["orders"] if o["source"] in ("api", "ws")]
    counts = Counter(o["cl_ord_id"] for o in account if o["cl_ord_id"])
    out += [f"duplicate order: client order id {cid} {n} times on the exchange" for cid, n in counts.items() if n > 1]
    out += [f"exchange order {o['order_id']} has no client order id" for o in account if not o["cl_ord_id"]]
    local = {o.client_order_id: o for o in Order.objects.all()}
    by_exchange_id = {o["order_id"]: o for o in account}
    for o in account:
        mine = local.get(o["cl_ord_id"])
        if mine is None:
            out.append(f"exchange order {o['order_id']} ({o['cl_ord_id']}) unknown locally")
            continue
        if mine.exchange_order_id != o["order_id"]:
            out.append(f"order {mine.pk}: exchange id {mine.exchange_order_id!r}, exchange says {o['order_id']}")
        if Decimal(o["filled"]) != mine.filled_qty:
            out.append(f"order {mine.pk}: filled {mine.filled_qty}, exchange {o['filled']}")
        expected = SIM_CLOSED.get(o["status"])
        if expected is not None and mine.state != expected:
            out.append(f"order {mine.pk}: state {mine.state}, exchange {o['status']}")
    for mine in local.values():
        if mine.exchange_order_id and mine.exchange_order_id not in by_exchange_id:
            out.append(f"order {mine.pk}: exchange id {mine.exchange_order_id} not on the exchange")
        if mine.state in OPEN_STATES:
            out.append(f"order {mine.pk} ({mine.client_order_id}) still {mine.state}")
    return out


def fills(state: dict[str, Any]) -> list[str]:
    from trading.models import Fill

    out: list[str] = []
    trades = {t["txid"]: t for t in state["trades"]}
    local = {f.exec_id: f for f in Fill.objects.all()}
    for txid, t in trades.items():
        mine = local.get(txid)
        if mine is None:
            out.append(f"lost fill: exchange trade {txid} of order {t['order_id']} ({t['qty']} @ {t['price']})")
        elif mine.quantity != Decimal(t["qty"]) or mine.price != Decimal(t["price"]):
            out.append(f"fill {txid}: {mine.quantity} @ {mine.price}, exchange {t['qty']} @ {t['price']}")
    out += [f"fill {exec_id} is not an exchange trade" for exec_id in local if exec_id not in trades]
    return out


def books(state: dict[str, Any], initial: dict[str, Decimal]) -> tuple[list[str], dict[str, str]]:
    """Balances equal the exchange's, but for rounding dust within the reconciliation's tolerance (our fills book
    cost and fee unrounded, the exchange's ledger rounds each entry to the asset's precision: returned per asset,
    not a violation); the position equals the exchange's base balance moved since the start, and the signed sum of
    the fills, exactly."""
    from reconciliation.runs import tolerances_from_settings
    from trading.models import Balance, Fill, Position

    out: list[str] = []
    dust: dict[str, str] = {}
    tolerances = tolerances_from_settings()
    theirs = {asset: Decimal(v["balance"]) for asset, v in state["balances"].items()}
    mine = {b.asset: b.total for b in Balance.objects.all()}
    for asset in sorted(set(theirs) | set(mine)):
        diff = theirs.get(asset, Decimal(0)) - mine.get(asset, Decimal(0))
        if diff == 0:
            continue
        if abs(diff) <= tolerances.balance_for(asset):
            dust[asset] = str(diff)
        else:
            out.append(f"balance {asset}: ours {mine.get(asset)}, exchange {theirs.get(asset)}")
    base = SYMBOL.split("/")[0]
    moved = theirs.get(base, Decimal(0)) - initial.get(base, Decimal(0))
    position = Position.objects.filter(instrument__symbol=SYMBOL).first()
    held = position.quantity if position is not None else Decimal(0)
    if held != moved:
        out.append(f"position {SYMBOL}: ours {held}, exchange's {base} balance moved {moved}")
    signed = sum(
        (f.quantity if f.side == "buy" else -f.quantity for f in Fill.objects.filter(instrument__symbol=SYMBOL)),
        Decimal(0),
    )
    if signed != held:
        out.append(f"position {SYMBOL}: {held}, the signed sum of its fills {signed}")
    return out, dust


def stored_bars(start: datetime, end: datetime, interval: int = BAR_SECONDS) -> list[Any]:
    from timeseries import get_store

    store = get_store()
    label = f"{interval // 60}m" if interval % 60 == 0 else f"{interval}s"
    return list(store.query_range("bars", start, end, {"symbol": SYMBOL, "interval": label}))


def bars(
    system: System, since: datetime, window: tuple[datetime, datetime], interval: int = BAR_SECONDS
) -> tuple[list[str], int]:
    """No hole and no duplicate in the decision bars from `since` (the campaign's first bar) to the last stored;
    in `window` (the round), every bar equals the simulator's tape (trades, volume, open, close, high, low) when
    the tape still holds the window (else only the series' continuity is checked). Returns (violations, bars
    compared with the tape)."""
    out: list[str] = []
    points = stored_bars(since - timedelta(seconds=interval), datetime.now(UTC) + timedelta(minutes=1), interval)
    if not points:
        return ["no bar stored"], 0
    times = [p.time.astimezone(UTC) for p in points]
    dupes = [t for t, n in Counter(times).items() if n > 1]
    out += [f"bar {t.isoformat()} stored {Counter(times)[t]} times" for t in dupes[:5]]
    step = timedelta(seconds=interval)
    first, last = times[0], times[-1]
    expected = {first + step * i for i in range(int((last - first) / step) + 1)}
    holes = sorted(expected - set(times))
    if holes:
        out.append(f"{len(holes)} holes in the bars, first {[h.isoformat() for h in holes[:5]]}")
    lo, hi = window
    tape = system.public_trades(int(lo.timestamp()) * 10**9 - 1)
    oldest = system.public_trades(0)[:1]
    if oldest and oldest[0][2] > lo.timestamp() * 10**9:
        return out, 0  # the tape no longer holds the window: continuity only
    by_bar: dict[datetime, list[tuple[Decimal, Decimal, int, int]]] = {}
    for trade in tape:
        seconds = trade[2] // 10**9
        by_bar.setdefault(datetime.fromtimestamp(seconds - seconds % interval, UTC), []).append(trade)
    compared = 0
    for point, start in zip(points, times, strict=True):
        if not lo <= start < hi or start + step > last:
            continue  # outside the round, or the newest bar (perhaps revised by a late trade still)
        trades = sorted(by_bar.get(start, []), key=lambda t: (t[2], t[3]))
        f = point.fields
        compared += 1
        if int(f.get("trades", -1)) != len(trades):
            out.append(f"bar {start.isoformat()}: {f.get('trades')} trades, the exchange had {len(trades)}")
        elif trades and (
            Decimal(str(f["volume"])) != sum(q for _, q, _, _ in trades)
            or Decimal(str(f["open"])) != trades[0][0]
            or Decimal(str(f["close"])) != trades[-1][0]
            or Decimal(str(f["high"])) != max(p for p, _, _, _ in trades)
            or Decimal(str(f["low"])) != min(p for p, _, _, _ in trades)
        ):
            out.append(f"bar {start.isoformat()}: {f} differs from the exchange's trades")
    return out, compared


def reconciliation(round_started: datetime) -> tuple[list[str], dict[str, Any]]:
    """Run the reconciliation engine now (as the worker's task does): it must be `clean`. Earlier runs of the
    round (the system's own: schedule, gap, reconnect, start-up) may have corrected something: counted, and a
    critical discrepancy they left open is a violation."""
    from reconciliation.models import Discrepancy, ReconciliationRun
    from reconciliation.runs import reconciliation_run

    out: list[str] = []
    earlier = ReconciliationRun.objects.filter(started_at__gte=round_started)
    info: dict[str, Any] = {
        "system_runs": earlier.count(),
        "system_runs_by_status": dict(Counter(str(s) for s in earlier.values_list("status", flat=True))),
        "system_corrections": Discrepancy.objects.filter(run__started_at__gte=round_started).count(),
    }
    critical = Discrepancy.objects.filter(
        run__started_at__gte=round_started, severity="critical", status=Discrepancy.Status.OPEN
    )
    out += [f"open critical discrepancy {d.pk}: {d.kind} {d.evidence}" for d in critical[:5]]
    run = reconciliation_run(trigger="operator", requested_by="fault-campaign", reason="after the round")
    found = Discrepancy.objects.filter(run=run)
    dust = found.filter(kind="balance_mismatch", within_tolerance=True, severity="info")
    info["final_run"] = {
        "id": run.pk,
        "status": str(run.status),
        "discrepancies": run.discrepancy_count,
        "balance_dust_corrected": dust.count(),
    }
    only_dust = run.status == ReconciliationRun.Status.CORRECTED and found.count() == dust.count()
    if run.status != ReconciliationRun.Status.CLEAN and not only_dust:
        kinds = list(found.exclude(pk__in=dust).values_list("kind", "local_value", "exchange_value"))
        out.append(f"reconciliation run {run.pk} {run.status}: {kinds[:5]} {run.error}")
    return out, info
