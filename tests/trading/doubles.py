"""Test doubles. `RecordingGateway` stands in for the execution gateway: the execution layer (the real gateway)
is a later issue, so there is nothing real to run here; the tests assert what is handed over and when."""

from __future__ import annotations

from typing import ClassVar


class RecordingGateway:
    calls: ClassVar[list[tuple[str, int]]] = []

    def submit_order(self, *, order_id: int) -> None:
        self.calls.append(("submit", order_id))

    def cancel_order(self, *, order_id: int) -> None:
        self.calls.append(("cancel", order_id))
