"""Make sure a symbol's default model has a production version (idempotent):

    manage.py bootstrap_model --symbol BTC/USD

Backfills 1-minute history from the configured exchange (the simulator by default), trains, registers and
promotes through the gates; a version that fails them goes to staging and the output says why. Prints JSON.
Exit status 0 whatever the outcome (including too little history); the JSON `status` tells which.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import audit_actor
from core.errors import ApplicationError
from models_registry.bootstrap import ACTOR, bootstrap_model


class Command(BaseCommand):
    help = "Backfill, train, register and promote a first model for a symbol when none is in production."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", default="BTC/USD")
        parser.add_argument("--no-backfill", action="store_true", help="train on what the store already has")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with audit_actor(ACTOR):
                result = bootstrap_model(symbol=options["symbol"], backfill=not options["no_backfill"])
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str))
