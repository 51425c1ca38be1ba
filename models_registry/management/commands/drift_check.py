"""Run a drift check now and print its report (the same service as the schedule, the API and the admin).

manage.py drift_check btc-usd-1m-direction --model-version 3
manage.py drift_check btc-usd-1m-direction              # the production version
manage.py drift_check --all                              # every production and staging version
manage.py drift_check btc-usd-1m-direction --json
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import audit_actor
from core.errors import ApplicationError
from models_registry import selectors
from models_registry.drift.checks import drift_check, drift_check_versions
from models_registry.drift.serializers import report_document
from models_registry.models import DriftReport, Stage

ACTOR = "command:drift_check"


class Command(BaseCommand):
    help = "Check a model version for drift (feature, prediction, label, concept) and record a DriftReport."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", nargs="?", help="registered model name")
        parser.add_argument("--model-version", dest="model_version", type=int, help="default: the production one")
        parser.add_argument("--all", action="store_true", help="every production and staging version")
        parser.add_argument("--json", action="store_true", help="print the whole report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["all"]:
            version_ids = drift_check_versions()
        else:
            name = options["model"]
            if not name:
                raise CommandError("name a model (or use --all)")
            if selectors.registered_model_get(name=name) is None:
                raise CommandError(f"model {name!r} is not registered")
            number = options["model_version"]
            if number is None:
                found = selectors.model_version_list(model_name=name).filter(stage=Stage.PRODUCTION).first()
                if found is None:
                    raise CommandError(f"model {name!r} has no production version: pass --model-version")
            else:
                found = selectors.model_version_get(model_name=name, version=number)
                if found is None:
                    raise CommandError(f"model {name!r} has no version {number}")
            version_ids = [found.pk]
        reports: list[DriftReport] = []
        with audit_actor(ACTOR):
            for version_id in version_ids:
                try:
                    report = drift_check(version_id=version_id, trigger=DriftReport.Trigger.OPERATOR, actor=ACTOR)
                except ApplicationError as exc:
                    raise CommandError(f"{exc.code}: {exc.message}") from exc
                if report is None:
                    self.stderr.write(f"version id {version_id}: a check is already running, skipped")
                    continue
                reports.append(report)
        if options["json"]:
            self.stdout.write(json.dumps([report_document(r) for r in reports], indent=2))
            return
        for r in reports:
            line = (
                f"{r.model.name} v{r.version.version}: {r.status}"
                + (f" ({', '.join(r.kinds)})" if r.kinds else "")
                + (f", confirmed by {'; '.join(r.confirmed_by)}" if r.confirmed else "")
                + (
                    f", drift share {r.drift_share:.2f} ({r.n_drifted}/{r.n_features})"
                    if r.drift_share is not None
                    else ""
                )
                + (f", prediction PSI {r.prediction_psi:.3f}" if r.prediction_psi is not None else "")
                + f" [report {r.pk}]"
            )
            self.stdout.write(line)
            if r.error:
                self.stdout.write(f"  error: {r.error}")
