"""Drift detection (issue 15, detection half), beside training in the model lifecycle.

- `statistics`: PSI, Jensen-Shannon, normed Wasserstein, KS (pure, no Django).
- `detectors`: river's ADWIN, Page-Hinkley and DDM on the direction-error stream (pure).
- `reference`: a version's reference (training-window features, labels, the served model on the validation
  period), built once from stored bars (`DriftReference`).
- `checks`: the service: `drift_check(version_id=...)` records one `DriftReport` (four kinds, confirmation, the
  drift alert); `drift_check_versions()` is what the schedule covers.
- `thresholds`, `services` (per-model `DriftPolicy`), `selectors`, `serializers`, `apis`, `admin`, `metrics`.

For a retraining trigger: a report with ``confirmed`` is drift worth acting on (``confirmed_by`` says whether it
was sustained over ``consecutive`` checks or a detector's change point); ``change_point_at``, when set, is where the
change is estimated to start (a retraining window can begin there); ``kinds`` and the report id are its lineage.
"""
