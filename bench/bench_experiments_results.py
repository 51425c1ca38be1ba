"""Benchmark: the results of an experiment with 100,000 outcomes per arm (issue 14). Target: under 200 ms
(sufficient statistics kept incrementally, so reading the results does not touch the outcomes).

    DATABASE_URL=postgres://... .venv/bin/python bench/bench_experiments_results.py [--outcomes 100000]
        [--treatments 1] [--repeat 20]

Sets up a throw-away test database (the configured DATABASE_URL's test database), a model whose v1 is the
champion, and a running shadow experiment of v2 (and more treatments with `--treatments`) against it; writes N
decisions per arm as the router and the maturation leave them (an observation, a registry prediction and its
matured outcome per arm and decision: `tests.experiments.support.synthetic_outcomes`, the control's net return
N(0, 1 %), each treatment's the control's plus N(0, 0.5 %), so no verdict stops the experiment), then folds them
with the real intake (`experiments.intake.experiments_intake`: timed, reported beside) and times, `--repeat`
times each: `experiments.results.experiment_results` (what the API, admin and /metrics read) and the whole
`GET /api/experiments/<id>/results/` through Django's test client (authentication, throttling, serializers,
JSON). Prints JSON with p50, p90 and max in ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")

CHUNK = 20_000


def _summary(timings: list[float]) -> dict[str, float]:
    ms = np.asarray(timings) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p90_ms": round(float(np.percentile(ms, 90)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=100_000, help="matured outcomes per arm")
    parser.add_argument("--treatments", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    import django

    django.setup()
    logging.disable(logging.WARNING)
    from django.conf import settings
    from django.db import connection

    from models_registry.artifacts import crypto

    settings.MODELS_REGISTRY_ARTIFACT_DIR = tempfile.mkdtemp(prefix="bench-experiments-")
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [crypto.new_key_spec("bench")]
    settings.MODELS_REGISTRY_PROMOTION_GATES = {}
    settings.GALFRIDAY_THROTTLE_USER = "1000000/min"
    settings.ALLOWED_HOSTS = ["*"]
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from django.contrib.auth import get_user_model
        from rest_framework.test import APIClient

        from experiments.intake import experiments_intake
        from experiments.models import ArmStatistics
        from experiments.results import experiment_results
        from tests.experiments.support import cheap_model, shadow_experiment, synthetic_outcomes

        model, versions = cheap_model(args.treatments + 1, promote=1)
        experiment = shadow_experiment(
            model, [v.version for v in versions[1:]], minimum_sample=10 * args.outcomes, burn_in=100
        )
        arms = list(experiment.arms.order_by("position"))
        rng = np.random.default_rng(1)
        started = time.perf_counter()
        for lo in range(0, args.outcomes, CHUNK):
            n = min(CHUNK, args.outcomes - lo)
            control = rng.normal(0.0, 0.01, n)
            synthetic_outcomes(experiment, arms[0], control.tolist(), start=lo)
            for arm in arms[1:]:
                synthetic_outcomes(experiment, arm, (control + rng.normal(0.0, 0.005, n)).tolist(), start=lo)
        write_s = time.perf_counter() - started

        started = time.perf_counter()
        intake = experiments_intake(experiment_id=experiment.pk)
        intake_s = time.perf_counter() - started
        counted = list(ArmStatistics.objects.filter(arm__in=arms).values_list("n_outcomes", flat=True))
        assert counted == [args.outcomes] * len(arms), counted
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # the steady state autovacuum keeps

        experiment_results(experiment.pk)  # warm
        timings = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            results = experiment_results(experiment.pk)
            timings.append(time.perf_counter() - t0)
        assert [a["n_outcomes"] for a in results["arms"]] == [args.outcomes] * len(arms)
        assert results["experiment"]["status"] == "running", results["decision"]

        print(json.dumps({"results": _summary(timings)}), file=sys.stderr, flush=True)
        client = APIClient()
        client.force_authenticate(get_user_model().objects.create_user(username="bench-reader"))
        url = f"/api/experiments/{experiment.pk}/results/"
        warm = client.get(url)
        assert warm.status_code == 200, (warm.status_code, warm.content[:500])
        api_timings = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            response = client.get(url)
            api_timings.append(time.perf_counter() - t0)
            assert response.status_code == 200
        try:
            load = os.getloadavg()
        except OSError:
            load = (float("nan"),) * 3
        print(
            json.dumps(
                {
                    "benchmark": "experiment results",
                    "database": connection.vendor,
                    "machine": f"{platform.machine()} {os.cpu_count()} cpus, load {load[0]:.1f}/{load[1]:.1f}",
                    "arms": len(arms),
                    "outcomes_per_arm": args.outcomes,
                    "series_points": len(results["series"]),
                    "results": {**_summary(timings), "repeat": args.repeat, "target_ms": 200},
                    "api_results": {**_summary(api_timings), "repeat": args.repeat, "bytes": len(response.content)},
                    "intake": {
                        "seconds": round(intake_s, 1),
                        "folded": intake.folded,
                        "pairs": intake.pairs,
                        "outcomes_per_second": round(intake.folded / intake_s) if intake_s else None,
                    },
                    "setup_write_seconds": round(write_s, 1),
                },
                indent=2,
            )
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
