"""Train a model on stored 1-minute bars, evaluate it walk-forward and register it (same service as the task).

    manage.py train_model --symbol BTC/USD --start 2024-03-01T00:00Z --end 2024-03-08T00:00Z --model hgb
    manage.py train_model --symbol BTC/USD --start ... --end ... --model logreg --horizon 30 --no-register
    manage.py train_model ... --backfill      # first pull what the exchange still has into the store

Re-running with the same --request-id does not register a second version. Prints the result as JSON.
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import audit_actor
from core.errors import ApplicationError
from models_registry.history import HistoryError, backfill_history
from models_registry.training import (
    DEFAULT_HORIZON,
    MODEL_KINDS,
    TrainingConfig,
    TrainingOutcome,
    min_training_samples,
    train_model,
)


def _moment(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"not an ISO 8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _dead_zone(text: str | None) -> float | str | None:
    if text is None or text == "auto":
        return text
    try:
        return float(text)
    except ValueError as exc:
        raise CommandError(f"--dead-zone must be a number or 'auto', got {text!r}") from exc


class Command(BaseCommand):
    help = "Train, evaluate (purged walk-forward) and register a model version from stored bars."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--start", required=True, type=_moment, help="ISO 8601, UTC if no offset")
        parser.add_argument("--end", required=True, type=_moment, help="ISO 8601 (exclusive)")
        parser.add_argument("--model", choices=MODEL_KINDS, default="hgb")
        parser.add_argument("--horizon", type=int, default=DEFAULT_HORIZON, help="label horizon in bars")
        parser.add_argument("--dead-zone", default=None, help="label dead zone (fraction) or 'auto'")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--trials", type=int, default=1, help="configurations tried (for the DSR)")
        parser.add_argument("--model-name", default=None, help="registered model (default: from the symbol)")
        parser.add_argument("--request-id", default=None, help="idempotency key (default: a new one)")
        parser.add_argument("--register", action=argparse.BooleanOptionalAction, default=True)
        parser.add_argument("--backfill", action="store_true", help="backfill exchange history first")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = f"command:train_model ({getpass.getuser()})"
        try:
            config = TrainingConfig(
                model=options["model"],
                horizon=options["horizon"],
                seed=options["seed"],
                n_splits=options["folds"],
                dead_zone=_dead_zone(options["dead_zone"]),  # type: ignore[arg-type]
                min_samples=min_training_samples(),
            )
            with audit_actor(actor):
                if options["backfill"]:
                    done = backfill_history(symbol=options["symbol"], start=options["start"], end=options["end"])
                    self.stderr.write(f"backfill: {json.dumps(done.as_dict())}")
                result = train_model(
                    symbol=options["symbol"],
                    start=options["start"],
                    end=options["end"],
                    config=config,
                    model_name=options["model_name"],
                    request_id=options["request_id"],
                    register=options["register"],
                    n_trials=options["trials"],
                    actor=actor,
                )
        except (ApplicationError, HistoryError) as exc:
            raise CommandError(str(getattr(exc, "message", exc))) from exc
        if isinstance(result, TrainingOutcome):
            out = {"registered": False, "metrics": result.metrics, "hyperparameters": result.hyperparameters}
        else:
            out = {"registered": True, **result.as_dict()}
        self.stdout.write(json.dumps(out, indent=2, sort_keys=True, default=str))
