"""Stages and aliases: gated promotion through one service, atomic swaps, overrides only by permitted staff with
a reason, an append-only history that answers "which version served production at time T", audit records,
and cache notification after commit."""

from __future__ import annotations

import threading
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from core.audit import audit_trail
from core.errors import ConflictError, NotFoundError
from models_registry import selectors
from models_registry.models import ModelAlias, ModelVersion, StageEvent
from models_registry.services import (
    PromotionGateFailed,
    RegistryPermissionDenied,
    model_alias_remove,
    model_alias_set,
    model_version_archive,
    model_version_promote,
)
from models_registry.signals import model_stage_changed
from tests.models_registry.factories import (
    make_model,
    make_version,
    registry_settings,  # noqa: F401
)

pytestmark = pytest.mark.usefixtures("registry_settings")

WEAK = {"sharpe": 0.4, "max_drawdown": 0.35}


@pytest.fixture
def gate_admin(django_user_model):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user(username="risk-lead", password="pw-risk-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="override_promotion_gate"))
    return django_user_model.objects.get(pk=user.pk)  # fresh: no cached permissions


def snapshot(model_name: str) -> tuple[Any, ...]:
    return (
        sorted(ModelVersion.objects.filter(model__name=model_name).values_list("version", "stage")),
        sorted(ModelAlias.objects.filter(model__name=model_name).values_list("name", "version__version")),
        StageEvent.objects.count(),
        ModelVersion.history.count(),
        ModelAlias.history.count(),
        selectors.model_generation(model_name=model_name),
    )


@pytest.mark.django_db
def test_promotion_swaps_production_atomically_and_records_both_moves(staff_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    v1, v2 = make_version(model), make_version(model)
    model_version_promote(model_name=model.name, version=1, reason="first model", user=staff_user)
    model_version_promote(model_name=model.name, version=2, reason="better sharpe", user=staff_user)

    assert list(ModelVersion.objects.filter(model=model).order_by("version").values_list("stage", flat=True)) == [
        "archived",
        "production",
    ]
    assert selectors.production_version(model_name=model.name) == v2
    events = list(selectors.stage_event_list(model_name=model.name))
    assert [(e.version.version, e.from_stage, e.to_stage, e.actor) for e in events] == [
        (1, "none", "production", "user:staff"),
        (1, "production", "archived", "user:staff"),
        (2, "none", "production", "user:staff"),
    ]
    assert events[1].reason == "replaced in production by v2: better sharpe"
    assert events[1].at == events[2].at
    assert all(r["passed"] for r in events[2].gate_report)
    assert len(events[2].gate_report) == 2
    assert v1.pk != v2.pk


@pytest.mark.django_db
def test_failed_gate_changes_nothing(staff_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    make_version(model)
    make_version(model, metrics=WEAK)
    make_version(model, metrics={})
    model_version_promote(model_name=model.name, version=1, reason="baseline", user=staff_user)
    before = snapshot(model.name)
    with pytest.raises(
        PromotionGateFailed, match="max_drawdown = 0.35, needs <= 0.2; sharpe = 0.4, needs >= 1"
    ) as refused:
        model_version_promote(model_name=model.name, version=2, reason="try it", user=staff_user)
    assert {g["name"]: g["passed"] for g in refused.value.details["gates"]} == {
        "max:max_drawdown": False,
        "min:sharpe": False,
    }
    with pytest.raises(PromotionGateFailed, match="'sharpe' was not recorded"):
        model_version_promote(model_name=model.name, version=3, reason="no metrics", user=staff_user)
    assert snapshot(model.name) == before
    assert selectors.production_version(model_name=model.name).version == 1  # type: ignore[union-attr]


@pytest.mark.django_db
def test_override_without_permission_is_refused(staff_user, plain_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    make_version(model, metrics=WEAK)
    before = snapshot(model.name)
    reason = "market regime changed, accepting lower sharpe"
    with pytest.raises(RegistryPermissionDenied, match="override promotion gate"):
        model_version_promote(model_name=model.name, version=1, reason=reason, user=staff_user, override=True)
    with pytest.raises(RegistryPermissionDenied, match="staff"):
        model_version_promote(model_name=model.name, version=1, reason=reason, user=plain_user, override=True)
    with pytest.raises(RegistryPermissionDenied):  # a system actor never overrides
        model_version_promote(model_name=model.name, version=1, reason=reason, actor="celery:auto", override=True)
    assert snapshot(model.name) == before


@pytest.mark.django_db
def test_override_by_permitted_staff_with_reason_is_recorded(gate_admin) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    make_version(model, metrics=WEAK)
    with pytest.raises(Exception, match="written reason"):
        model_version_promote(model_name=model.name, version=1, reason="ok", user=gate_admin, override=True)
    assert not StageEvent.objects.exists()

    reason = "regime change; sharpe gate is stale, approved by risk"
    model_version_promote(model_name=model.name, version=1, reason=reason, user=gate_admin, override=True)
    event = StageEvent.objects.get()
    assert (event.to_stage, event.actor, event.reason, event.gate_overridden) == (
        "production",
        "user:risk-lead",
        reason,
        True,
    )
    assert [g["passed"] for g in event.gate_report] == [False, False]


@pytest.mark.django_db
def test_production_at_time_t_across_several_promotions(staff_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    for _ in range(3):
        make_version(model)
    name = model.name
    t0 = timezone.now()
    model_version_promote(model_name=name, version=1, reason="v1 live", user=staff_user)
    t1 = timezone.now()
    model_version_promote(model_name=name, version=2, reason="v2 live", user=staff_user)
    model_version_promote(model_name=name, version=3, stage="staging", reason="v3 to staging", user=staff_user)
    t2 = timezone.now()
    model_version_promote(model_name=name, version=3, reason="v3 live", user=staff_user)
    t3 = timezone.now()
    model_version_archive(model_name=name, version=3, reason="pulled: data issue", user=staff_user)
    t4 = timezone.now()
    model_version_promote(model_name=name, version=1, reason="roll back to v1", user=staff_user)
    t5 = timezone.now()

    def at(t: Any) -> int | None:
        found = selectors.production_version_at(model_name=name, at=t)
        return found.version if found else None

    assert [at(t) for t in (t0, t1, t2, t3, t4, t5)] == [None, 1, 2, 3, None, 1]
    for event in StageEvent.objects.filter(to_stage="production"):  # at the instant of a swap: the new version
        assert at(event.at) == event.version.version


@pytest.mark.django_db
def test_stage_and_alias_changes_leave_audit_records_with_actor_and_reason(staff_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    v1, _ = make_version(model), make_version(model)
    model_version_promote(model_name=model.name, version=1, stage="staging", reason="shadow first", user=staff_user)
    model_alias_set(model_name=model.name, alias="challenger", version=1, reason="A/B arm", user=staff_user)
    model_alias_set(model_name=model.name, alias="challenger", version=2, reason="newer arm", actor="experiments:7")
    alias = ModelAlias.objects.get(name="challenger")
    model_alias_remove(model_name=model.name, alias="challenger", reason="test over", user=staff_user)

    trail = audit_trail(v1)
    assert [(e.action, e.actor, e.reason) for e in trail] == [
        ("created", "celery:models_registry.train", "version registered"),
        ("changed", "user:staff", "shadow first"),
    ]
    assert trail[1].changes["stage"] == ("none", "staging")
    alias_trail = audit_trail(alias)
    assert [(e.action, e.actor, e.reason) for e in alias_trail] == [
        ("created", "user:staff", "A/B arm"),
        ("changed", "experiments:7", "newer arm"),
        ("deleted", "user:staff", "test over"),
    ]
    assert [
        (e.kind, e.alias, e.version.version, e.previous_version.version if e.previous_version else None)
        for e in selectors.stage_event_list(model_name=model.name)
    ][1:] == [
        ("alias_set", "challenger", 1, None),
        ("alias_set", "challenger", 2, 1),
        ("alias_removed", "challenger", 2, 2),
    ]


@pytest.mark.django_db
def test_champion_alias_passes_the_production_gates(staff_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    make_version(model, metrics=WEAK)
    make_version(model)
    with pytest.raises(PromotionGateFailed):
        model_alias_set(model_name=model.name, alias="champion", version=1, reason="weak one", user=staff_user)
    model_alias_set(model_name=model.name, alias="challenger", version=1, reason="ungated alias", user=staff_user)
    model_alias_set(model_name=model.name, alias="champion", version=2, reason="strong one", user=staff_user)
    assert selectors.version_by_alias(model_name=model.name, alias="champion").version == 2  # type: ignore[union-attr]


@pytest.mark.django_db
def test_bad_requests_are_clear_errors_and_change_nothing(staff_user, plain_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    make_version(model)
    model_version_archive(model_name=model.name, version=1, reason="retired", user=staff_user)
    before = snapshot(model.name)
    with pytest.raises(NotFoundError, match="not registered"):
        model_version_promote(model_name="ghost", version=1, reason="x", user=staff_user)
    with pytest.raises(NotFoundError, match="no version 7"):
        model_version_promote(model_name=model.name, version=7, reason="x", user=staff_user)
    with pytest.raises(Exception, match="reason is required"):
        model_version_promote(model_name=model.name, version=1, reason="  ", user=staff_user)
    with pytest.raises(RegistryPermissionDenied):
        model_version_promote(model_name=model.name, version=1, reason="me", user=plain_user)
    with pytest.raises(ConflictError, match="already archived"):
        model_version_archive(model_name=model.name, version=1, reason="again", user=staff_user)
    with pytest.raises(ConflictError, match="archived"):
        model_alias_set(model_name=model.name, alias="challenger", version=1, reason="x", user=staff_user)
    with pytest.raises(Exception, match="invalid alias"):
        model_alias_set(model_name=model.name, alias="Bad Alias!", version=1, reason="x", user=staff_user)
    assert snapshot(model.name) == before


@pytest.mark.django_db
def test_signal_and_cache_generation_follow_the_commit(staff_user, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    make_version(model)
    make_version(model, metrics=WEAK)
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    model_stage_changed.connect(receiver)
    try:
        start = selectors.model_generation(model_name=model.name)
        with django_capture_on_commit_callbacks(execute=False) as pending:
            model_version_promote(model_name=model.name, version=1, reason="go", user=staff_user)
        assert received == []
        assert selectors.model_generation(model_name=model.name) == start
        for callback in pending:
            callback()
        assert selectors.model_generation(model_name=model.name) == start + 1
        assert received[0]["model_name"] == model.name
        assert received[0]["generation"] == start + 1
        assert [(e["version"], e["to_stage"]) for e in received[0]["events"]] == [(1, "production")]

        with django_capture_on_commit_callbacks(execute=True) as pending, pytest.raises(PromotionGateFailed):
            model_version_promote(model_name=model.name, version=2, reason="weak", user=staff_user)
        assert pending == []
        assert len(received) == 1
    finally:
        model_stage_changed.disconnect(receiver)


@pytest.mark.django_db
def test_management_commands_promote_and_show_history(staff_user, gate_admin) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    make_version(model)
    make_version(model, metrics=WEAK)
    out = StringIO()
    call_command("promote_model", model.name, "1", "--reason", "first live", "--user", "staff", stdout=out)
    assert "v1 -> production" in out.getvalue()
    with pytest.raises(CommandError, match="promotion_gate_failed"):
        call_command("promote_model", model.name, "2", "--reason", "weak", stdout=StringIO())
    with pytest.raises(CommandError, match="permission_denied"):
        call_command("promote_model", model.name, "2", "--reason", "weak but needed", "--override", stdout=StringIO())
    call_command(
        "promote_model",
        model.name,
        "2",
        "--reason",
        "approved exception by risk",
        "--override",
        "--user",
        "risk-lead",
        stdout=StringIO(),
    )
    call_command(
        "promote_model",
        model.name,
        "2",
        "--alias",
        "champion",
        "--reason",
        "follow prod",
        "--override",
        "--user",
        "risk-lead",
        stdout=StringIO(),
    )
    out = StringIO()
    call_command("model_history", model.name, stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert "v1 none -> production  by user:staff: first live" in lines[0]
    assert "v2 none -> production [GATE OVERRIDDEN]  by user:risk-lead" in lines[2]
    assert "@champion -> v2" in lines[3]
    out = StringIO()
    call_command("model_history", model.name, "--at", timezone.now().isoformat(), stdout=out)
    assert out.getvalue().strip().endswith(": v2")
    with pytest.raises(CommandError, match="not registered"):
        call_command("model_history", "ghost", stdout=StringIO())


@pytest.mark.services("postgres")
@pytest.mark.django_db
def test_stage_history_is_append_only_in_the_database(staff_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    make_version(model)
    model_version_promote(model_name=model.name, version=1, reason="live", user=staff_user)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        StageEvent.objects.update(reason="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        StageEvent.objects.all().delete()
    assert StageEvent.objects.get().reason == "live"


@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_readers_never_see_zero_or_two_production_versions_during_swaps(staff_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model()
    for _ in range(3):
        make_version(model)
    model_version_promote(model_name=model.name, version=1, reason="start", user=staff_user)
    swaps = 45
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not done.is_set():
                seen.append(ModelVersion.objects.filter(model=model, stage="production").count())
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    def writer() -> None:
        try:
            for i in range(swaps):
                model_version_promote(
                    model_name=model.name, version=(i + 1) % 3 + 1, reason=f"swap {i}", user=staff_user
                )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()
            connection.close()

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writing = threading.Thread(target=writer)
    for t in [*readers, writing]:
        t.start()
    for t in [writing, *readers]:
        t.join(timeout=120)
    assert errors == []
    assert len(seen) > swaps  # the readers really ran alongside the swaps
    assert set(seen) == {1}
    assert StageEvent.objects.filter(to_stage="production").count() == swaps + 1
