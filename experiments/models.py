"""Champion/challenger experiments between versions of one registered model (issue 14).

An `Experiment` names a registered model, its arms (`Arm`: the control, the champion when the experiment was
created and still when it starts, and one or more treatment versions, each with an allocation percent), a mode
(shadow: only the champion trades, every treatment predicts on the same decisions; split: decisions are routed
to arms by a deterministic hash and every arm trades), a primary metric, guardrails, alpha, minimum sample and
maximum duration. Its status moves draft -> running <-> paused -> concluded (with the winning arm) | stopped
(with the guardrail that tripped) | aborted, each move by `experiments.services` only, audited (who, why) and
logged as an `ExperimentEvent`. The database allows one running or paused experiment per registered model.

Derived data (recomputable from the registry's predictions and outcomes, so not audited row by row):
`ExperimentObservation` is the ledger, one row per (experiment, arm, decision): it records that the arm served
(split) or shadowed (shadow) the decision, the prediction's latency or error, and what its outcome contributed
to the statistics (so a replayed decision is one row and a revised outcome replaces its old contribution);
`ArmStatistics` and `Comparison` hold the sufficient statistics the results are computed from
(`experiments.sequential` states as JSON).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import F, Q

from core.audit import audited_history
from models_registry.models import ModelVersion, Prediction, RegisteredModel


class Mode(models.TextChoices):
    SHADOW = "shadow"
    SPLIT = "split"


class Metric(models.TextChoices):
    NET_RETURN = "net_return"
    HIT_RATE = "hit_rate"
    LOG_LOSS = "log_loss"


class Status(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    CONCLUDED = "concluded"
    STOPPED = "stopped"
    ABORTED = "aborted"


ACTIVE_STATUSES = (Status.RUNNING, Status.PAUSED)
FINAL_STATUSES = (Status.CONCLUDED, Status.STOPPED, Status.ABORTED)


class Guardrail(models.TextChoices):
    DRAWDOWN = "max_drawdown"
    ERROR_RATE = "max_error_rate"
    LATENCY = "max_latency_ms"


# Test outcomes (per comparison) whose variance starts the sequential test. 30 holds alpha on the learnable
# scenario's A/A as well as 100 (the look variance's floor, experiments.sequential) and detects effects days sooner
# (BENCHMARKS.md, "Experiments").
DEFAULT_BURN_IN = 30


class Experiment(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="experiments")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.SHADOW)
    primary_metric = models.CharField(max_length=16, choices=Metric.choices, default=Metric.NET_RETURN)
    alpha = models.FloatField(default=0.05, help_text="family-wise error rate, in (0, 0.5)")
    minimum_sample = models.PositiveIntegerField(
        default=1000, help_text="outcomes (shadow: pairs; split: per arm) before the experiment may conclude"
    )
    maximum_duration = models.DurationField(help_text="concluded without a winner when reached")
    burn_in = models.PositiveIntegerField(
        default=DEFAULT_BURN_IN,
        help_text="first outcomes (per comparison) that fix the variance of the sequential test",
    )
    mixing_variance = models.FloatField(
        default=0.04, help_text="tau^2 of the mixture SPRT, in units of the burn-in variance (effect ~ 0.2 sd)"
    )
    max_treatment_drawdown = models.FloatField(
        null=True, blank=True, help_text="guardrail: drawdown of a treatment's cumulative net return (fraction)"
    )
    max_error_rate = models.FloatField(
        null=True, blank=True, help_text="guardrail: share of a treatment's predictions that failed"
    )
    max_latency_ms = models.FloatField(
        null=True, blank=True, help_text="guardrail: p99 of a treatment's prediction latency (ms)"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    winner = models.ForeignKey("Arm", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    stopped_guardrail = models.CharField(max_length=16, choices=Guardrail.choices, blank=True, default="")
    status_reason = models.TextField(blank=True, default="", help_text="why the latest transition happened")
    evidence = models.JSONField(default=dict, blank=True, help_text="the results when it concluded or stopped")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True, help_text="when its winner was promoted")
    history = audited_history()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"], condition=Q(status__in=["running", "paused"]), name="experiment_one_active_per_model"
            ),
            models.CheckConstraint(condition=Q(alpha__gt=0) & Q(alpha__lt=0.5), name="experiment_alpha_range"),
            models.CheckConstraint(condition=Q(mode__in=Mode.values), name="experiment_mode_valid"),
            models.CheckConstraint(condition=Q(primary_metric__in=Metric.values), name="experiment_metric_valid"),
            models.CheckConstraint(condition=Q(status__in=Status.values), name="experiment_status_valid"),
            models.CheckConstraint(condition=Q(minimum_sample__gte=1), name="experiment_min_sample_pos"),
            models.CheckConstraint(condition=Q(burn_in__gte=10), name="experiment_burn_in_min"),
            models.CheckConstraint(condition=Q(mixing_variance__gt=0), name="experiment_mixing_variance_pos"),
            models.CheckConstraint(condition=Q(maximum_duration__gt=timedelta(0)), name="experiment_duration_pos"),
            models.CheckConstraint(
                condition=Q(max_treatment_drawdown__isnull=True) | Q(max_treatment_drawdown__gt=0),
                name="experiment_guard_drawdown_pos",
            ),
            models.CheckConstraint(
                condition=Q(max_error_rate__isnull=True) | (Q(max_error_rate__gte=0) & Q(max_error_rate__lt=1)),
                name="experiment_guard_error_range",
            ),
            models.CheckConstraint(
                condition=Q(max_latency_ms__isnull=True) | Q(max_latency_ms__gt=0), name="experiment_guard_latency_pos"
            ),
            models.CheckConstraint(
                condition=Q(winner__isnull=True) | Q(status="concluded"), name="experiment_winner_only_concluded"
            ),
            models.CheckConstraint(
                condition=(Q(status="stopped") & ~Q(stopped_guardrail=""))
                | (~Q(status="stopped") & Q(stopped_guardrail="")),
                name="experiment_stopped_has_guardrail",
            ),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(started_at__isnull=False), name="experiment_started_when_not_draft"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "running", "paused"]) | Q(ended_at__isnull=False),
                name="experiment_ended_when_final",
            ),
            models.CheckConstraint(condition=~Q(created_by=""), name="experiment_created_by_nonempty"),
        ]
        indexes = [models.Index(fields=["status", "model"], name="experiment_status_model")]

    def __str__(self) -> str:
        return f"experiment {self.pk} {self.name} [{self.status}]"


class Arm(models.Model):
    class Role(models.TextChoices):
        CONTROL = "control"
        TREATMENT = "treatment"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    name = models.CharField(max_length=64)
    role = models.CharField(max_length=10, choices=Role.choices)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="experiment_arms")
    allocation_percent = models.DecimalField(
        max_digits=5, decimal_places=2, help_text="share of decisions (split); shadow arms see every decision"
    )
    position = models.PositiveSmallIntegerField(default=0, help_text="display order; the control is 0")
    history = audited_history()

    class Meta:
        ordering = ["experiment", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "version"], name="arm_version_once_per_experiment"),
            models.UniqueConstraint(fields=["experiment", "name"], name="arm_name_uniq"),
            models.UniqueConstraint(fields=["experiment"], condition=Q(role="control"), name="arm_one_control"),
            models.CheckConstraint(condition=Q(role__in=["control", "treatment"]), name="arm_role_valid"),
            models.CheckConstraint(
                condition=Q(allocation_percent__gte=0) & Q(allocation_percent__lte=100), name="arm_allocation_range"
            ),
            models.CheckConstraint(condition=~Q(name=""), name="arm_name_nonempty"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version.version}, {self.allocation_percent}%)"


class ExperimentEvent(models.Model):
    """One status transition (or a promotion of the winner): who, when, why. Append-only."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=16, help_text="create, start, pause, resume, conclude, stop, abort, promote")
    from_status = models.CharField(max_length=10, choices=Status.choices, blank=True, default="")
    to_status = models.CharField(max_length=10, choices=Status.choices)
    actor = models.CharField(max_length=200)
    reason = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(actor=""), name="expevent_actor_nonempty"),
            models.CheckConstraint(condition=~Q(reason=""), name="expevent_reason_nonempty"),
        ]

    def __str__(self) -> str:
        return f"experiment {self.experiment_id}: {self.action} {self.from_status} -> {self.to_status}"


class ExperimentObservation(models.Model):
    """One arm on one decision of an experiment (unique: a replayed decision is the same row).

    `decision_key` is the registry prediction's decision id (``<symbol>:<bar time>``, what the pipeline passes
    the predictor), so the arm's `Prediction` is (decision_key, version). `contribution` is what the arm's
    matured outcome added to its `ArmStatistics` (with the outcome's revision number); `pair_contribution`
    (treatment rows of shadow experiments) what the paired difference added to its `Comparison`. A revised
    outcome takes its old contribution out before adding the new one: each outcome counts exactly once."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="observations")
    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="observations")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    decision_key = models.CharField(max_length=100)
    symbol = models.CharField(max_length=32)
    bar_time = models.DateTimeField()
    prediction = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    latency_ms = models.FloatField(null=True, blank=True, help_text="time to predict (features and model)")
    error = models.TextField(blank=True, default="", help_text="why the arm could not predict")
    assignment_counted = models.BooleanField(default=False, help_text="counted in the arm's assignments")
    counted_revision = models.IntegerField(
        null=True, blank=True, help_text="revision of the outcome whose figures `contribution` holds; null: none yet"
    )
    contribution = models.JSONField(null=True, blank=True)
    pair_contribution = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["experiment", "bar_time", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "arm", "decision_key"], name="expobs_once_per_decision"),
            models.CheckConstraint(condition=~Q(decision_key=""), name="expobs_decision_nonempty"),
        ]
        indexes = [
            models.Index(fields=["experiment", "assignment_counted"], name="expobs_assignment"),
            models.Index(fields=["experiment", "decision_key"], name="expobs_decision"),
            models.Index(fields=["decision_key", "version"], name="expobs_prediction_key"),
        ]

    def __str__(self) -> str:
        return f"experiment {self.experiment_id} arm {self.arm_id} on {self.decision_key}"


class ArmStatistics(models.Model):
    """Sufficient statistics of one arm, updated by the outcome intake (`experiments.intake`)."""

    arm = models.OneToOneField(Arm, on_delete=models.CASCADE, primary_key=True, related_name="statistics")
    n_assigned = models.PositiveIntegerField(default=0, help_text="decisions the arm served (split) or shadowed")
    n_errors = models.PositiveIntegerField(default=0)
    n_outcomes = models.PositiveIntegerField(default=0)
    n_latency = models.PositiveIntegerField(default=0, help_text="predictions timed")
    n_slow = models.PositiveIntegerField(default=0, help_text="predictions slower than the latency guardrail")
    state = models.JSONField(default=dict, blank=True, help_text="streams per metric, drawdown, latency buckets")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "arm statistics"
        constraints = [
            models.CheckConstraint(condition=Q(n_errors__lte=F("n_assigned")), name="armstats_errors_le_assigned")
        ]

    def __str__(self) -> str:
        return f"statistics of arm {self.arm_id}: n={self.n_outcomes}"


class Comparison(models.Model):
    """Treatment vs control statistics (paired in shadow mode, two-sample in split mode) with the running
    always-valid p-values per metric."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="comparisons")
    treatment = models.OneToOneField(Arm, on_delete=models.CASCADE, related_name="comparison")
    n = models.PositiveIntegerField(default=0, help_text="pairs (shadow) or the smaller arm's outcomes (split)")
    primary_p = models.FloatField(default=1.0, help_text="always-valid p of the primary metric (unadjusted)")
    state = models.JSONField(default=dict, blank=True, help_text="experiments.sequential.ComparisonState")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["experiment", "treatment"]
        constraints = [
            models.CheckConstraint(condition=Q(primary_p__gte=0) & Q(primary_p__lte=1), name="comparison_p_range")
        ]

    def __str__(self) -> str:
        return f"comparison {self.experiment_id}/{self.treatment_id}: n={self.n}, p={self.primary_p:.4g}"
