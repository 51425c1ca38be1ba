from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.audit import audit_actor
from trading.paper import paper_account_seed, parse_balances


class Command(BaseCommand):
    help = (
        "Give a new paper account its starting balances (GALFRIDAY_PAPER_BALANCES). Does nothing when balances exist."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--balances", default=None, help="e.g. USD=100000,BTC=0.5 (default: the setting)")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.TRADING_MODE != "paper":
            raise CommandError("TRADING_MODE is not paper: a live account's balances come from the exchange")
        try:
            balances = parse_balances(options["balances"]) if options["balances"] is not None else None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        with audit_actor("command:seed_paper_account", reason="paper account starting balances"):
            seeded = paper_account_seed(balances=balances)
        if seeded:
            self.stdout.write("paper account: " + ", ".join(f"{a} {v}" for a, v in seeded.items()))
        else:
            self.stdout.write("paper account already has balances; nothing changed")
