"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path


def write_pattern(path: Path, size: int, seed: int = 0) -> Path:
    """Write `size` deterministic pseudo-random bytes without holding them all in memory."""
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, 1 << 20)
            f.write(rng.randbytes(n))
            remaining -= n
    return path
