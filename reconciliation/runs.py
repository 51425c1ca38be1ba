"""A reconciliation run: claim the single `running` slot, load our books (`reconciliation.selectors`), ask the
exchange over REST (`reconciliation.exchange`), compare with `reconciliation.engine` in two phases, carry out the
corrections (`reconciliation.corrections`), record every discrepancy with its evidence and action, and halt trading
when a difference is not safe to correct. Also the start-up gate: trading stays HALTED after a live worker starts
until its start-up run is clean or corrected.

Every change is attributed to `reconciliation:run-<id>` in the audit trail. Settings: the GALFRIDAY_RECONCILIATION_*
block of `galfriday_site.settings` (documented in `.env.example`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import audit_actor
from core.errors import ApplicationError, ConflictError
from ingest.kraken.rest import KrakenRestClientSync
from reconciliation import engine, exchange, selectors
from reconciliation.corrections import (
    Correction,
    Outcome,
    balance_corrections_apply,
    order_corrections_apply,
)
from reconciliation.engine import ExchangeView, Finding, LocalFill, LocalOrder, Tolerances
from reconciliation.exchange import RestLedger
from reconciliation.models import Discrepancy, ReconciliationRun
from trading import lock_objects as trading_locks
from trading.alerts import alert_raise, alert_resolve
from trading.executions import EventSource
from trading.kill_switch import trading_halt, trading_state_set
from trading.models import Alert, TradingState
from trading.order_states import OrderState

logger = logging.getLogger(__name__)

Trigger = ReconciliationRun.Trigger
RunStatus = ReconciliationRun.Status
ACTOR = "reconciliation"
STARTUP_REASON = "awaiting the start-up reconciliation"
ALERT_FAILED = "reconciliation_failed"  # Alert.kind (the trading alert kinds are open-ended strings in the table)


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


def run_actor(run: ReconciliationRun) -> str:
    return f"{ACTOR}:run-{run.pk}"


# --- starting and finishing a run -------------------------------------------------------------------------------


def process_owner() -> str:
    """What names the process running a run: its host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_dead(owner: str) -> bool:
    """Whether `owner` (host:pid) is a process of this host that no longer exists. Another host's process, or a
    pid in use again, counts as alive: such a run waits for the stale limit instead."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, owned by another user
        return False
    return False


def _abandon_stale_runs(now: datetime) -> None:
    """Free the single `running` slot from a run whose process died (a killed worker leaves its run `running`):
    at once when its owner was a process of this host that is gone, else after the stale limit."""
    stale = now - timedelta(seconds=int(settings.GALFRIDAY_RECONCILIATION_STALE_SECONDS))
    for run in ReconciliationRun.objects.filter(status=RunStatus.RUNNING):
        if run.started_at < stale:
            why = "abandoned: still running after the stale limit (worker lost?)"
        elif run.owner and owner_dead(run.owner):
            why = f"abandoned: its process {run.owner} is gone"
        else:
            continue
        run.status = RunStatus.FAILED
        run.finished_at = now
        run.error = why
        run.save(update_fields=["status", "finished_at", "error"])
        logger.error("abandoned reconciliation run marked failed", extra={"run_id": run.pk, "why": why})


def run_start(*, trigger: str, requested_by: str = ACTOR, reason: str = "") -> ReconciliationRun:
    """Claim the single `running` slot (a database constraint) or raise ReconciliationRunning."""
    if trigger not in Trigger.values:
        raise ApplicationError("Invalid trigger.", code="validation_error", details={"trigger": Trigger.values})
    now = timezone.now()
    _abandon_stale_runs(now)
    try:
        with transaction.atomic():
            return ReconciliationRun.objects.create(
                trigger=trigger, requested_by=requested_by, reason=reason, started_at=now, owner=process_owner()
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
        active_client = client or exchange.exchange_client()
        rest = RestLedger(active_client)
        try:
            with audit_actor(run_actor(run), reason=f"reconciliation run {run.pk} ({trigger})"):
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
    if run.status != RunStatus.FAILED:  # the exchange answered and the books were compared: no longer failing
        alert_resolve(fingerprint=ALERT_FAILED)
    if run.trigger == Trigger.STARTUP and run.status in (RunStatus.CLEAN, RunStatus.CORRECTED):
        startup_gate_release(run=run)
    logger.info(
        "reconciliation run finished",
        extra={"run_id": run.pk, "status": run.status, "discrepancies": run.discrepancy_count},
    )
    return run


def _alert_failure(run: ReconciliationRun) -> None:
    alert_raise(
        kind=ALERT_FAILED,
        severity="critical",
        message=f"Reconciliation run {run.pk} ({run.trigger}) failed: {run.error}",
        context={"run_id": run.pk},
        dedupe=True,
    )


# --- the comparison ---------------------------------------------------------------------------------------------


def _window_start(now: datetime) -> datetime:
    last_end = selectors.last_good_window_end()
    if last_end is not None:
        return last_end - timedelta(seconds=int(settings.GALFRIDAY_RECONCILIATION_OVERLAP_SECONDS))
    return now - timedelta(seconds=int(settings.GALFRIDAY_RECONCILIATION_LOOKBACK_SECONDS))


def _client_order_ids(view: ExchangeView) -> list[str]:
    return [o.cl_ord_id for o in view.orders.values() if o.cl_ord_id]


def _orders_seen_by_both(
    rest: RestLedger, view: ExchangeView, *, now: datetime, grace: timedelta
) -> tuple[dict[int, LocalOrder], int]:
    """Our orders for the exchange's, after one targeted query for each open local order the window did not
    show (QueryOrders by exchange id; ClosedOrders by client order id when we never learned the exchange id).
    Returns the orders and the number of targeted QueryOrders ids."""
    local_orders = selectors.local_orders_load(
        exchange_order_ids=list(view.orders), client_order_ids=_client_order_ids(view)
    )
    cl_seen = set(_client_order_ids(view))
    to_query: set[str] = set()
    for order in local_orders.values():
        if OrderState(order.state) not in engine.LOCAL_OPEN or now - (order.submitted_at or order.created_at) < grace:
            continue
        if order.exchange_order_id and order.exchange_order_id not in view.orders:
            to_query.add(order.exchange_order_id)
        elif not order.exchange_order_id and order.client_order_id not in cl_seen:
            exchange.orders_by_client_id_fetch(rest, view, client_order_id=order.client_order_id)
    exchange.orders_query(rest, view, txids=sorted(to_query))
    if len(view.orders) != len(local_orders):
        local_orders.update(
            selectors.local_orders_load(exchange_order_ids=list(view.orders), client_order_ids=_client_order_ids(view))
        )
    return local_orders, len(to_query)


def _fills_seen_by_both(rest: RestLedger, view: ExchangeView, *, window_start: datetime) -> dict[str, LocalFill]:
    """Our fills for the exchange's trades; trades of the orders seen that lie outside the window and are not in
    our books are fetched by id."""
    local_fills = selectors.local_fills_load(since=window_start, exec_ids=list(view.trades))
    wanted = sorted(
        {t for o in view.orders.values() for t in o.trades if t not in view.trades and t not in local_fills}
    )
    exchange.trades_query(rest, view, txids=wanted)
    if wanted:
        local_fills.update(selectors.local_fills_load(since=window_start, exec_ids=wanted))
    return local_fills


def _reconcile(run: ReconciliationRun, rest: RestLedger) -> None:
    now = timezone.now()
    window_start = _window_start(now)
    run.window_start, run.window_end = window_start, now
    tol = tolerances_from_settings()
    grace = timedelta(seconds=int(settings.GALFRIDAY_RECONCILIATION_GRACE_SECONDS))

    # Phase 1: orders and fills.
    view = exchange.exchange_view_fetch(rest, window_start=window_start)
    local_orders, targeted = _orders_seen_by_both(rest, view, now=now, grace=grace)
    local_fills = _fills_seen_by_both(rest, view, window_start=window_start)
    instruments = selectors.instrument_infos()
    outcome = Outcome()
    outcome.findings = engine.compare_orders(
        local_orders=local_orders.values(),
        local_fills=local_fills,
        exchange=view,
        instruments=instruments,
        tolerances=tol,
        now=now,
        grace=grace,
    )
    correction = Correction(
        view=view,
        instruments=engine.symbol_lookup(instruments),
        actor=run_actor(run),
        run_id=run.pk,
        unknown_orders=str(settings.GALFRIDAY_RECONCILIATION_UNKNOWN_ORDERS),
    )
    order_corrections_apply(correction, outcome)

    # Phase 2, on the corrected books.
    exchange_balances = exchange.balances_fetch(rest)
    local_balances = selectors.local_balances()
    start = len(outcome.findings)
    outcome.findings += engine.compare_balances(
        local=local_balances,
        exchange=exchange_balances,
        traded_assets={i.base for i in instruments} | {i.quote for i in instruments},
        tolerances=tol,
        correct_untraded=bool(settings.GALFRIDAY_RECONCILIATION_CORRECT_UNTRADED_BALANCES),
    )
    outcome.findings += engine.compare_positions(
        positions=selectors.positions(), from_fills=selectors.positions_from_fills(), tolerances=tol
    )
    balance_corrections_apply(correction, outcome, start=start)

    _record(run, outcome)
    run.counts = {
        "exchange_orders": len(view.orders),
        "exchange_open_orders": len(view.open_txids),
        "exchange_trades": len(view.trades),
        "local_orders": len(local_orders),
        "local_fills": len(local_fills),
        "assets": len(set(local_balances) | set(exchange_balances)),
        "targeted_queries": targeted,
        "findings_by_kind": _count_by(outcome.findings, lambda f: f.kind),
        "findings_by_severity": _count_by(outcome.findings, lambda f: f.severity),
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


def _count_by(findings: Iterable[Finding], key: Callable[[Finding], str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        out[key(f)] = out.get(key(f), 0) + 1
    return out


# --- the record, and the halt -----------------------------------------------------------------------------------


def _record(run: ReconciliationRun, outcome: Outcome) -> None:
    instruments = selectors.instrument_ids_by_symbol()
    now = timezone.now()
    actor = run_actor(run)
    existing_orders = selectors.existing_order_ids(order_ids=[f.order_pk for f in outcome.findings if f.order_pk])
    rows = []
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
    kinds = sorted({f.kind for f in critical})
    result = trading_halt(
        reason=f"reconciliation run {run.pk}: {len(critical)} discrepancies beyond tolerance ({', '.join(kinds)})",
        actor=run_actor(run),
        source=EventSource.RECONCILIATION,
        alert_kind=Alert.Kind.RECONCILIATION_HALTED,
        context={"run_id": run.pk, "kinds": kinds},
    )
    Discrepancy.objects.filter(run=run, severity=engine.CRITICAL).update(action=Discrepancy.Action.HALTED)
    if not result.changed:
        # Already halted: the operator still has to see this run's findings.
        alert_raise(
            kind=Alert.Kind.RECONCILIATION_HALTED,
            severity=Alert.Severity.CRITICAL,
            message=f"Reconciliation run {run.pk}: {len(critical)} beyond tolerance ({', '.join(kinds)})",
            context={"run_id": run.pk, "kinds": kinds},
        )


# --- the start-up gate ------------------------------------------------------------------------------------------


@transaction.atomic
def startup_gate_engage() -> bool:
    """At ingest/worker start: HALTED until the start-up reconciliation is clean or corrected. Leaves a halt by
    anyone else alone. True when this call halted trading."""
    state = trading_locks.trading_state_lock()
    if state.state == TradingState.State.HALTED:
        return False
    trading_state_set(state=TradingState.State.HALTED, reason=STARTUP_REASON, actor=ACTOR)
    return True


@transaction.atomic
def startup_gate_release(*, run: ReconciliationRun) -> bool:
    """Resume trading when it is halted only by the start-up gate and `run` is clean or corrected."""
    if run.status not in (RunStatus.CLEAN, RunStatus.CORRECTED):
        return False
    state = trading_locks.trading_state_lock()
    if state.state != TradingState.State.HALTED or state.changed_by != ACTOR or state.reason != STARTUP_REASON:
        return False
    trading_state_set(
        state=TradingState.State.ACTIVE,
        reason=f"start-up reconciliation run {run.pk} {run.status}",
        actor=run_actor(run),
    )
    return True
