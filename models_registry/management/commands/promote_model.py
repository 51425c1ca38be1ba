"""Move a model version's stage or alias from the command line, through the same gated service as the API.

    manage.py promote_model btc-direction 7 --stage production --reason "beat v6 in the A/B test" --user ann
    manage.py promote_model btc-direction 7 --alias champion --reason "..." --user ann
    manage.py promote_model btc-direction 6 --stage archived --reason "superseded"

Overriding a failed gate (--override) needs --user naming a staff account with the override permission.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ApplicationError
from models_registry import services
from models_registry.models import Stage


class Command(BaseCommand):
    help = "Promote, archive or alias a model version (gated, recorded in the stage history)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("version", type=int)
        target = parser.add_mutually_exclusive_group()
        target.add_argument(
            "--stage", choices=[Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED], default=Stage.PRODUCTION
        )
        target.add_argument("--alias", help="point this alias (e.g. champion) at the version instead")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--override", action="store_true", help="promote despite failed gates")
        parser.add_argument("--user", help="username acting (needed for --override)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        actor = None if user else f"command:promote_model ({getpass.getuser()})"
        common = {
            "model_name": options["model"],
            "version": options["version"],
            "reason": options["reason"],
            "user": user,
            "actor": actor,
        }
        try:
            if options["alias"]:
                services.model_alias_set(**common, alias=options["alias"], override=options["override"])
                done = f"alias {options['alias']} -> v{options['version']}"
            elif options["stage"] == Stage.ARCHIVED:
                services.model_version_archive(**common)
                done = f"v{options['version']} archived"
            else:
                services.model_version_promote(**common, stage=options["stage"], override=options["override"])
                done = f"v{options['version']} -> {options['stage']}"
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(self.style.SUCCESS(f"{options['model']}: {done}"))
