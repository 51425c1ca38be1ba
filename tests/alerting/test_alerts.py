"""The alert service (trading.alerts): dedup by fingerprint, states, silences, audit, and the after-commit
`alert_changed` signal and `system` group event."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

from core.audit import audit_trail
from core.errors import ApplicationError, ConflictError, NotFoundError
from trading import alerts
from trading.models import Alert, AlertSilence

# The signal and the event go out after commit, which a test's transaction never reaches: `committed()` runs what a
# commit would (the on-commit callbacks registered inside it). The test of the after-commit timing itself, and the
# one with several connections, commit for real (transactional: slower, a flush after each).
pytestmark = pytest.mark.django_db


@contextmanager
def committed() -> Iterator[None]:
    with TestCase.captureOnCommitCallbacks(execute=True):
        yield


@pytest.fixture
def changes() -> Any:
    seen: list[tuple[int, str, bool]] = []

    def receiver(sender: Any, alert_id: int, change: str, silenced: bool, **kwargs: Any) -> None:
        seen.append((alert_id, change, silenced))

    alerts.alert_changed.connect(receiver, weak=False)
    yield seen
    alerts.alert_changed.disconnect(receiver)


def fire(fingerprint: str | None = None, **kwargs: Any) -> Alert:
    params: dict[str, Any] = {"kind": "drift", "severity": "warning", "message": "drift on v1"} | kwargs
    with committed():
        return alerts.alert_raise(fingerprint=fingerprint, **params)


def test_same_fingerprint_updates_one_open_alert_with_count_and_last_seen(changes) -> None:  # type: ignore[no-untyped-def]
    first = fire("drift:version:1", context={"n": 1, "first": True})
    second = fire("drift:version:1", message="drift on v1 again", context={"n": 2})
    other = fire("drift:version:2")
    assert second.pk == first.pk != other.pk
    second.refresh_from_db()
    assert (second.count, second.message, second.context, second.state) == (
        2,
        "drift on v1 again",
        {"n": 2, "first": True},
        "firing",
    )
    assert second.last_seen_at is not None
    assert second.last_seen_at >= first.created_at
    assert [c for _, c, _ in changes] == ["fired", "repeated", "fired"]


def test_an_ongoing_condition_is_refreshed_quietly_unless_its_severity_changes(changes) -> None:  # type: ignore[no-untyped-def]
    first = fire("pool", kind="db_connections_high", ongoing=True, context={"share": 0.81})
    again = fire("pool", kind="db_connections_high", ongoing=True, context={"share": 0.85})
    assert (again.pk, again.count, again.context["share"]) == (first.pk, 1, 0.85)
    assert again.last_seen_at is not None
    assert first.last_seen_at is not None
    assert again.last_seen_at >= first.last_seen_at
    graver = fire("pool", kind="db_connections_high", ongoing=True, severity="critical")
    assert (graver.count, graver.severity) == (2, "critical")
    assert [c for _, c, _ in changes] == ["fired", "repeated"]


def test_fingerprint_defaults_to_the_kind_and_dedupe_flag_is_accepted() -> None:
    a = alerts.alert_raise(kind="risk_monitor_blind", severity="warning", message="m", dedupe=True)
    b = alerts.alert_raise(kind="risk_monitor_blind", severity="warning", message="m")
    assert a.pk == b.pk
    assert a.fingerprint == "risk_monitor_blind"
    assert Alert.objects.count() == 1


def test_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="severity"):
        fire(severity="loud")
    assert not Alert.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_signal_is_sent_only_after_commit(changes) -> None:  # type: ignore[no-untyped-def]
    with transaction.atomic():
        alert = alerts.alert_raise(kind="drift", severity="warning", message="drift on v1", fingerprint="fp")
        assert changes == []
    assert changes == [(alert.pk, "fired", False)]


def test_acknowledge_then_repeat_stays_acknowledged_and_resolve_ends_it(changes) -> None:  # type: ignore[no-untyped-def]
    alert = fire("fp")
    with committed():
        alerts.alert_acknowledge(alert_id=alert.pk, actor="user:ann", note="looking")
    again = fire("fp")
    assert (again.pk, again.state, again.count, again.acknowledged_by) == (alert.pk, "acknowledged", 2, "user:ann")
    with committed():
        alerts.alert_acknowledge(alert_id=alert.pk, actor="user:bob")  # idempotent
        resolved = alerts.alert_resolve(fingerprint="fp")
    assert resolved is not None
    assert resolved.state == "resolved"
    assert resolved.resolved_by == "auto"
    assert [c for _, c, _ in changes] == ["fired", "acknowledged", "repeated", "resolved"]
    with pytest.raises(ConflictError):
        alerts.alert_acknowledge(alert_id=alert.pk, actor="user:ann")
    trail = audit_trail(Alert.objects.get(pk=alert.pk))
    assert [r.changes.get("state") for r in trail[1:]] == [("firing", "acknowledged"), ("acknowledged", "resolved")]
    assert trail[1].actor == "user:ann"


def test_condition_that_comes_back_after_resolution_fires_a_new_alert() -> None:
    first = fire("fp")
    alerts.alert_resolve(fingerprint="fp")
    second = fire("fp")
    assert second.pk != first.pk
    assert (second.state, second.count) == ("firing", 1)
    assert alerts.alert_resolve(fingerprint="nothing-open") is None


def test_resolve_by_id_of_missing_alert_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        alerts.alert_resolve(alert_id=999999, actor="user:ann")
    with pytest.raises(NotFoundError):
        alerts.alert_acknowledge(alert_id=999999, actor="user:ann")


def test_resolve_all_keeps_the_conditions_still_seen() -> None:
    for symbol in ("BTC/USD", "ETH/USD", "SOL/USD"):
        alerts.alert_raise(kind="market_data_stale", severity="warning", message=symbol,
                           fingerprint=f"market_data_stale:{symbol}")  # fmt: skip
    resolved = alerts.alert_resolve_all(kind="market_data_stale", keep={"market_data_stale:ETH/USD"})
    assert sorted(a.fingerprint for a in resolved) == ["market_data_stale:BTC/USD", "market_data_stale:SOL/USD"]
    assert list(Alert.objects.filter(state="firing").values_list("fingerprint", flat=True)) == [
        "market_data_stale:ETH/USD"
    ]


def test_silence_marks_matching_alerts_silenced_until_it_expires(changes) -> None:  # type: ignore[no-untyped-def]
    open_before = fire("drift:version:1")
    silence = alerts.alert_silence_create(kind="drift", reason="retraining tonight", actor="user:ann",
                                          duration=timedelta(hours=1))  # fmt: skip
    open_before.refresh_from_db()
    assert open_before.silence_id == silence.pk
    silenced = fire("drift:version:2")
    unrelated = fire("lag", kind="ingest_lag")
    assert silenced.silence_id == silence.pk
    assert alerts.alert_is_silenced(silenced)
    assert unrelated.silence_id is None
    assert not alerts.alert_is_silenced(unrelated)
    assert changes[-2:] == [(silenced.pk, "fired", True), (unrelated.pk, "fired", False)]
    with committed():
        alerts.alert_silence_expire(silence_id=silence.pk, actor="user:ann")
    assert not alerts.alert_is_silenced(silenced)
    again = fire("drift:version:2")
    assert again.silence_id is None
    assert changes[-1] == (silenced.pk, "repeated", False)
    assert audit_trail(AlertSilence.objects.get())[-1].actor == "user:ann"


def test_silence_by_fingerprint_matches_only_that_condition() -> None:
    alerts.alert_silence_create(fingerprint="drift:version:1", reason="known", actor="user:ann",
                                ends_at=timezone.now() + timedelta(minutes=5))  # fmt: skip
    assert fire("drift:version:1").silence_id is not None
    assert fire("drift:version:2").silence_id is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reason": "r", "duration": timedelta(hours=1)}, "kind"),
        ({"kind": "nope", "reason": "r", "duration": timedelta(hours=1)}, "kind"),
        ({"kind": "drift", "reason": " ", "duration": timedelta(hours=1)}, "reason"),
        ({"kind": "drift", "reason": "r"}, "ends_at"),
        ({"kind": "drift", "reason": "r", "duration": timedelta(hours=-1)}, "duration"),
        ({"kind": "drift", "reason": "r", "ends_at": timezone.now() - timedelta(hours=1)}, "ends_at"),
    ],
)
def test_invalid_silence_is_refused_and_changes_nothing(kwargs, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ApplicationError) as caught:
        alerts.alert_silence_create(actor="user:ann", **kwargs)
    assert field in caught.value.details
    assert not AlertSilence.objects.exists()


def test_expiring_a_silence_that_has_not_started_ends_it() -> None:
    later = timezone.now() + timedelta(hours=1)
    silence = alerts.alert_silence_create(kind="drift", reason="r", actor="user:ann", starts_at=later,
                                          duration=timedelta(hours=1))  # fmt: skip
    expired = alerts.alert_silence_expire(silence_id=silence.pk, actor="user:ann")
    assert expired.ends_at <= timezone.now()
    assert alerts.silence_matching(kind="drift", fingerprint="x", at=later + timedelta(minutes=1)) is None


def test_every_change_is_published_on_the_system_group() -> None:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("system", channel)
    try:
        alert = fire("fp")
        message = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)("system", channel)
    assert message["type"] == "system.event"
    event = message["event"]
    assert (event["topic"], event["change"], event["alert_id"], event["kind"]) == ("alert", "fired", alert.pk, "drift")
    assert event["runbook_url"].endswith("#drift")


def test_a_failing_receiver_does_not_break_the_raise_or_other_receivers(changes) -> None:  # type: ignore[no-untyped-def]
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    alerts.alert_changed.connect(broken, weak=False)
    try:
        alert = fire("fp")
    finally:
        alerts.alert_changed.disconnect(broken)
    assert changes == [(alert.pk, "fired", False)]
    assert alerts.counters["receiver_errors"] >= 1


@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_concurrent_raises_of_one_condition_make_one_alert_counting_each() -> None:
    """Eight threads (eight connections) fire the same fingerprint at once: the partial unique index keeps one open
    alert, the losers of the race repeat it (PostgreSQL: SQLite would serialise them anyway)."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def raise_one() -> None:
        try:
            barrier.wait(timeout=30)
            fire("race")
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=raise_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    alert = Alert.objects.get(fingerprint="race")
    assert alert.count == 8
