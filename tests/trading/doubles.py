"""Test doubles. `RecordingGateway` stands in for the execution gateway where a test is about what the risk
layer or the pipeline hands over, and when (after commit); execution itself is tested against the simulator in
test_execution*.py."""

from __future__ import annotations

from typing import ClassVar


class RecordingGateway:
    calls: ClassVar[list[tuple[str, int]]] = []

    def submit_order(self, *, order_id: int) -> None:
        self.calls.append(("submit", order_id))

    def cancel_order(self, *, order_id: int) -> None:
        self.calls.append(("cancel", order_id))
