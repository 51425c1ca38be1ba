from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from galfriday_site.alertmanager_config import TEMPLATE, AlertmanagerConfigError, render_from_settings


class Command(BaseCommand):
    help = (
        "Render deploy/alertmanager.yml with the notification settings (NOTIFY_*, EMAIL_*, GALFRIDAY_WATCHDOG_URL), "
        "so Alertmanager reaches the same people as the app. Prints to stdout, or writes --output with mode 0600 "
        "(the result holds secrets). Then: amtool check-config <file>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
        parser.add_argument("--template", type=Path, default=TEMPLATE, help="the template (default: %(default)s)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            rendered = render_from_settings(options["template"])
        except AlertmanagerConfigError as exc:
            raise CommandError(str(exc)) from exc
        for warning in rendered.warnings:
            self.stderr.write(f"warning: {warning}")
        text = rendered.as_yaml()
        output: Path | None = options["output"]
        if output is None:
            sys.stdout.write(text)
            return
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(output, 0o600)  # an existing file keeps its mode through O_CREAT
        self.stderr.write(f"wrote {output}")
