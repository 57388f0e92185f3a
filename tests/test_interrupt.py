"""Ctrl-C during long work: the call stops, cleans up, and raises KeyboardInterrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pacha
from support import write_pattern

INGEST_AND_INTERRUPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    import pacha

    store = pacha.ObjectStore(sys.argv[1])
    progress = pacha.Progress()

    def interrupt_once_started():
        while progress.done == 0:
            pass
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    try:
        store.put_file(sys.argv[2], progress)
    except KeyboardInterrupt:
        print("interrupted", progress.cancelled)
    else:
        print("finished")
    """
)


def test_ctrl_c_during_ingest_removes_the_temp_file(tmp_path: Path) -> None:
    src = write_pattern(tmp_path / "big", 512 << 20, seed=11)
    root = tmp_path / "objects"
    result = subprocess.run(
        [sys.executable, "-c", INGEST_AND_INTERRUPT, str(root), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "interrupted True", result.stdout + result.stderr
    assert list((root / "tmp").iterdir()) == []
    assert [p.name for p in root.iterdir() if len(p.name) == 2] == []


def test_a_second_ctrl_c_returns_even_when_the_work_is_stuck(tmp_path: Path) -> None:
    fifo = tmp_path / "nobody-writes-here"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pacha", "hash", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)  # start-up, then blocked opening the FIFO
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert b"Traceback" not in stderr


def _pacha(registry: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pacha", "--registry", str(registry), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(found: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not found():
        assert proc.poll() is None, "finished before it could be stopped"
        assert time.monotonic() < deadline, "never started"
        time.sleep(0.005)


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _parts(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".part")]


@pytest.mark.slow
def test_sigterm_during_register_and_download_cleans_up_like_ctrl_c(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    big = _sparse(tmp_path / "big.bin", 1 << 30)
    temps = registry / "objects" / "tmp"
    pacha.Registry(registry)
    proc = _pacha(registry, "model", "register", "m", str(big), "-v", "1.0.0")
    _wait_for(lambda: any(temps.iterdir()), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.decode().strip() == "pacha: terminated; nothing was left half-written"
    assert list(temps.iterdir()) == []
    assert pacha.Registry(registry).list_models() == []

    pacha.Registry(registry).register_model("m", big, "1.0.0")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _pacha(registry, "model", "download", "m:1.0.0", "-o", str(out_dir / "m.bin"))
    _wait_for(lambda: bool(_parts(out_dir)), proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert list(out_dir.iterdir()) == []


@pytest.mark.slow
def test_a_killed_download_leaves_a_part_that_the_next_one_removes(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    big = _sparse(tmp_path / "big.bin", 1 << 30)
    pacha.Registry(registry).register_model("m", big, "1.0.0")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _pacha(registry, "model", "download", "m:1.0.0", "-o", str(out_dir / "m.bin"))
    _wait_for(lambda: bool(_parts(out_dir)), proc)
    proc.kill()
    proc.communicate(timeout=60)
    [part] = _parts(out_dir)
    old = time.time() - 60
    os.utime(out_dir / part, (old, old))
    small = tmp_path / "small.bin"
    small.write_bytes(b"small")
    pacha.Registry(registry).register_model("small", small, "1.0.0")
    pacha.Registry(registry).download_model("small:1.0.0", out_dir / "small.bin")
    assert sorted(p.name for p in out_dir.iterdir()) == ["small.bin"]
