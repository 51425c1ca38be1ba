"""Start a shadow (or split) test of model versions against the champion from the command line, through the same
services as the API and the admin (validated before anything is written, audited, with a reason).

    manage.py experiment_start --model btc-usd-1m-direction --treatment 8 --reason "retrained on December"
    manage.py experiment_start --model btc-usd-1m-direction --treatment 8 --treatment 9 --mode shadow \\
        --alpha 0.05 --minimum-sample 2000 --max-duration-days 14 --max-drawdown 0.05 --reason "..." --user ann
    manage.py experiment_start --model btc-usd-1m-direction --treatment 8 --mode split --allocation 80 \\
        --allocation 20 --reason "..."

The champion (the model's production version) is the control. `--allocation` (split): the control's percent
first, then each treatment's, summing to 100. `--draft` creates it without starting. Prints the experiment id and
where to read its results.
"""

from __future__ import annotations

import getpass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from core.audit import user_actor
from core.errors import ApplicationError
from experiments import services
from experiments.models import DEFAULT_BURN_IN, Metric, Mode


def _percent(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a percentage: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a percentage: {text!r}")
    return value


class Command(BaseCommand):
    help = "Create and start an experiment (shadow by default) of treatment versions against the model's champion."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, help="the registered model; its champion is the control")
        parser.add_argument(
            "--treatment", type=int, action="append", required=True, metavar="VERSION", help="repeat for more arms"
        )
        parser.add_argument("--mode", choices=Mode.values, default=Mode.SHADOW)
        parser.add_argument(
            "--allocation",
            type=_percent,
            action="append",
            default=[],
            metavar="PERCENT",
            help="split: the control's percent, then each treatment's (summing to 100)",
        )
        parser.add_argument("--name", help='default: "<model>: v<treatments> vs the champion"')
        parser.add_argument("--description", default="")
        parser.add_argument("--metric", choices=Metric.values, default=Metric.NET_RETURN, help="the primary metric")
        parser.add_argument("--alpha", type=float, default=0.05, help="in (0, 0.5)")
        parser.add_argument("--minimum-sample", type=int, default=1000)
        parser.add_argument("--max-duration-days", type=float, default=14.0)
        parser.add_argument("--burn-in", type=int, default=DEFAULT_BURN_IN)
        parser.add_argument("--mixing-variance", type=float, default=0.04)
        parser.add_argument("--max-drawdown", type=float, help="guardrail: a treatment's drawdown (fraction)")
        parser.add_argument("--max-error-rate", type=float, help="guardrail: a treatment's failed predictions")
        parser.add_argument("--max-latency-ms", type=float, help="guardrail: a treatment's p99 prediction latency")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--user", help="username acting (recorded as the actor); default: the command and OS user")
        parser.add_argument("--draft", action="store_true", help="create it without starting")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
            actor = user_actor(user)
        else:
            actor = f"command:experiment_start ({getpass.getuser()})"
        treatments: list[dict[str, Any]] = [{"version": v} for v in options["treatment"]]
        allocations: list[Decimal] = options["allocation"]
        control_share: Decimal | None = None
        if allocations:
            if options["mode"] != Mode.SPLIT:
                raise CommandError("--allocation is for --mode split (in shadow mode every arm sees every decision)")
            if len(allocations) != len(treatments) + 1:
                raise CommandError(
                    f"give {len(treatments) + 1} --allocation values: the control's, then one per --treatment"
                )
            control_share = allocations[0]
            for row, share in zip(treatments, allocations[1:], strict=True):
                row["allocation_percent"] = share
        if not 0 < options["max_duration_days"] < 3650:
            raise CommandError("--max-duration-days must be in (0, 3650)")
        versions = ", ".join(f"v{v}" for v in options["treatment"])
        name = options["name"] or f"{options['model']}: {versions} vs the champion"
        try:
            with transaction.atomic():  # a refused start leaves no draft behind
                experiment = services.experiment_create(
                    model_name=options["model"],
                    name=name,
                    description=options["description"],
                    treatments=treatments,
                    mode=options["mode"],
                    control_allocation_percent=control_share,
                    primary_metric=options["metric"],
                    alpha=options["alpha"],
                    minimum_sample=options["minimum_sample"],
                    maximum_duration=timedelta(days=options["max_duration_days"]),
                    burn_in=options["burn_in"],
                    mixing_variance=options["mixing_variance"],
                    max_treatment_drawdown=options["max_drawdown"],
                    max_error_rate=options["max_error_rate"],
                    max_latency_ms=options["max_latency_ms"],
                    actor=actor,
                    reason=options["reason"],
                )
                if not options["draft"]:
                    experiment = services.experiment_start(
                        experiment_id=experiment.pk, actor=actor, reason=options["reason"]
                    )
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        arms = ", ".join(
            f"{arm.name} v{arm.version.version}"
            for arm in experiment.arms.select_related("version").order_by("position")
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"experiment {experiment.pk} {experiment.status} ({experiment.mode}, {arms}); results: "
                f"/api/experiments/{experiment.pk}/results/ or the admin"
            )
        )
