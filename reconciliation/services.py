"""Reconciliation writes: a run (load our books, ask the exchange over REST, compare with `reconciliation.engine`,
correct through the trading services, record every discrepancy with its evidence and action, halt when a
difference is not safe to correct), the start-up gate, and operator acknowledgement / resolution.

Corrections are events, never overwrites: a missing fill is a `trade` execution applied by
`trading.services.execution_report_apply` with `source=reconciliation`; an order the exchange closed moves through
its state machine the same way; an unknown exchange order is adopted from a complete `pending_new` event (then its
fills and status); a fee the exchange re-priced goes through `fill_fee_correct`; a balance moved outside trading
through `balance_set`. Every change is attributed to `reconciliation:run-<id>` in the audit trail.

Settings: the GALFRIDAY_RECONCILIATION_* block of `galfriday_site.settings` (documented in `.env.example`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, DecimalField, F, Sum, When
from django.utils import timezone

from core.audit import audit_actor
from core.errors import ApplicationError, ConflictError, NotFoundError
from ingest.kraken.errors import KrakenError
from ingest.kraken.rest import KrakenRestClientSync
from ingest.kraken.rest_types import OrderInfo, TradeInfo
from reconciliation import engine, lock_objects
from reconciliation.engine import ExchangeView, Finding, InstrumentInfo, LocalFill, LocalOrder, Tolerances
from reconciliation.models import Discrepancy, ReconciliationRun
from trading import services as trading_services
from trading.executions import EventSource, ExecType, ExecutionEvent, FeeAmount
from trading.models import Balance, Fill, Instrument, Order, Position, TradingState
from trading.order_states import OrderState

logger = logging.getLogger(__name__)

Trigger = ReconciliationRun.Trigger
RunStatus = ReconciliationRun.Status
ACTOR = "reconciliation"
STARTUP_REASON = "awaiting the start-up reconciliation"
ALERT_FAILED = "reconciliation_failed"  # Alert.kind (the trading alert kinds are open-ended strings in the table)
T = TypeVar("T")


class ReconciliationRunning(ConflictError):
    code = "reconciliation_running"


def tolerances_from_settings() -> Tolerances:
    return Tolerances(
        qty=Decimal(str(settings.GALFRIDAY_RECONCILIATION_QTY_TOLERANCE)),
        fee=Decimal(str(settings.GALFRIDAY_RECONCILIATION_FEE_TOLERANCE)),
        balance_default=Decimal(str(settings.GALFRIDAY_RECONCILIATION_BALANCE_TOLERANCE)),
        balance={
            asset: Decimal(str(value)) for asset, value in settings.GALFRIDAY_RECONCILIATION_BALANCE_TOLERANCES.items()
        },
    )


def exchange_client() -> KrakenRestClientSync:
    """The REST client reconciliation uses, from the KRAKEN_* settings; its counter model is the configured tier,
    so a run waits rather than hitting Kraken's rate limit."""
    from ingest.kraken.ratelimit import Tier

    return KrakenRestClientSync(
        base_url=settings.KRAKEN_REST_URL,
        api_key=settings.KRAKEN_API_KEY or None,
        api_secret=settings.KRAKEN_API_SECRET or None,
        timeout=float(settings.KRAKEN_TIMEOUT),
        tier=Tier[str(settings.GALFRIDAY_RECONCILIATION_TIER).upper()],
        history_cost=int(settings.GALFRIDAY_RECONCILIATION_HISTORY_COST),
    )


# --- REST, timed and counted ----------------------------------------------------------------------------------


class RestLedger:
    """Times every REST step (waits on the counter model included) and counts calls and their counter cost."""

    COST = {"TradesHistory": None, "QueryTrades": None}  # history cost: the client's setting

    def __init__(self, client: KrakenRestClientSync) -> None:
        self.client = client
        self.seconds = 0.0
        self.calls = 0
        self.cost = 0
        self.by_method: dict[str, int] = {}

    def _count(self, method: str, calls: int) -> None:
        self.calls += calls
        self.by_method[method] = self.by_method.get(method, 0) + calls
        self.cost += calls * self.client.client.rest_counter.cost_of(method)

    def call(self, method: str, fn: Callable[[], T], calls: int = 1) -> T:
        before = self.client.client.stats["requests"]
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds += time.perf_counter() - start
            made = self.client.client.stats["requests"] - before
            self._count(method, made if method != "Assets" else 0)

    def collect(self, method: str, iterator: Iterator[T]) -> list[T]:
        return self.call(method, lambda: list(iterator))


# --- the run --------------------------------------------------------------------------------------------------


def _abandon_stale_runs(now: datetime) -> None:
    stale = now - timedelta(seconds=int(settings.GALFRIDAY_RECONCILIATION_STALE_SECONDS))
    for run in ReconciliationRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=stale):
        run.status = RunStatus.FAILED
        run.finished_at = now
        run.error = "abandoned: still running after the stale limit (worker lost?)"
        run.save(update_fields=["status", "finished_at", "error"])
        logger.error("abandoned reconciliation run marked failed", extra={"run_id": run.pk})


def run_start(*, trigger: str, requested_by: str = ACTOR, reason: str = "") -> ReconciliationRun:
    """Claim the single `running` slot (a database constraint) or raise ReconciliationRunning."""
    if trigger not in Trigger.values:
        raise ApplicationError("Invalid trigger.", code="validation_error", details={"trigger": Trigger.values})
    now = timezone.now()
    _abandon_stale_runs(now)
    try:
        with transaction.atomic():
            return ReconciliationRun.objects.create(
                trigger=trigger, requested_by=requested_by, reason=reason, started_at=now
            )
    except IntegrityError as exc:
        running = ReconciliationRun.objects.filter(status=RunStatus.RUNNING).first()
        raise ReconciliationRunning(
            "A reconciliation run is already in progress.", details={"run_id": running.pk if running else None}
        ) from exc


def reconciliation_run(
    *,
    trigger: str,
    requested_by: str = ACTOR,
    reason: str = "",
    client: KrakenRestClientSync | None = None,
) -> ReconciliationRun:
    """One full run, single-flight. Never raises for an exchange failure: the run is recorded `failed` (and a
    start-up gate stays closed). Raises ReconciliationRunning when another run holds the slot."""
    run = run_start(trigger=trigger, requested_by=requested_by, reason=reason)
    own_client = client is None
    started = time.perf_counter()
    rest: RestLedger | None = None
    try:
        active_client = client or exchange_client()
        rest = RestLedger(active_client)
        try:
            with audit_actor(f"{ACTOR}:run-{run.pk}", reason=f"reconciliation run {run.pk} ({trigger})"):
                _reconcile(run, rest)
        finally:
            if own_client:
                active_client.close()
    except Exception as exc:  # any failure is recorded on the run (never left `running`), logged with its trace
        logger.exception("reconciliation run failed", extra={"run_id": run.pk})
        run.status = RunStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        _alert_failure(run)
    run.finished_at = timezone.now()
    run.duration_ms = (time.perf_counter() - started) * 1000
    if rest is not None:
        run.rest_ms = rest.seconds * 1000
        run.processing_ms = run.duration_ms - run.rest_ms
        run.rest_calls, run.rest_cost = rest.calls, rest.cost
        run.counts = {**run.counts, "rest_calls_by_method": rest.by_method}
    run.save()
    if run.trigger == Trigger.STARTUP and run.status in (RunStatus.CLEAN, RunStatus.CORRECTED):
        startup_gate_release(run=run)
    logger.info(
        "reconciliation run finished",
        extra={"run_id": run.pk, "status": run.status, "discrepancies": run.discrepancy_count},
    )
    return run


def _alert_failure(run: ReconciliationRun) -> None:
    from trading.risk_services import alert_raise

    alert_raise(
        kind=ALERT_FAILED,
        severity="warning",
        message=f"Reconciliation run {run.pk} ({run.trigger}) failed: {run.error}",
        context={"run_id": run.pk},
        dedupe=True,
    )


def _window_start(now: datetime) -> datetime:
    last = (
        ReconciliationRun.objects.filter(status__in=[RunStatus.CLEAN, RunStatus.CORRECTED], window_end__isnull=False)
        .order_by("-window_end")
        .first()
    )
    if last is not None and last.window_end is not None:
        return last.window_end - timedelta(seconds=int(settings.GALFRIDAY_RECONCILIATION_OVERLAP_SECONDS))
    return now - timedelta(seconds=int(settings.GALFRIDAY_RECONCILIATION_LOOKBACK_SECONDS))


def _chunks(items: Sequence[T], size: int = 500) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_ORDER_FIELDS = (
    "pk",
    "client_order_id",
    "exchange_order_id",
    "instrument__symbol",
    "side",
    "quantity",
    "state",
    "filled_qty",
    "created_at",
    "submitted_at",
)


def _local_order(row: tuple[Any, ...]) -> LocalOrder:
    pk, cl, ex, symbol, side, qty, state, filled, created, submitted = row
    return LocalOrder(pk, cl, ex, symbol, side, qty, state, filled, created, submitted)


def _load_local_orders(txids: Sequence[str], cl_ids: Sequence[str]) -> dict[int, LocalOrder]:
    out: dict[int, LocalOrder] = {}
    qs = Order.objects.order_by()
    for row in qs.filter(state__in=[s.value for s in engine.LOCAL_OPEN]).values_list(*_ORDER_FIELDS):
        out[row[0]] = _local_order(row)
    for chunk in _chunks(list(txids)):
        for row in qs.filter(exchange_order_id__in=chunk).values_list(*_ORDER_FIELDS):
            out[row[0]] = _local_order(row)
    for chunk in _chunks(list(cl_ids)):
        for row in qs.filter(client_order_id__in=chunk).values_list(*_ORDER_FIELDS):
            out[row[0]] = _local_order(row)
    return out


_FILL_FIELDS = ("exec_id", "order_id", "instrument__symbol", "side", "quantity", "price", "fee", "executed_at")


def _load_local_fills(since: datetime, exec_ids: Sequence[str]) -> dict[str, LocalFill]:
    out: dict[str, LocalFill] = {}
    qs = Fill.objects.order_by()
    for row in qs.filter(executed_at__gte=since - timedelta(seconds=60)).values_list(*_FILL_FIELDS):
        out[row[0]] = LocalFill(*row)
    missing = [e for e in exec_ids if e not in out]
    for chunk in _chunks(missing):
        for row in qs.filter(exec_id__in=chunk).values_list(*_FILL_FIELDS):
            out[row[0]] = LocalFill(*row)
    return out


def _instruments() -> list[InstrumentInfo]:
    return [
        InstrumentInfo(symbol=i.symbol, base=i.base, quote=i.quote, names=(i.rest_symbol, i.altname, i.v1_symbol))
        for i in Instrument.objects.all()
    ]


def _query_orders(rest: RestLedger, txids: list[str], view: ExchangeView) -> None:
    """Targeted QueryOrders (batches of 50); a batch the exchange refuses is retried one id at a time to find
    which ids it does not know."""
    for i in range(0, len(txids), 50):
        batch = txids[i : i + 50]
        try:
            view.orders.update(rest.call("QueryOrders", partial(rest.client.query_orders, batch, trades=True)))
        except KrakenError as exc:
            if "Invalid order" not in str(exc) and "Unknown order" not in str(exc):
                raise
            for txid in batch:
                try:
                    view.orders.update(rest.call("QueryOrders", partial(rest.client.query_orders, [txid], trades=True)))
                except KrakenError as single:
                    if "Invalid order" not in str(single) and "Unknown order" not in str(single):
                        raise
                    view.unknown_txids.add(txid)


def _query_trades(rest: RestLedger, txids: list[str], view: ExchangeView) -> None:
    for i in range(0, len(txids), 20):
        batch = txids[i : i + 20]
        result = rest.call("QueryTrades", partial(rest.client.private, "QueryTrades", {"txid": batch}))
        for txid, row in dict(result).items():
            view.trades[txid] = TradeInfo.from_api(txid, row)


@dataclass
class _Outcome:
    findings: list[Finding] = field(default_factory=list)
    details: dict[int, dict[str, Any]] = field(default_factory=dict)  # index in findings -> action detail
    failed: dict[int, str] = field(default_factory=dict)  # index -> why the correction failed


def _reconcile(run: ReconciliationRun, rest: RestLedger) -> None:
    now = timezone.now()
    window_start = _window_start(now)
    run.window_start, run.window_end = window_start, now
    tol = tolerances_from_settings()
    grace = timedelta(seconds=int(settings.GALFRIDAY_RECONCILIATION_GRACE_SECONDS))
    start_ts = int(window_start.timestamp())
    client = rest.client

    open_orders = rest.call("OpenOrders", lambda: client.open_orders(trades=True))
    closed = rest.collect("ClosedOrders", client.iter_closed_orders(start=start_ts, trades=True))
    trades = rest.collect("TradesHistory", client.iter_trades_history(start=start_ts))
    view = ExchangeView(
        open_txids=set(open_orders),
        orders={**{o.txid: o for o in closed}, **open_orders},
        trades={t.txid: t for t in trades},
        window_start=window_start,
    )

    local_orders = _load_local_orders(list(view.orders), [o.cl_ord_id for o in view.orders.values() if o.cl_ord_id])
    # Before an order is called missing: one targeted query (QueryOrders by txid; ClosedOrders by client order id).
    cl_seen = {o.cl_ord_id for o in view.orders.values() if o.cl_ord_id}
    to_query: list[str] = []
    for order in local_orders.values():
        if OrderState(order.state) not in engine.LOCAL_OPEN or now - (order.submitted_at or order.created_at) < grace:
            continue
        if order.exchange_order_id and order.exchange_order_id not in view.orders:
            to_query.append(order.exchange_order_id)
        elif not order.exchange_order_id and order.client_order_id not in cl_seen:
            found = rest.call(
                "ClosedOrders", partial(client.closed_orders, cl_ord_id=order.client_order_id, trades=True)
            )
            view.orders.update({o.txid: o for o in found.items})
    _query_orders(rest, sorted(set(to_query)), view)
    if len(view.orders) != len(local_orders):
        local_orders.update(
            _load_local_orders(list(view.orders), [o.cl_ord_id for o in view.orders.values() if o.cl_ord_id])
        )
    local_fills = _load_local_fills(window_start, list(view.trades))
    # Trades of the orders seen that lie outside the window and are not in our books: fetched by id.
    wanted = sorted(
        {t for o in view.orders.values() for t in o.trades if t not in view.trades and t not in local_fills}
    )
    _query_trades(rest, wanted, view)
    if wanted:
        local_fills.update(_load_local_fills(window_start, wanted))

    instruments = _instruments()
    outcome = _Outcome()
    outcome.findings = engine.compare_orders(
        local_orders=local_orders.values(),
        local_fills=local_fills,
        exchange=view,
        instruments=instruments,
        tolerances=tol,
        now=now,
        grace=grace,
    )
    lookup = engine.symbol_lookup(instruments)
    _correct_orders(run, outcome, view, lookup)

    # Phase 2, on the corrected books.
    balances_ex = rest.call("BalanceEx", client.balance_ex)
    altnames = _asset_altnames(rest)
    exchange_balances: dict[str, Decimal] = {}
    for name, value in balances_ex.items():
        code = engine.kraken_asset_to_v2(name, altnames)
        exchange_balances[code] = exchange_balances.get(code, Decimal(0)) + value.balance
    local_balances = dict(Balance.objects.values_list("asset", "total"))
    traded = {i.base for i in instruments} | {i.quote for i in instruments}
    start = len(outcome.findings)
    outcome.findings += engine.compare_balances(
        local=local_balances,
        exchange=exchange_balances,
        traded_assets=traded,
        tolerances=tol,
        correct_untraded=bool(settings.GALFRIDAY_RECONCILIATION_CORRECT_UNTRADED_BALANCES),
    )
    outcome.findings += engine.compare_positions(
        positions=_positions(), from_fills=_positions_from_fills(), tolerances=tol
    )
    _correct_balances(run, outcome, start)

    _record(run, outcome)
    run.counts = {
        "exchange_orders": len(view.orders),
        "exchange_open_orders": len(view.open_txids),
        "exchange_trades": len(view.trades),
        "local_orders": len(local_orders),
        "local_fills": len(local_fills),
        "assets": len(set(local_balances) | set(exchange_balances)),
        "targeted_queries": len(to_query),
        "findings_by_kind": _by(outcome.findings, lambda f: f.kind),
        "findings_by_severity": _by(outcome.findings, lambda f: f.severity),
        "corrected": len(outcome.details) - len(outcome.failed),
        "correction_failures": len(outcome.failed),
    }
    critical = [f for i, f in enumerate(outcome.findings) if f.severity == engine.CRITICAL or i in outcome.failed]
    run.discrepancy_count = len(outcome.findings)
    if critical:
        run.status = RunStatus.HALTED
        _halt(run, critical)
    elif outcome.findings:
        run.status = RunStatus.CORRECTED
    else:
        run.status = RunStatus.CLEAN


def _by(findings: Iterable[Finding], key: Callable[[Finding], str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        out[key(f)] = out.get(key(f), 0) + 1
    return out


def _asset_altnames(rest: RestLedger) -> dict[str, str]:
    try:
        result = rest.call("Assets", lambda: rest.client.public("Assets"))
    except KrakenError:
        logger.warning("Assets unavailable: asset names mapped by rule")
        return {}
    return {name: str(info.get("altname", name)) for name, info in dict(result).items() if isinstance(info, dict)}


def _positions() -> dict[str, Decimal]:
    return {s: q for s, q in Position.objects.values_list("instrument__symbol", "quantity")}


def _positions_from_fills() -> dict[str, Decimal]:
    signed = Case(
        When(side="buy", then=F("quantity")),
        default=-F("quantity"),
        output_field=DecimalField(max_digits=30, decimal_places=10),
    )
    rows = Fill.objects.order_by().values("instrument__symbol").annotate(net=Sum(signed))
    return {r["instrument__symbol"]: r["net"] or Decimal(0) for r in rows}


# --- corrections ------------------------------------------------------------------------------------------------


def _order_snapshot(order_id: int | None) -> dict[str, Any]:
    if order_id is None:
        return {}
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        return {}
    return {
        "state": order.state,
        "quantity": str(order.quantity),
        "filled_qty": str(order.filled_qty),
        "fees": str(order.fees),
        "exchange_order_id": order.exchange_order_id,
    }


def _trade_event(trade: TradeInfo, symbol: str, quote: str, cl_ord_id: str | None = None) -> ExecutionEvent:
    return ExecutionEvent(
        order_id=trade.ordertxid,
        exec_type=ExecType.TRADE,
        cl_ord_id=cl_ord_id,
        timestamp=trade.executed_at,
        symbol=symbol or None,
        side=trade.type,
        exec_id=trade.txid,
        trade_id=trade.trade_id,
        last_qty=trade.vol,
        last_price=trade.price,
        cost=trade.cost,
        fees=(FeeAmount(quote, trade.fee),) if trade.fee else (),
        liquidity_ind=("m" if trade.maker else "t") if trade.maker is not None else None,
        source=EventSource.RECONCILIATION,
    )


def _status_event(info: OrderInfo, exec_type: ExecType) -> ExecutionEvent:
    return ExecutionEvent(
        order_id=info.txid,
        exec_type=exec_type,
        timestamp=info.closed_at if exec_type in (ExecType.CANCELED, ExecType.EXPIRED) else info.opened_at,
        cl_ord_id=info.cl_ord_id,
        reason=info.reason or None,
        source=EventSource.RECONCILIATION,
    )


def _adopt_event(info: OrderInfo, symbol: str) -> ExecutionEvent:
    limit = info.descr.ordertype == "limit"
    tif = str(info.raw.get("timeinforce", "GTC")).lower() if info.raw else "gtc"
    return ExecutionEvent(
        order_id=info.txid,
        exec_type=ExecType.PENDING_NEW,
        timestamp=info.opened_at,
        cl_ord_id=info.cl_ord_id,
        symbol=symbol,
        side=info.descr.type,
        order_type=info.descr.ordertype,
        time_in_force=tif if tif in ("gtc", "ioc", "gtd") else "gtc",
        post_only="post" in info.oflags.split(","),
        order_qty=info.vol,
        limit_price=(info.descr.price or info.limitprice) if limit else None,
        source=EventSource.RECONCILIATION,
    )


_CLOSING = {"canceled": ExecType.CANCELED, "expired": ExecType.EXPIRED}


def _apply(event: ExecutionEvent, actor: str) -> trading_services.ExecutionApplyResult:
    return trading_services.execution_report_apply(event=event, actor=actor)


def _correct_orders(
    run: ReconciliationRun, outcome: _Outcome, view: ExchangeView, lookup: dict[str, InstrumentInfo]
) -> None:
    actor = f"{ACTOR}:run-{run.pk}"
    policy = str(settings.GALFRIDAY_RECONCILIATION_UNKNOWN_ORDERS)

    def inst_of(info: OrderInfo) -> InstrumentInfo | None:
        return lookup.get(info.descr.pair.upper())

    # Adoptions first (they create orders other findings may not refer to), then fills oldest first, then fees,
    # quantities, states and rejections: the same order of facts the exchange reported.
    rank = {engine.A_ADOPT: 0, engine.A_FILL: 1, engine.A_FEE: 2, engine.A_AMEND: 3, engine.A_STATE: 4}
    todo = sorted(
        (i for i, f in enumerate(outcome.findings) if f.action != engine.A_NONE),
        key=lambda i: (
            rank.get(outcome.findings[i].action, 5),
            view.trades[outcome.findings[i].exec_id].time if outcome.findings[i].action == engine.A_FILL else 0,
            i,
        ),
    )
    for i in todo:
        finding = outcome.findings[i]
        try:
            with transaction.atomic():
                detail = _correct_one(finding, view, inst_of, actor, policy, run)
            outcome.details[i] = detail
        except (ApplicationError, KrakenError, ValueError) as exc:
            logger.exception("reconciliation correction failed", extra={"run_id": run.pk, "kind": finding.kind})
            outcome.details[i] = {"error": f"{type(exc).__name__}: {exc}"}
            outcome.failed[i] = str(exc)


def _correct_one(
    finding: Finding,
    view: ExchangeView,
    inst_of: Callable[[OrderInfo], InstrumentInfo | None],
    actor: str,
    policy: str,
    run: ReconciliationRun,
) -> dict[str, Any]:
    action = finding.action
    if action == engine.A_ADOPT:
        info = view.orders[finding.exchange_order_id]
        inst = inst_of(info)
        assert inst is not None
        events: list[str] = []
        result = _apply(_adopt_event(info, inst.symbol), actor)
        events += result.events
        fills = []
        for txid in finding.plan["trades"]:
            applied = _apply(_trade_event(view.trades[txid], inst.symbol, inst.quote, info.cl_ord_id), actor)
            events += applied.events
            fills.append(txid)
        status = _CLOSING.get(info.status) or (ExecType.NEW if info.status == "open" else None)
        if status is not None:
            events += _apply(_status_event(info, status), actor).events
        order = Order.objects.get(exchange_order_id=info.txid)
        finding.order_pk = order.pk
        detail: dict[str, Any] = {"before": {}, "after": _order_snapshot(order.pk), "events": events, "fills": fills}
        if policy == "cancel" and order.state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED):
            from trading.risk_services import order_cancel

            order_cancel(
                order_id=order.pk,
                reason=f"unknown exchange order canceled by reconciliation run {run.pk}",
                source=EventSource.RECONCILIATION,
                actor=actor,
            )
            finding.action = Discrepancy.Action.ORDER_ADOPTED_AND_CANCELED
            detail["after"] = _order_snapshot(order.pk)
        return detail
    if action == engine.A_FILL:
        trade = view.trades[finding.exec_id]
        info = view.orders[trade.ordertxid]
        inst = inst_of(info)
        before = _order_snapshot(finding.order_pk)
        result = _apply(
            _trade_event(trade, inst.symbol if inst else "", inst.quote if inst else "", info.cl_ord_id), actor
        )
        if result.parked:
            raise ApplicationError(f"fill {trade.txid} could not be matched to an order")
        return {
            "before": before,
            "after": _order_snapshot(result.order_id),
            "events": result.events,
            "fill_id": result.fill_id,
        }
    if action == engine.A_FEE:
        trade = view.trades[finding.exec_id]
        info = view.orders[trade.ordertxid]
        inst = inst_of(info)
        before = _order_snapshot(finding.order_pk)
        fill = trading_services.fill_fee_correct(
            exec_id=trade.txid,
            fee=trade.fee,
            fee_asset=inst.quote if inst else "",
            actor=actor,
            reason=f"fee re-priced by the exchange (reconciliation run {run.pk})",
        )
        return {
            "before": {**before, "fill_fee": finding.local_value},
            "after": {**_order_snapshot(finding.order_pk), "fill_fee": str(fill.fee)},
        }
    if action == engine.A_AMEND:
        info = view.orders[finding.exchange_order_id]
        before = _order_snapshot(finding.order_pk)
        event = ExecutionEvent(
            order_id=info.txid,
            exec_type=ExecType.AMENDED,
            order_qty=Decimal(finding.plan["order_qty"]),
            source=EventSource.RECONCILIATION,
            timestamp=info.opened_at,
        )
        result = _apply(event, actor)
        return {"before": before, "after": _order_snapshot(finding.order_pk), "events": result.events}
    if action == engine.A_STATE:
        info = view.orders[finding.exchange_order_id]
        before = _order_snapshot(finding.order_pk)
        result = _apply(_status_event(info, ExecType(finding.plan["exec_type"])), actor)
        return {"before": before, "after": _order_snapshot(finding.order_pk), "events": result.events}
    if action == engine.A_REJECT:
        before = _order_snapshot(finding.order_pk)
        assert finding.order_pk is not None
        trading_services.order_mark_rejected(
            order_id=finding.order_pk,
            reason=f"not found on the exchange after a targeted query (reconciliation run {run.pk})",
            source=EventSource.RECONCILIATION,
            actor=actor,
        )
        return {"before": before, "after": _order_snapshot(finding.order_pk)}
    raise ValueError(f"no correction for {action}")


def _correct_balances(run: ReconciliationRun, outcome: _Outcome, start: int) -> None:
    actor = f"{ACTOR}:run-{run.pk}"
    for i in range(start, len(outcome.findings)):
        finding = outcome.findings[i]
        if finding.action != engine.A_BALANCE:
            continue
        try:
            balance = trading_services.balance_set(
                asset=finding.asset,
                total=Decimal(finding.plan["total"]),
                source=EventSource.RECONCILIATION,
                actor=actor,
            )
            outcome.details[i] = {"before": {"total": finding.local_value}, "after": {"total": str(balance.total)}}
        except ApplicationError as exc:
            outcome.details[i] = {"error": str(exc)}
            outcome.failed[i] = str(exc)


def _record(run: ReconciliationRun, outcome: _Outcome) -> None:
    instruments = dict(Instrument.objects.values_list("symbol", "pk"))
    now = timezone.now()
    actor = f"{ACTOR}:run-{run.pk}"
    rows = []
    existing_orders = set(
        Order.objects.filter(pk__in=[f.order_pk for f in outcome.findings if f.order_pk]).values_list("pk", flat=True)
    )
    for i, f in enumerate(outcome.findings):
        corrected = i in outcome.details and i not in outcome.failed
        auto = corrected and f.severity != engine.CRITICAL
        rows.append(
            Discrepancy(
                run=run,
                kind=f.kind,
                severity=engine.CRITICAL if i in outcome.failed else f.severity,
                within_tolerance=f.within_tolerance,
                instrument_id=instruments.get(f.symbol),
                asset=f.asset,
                order_id=f.order_pk if f.order_pk in existing_orders else None,
                exchange_order_id=f.exchange_order_id,
                exec_id=f.exec_id,
                local_value=f.local_value[:100],
                exchange_value=f.exchange_value[:100],
                difference=f.difference,
                evidence=f.evidence,
                action=f.action if (corrected or f.action == engine.A_NONE) else engine.A_NONE,
                action_detail=outcome.details.get(i, {}),
                status=Discrepancy.Status.AUTO_RESOLVED if auto else Discrepancy.Status.OPEN,
                resolved_by=actor if auto else "",
                resolved_at=now if auto else None,
            )
        )
    for row in rows:  # saved one by one so each gets its audit record
        row.save()


def _halt(run: ReconciliationRun, critical: list[Finding]) -> None:
    from trading.risk_services import trading_halt

    kinds = sorted({f.kind for f in critical})
    result = trading_halt(
        reason=f"reconciliation run {run.pk}: {len(critical)} discrepancies beyond tolerance ({', '.join(kinds)})",
        actor=f"{ACTOR}:run-{run.pk}",
        source=EventSource.RECONCILIATION,
        context={"run_id": run.pk, "kinds": kinds},
    )
    Discrepancy.objects.filter(run=run, severity=engine.CRITICAL).update(action=Discrepancy.Action.HALTED)
    if not result.changed:
        # Already halted: the operator still has to see this run's findings.
        from trading.models import Alert
        from trading.risk_services import alert_raise

        alert_raise(
            kind=Alert.Kind.TRADING_HALTED,
            severity=Alert.Severity.CRITICAL,
            message=f"Reconciliation run {run.pk}: {len(critical)} beyond tolerance ({', '.join(kinds)})",
            context={"run_id": run.pk, "kinds": kinds},
        )


# --- the start-up gate ------------------------------------------------------------------------------------------


@transaction.atomic
def startup_gate_engage() -> bool:
    """At ingest/worker start: HALTED until the start-up reconciliation is clean or corrected. Leaves a halt by
    anyone else alone. True when this call halted trading."""
    from trading import lock_objects

    state = lock_objects.trading_state_lock()
    if state.state == TradingState.State.HALTED:
        return False
    trading_services.trading_state_set(state=TradingState.State.HALTED, reason=STARTUP_REASON, actor=ACTOR)
    return True


@transaction.atomic
def startup_gate_release(*, run: ReconciliationRun) -> bool:
    """Resume trading when it is halted only by the start-up gate and `run` is clean or corrected."""
    from trading import lock_objects

    if run.status not in (RunStatus.CLEAN, RunStatus.CORRECTED):
        return False
    state = lock_objects.trading_state_lock()
    if state.state != TradingState.State.HALTED or state.changed_by != ACTOR or state.reason != STARTUP_REASON:
        return False
    trading_services.trading_state_set(
        state=TradingState.State.ACTIVE,
        reason=f"start-up reconciliation run {run.pk} {run.status}",
        actor=f"{ACTOR}:run-{run.pk}",
    )
    return True


# --- operators ----------------------------------------------------------------------------------------------------


TRIGGER_COOLDOWN_KEY = "reconciliation:operator-trigger"


class ReconciliationPaperMode(ConflictError):
    code = "paper_mode"


class ReconciliationCooldown(ApplicationError):
    code = "cooldown"
    http_status = 429


def reconciliation_trigger(*, requested_by: str, reason: str = "", now: float | None = None) -> None:
    """An operator asks for a run: enqueued on the reconciliation queue (after commit), never run in the request.

    Refused in paper mode (the exchange account is not ours: a run would halt trading over differences that are
    not differences) and within GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S of the previous operator request (a run
    spends the Kraken REST budget that trading shares); the cool-down is kept in the shared cache, so it holds
    across web processes."""
    from django.core.cache import cache

    from reconciliation.tasks import live_trading, reconciliation_request

    if not live_trading():
        raise ReconciliationPaperMode(
            "Paper trading: the exchange account is not ours to reconcile.",
            details={"trading_mode": settings.TRADING_MODE},
        )
    cooldown = int(settings.GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S)
    now = time.time() if now is None else now
    if cooldown > 0 and not cache.add(TRIGGER_COOLDOWN_KEY, now, timeout=cooldown):
        since = cache.get(TRIGGER_COOLDOWN_KEY)
        retry_after = max(1, round(cooldown - (now - float(since)))) if since is not None else cooldown
        raise ReconciliationCooldown(
            f"A run was requested less than {cooldown} s ago: try again in {retry_after} s.",
            details={"retry_after_s": retry_after, "cooldown_s": cooldown},
        )
    reconciliation_request(trigger="operator", requested_by=requested_by, reason=reason)


@transaction.atomic
def discrepancy_acknowledge(*, discrepancy_id: int, actor: str, note: str = "") -> Discrepancy:
    """Seen by an operator, still to be resolved. Acknowledging a resolved discrepancy changes nothing."""
    d = lock_objects.discrepancy_lock(discrepancy_id)
    if d is None:
        raise NotFoundError(f"discrepancy {discrepancy_id} does not exist")
    if d.status == Discrepancy.Status.OPEN:
        with audit_actor(actor, reason=trading_services.audit_reason(note or "acknowledged")):
            d.status = Discrepancy.Status.ACKNOWLEDGED
            d.resolved_by = actor
            d.resolved_at = timezone.now()
            d.resolution_note = note
            d.save()
    return d


@transaction.atomic
def discrepancy_resolve(
    *, discrepancy_id: int, actor: str, note: str, accept_exchange_balance: bool = False
) -> Discrepancy:
    """Closed by an operator with a note (required). For a balance mismatch, `accept_exchange_balance` sets our
    balance to the exchange's value (audited) as part of the resolution."""
    if not note.strip():
        raise ApplicationError("A resolution needs a note.", code="validation_error", details={"note": "required"})
    d = lock_objects.discrepancy_lock(discrepancy_id)
    if d is None:
        raise NotFoundError(f"discrepancy {discrepancy_id} does not exist")
    if d.status in (Discrepancy.Status.RESOLVED, Discrepancy.Status.AUTO_RESOLVED):
        raise ConflictError("The discrepancy is already resolved.", details={"status": d.status})
    with audit_actor(actor, reason=trading_services.audit_reason(note)):
        if accept_exchange_balance:
            if d.kind != Discrepancy.Kind.BALANCE_MISMATCH or not d.asset:
                raise ApplicationError(
                    "Only a balance mismatch can accept the exchange's balance.", code="validation_error"
                )
            before = Balance.objects.filter(asset=d.asset).values_list("total", flat=True).first()
            balance = trading_services.balance_set(
                asset=d.asset, total=Decimal(d.exchange_value), source=EventSource.OPERATOR, actor=actor
            )
            d.action = Discrepancy.Action.BALANCE_SET
            d.action_detail = {
                **d.action_detail,
                "operator": {"before": str(before), "after": str(balance.total), "by": actor},
            }
        d.status = Discrepancy.Status.RESOLVED
        d.resolved_by = actor
        d.resolved_at = timezone.now()
        d.resolution_note = note
        d.save()
    return d


__all__ = [
    "ReconciliationCooldown",
    "ReconciliationPaperMode",
    "ReconciliationRunning",
    "discrepancy_acknowledge",
    "discrepancy_resolve",
    "exchange_client",
    "reconciliation_run",
    "reconciliation_trigger",
    "run_start",
    "startup_gate_engage",
    "startup_gate_release",
    "tolerances_from_settings",
]
