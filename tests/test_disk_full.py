"""A full disk: registering fails with a clear message and leaves the registry exactly as it
was. Needs root to mount a small tmpfs (CI runs as root); skipped elsewhere, except in CI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pacha
from support import object_files, write_pattern

pytestmark = pytest.mark.fault


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs mounted for the test."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run as root with mount(8) so that the full-disk test runs")
        pytest.skip("needs root and mount(8) to create a small filesystem")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _state(registry: Path) -> tuple[list[str], list[str], list[str]]:
    """Everything a registration could change: the database's content, the objects and
    any temp files."""
    with sqlite3.connect(registry / "registry.db") as conn:
        dump = list(conn.iterdump())
    temps = sorted(p.name for p in (registry / "objects" / "tmp").iterdir())
    # `sizes/` holds speed hints ("an object of this size may exist"), not data; see
    # docs/store-format.md.
    objects = [p for p in object_files(registry) if not p.startswith("sizes/")]
    return dump, objects, temps


def test_registering_into_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    """The CLI says "No space left on device" in one line and exits 1; the database, the
    object store and the temp directory are exactly as before; a smaller file still fits."""
    registry = small_disk / "registry"
    reg = pacha.Registry(registry)
    reg.register_model("small", write_pattern(tmp_path / "small.bin", 1 << 20, seed=1), "1.0.0")
    big = write_pattern(tmp_path / "big.bin", 40 << 20, seed=2)
    before = _state(registry)
    env = {**os.environ, "PACHA_HOME": str(registry)}
    for kind in ("model", "data"):
        done = subprocess.run(
            [sys.executable, "-m", "pacha", kind, "register", "big", str(big), "-v", "1.0.0"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 1, done
        assert "No space left on device" in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert _state(registry) == before
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(3):
        write_pattern(tree / f"part{i}.bin", 10 << 20, seed=10 + i)
    with pytest.raises(OSError) as raised:
        reg.register_dataset("tree", tree, "1.0.0")
    assert raised.value.errno == 28
    assert _state(registry) == before, "the files stored before the disk filled were removed"
    # Nothing was left behind: the space is free again.
    reg.register_model("small", write_pattern(tmp_path / "s2.bin", 2 << 20, seed=3), "1.0.1")
    assert reg.verify().ok


def _fill(path: Path) -> None:
    """Fill the file system holding `path` to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


def _cli(registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pacha", "--registry", str(registry), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_on_a_full_disk_reads_work_and_space_can_be_freed(small_disk: Path, tmp_path: Path) -> None:
    registry = small_disk / "registry"
    reg = pacha.Registry(registry)
    keep = write_pattern(tmp_path / "keep.bin", 3 << 20, seed=1)
    reg.register_model("keep", keep, "1.0.0")
    reg.register_model("old", write_pattern(tmp_path / "old.bin", 3 << 20, seed=2), "1.0.0")
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(50):
        (tree / f"{i}.txt").write_text(f"row {i}\n")
    reg.register_dataset("d", tree, "1.0.0")
    del reg
    _fill(small_disk / "filler")

    for args in (
        ("model", "list"),
        ("model", "get", "keep:1.0.0"),
        ("data", "get", "d:1.0.0"),
        ("stats",),
        ("verify",),
        ("model", "download", "keep:1.0.0", "-o", str(tmp_path / "out.bin")),
        ("data", "download", "d:1.0.0", "-o", str(tmp_path / "out-tree")),
    ):
        result = _cli(registry, *args)
        assert result.returncode == 0, (args, result.stderr)
    assert (tmp_path / "out.bin").read_bytes() == keep.read_bytes()

    # A write that needs space says the disk is full, in one line.
    new = write_pattern(tmp_path / "new.bin", 2 << 20, seed=3)
    refused = _cli(registry, "model", "register", "new", str(new), "-v", "9.0.0")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr
    assert "the disk is full" in lines[0] and "pacha gc" in lines[0]
    # Deleting and collecting free space even so.
    assert _cli(registry, "model", "delete", "old:1.0.0").returncode == 0
    gc = _cli(registry, "gc", "--grace", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    assert json.loads(gc.stdout)["bytes_freed"] >= 3 << 20
    assert _cli(registry, "model", "stage", "keep:1.0.0", "-t", "staging").returncode == 0
    assert pacha.Registry(registry).verify().ok


class _CountingCore:
    """The registry's core, with its metric writes counted."""

    def __init__(self, core: Any) -> None:
        self._core = core
        self.writes = 0

    def log_metrics(self, *args: Any) -> None:
        self.writes += 1
        self._core.log_metrics(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


def test_logging_metrics_on_a_full_disk_neither_raises_nor_slows_the_loop(
    small_disk: Path,
) -> None:
    from pacha import runs

    reg = pacha.Registry(small_disk / "registry")
    run = reg.start_run()
    counting = _CountingCore(reg._core)
    reg._core = counting  # type: ignore[assignment]
    run.log_metric("loss", 1.0, step=0)
    run.flush()
    _fill(small_disk / "filler")
    steps = 3 * runs.FLUSH_POINTS
    before = counting.writes
    with pytest.warns(RuntimeWarning, match="cannot write the metrics") as warned:
        for step in range(1, steps + 1):
            run.log_metric("loss", 1.0 / step, step=step)
    assert len(warned) == 1, "warned once, not once per call"
    # Not one failing write per call: at most one per flush period (and the loop above
    # takes well under a few periods).
    assert counting.writes - before <= 3
    assert len(run._buffer) == steps
    (small_disk / "filler").unlink()
    run.finish()
    record = reg.get_run(run.id)
    assert record.status == "completed"
    assert record.metric_steps["loss"] == steps
