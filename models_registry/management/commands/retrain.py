"""Trigger a model's retraining as an operator (single-flight: a running retraining is joined), or list its runs.

manage.py retrain btc-usd-1m-direction --reason "regime changed after the halving"
manage.py retrain btc-usd-1m-direction --reason "now" --sync     # train here instead of on the lifecycle worker
manage.py retrain btc-usd-1m-direction --list --json
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import audit_actor
from core.errors import ApplicationError
from models_registry.retraining.models import TriggerKind
from models_registry.retraining.selectors import retraining_run_list
from models_registry.retraining.services import retraining_run, retraining_trigger

ACTOR = "command:retrain"


class Command(BaseCommand):
    help = "Retrain a registered model now (an operator's trigger, with a reason), or list its retraining runs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("--reason", help="why the model should retrain now (required to trigger)")
        parser.add_argument("--sync", action="store_true", help="run the training in this process and wait")
        parser.add_argument("--list", action="store_true", help="list the model's retraining runs instead")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["model"]
        if options["list"]:
            rows = [
                {
                    "run": r.pk,
                    "status": r.status,
                    "trigger": r.trigger,
                    "parent": r.parent.version if r.parent else None,
                    "challenger": r.challenger.version if r.challenger else None,
                    "experiment": r.experiment_id,
                    "created_at": r.created_at.isoformat(),
                    "outcome": r.outcome,
                }
                for r in retraining_run_list(model_name=name)
            ]
            if options["json"]:
                self.stdout.write(json.dumps(rows))
            for row in [] if options["json"] else rows:
                self.stdout.write(
                    f"run {row['run']} [{row['status']}] {row['trigger']} v{row['parent']} -> "
                    f"v{row['challenger']} {row['created_at']} {row['outcome']}"
                )
            return
        if not (options["reason"] or "").strip():
            raise CommandError("--reason is required: say why the model should retrain now")
        try:
            with audit_actor(ACTOR):
                result = retraining_trigger(
                    model_name=name, kind=TriggerKind.OPERATOR, reason=options["reason"], actor=ACTOR
                )
                out = result.as_dict()
                if options["sync"] and result.run is not None:
                    run = retraining_run(run_id=result.run.pk)
                    out |= {"status": run.status if run else None, "outcome": run.outcome if run else ""}
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if options["json"]:
            self.stdout.write(json.dumps(out))
        else:
            verb = "started" if out["started"] else "joined"
            status = f"[{out['status']}] {out.get('outcome', '')}"
            self.stdout.write(f"{name}: retraining run {out['run_id']} {verb} {status}")
