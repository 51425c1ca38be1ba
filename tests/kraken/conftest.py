"""Shared fixtures for the protocol-layer tests (no Django needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

_NAME = "kraken/recordings/book-v2-btcusd-depth10.jsonl"


def _find_recording() -> Path:
    # shared/ sits beside the repository (CI: a fresh clone with shared/ beside it).
    for base in (Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")):
        if (base / _NAME).is_file():
            return base / _NAME
    raise FileNotFoundError(f"shared/{_NAME} not found beside the repository")


@pytest.fixture(scope="session")
def recording() -> Path:
    """The real recorded BTC/USD depth-10 v2 book stream (510 messages)."""
    return _find_recording()


@pytest.fixture(scope="session")
def recorded_lines(recording: Path) -> list[str]:
    return recording.read_text().splitlines()
