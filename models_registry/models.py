"""The model registry: registered models, their integer versions (with lineage, metrics, signature and a
content-addressed artifact), stages, named aliases and the append-only log of every stage and alias move.

Invariants are database constraints: one version number per model, at most one production version per model,
one target per alias. Writes go through `models_registry.services`; the stage log is append-only (the admin
cannot edit it and, on PostgreSQL, a trigger refuses UPDATE and DELETE).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import models
from django.db.models import F, Q

from core.audit import audited_history
from models_registry.retraining.models import (  # noqa: F401 (the retraining records belong to this app)
    Probation,
    RetrainingEvent,
    RetrainingPolicy,
    RetrainingRun,
    RetrainingTrigger,
)

NAME_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
ALIAS_REGEX = r"^[a-z][a-z0-9_-]{0,63}$"
SHA256_REGEX = r"^[0-9a-f]{64}$"


class Stage(models.TextChoices):
    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class RegisteredModel(models.Model):
    """A named model (e.g. `btc-usd-1m-direction`) whose versions move through stages."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    promotion_gates = models.JSONField(
        default=dict,
        blank=True,
        help_text='per-target minimum/maximum metrics, e.g. {"production": {"sharpe": {"min": 1.0}}}; '
        "merged over the MODELS_REGISTRY_PROMOTION_GATES setting",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = audited_history()

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=Q(name__regex=NAME_REGEX), name="regmodel_name_valid")]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """One trained model: an immutable artifact plus where it came from (lineage) and how good it looked."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.NONE)
    description = models.TextField(blank=True, default="")

    # artifact: SHA-256 of the serialised (plaintext) model; the stored blob is encrypted
    artifact_sha256 = models.CharField(max_length=64)
    artifact_size = models.PositiveBigIntegerField()
    artifact_format = models.CharField(max_length=16, default="skops")

    # signature: ordered [{"name": ..., "type": ...}] the model expects
    signature = models.JSONField()

    # lineage
    data_start = models.DateTimeField(help_text="training data window start (inclusive, UTC)")
    data_end = models.DateTimeField(help_text="training data window end (exclusive, UTC)")
    symbols = models.JSONField(help_text="v2 symbols the model was trained on")
    feature_set_name = models.CharField(max_length=100)
    feature_set_version = models.CharField(max_length=50)
    hyperparameters = models.JSONField(default=dict, blank=True)
    code_version = models.CharField(max_length=64, blank=True, default="", help_text="git commit if known")
    metrics = models.JSONField(default=dict, blank=True, help_text="evaluation metrics, name -> number")
    n_trials = models.PositiveIntegerField(default=1, help_text="configurations tried before this one")
    gate_report = models.JSONField(
        default=dict, blank=True, help_text="the latest evaluation of the production promotion gates"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")

    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    history = audited_history()

    class Meta:
        ordering = ["model", "-version"]
        permissions = [
            ("override_promotion_gate", "Can promote a model version that fails its promotion gates"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="modelversion_number_uniq"),
            models.UniqueConstraint(
                fields=["model"], condition=Q(stage=Stage.PRODUCTION), name="modelversion_one_production"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="modelversion_number_positive"),
            models.CheckConstraint(condition=Q(stage__in=Stage.values), name="modelversion_stage_valid"),
            models.CheckConstraint(condition=Q(artifact_sha256__regex=SHA256_REGEX), name="modelversion_sha256"),
            models.CheckConstraint(condition=Q(artifact_size__gt=0), name="modelversion_artifact_nonempty"),
            models.CheckConstraint(condition=Q(data_start__lt=F("data_end")), name="modelversion_window_order"),
            models.CheckConstraint(condition=Q(n_trials__gte=1), name="modelversion_trials_positive"),
            models.CheckConstraint(condition=~Q(feature_set_name=""), name="modelversion_feature_set_named"),
            models.CheckConstraint(condition=~Q(parent=F("pk")), name="modelversion_not_own_parent"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version} [{self.stage}]"

    @property
    def feature_names(self) -> list[str]:
        return [column["name"] for column in self.signature]


class ModelAlias(models.Model):
    """A named pointer (`champion`, `challenger`, free-form) to one version of a model; moving it is one UPDATE."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="aliases")
    name = models.CharField(max_length=64)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)
    history = audited_history()

    class Meta:
        ordering = ["model", "name"]
        verbose_name_plural = "model aliases"
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="modelalias_name_uniq"),
            models.CheckConstraint(condition=Q(name__regex=ALIAS_REGEX), name="modelalias_name_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id}@{self.name}"


class StageEvent(models.Model):
    """One move of a stage or an alias: who, when, why, and what the gates said. Append-only."""

    class Kind(models.TextChoices):
        STAGE = "stage"
        ALIAS_SET = "alias_set"
        ALIAS_REMOVED = "alias_removed"

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="stage_events")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="stage_events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    from_stage = models.CharField(max_length=12, choices=Stage.choices, blank=True, default="")
    to_stage = models.CharField(max_length=12, choices=Stage.choices, blank=True, default="")
    alias = models.CharField(max_length=64, blank=True, default="")
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="alias moves"
    )
    actor = models.CharField(max_length=200)
    reason = models.TextField()
    gate_report = models.JSONField(default=list, blank=True)
    gate_overridden = models.BooleanField(default=False)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["model", "at", "id"])]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["stage", "alias_set", "alias_removed"]), name="stageev_kind"),
            models.CheckConstraint(
                condition=(Q(kind="stage") & ~Q(to_stage="") & ~Q(from_stage="") & Q(alias=""))
                | (~Q(kind="stage") & ~Q(alias="") & Q(from_stage="", to_stage="")),
                name="stageev_fields_match_kind",
            ),
            models.CheckConstraint(condition=~Q(actor=""), name="stageev_actor_nonempty"),
            models.CheckConstraint(condition=~Q(reason=""), name="stageev_reason_nonempty"),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.STAGE:
            return f"{self.model_id} v{self.version_id}: {self.from_stage} -> {self.to_stage}"
        return f"{self.model_id}@{self.alias} {self.kind} v{self.version_id}"


class TrainingRun(models.Model):
    """One training request, keyed by its request id so that running it twice registers one version.

    A request moves running -> succeeded (with the version it registered) or failed (with the error). A second
    run of a succeeded request returns its version; one of a request still running (and not stale) is refused.
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    request_id = models.CharField(max_length=64, unique=True)
    model_name = models.CharField(max_length=100)
    symbol = models.CharField(max_length=32)
    data_start = models.DateTimeField()
    data_end = models.DateTimeField()
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    attempts = models.PositiveIntegerField(default=1)
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="training_runs"
    )
    error = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["running", "succeeded", "failed"]), name="trainrun_status"),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | Q(version__isnull=False), name="trainrun_success_has_version"
            ),
            models.CheckConstraint(condition=Q(data_start__lt=F("data_end")), name="trainrun_window_order"),
        ]

    def __str__(self) -> str:
        return f"training {self.request_id} [{self.status}]"


class HistoryBackfill(models.Model):
    """What one backfill of exchange OHLC history fetched and wrote to the time-series store."""

    symbol = models.CharField(max_length=32)
    interval = models.CharField(max_length=8, default="1m")
    source = models.CharField(max_length=200, help_text="exchange REST base URL")
    requested_start = models.DateTimeField(null=True, blank=True)
    requested_end = models.DateTimeField(null=True, blank=True)
    first_bar = models.DateTimeField(null=True, blank=True)
    last_bar = models.DateTimeField(null=True, blank=True)
    calls = models.PositiveIntegerField(default=0)
    fetched = models.PositiveIntegerField(default=0, help_text="committed bars the exchange returned in range")
    written = models.PositiveIntegerField(default=0, help_text="bars written (not already in the store)")
    already_stored = models.PositiveIntegerField(default=0)
    gaps_filled = models.PositiveIntegerField(default=0, help_text="minutes without trades written as flat bars")
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name_plural = "history backfills"

    def __str__(self) -> str:
        return f"backfill {self.symbol} {self.interval} ({self.written} written)"


FEATURE_DTYPE = np.dtype("<f4")


def features_encode(row: Any) -> bytes:
    """A feature row (in the version's signature order) as compact little-endian float32 bytes."""
    return np.ascontiguousarray(row, dtype=FEATURE_DTYPE).ravel().tobytes()


def features_decode(data: bytes | memoryview | None) -> np.ndarray | None:
    """The float32 feature row `features_encode` stored (float64 copy), or None when none was stored."""
    if data is None:
        return None
    return np.frombuffer(bytes(data), dtype=FEATURE_DTYPE).astype(np.float64)


class Prediction(models.Model):
    """One prediction served by a version for a trading decision (input to experiments and drift checks).

    Unique on (decision id, version): a replayed decision does not record a second prediction. `bar_time` is the
    start of the bar whose close the features end at (the label index t of `labels.make_labels`), `horizon` the
    version's label horizon in bars and `features` the feature row (signature order, float32, `features_encode`),
    so outcomes and drift checks need no recomputation; all three are null on rows recorded before they existed.
    """

    decision_id = models.CharField(max_length=100)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    symbol = models.CharField(max_length=32, blank=True, default="")
    features_hash = models.CharField(max_length=64, help_text="SHA-256 of the float64 feature row(s)")
    probabilities = models.JSONField(help_text="class label -> probability")
    predicted_class = models.SmallIntegerField()
    signal = models.SmallIntegerField()
    confidence = models.FloatField()
    bar_time = models.DateTimeField(null=True, blank=True, help_text="start of the bar the prediction was made at")
    horizon = models.PositiveSmallIntegerField(null=True, blank=True, help_text="label horizon in bars")
    features = models.BinaryField(null=True, blank=True, help_text="feature row, float32 (features_encode)")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["decision_id", "version"], name="prediction_decision_version_uniq"),
            models.CheckConstraint(condition=Q(signal__in=[-1, 0, 1]), name="prediction_signal_valid"),
            models.CheckConstraint(condition=Q(predicted_class__in=[-1, 0, 1]), name="prediction_class_valid"),
            models.CheckConstraint(condition=Q(confidence__gte=0) & Q(confidence__lte=1), name="prediction_conf_range"),
            models.CheckConstraint(condition=~Q(decision_id=""), name="prediction_decision_nonempty"),
            models.CheckConstraint(
                condition=Q(horizon__isnull=True) | Q(horizon__gte=1), name="prediction_horizon_pos"
            ),
        ]
        indexes = [
            models.Index(fields=["version", "created_at"]),
            models.Index(fields=["version", "bar_time"], name="prediction_version_bar"),
        ]

    def __str__(self) -> str:
        return f"prediction {self.decision_id} by v{self.version_id}: {self.signal}"

    def feature_vector(self) -> np.ndarray | None:
        return features_decode(self.features)


class PredictionOutcome(models.Model):
    """What happened after a prediction: the realised forward return and label over its horizon, computed from
    the stored bars by the training's label code, whether its direction was right, and the net return its signal
    earned after costs (spot, long-only: long one unit of equity when the signal is +1, else flat).

    Written by `models_registry.outcomes` only. `pending` means the horizon has passed but a bar of the window
    is missing from the store (a gap, never guessed); `matured` outcomes are re-checked while their window is
    recent and revised (`revisions` + 1) when a late or corrected bar changes them. The version, bar time,
    horizon, signal and probabilities are copied from the prediction so live metrics read one table.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        MATURED = "matured"

    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="outcome")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="outcomes")
    symbol = models.CharField(max_length=32)
    bar_time = models.DateTimeField()
    horizon = models.PositiveSmallIntegerField()
    window_end = models.DateTimeField(help_text="bar_time + horizon bars: the start of the bar whose close exits")
    signal = models.SmallIntegerField()
    p_down = models.FloatField()
    p_flat = models.FloatField()
    p_up = models.FloatField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    pending_reason = models.CharField(max_length=200, blank=True, default="")
    forward_return = models.FloatField(null=True, blank=True, help_text="close[t + h] / close[t] - 1")
    realised_label = models.SmallIntegerField(null=True, blank=True, help_text="-1 / 0 / +1 by the dead zone")
    dead_zone = models.FloatField(null=True, blank=True)
    direction_hit = models.BooleanField(
        null=True, blank=True, help_text="sign(P(up) - P(down)) == sign(forward return); null when either is 0"
    )
    position = models.SmallIntegerField(default=0, help_text="1 when the signal was +1 (long), else 0 (spot)")
    round_trip_cost = models.FloatField(default=0.0, help_text="2 x (taker fee + slippage)")
    net_return = models.FloatField(null=True, blank=True, help_text="position x (forward return - round trip)")
    entry_close = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    exit_close = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    matured_at = models.DateTimeField(null=True, blank=True)
    revised_at = models.DateTimeField(null=True, blank=True)
    revisions = models.PositiveIntegerField(default=0)
    checked_at = models.DateTimeField()
    history = audited_history()

    class Meta:
        ordering = ["-bar_time", "-id"]
        indexes = [
            # covering: live metrics read a version's matured outcomes in (bar time, id) order with an index-only
            # scan (key columns rather than INCLUDE, which SQLite lacks); its prefix serves the outcome list
            models.Index(
                fields=[
                    "version",
                    "status",
                    "bar_time",
                    "id",
                    "p_down",
                    "p_flat",
                    "p_up",
                    "realised_label",
                    "forward_return",
                    "net_return",
                ],
                name="outcome_version_status_bar_cov",
            ),
            models.Index(fields=["status", "window_end"], name="outcome_status_window"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["pending", "matured"]), name="outcome_status_valid"),
            models.CheckConstraint(
                condition=Q(status="pending")
                | (
                    Q(forward_return__isnull=False)
                    & Q(realised_label__isnull=False)
                    & Q(net_return__isnull=False)
                    & Q(matured_at__isnull=False)
                ),
                name="outcome_matured_complete",
            ),
            models.CheckConstraint(
                condition=Q(realised_label__isnull=True) | Q(realised_label__in=[-1, 0, 1]), name="outcome_label_valid"
            ),
            models.CheckConstraint(condition=Q(signal__in=[-1, 0, 1]), name="outcome_signal_valid"),
            models.CheckConstraint(condition=Q(position__in=[0, 1]), name="outcome_position_valid"),
            models.CheckConstraint(condition=Q(horizon__gte=1), name="outcome_horizon_pos"),
        ]

    def __str__(self) -> str:
        return f"outcome of prediction {self.prediction_id} [{self.status}]"


# --- drift (models_registry.drift): thresholds per model, the reference of a version, one report per check -----


class DriftPolicy(models.Model):
    """Drift thresholds of one registered model: `thresholds` overrides `models_registry.drift.thresholds`'
    defaults key by key (a model without a policy uses the defaults)."""

    model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="drift_policy")
    thresholds = models.JSONField(default=dict, blank=True, help_text="overrides of the default drift thresholds")
    updated_at = models.DateTimeField(auto_now=True)
    history = audited_history()

    class Meta:
        verbose_name_plural = "drift policies"

    def __str__(self) -> str:
        return f"drift policy of {self.model_id}"


class DriftReference(models.Model):
    """What a version's live data is compared with, computed once from the stored bars of its training window:
    the feature rows (signature order), the training labels and forward returns (the version's own label
    rule), and the out-of-sample class probabilities of its purged walk-forward validation (re-run with the
    version's recorded configuration and seed). Arrays as compact little-endian bytes (`drift.reference`)."""

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="drift_reference")
    data_start = models.DateTimeField()
    data_end = models.DateTimeField()
    feature_names = models.JSONField()
    n_rows = models.PositiveIntegerField()
    features = models.BinaryField(help_text="n_rows x len(feature_names) float32")
    labels = models.BinaryField(help_text="training labels (int8) of the rows with a label")
    forward_returns = models.BinaryField(help_text="forward returns (float32) of the rows with a label")
    validation_proba = models.BinaryField(null=True, blank=True, help_text="out-of-sample n x 3 float32")
    validation_start = models.DateTimeField(null=True, blank=True)
    validation_end = models.DateTimeField(null=True, blank=True)
    validation_error = models.TextField(blank=True, default="", help_text="why no validation probabilities")
    built_at = models.DateTimeField()
    build_ms = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"drift reference of v{self.version_id} ({self.n_rows} rows)"


class DriftReport(models.Model):
    """One drift check of one version: every statistic with its test, threshold and verdict (features drifted
    first), the kinds detected, the windows compared, and whether the drift is confirmed (sustained over
    consecutive checks, or an online detector's change point), which is what a retraining trigger acts on."""

    class Status(models.TextChoices):
        OK = "ok"
        DRIFT = "drift"
        INSUFFICIENT = "insufficient_data"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        OPERATOR = "operator"

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="drift_reports")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="drift_reports")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    actor = models.CharField(max_length=200)
    as_of = models.DateTimeField(help_text="end of the current window (exclusive)")
    status = models.CharField(max_length=20, choices=Status.choices)
    kinds = models.JSONField(
        default=list, blank=True, help_text="drift kinds detected: feature/prediction/label/concept"
    )
    confirmed = models.BooleanField(default=False)
    confirmed_by = models.JSONField(default=list, blank=True, help_text="why confirmed: sustained and/or detectors")
    consecutive = models.PositiveIntegerField(default=0, help_text="consecutive checks with drift, this one included")
    change_point_at = models.DateTimeField(null=True, blank=True, help_text="bar time of the latest detector change")
    dataset_drift = models.BooleanField(default=False)
    drift_share = models.FloatField(null=True, blank=True)
    n_features = models.PositiveIntegerField(default=0)
    n_drifted = models.PositiveIntegerField(default=0)
    prediction_psi = models.FloatField(null=True, blank=True)
    windows = models.JSONField(default=dict, blank=True)
    thresholds = models.JSONField(default=dict, blank=True)
    features = models.JSONField(default=list, blank=True, help_text="per feature, drifted first")
    prediction = models.JSONField(default=dict, blank=True)
    label = models.JSONField(default=dict, blank=True)
    concept = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    alert_id = models.PositiveBigIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-as_of", "-id"]
        indexes = [models.Index(fields=["version", "as_of", "id"], name="driftreport_version_asof")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["ok", "drift", "insufficient_data", "failed"]), name="driftreport_status"
            ),
            models.CheckConstraint(condition=Q(trigger__in=["schedule", "operator"]), name="driftreport_trigger"),
            models.CheckConstraint(
                condition=Q(drift_share__isnull=True) | (Q(drift_share__gte=0) & Q(drift_share__lte=1)),
                name="driftreport_share_range",
            ),
            models.CheckConstraint(condition=Q(n_drifted__lte=F("n_features")), name="driftreport_drifted_le_n"),
            models.CheckConstraint(
                condition=~Q(confirmed=True) | Q(status="drift"), name="driftreport_confirmed_drift"
            ),
            models.CheckConstraint(condition=~Q(actor=""), name="driftreport_actor_nonempty"),
        ]

    def __str__(self) -> str:
        return f"drift check of v{self.version_id} at {self.as_of:%Y-%m-%d %H:%M} [{self.status}]"
