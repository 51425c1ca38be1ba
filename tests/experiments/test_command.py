"""`manage.py experiment_start`: a shadow (or split) test started from the command line through the services,
with clear errors and nothing written when refused."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from experiments.models import Arm, Experiment, ExperimentEvent
from tests.experiments.interface_support import model_with_champion
from tests.models_registry.factories import registry_settings  # noqa: F401

pytestmark = [pytest.mark.usefixtures("registry_settings"), pytest.mark.django_db, pytest.mark.services("postgres")]


@pytest.fixture
def model_name() -> str:
    return model_with_champion()


def run(*args: str) -> str:
    out = StringIO()
    call_command("experiment_start", *args, stdout=out)
    return out.getvalue()


def nothing_written() -> None:
    assert not Experiment.objects.exists()
    assert not Arm.objects.exists()
    assert not ExperimentEvent.objects.exists()


def test_a_shadow_test_starts_from_the_command_line(model_name: str) -> None:
    out = run("--model", model_name, "--treatment", "2", "--treatment", "3", "--reason", "retrained on November")
    experiment = Experiment.objects.get()
    assert f"experiment {experiment.pk} running (shadow, control v1, treatment-1 v2, treatment-2 v3)" in out
    assert f"/api/experiments/{experiment.pk}/results/" in out
    assert (experiment.mode, experiment.status, experiment.alpha, experiment.minimum_sample) == (
        "shadow",
        "running",
        0.05,
        1000,
    )
    assert experiment.name == f"{model_name}: v2, v3 vs the champion"
    events = list(experiment.events.order_by("at", "id").values_list("action", "actor", "reason"))
    assert [e[0] for e in events] == ["create", "start"]
    assert all(
        actor.startswith("command:experiment_start (") and reason == "retrained on November"
        for _, actor, reason in events
    )


def test_options_reach_the_experiment_and_a_user_is_the_actor(model_name: str, staff_user) -> None:  # type: ignore[no-untyped-def]
    run(
        "--model", model_name, "--treatment", "2", "--mode", "split", "--allocation", "80", "--allocation", "20",
        "--name", "v2 on a fifth", "--metric", "hit_rate", "--alpha", "0.01", "--minimum-sample", "500",
        "--max-duration-days", "7", "--max-drawdown", "0.05", "--max-error-rate", "0.02", "--max-latency-ms", "250",
        "--reason", "split test", "--user", "staff",
    )  # fmt: skip
    experiment = Experiment.objects.get()
    assert (experiment.name, experiment.mode, experiment.primary_metric, experiment.alpha) == (
        "v2 on a fifth",
        "split",
        "hit_rate",
        0.01,
    )
    assert experiment.maximum_duration.days == 7
    assert (experiment.max_treatment_drawdown, experiment.max_error_rate, experiment.max_latency_ms) == (
        0.05,
        0.02,
        250,
    )
    assert [str(a.allocation_percent) for a in experiment.arms.order_by("position")] == ["80.00", "20.00"]
    assert experiment.created_by == "user:staff"


def test_draft_creates_without_starting(model_name: str) -> None:
    run("--model", model_name, "--treatment", "2", "--reason", "later", "--draft")
    assert Experiment.objects.get().status == "draft"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "ghost", "--treatment", "2"], "unknown_model: model 'ghost' is not registered"),
        (["--treatment", "9"], "unknown_version"),
        (["--treatment", "1"], "treatment_is_control"),
        (["--treatment", "2", "--alpha", "0.5"], "alpha_out_of_range"),
        (["--treatment", "2", "--mode", "split", "--allocation", "50", "--allocation", "40"], "allocation_not_100"),
        (["--treatment", "2", "--mode", "split"], "allocation_not_100"),
        (["--treatment", "2", "--allocation", "50", "--allocation", "50"], "--allocation is for --mode split"),
        (["--treatment", "2", "--mode", "split", "--allocation", "100"], "give 2 --allocation values"),
        (["--treatment", "2", "--max-duration-days", "0"], "--max-duration-days"),
        (["--treatment", "2", "--user", "nobody"], "no user 'nobody'"),
    ],
)
def test_refusals_are_clear_and_write_nothing(model_name: str, args: list[str], message: str) -> None:
    full = args if "--model" in args else ["--model", model_name, *args]
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(*full, "--reason", "try")
    nothing_written()


def test_a_second_running_experiment_is_refused_and_a_refused_start_leaves_no_draft(model_name: str) -> None:
    run("--model", model_name, "--treatment", "2", "--reason", "first")
    with pytest.raises(CommandError, match="experiment_already_running"):
        run("--model", model_name, "--treatment", "3", "--reason", "second")
    assert Experiment.objects.count() == 1


def test_missing_required_arguments_are_usage_errors() -> None:
    with pytest.raises(CommandError, match="--treatment"):
        run("--model", "x", "--reason", "r")
    with pytest.raises(CommandError, match="--reason"):
        run("--model", "x", "--treatment", "2")
