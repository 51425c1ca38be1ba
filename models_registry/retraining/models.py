"""The retraining loop's records (imported by `models_registry.models`, so they belong to the registry app):

- `RetrainingPolicy`: per registered model, what triggers a retraining and on which window it trains (null fields
  fall back to the MODELS_REGISTRY_RETRAINING_* settings).
- `RetrainingRun`: one retraining, queued -> training -> shadow -> promoted / rejected / failed. At most one run
  per model is active (queued, training or shadow): a partial unique constraint, so concurrent triggers cannot
  start two (a second trigger joins the active run).
- `RetrainingTrigger`: every trigger (drift, schedule, operator), joined to the run it started or joined, or
  suppressed with why (cooldown, policy off). A drift report triggers at most once (unique).
- `Probation`: a promoted version watched against its validation and the previous champion's live record for
  a window after it enters production; a failure rolls back to the previous champion.
- `RetrainingEvent`: the loop's append-only step log (trigger -> report -> training -> challenger -> experiment
  -> promotion or rejection -> probation -> rollback), which the model's history shows.

Foreign keys name registry models by string, so this module imports nothing of `models_registry.models` (no
import cycle). Experiments are referred to by id only (the registry never imports experiments).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from core.audit import audited_history

ACTIVE_RUN_STATUSES = ("queued", "training", "shadow")


class TriggerKind(models.TextChoices):
    DRIFT = "drift"
    SCHEDULE = "schedule"
    OPERATOR = "operator"


class RetrainingPolicy(models.Model):
    """When and how one registered model retrains; a null field uses its MODELS_REGISTRY_RETRAINING_* default."""

    model = models.OneToOneField(
        "models_registry.RegisteredModel", on_delete=models.CASCADE, related_name="retraining_policy"
    )
    enabled = models.BooleanField(default=True, help_text="off: no automatic trigger (operators still can)")
    on_drift = models.BooleanField(default=True, help_text="retrain when drift is confirmed")
    schedule_hours = models.FloatField(null=True, blank=True, help_text="retrain every N hours (0: no schedule)")
    window_hours = models.FloatField(null=True, blank=True, help_text="training window (hours of recent bars)")
    min_window_hours = models.FloatField(null=True, blank=True, help_text="shortest window after a change point")
    cooldown_hours = models.FloatField(null=True, blank=True, help_text="no drift trigger this soon after a run")
    probation_hours = models.FloatField(null=True, blank=True, help_text="watch a promoted version this long")
    updated_at = models.DateTimeField(auto_now=True)
    history = audited_history()

    class Meta:
        verbose_name_plural = "retraining policies"
        constraints = [
            models.CheckConstraint(
                condition=(Q(schedule_hours__isnull=True) | Q(schedule_hours__gte=0))
                & (Q(window_hours__isnull=True) | Q(window_hours__gt=0))
                & (Q(min_window_hours__isnull=True) | Q(min_window_hours__gt=0))
                & (Q(cooldown_hours__isnull=True) | Q(cooldown_hours__gte=0))
                & (Q(probation_hours__isnull=True) | Q(probation_hours__gte=0)),
                name="retrainpolicy_hours_valid",
            )
        ]

    def __str__(self) -> str:
        return f"retraining policy of {self.model_id}"


class RetrainingRun(models.Model):
    """One retraining of a model, from its first trigger to promotion, rejection or failure."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        TRAINING = "training"
        SHADOW = "shadow"  # challenger registered, shadow experiment against the champion
        PROMOTED = "promoted"
        REJECTED = "rejected"
        FAILED = "failed"

    model = models.ForeignKey("models_registry.RegisteredModel", on_delete=models.PROTECT, related_name="retrainings")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=10, choices=TriggerKind.choices, help_text="what started it")
    reason = models.TextField()
    actor = models.CharField(max_length=200)
    drift_report = models.ForeignKey(
        "models_registry.DriftReport", null=True, blank=True, on_delete=models.PROTECT, related_name="retrainings"
    )
    parent = models.ForeignKey(
        "models_registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the champion when it was triggered",
    )
    challenger = models.ForeignKey(
        "models_registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="retraining_runs",
        help_text="the version it trained",
    )
    training_request_id = models.CharField(max_length=64, blank=True, default="")
    data_start = models.DateTimeField(null=True, blank=True)
    data_end = models.DateTimeField(null=True, blank=True)
    change_point_at = models.DateTimeField(null=True, blank=True, help_text="the window starts after it when known")
    experiment_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="the shadow experiment (id)")
    gate_report = models.JSONField(default=dict, blank=True, help_text="the challenger's production gates")
    outcome = models.TextField(blank=True, default="", help_text="why it was promoted, rejected or failed")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    history = audited_history()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"],
                condition=Q(status__in=ACTIVE_RUN_STATUSES),
                name="retrainingrun_one_active_per_model",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "training", "shadow", "promoted", "rejected", "failed"]),
                name="retrainingrun_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(trigger__in=["drift", "schedule", "operator"]), name="retrainingrun_trigger_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["shadow", "promoted"]) | Q(challenger__isnull=False),
                name="retrainingrun_shadow_has_challenger",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="retrainingrun_reason_nonempty"),
        ]

    def __str__(self) -> str:
        return f"retraining {self.pk} of {self.model_id} [{self.status}]"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES


class RetrainingTrigger(models.Model):
    """One trigger: the run it started (`joined` False) or joined (True), or none when suppressed (with why)."""

    model = models.ForeignKey("models_registry.RegisteredModel", on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(RetrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="triggers")
    kind = models.CharField(max_length=10, choices=TriggerKind.choices)
    drift_report = models.ForeignKey(
        "models_registry.DriftReport", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=200)
    reason = models.TextField()
    joined = models.BooleanField(default=False, help_text="a run was already active: this trigger joined it")
    suppressed = models.CharField(max_length=200, blank=True, default="", help_text="why it started nothing")
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["drift_report"], condition=Q(drift_report__isnull=False), name="retraintrigger_report_once"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["drift", "schedule", "operator"]), name="retraintrigger_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(run__isnull=False) | ~Q(suppressed=""), name="retraintrigger_run_or_suppressed"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} trigger of {self.model_id} at {self.at:%Y-%m-%d %H:%M}"


class Probation(models.Model):
    """A version in production watched for a window: rolled back to `previous` when it does worse than its
    validation by more than the degradation margin, or worse than `previous`'s live record."""

    class Status(models.TextChoices):
        WATCHING = "watching"
        PASSED = "passed"
        ROLLED_BACK = "rolled_back"
        ENDED = "ended"  # left production some other way (an operator's move) before the window ended

    model = models.ForeignKey("models_registry.RegisteredModel", on_delete=models.PROTECT, related_name="+")
    version = models.OneToOneField("models_registry.ModelVersion", on_delete=models.PROTECT, related_name="probation")
    previous = models.ForeignKey(
        "models_registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the champion it replaced (the rollback target)",
    )
    run = models.ForeignKey(RetrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.WATCHING)
    started_at = models.DateTimeField()
    until = models.DateTimeField()
    checked_at = models.DateTimeField(null=True, blank=True)
    last_report = models.JSONField(default=dict, blank=True)
    outcome = models.TextField(blank=True, default="")
    alert_id = models.PositiveBigIntegerField(null=True, blank=True)
    history = audited_history()

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["watching", "passed", "rolled_back", "ended"]), name="probation_status_valid"
            ),
            models.CheckConstraint(condition=Q(until__gte=models.F("started_at")), name="probation_window_order"),
        ]

    def __str__(self) -> str:
        return f"probation of v{self.version_id} [{self.status}]"


RETRAINING_STEPS = (
    "triggered",
    "joined",
    "suppressed",
    "training_started",
    "training_failed",
    "challenger_registered",
    "experiment_started",
    "promoted",
    "rejected",
    "probation_started",
    "probation_passed",
    "rolled_back",
    "rollback_refused",
)


class RetrainingEvent(models.Model):
    """One step of the loop, append-only: what happened, to which run and version, who did it and why."""

    class Step(models.TextChoices):
        TRIGGERED = "triggered"
        JOINED = "joined"
        SUPPRESSED = "suppressed"
        TRAINING_STARTED = "training_started"
        TRAINING_FAILED = "training_failed"
        CHALLENGER_REGISTERED = "challenger_registered"
        EXPERIMENT_STARTED = "experiment_started"
        PROMOTED = "promoted"
        REJECTED = "rejected"
        PROBATION_STARTED = "probation_started"
        PROBATION_PASSED = "probation_passed"
        ROLLED_BACK = "rolled_back"
        ROLLBACK_REFUSED = "rollback_refused"

    model = models.ForeignKey("models_registry.RegisteredModel", on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(RetrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    version = models.ForeignKey(
        "models_registry.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    step = models.CharField(max_length=24, choices=Step.choices)
    actor = models.CharField(max_length=200)
    detail = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["model", "at", "id"], name="retrainevent_model_at")]
        constraints = [
            models.CheckConstraint(condition=Q(step__in=RETRAINING_STEPS), name="retrainevent_step_valid"),
            models.CheckConstraint(condition=~Q(actor=""), name="retrainevent_actor_nonempty"),
        ]

    def __str__(self) -> str:
        return f"{self.step} of {self.model_id} at {self.at:%Y-%m-%d %H:%M}"
