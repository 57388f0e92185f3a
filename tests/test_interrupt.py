"""Ctrl-C during long work: the call stops, cleans up, and raises KeyboardInterrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
