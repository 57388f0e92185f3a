"""Hashing and ingest release the GIL: another Python thread keeps running meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pacha
from support import write_pattern


def longest_pause_while(work: Callable[[], object]) -> tuple[float, float]:
    """Run `work` in a thread; return (its duration, the longest gap the main thread saw)."""
    done = threading.Event()
    elapsed = [0.0]

    def worker() -> None:
        start = time.perf_counter()
        work()
        elapsed[0] = time.perf_counter() - start
        done.set()

    ticks = []
    thread = threading.Thread(target=worker)
    thread.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
    thread.join()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])] or [elapsed[0]]
    return elapsed[0], max(gaps)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pattern(tmp_path_factory.mktemp("gil") / "big", 512 << 20, seed=9)


@pytest.mark.parametrize("operation", ["hash_file", "hasher_update", "put_file"])
def test_other_threads_run_during_long_work(big_file: Path, tmp_path: Path, operation: str) -> None:
    store = pacha.ObjectStore(tmp_path / "objects")
    data = big_file.read_bytes() if operation == "hasher_update" else b""
    work: Callable[[], object] = {
        "hash_file": lambda: [pacha.hash_file(big_file) for _ in range(3)],
        "hasher_update": lambda: [pacha.Hasher().update(data) for _ in range(3)],
        "put_file": lambda: store.put_file(big_file),
    }[operation]
    duration, pause = longest_pause_while(work)
    # Holding the GIL would freeze the main thread for the whole call. Released, it only
    # waits for the interpreter's switch interval and the OS scheduler.
    assert duration > 0.05, "the work is too short to tell"
    assert pause < duration / 2, (duration, pause)
