"""Reconciliation runs and the discrepancies they find between our books and Kraken's.

A run is single-flight by a database constraint: at most one row can be `running` (a second start fails with an
IntegrityError and is reported as "already running"). Discrepancies keep the evidence (what the exchange and our
books said), the action taken with its before/after, and who resolved them; their status changes are audited.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from core.audit import audited_history
from trading.models import Instrument, Order


class ReconciliationRun(models.Model):
    class Trigger(models.TextChoices):
        STARTUP = "startup", "start-up"
        SCHEDULE = "schedule"
        GAP = "gap", "sequence gap"
        RECONNECT = "reconnect"
        OPERATOR = "operator"

    class Status(models.TextChoices):
        RUNNING = "running"
        CLEAN = "clean", "clean (books equal the exchange)"
        CORRECTED = "corrected", "corrected (every difference safely corrected)"
        HALTED = "halted", "halted (a difference beyond tolerance)"
        FAILED = "failed", "failed (could not reconcile)"

    trigger = models.CharField(max_length=12, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    requested_by = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    window_start = models.DateTimeField(null=True, blank=True, help_text="exchange history compared from")
    window_end = models.DateTimeField(null=True, blank=True, help_text="exchange history compared up to")
    started_at = models.DateTimeField()
    owner = models.CharField(
        max_length=255, blank=True, default="", help_text="host:pid of the process running it (a dead one frees it)"
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    rest_ms = models.FloatField(null=True, blank=True, help_text="time spent in REST calls (waits included)")
    processing_ms = models.FloatField(null=True, blank=True, help_text="our own time: duration minus REST")
    rest_calls = models.PositiveIntegerField(default=0)
    rest_cost = models.PositiveIntegerField(default=0, help_text="units added to Kraken's REST call counter")
    counts = models.JSONField(default=dict, blank=True, help_text="what was compared, found and corrected")
    discrepancy_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-started_at"]),
            # the API's run list, newest first: a page without sorting the table
            models.Index(fields=["-started_at", "-id"], name="recon_run_started_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="running"), name="recon_run_single_flight"),
            models.CheckConstraint(
                condition=Q(trigger__in=["startup", "schedule", "gap", "reconnect", "operator"]),
                name="recon_run_trigger_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["running", "clean", "corrected", "halted", "failed"]),
                name="recon_run_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status="running") | Q(finished_at__isnull=False), name="recon_run_finished_iff_done"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.trigger}) {self.status}"


class DiscrepancyKind(models.TextChoices):
    MISSING_FILL = "missing_fill"
    UNKNOWN_EXCHANGE_ORDER = "unknown_exchange_order"
    ORDER_MISSING_ON_EXCHANGE = "order_missing_on_exchange"
    STATE_MISMATCH = "state_mismatch"
    QUANTITY_MISMATCH = "quantity_mismatch"
    FEE_MISMATCH = "fee_mismatch"
    BALANCE_MISMATCH = "balance_mismatch"
    POSITION_MISMATCH = "position_mismatch"
    UNKNOWN_LOCAL_FILL = "unknown_local_fill"


class Discrepancy(models.Model):
    Kind = DiscrepancyKind

    class Severity(models.TextChoices):
        INFO = "info", "info (within tolerance)"
        WARNING = "warning", "warning (corrected)"
        CRITICAL = "critical", "critical (beyond tolerance: trading halted)"

    class Action(models.TextChoices):
        NONE = "none"
        FILL_APPLIED = "fill_applied"
        STATE_ADVANCED = "state_advanced"
        ORDER_ADOPTED = "order_adopted"
        ORDER_ADOPTED_AND_CANCELED = "order_adopted_canceled"
        QUANTITY_AMENDED = "quantity_amended"
        FEE_CORRECTED = "fee_corrected"
        BALANCE_SET = "balance_set"
        ORDER_REJECTED = "order_rejected"
        HALTED = "halted"

    class Status(models.TextChoices):
        OPEN = "open"
        AUTO_RESOLVED = "auto_resolved"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="discrepancies")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    within_tolerance = models.BooleanField(default=False)
    instrument = models.ForeignKey(
        Instrument, on_delete=models.PROTECT, null=True, blank=True, related_name="discrepancies"
    )
    asset = models.CharField(max_length=16, blank=True, default="")
    order = models.ForeignKey(Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="discrepancies")
    exchange_order_id = models.CharField(max_length=64, blank=True, default="")
    exec_id = models.CharField(max_length=64, blank=True, default="")
    local_value = models.CharField(max_length=100, blank=True, default="")
    exchange_value = models.CharField(max_length=100, blank=True, default="")
    difference = models.DecimalField(max_digits=32, decimal_places=12, null=True, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    action = models.CharField(max_length=24, choices=Action.choices, default=Action.NONE)
    action_detail = models.JSONField(default=dict, blank=True, help_text="what was done, with before and after")
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN)
    resolved_by = models.CharField(max_length=200, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    history = audited_history()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "discrepancies"
        indexes = [models.Index(fields=["status", "severity"]), models.Index(fields=["kind"])]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=DiscrepancyKind.values), name="recon_discrepancy_kind_valid"),
            models.CheckConstraint(
                condition=Q(severity__in=["info", "warning", "critical"]), name="recon_discrepancy_severity_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="open") | (~Q(resolved_by="") & Q(resolved_at__isnull=False)),
                name="recon_discrepancy_resolved_by_iff_closed",
            ),
        ]

    def __str__(self) -> str:
        subject = self.exec_id or self.exchange_order_id or self.asset or (self.instrument_id or "")
        return f"{self.kind} {subject} [{self.severity}, {self.status}]"
