"""A full disk: registering fails with a clear message and leaves the registry exactly as it
was. Needs root to mount a small tmpfs (CI runs as root); skipped elsewhere, except in CI."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
