"""Signals the registry sends. Receivers (prediction caches, experiments, dashboards) connect here instead of
the registry importing them.

`model_stage_changed` is sent after the transaction that moved a stage or alias commits, with keyword
arguments `model_name` (str), `generation` (int: the model's new cache generation, or None if the cache was
unreachable) and `events` (list of dicts: id, kind, version, from_stage, to_stage, alias, actor, reason).
Other processes do not receive Django signals: they watch the cache key
`models_registry:generation:<model name>` (see `selectors.model_generation`), which is bumped at the same time.
"""

from django.dispatch import Signal

model_stage_changed = Signal()

outcomes_matured = Signal()
"""Sent after a maturation pass (`models_registry.outcomes.outcomes_mature`, whoever runs it) that matured or revised
outcomes, with keyword arguments `version_ids` (sorted list of the versions touched), `matured` and `revised`
(counts). The experiments app folds them into its statistics here (the registry never imports it)."""

challenger_registered = Signal()
"""Sent after the transaction that registered a retraining's challenger commits (`models_registry.retraining`), with
keyword arguments `model_name` (str), `run_id` (the RetrainingRun), `challenger` and `champion` (version numbers).
The experiments app starts the shadow experiment here and records its id with `retraining_experiment_record`."""
