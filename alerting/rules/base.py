"""What every rule is made of: a rule looks at the system and says which conditions of its kind hold now
(`Finding`s); `findings_apply` fires (or repeats) each and resolves the open alerts of the kind it no longer sees.
So a rule is idempotent (running it twice changes counts and last-seen times only) and auto-resolves."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trading.alerts import alert_open_count, alert_raise, alert_resolve_all


@dataclass(frozen=True)
class Finding:
    """A condition that holds now. `fingerprint` names it (default: the kind)."""

    kind: str
    severity: str
    message: str
    fingerprint: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.fingerprint or self.kind


#: The rule's verdict: findings per kind it watches; a kind with no findings resolves its open alerts. None for a
#: kind means "cannot tell now" (a missing input): its open alerts are left as they are.
Verdict = Mapping[str, list[Finding] | None]


@dataclass(frozen=True)
class Rule:
    name: str
    kinds: tuple[str, ...]
    check: Callable[[datetime], Verdict]
    doc: str = ""


def findings_apply(verdict: Verdict) -> dict[str, int]:
    """Fire every finding, resolve what cleared; counts of alerts fired (new), repeated (a graver severity) and
    resolved. A condition that still holds refreshes its alert quietly (`alert_raise(ongoing=True)`)."""
    fired = repeated = resolved = 0
    for kind, findings in verdict.items():
        if findings is None:
            continue
        for finding in findings:
            before = alert_open_count(finding.key)
            alert = alert_raise(
                kind=finding.kind, severity=finding.severity, message=finding.message,
                context=dict(finding.context), fingerprint=finding.key, ongoing=True,
            )  # fmt: skip
            if before is None:
                fired += 1
            elif alert.count > before:
                repeated += 1
        resolved += len(alert_resolve_all(kind=kind, keep={f.key for f in findings}))
    return {"fired": fired, "repeated": repeated, "resolved": resolved}


def by_kind(kinds: Iterable[str], findings: Iterable[Finding]) -> dict[str, list[Finding] | None]:
    """Group findings under the kinds a rule watches (every kind present, an empty list when nothing holds)."""
    verdict: dict[str, list[Finding] | None] = {kind: [] for kind in kinds}
    for finding in findings:
        listed = verdict[finding.kind]
        assert listed is not None
        listed.append(finding)
    return verdict
