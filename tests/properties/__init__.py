"""Property tests (hypothesis). CI runs each property with a moderate number of examples; the larger runs of
RELIABILITY.md multiply them with GALFRIDAY_PROPERTY_SCALE (e.g. 10)."""

from __future__ import annotations

import os

SCALE = max(1, int(os.environ.get("GALFRIDAY_PROPERTY_SCALE", "1")))


def examples(n: int) -> int:
    """`n` examples in CI, `n` x GALFRIDAY_PROPERTY_SCALE in a larger run."""
    return n * SCALE
