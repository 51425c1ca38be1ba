"""Retraining: the loop that closes drift detection. A trigger (confirmed drift, a schedule, an operator) starts one
run per model (single-flight); the run trains on a recent window with the registry's training, purged walk-forward
evaluation and gates, registers a challenger with its lineage, and hands it to a shadow experiment (through the
`challenger_registered` signal: the registry never imports experiments). Promotion happens only through the gates
plus the experiment's win; a promoted version is watched on probation and rolled back when it does worse.

Modules: `models` (records), `services` (triggers, the run, its conclusion), `scan` (confirmed drift and
schedules become triggers), `probation` (the watch and the rollback), `selectors` (reads, the lifecycle
timeline), `tasks` (Celery, `lifecycle` queue), `apis`, `admin`; `experiments.retraining` is the other half.
"""
