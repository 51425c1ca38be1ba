"""Print a model's stage and alias history, or which version served production at an instant.

manage.py model_history btc-direction
manage.py model_history btc-direction --version 7 --json
manage.py model_history btc-direction --at 2025-03-01T12:00:00Z
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from models_registry import selectors


class Command(BaseCommand):
    help = "Stage and alias history of a registered model (who, when, why), or production at a time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("--model-version", dest="model_version", type=int, help="only this version")
        parser.add_argument("--at", help="ISO 8601 instant with a time zone: print the version in production then")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["model"]
        if selectors.registered_model_get(name=name) is None:
            raise CommandError(f"model {name!r} is not registered")
        if options["at"]:
            at = parse_datetime(options["at"])
            if at is None or at.tzinfo is None:
                raise CommandError(f"--at needs an ISO 8601 instant with a time zone, got {options['at']!r}")
            found = selectors.production_version_at(model_name=name, at=at)
            version = found.version if found else None
            if options["json"]:
                self.stdout.write(json.dumps({"model": name, "at": at.isoformat(), "version": version}))
            else:
                self.stdout.write(f"{name} at {at.isoformat()}: " + (f"v{version}" if version else "no production"))
            return
        rows = [
            {
                "at": e.at.isoformat(),
                "kind": e.kind,
                "version": e.version.version,
                "from_stage": e.from_stage,
                "to_stage": e.to_stage,
                "alias": e.alias,
                "previous_version": e.previous_version.version if e.previous_version else None,
                "actor": e.actor,
                "reason": e.reason,
                "gate_overridden": e.gate_overridden,
            }
            for e in selectors.stage_event_list(model_name=name, version=options["model_version"])
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            if row["kind"] == "stage":
                what = f"v{row['version']} {row['from_stage']} -> {row['to_stage']}"
            elif row["kind"] == "alias_set":
                what = f"@{row['alias']} -> v{row['version']}" + (
                    f" (was v{row['previous_version']})" if row["previous_version"] else ""
                )
            else:
                what = f"@{row['alias']} removed (was v{row['version']})"
            flag = " [GATE OVERRIDDEN]" if row["gate_overridden"] else ""
            self.stdout.write(f"{row['at']}  {what}{flag}  by {row['actor']}: {row['reason']}")
