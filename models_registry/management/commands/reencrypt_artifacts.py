"""Finish an artifact key rotation: re-encrypt every registered artifact under the newest key.

    # 1. put the new key first in MODELS_REGISTRY_ARTIFACT_KEYS, keep the old ones; restart the workers
    manage.py reencrypt_artifacts --dry-run     # how many an older key still encrypts
    manage.py reencrypt_artifacts               # rewrite them (atomic per artifact; safe to run again)
    # 2. when it reports "reencrypted": 0 and no failures, remove the old key

Prints a JSON report; exits non-zero when an artifact could not be re-encrypted (missing, or failing its check).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry import services


class Command(BaseCommand):
    help = "Re-encrypt registered model artifacts under the newest artifact key (key rotation)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count, do not rewrite")

    def handle(self, *args: Any, **options: Any) -> None:
        report = services.artifacts_reencrypt(dry_run=options["dry_run"], actor="command:reencrypt_artifacts")
        self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        if report["failed"]:
            raise CommandError(f"{len(report['failed'])} artifact(s) could not be re-encrypted; see the report")
