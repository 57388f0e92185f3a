"""Experiment runs: tracking from Python (a context manager) and the data the CLI shows.

Metric points are buffered in memory and written in batches: at most ``FLUSH_POINTS``
points or ``FLUSH_SECONDS`` seconds of metrics are held, so a crash loses at most about one
second of logging, and everything is flushed when the run ends. The rules (names, finite
values, a finished run takes no more points) live in the Rust core.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import operator
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional, Union

from pacha.errors import InvalidInputError

if TYPE_CHECKING:
    from pacha import _core
    from pacha.models import ModelVersion
    from pacha.registry import Registry

__all__ = [
    "FLUSH_POINTS",
    "FLUSH_SECONDS",
    "MAX_BUFFERED_POINTS",
    "Run",
    "capture_environment",
    "new_run_id",
]

#: Buffered metric points are written when this many are waiting...
FLUSH_POINTS = 10_000
#: ...or when the oldest has waited this long (the most a crash can lose).
FLUSH_SECONDS = 1.0
#: A run with nothing to write still tells the registry it is alive this often (a run
#: whose process died stops doing so, and is shown as abandoned after 10 minutes).
HEARTBEAT_SECONDS = 60.0
#: While points cannot be written (a full disk), at most this many of the newest are kept
#: in memory; older ones are dropped, with one warning.
MAX_BUFFERED_POINTS = 200_000


# Runs whose background flusher is alive. At interpreter exit they are stopped and joined
# before finalisation: a daemon thread caught inside the native core while the interpreter
# shuts down would abort the process.
_LIVE: weakref.WeakSet[Run] = weakref.WeakSet()


@atexit.register
def _stop_flushers() -> None:
    for run in list(_LIVE):
        run._stop.set()
    for run in list(_LIVE):
        run._flusher.join(timeout=5)


def new_run_id() -> str:
    return uuid.uuid4().hex


def _command(args: list[str]) -> Optional[str]:
    """Output of a short read-only command (never through a shell), or None."""
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, errors="replace", timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _gpu_count() -> Optional[int]:
    nvidia = Path("/proc/driver/nvidia/gpus")
    with contextlib.suppress(OSError):
        if nvidia.is_dir():
            return sum(1 for _ in nvidia.iterdir())
    if shutil.which("nvidia-smi"):
        listing = _command(["nvidia-smi", "-L"])
        if listing is not None:
            return sum(1 for line in listing.splitlines() if line.startswith("GPU "))
    return None


def capture_environment(actor: str) -> dict[str, Any]:
    """What is known about where and how a run executes."""
    from pacha import __version__

    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "user": actor,
        "python": platform.python_version(),
        "pacha": __version__,
        "platform": platform.platform(),
        "command": list(sys.argv),
        "cwd": str(Path.cwd()),
        "cpu_cores": os.cpu_count(),
        "gpu_count": _gpu_count(),
    }
    try:
        env["ram_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        env["ram_bytes"] = None
    from pacha.gitinfo import git_state

    git = git_state()
    if git is not None:
        env["git"] = git
    return env


class Run:
    """A running experiment. Use as a context manager: leaving the block normally marks it
    ``completed``, an exception ``failed`` (with the message), Ctrl-C ``cancelled``.

    Points are buffered; a background thread writes any point that has waited
    ``FLUSH_SECONDS``, so a crash loses at most about a second of metrics even when the
    training loop logs rarely."""

    def __init__(self, registry: Registry, info: _core.RunInfo) -> None:
        self._registry = registry
        self.id: str = info.id
        self.recipe: Optional[str] = info.recipe
        from pacha.records import stored_object

        self.params: dict[str, Any] = (
            stored_object(info.params, f"parameters of run {info.id}") or {}
        )
        self.status: str = info.status
        self._buffer: list[tuple[str, int, float, float]] = []
        self._oldest = 0.0
        self._next_step: dict[str, int] = {}
        self._names: set[str] = set()
        # Guards the buffer, the step counters and the names seen. A Run may be shared by
        # threads (a data loader logging, a callback logging): every mutation is atomic.
        self._lock = threading.Lock()
        # Held across a whole read-merge-write of the parameters, and by `finish`.
        self._state_lock = threading.Lock()
        # When a write of buffered points last failed (0: never), whether that was said, and
        # how many points were dropped to keep memory bounded since.
        self._failed_at = 0.0
        self._warned = False
        self._dropped = 0
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_periodically, name=f"pacha-run-{self.id[:8]}", daemon=True
        )
        _LIVE.add(self)
        self._flusher.start()

    def __repr__(self) -> str:
        return f"Run({self.id!r}, recipe={self.recipe!r}, status={self.status!r})"

    def log_metric(self, name: str, value: float, step: Optional[int] = None) -> None:
        """Record ``value`` of ``name`` at ``step`` (default: one past the last step logged
        for that name in this process)."""
        if name not in self._names:
            from pacha import _core

            _core.validate_metric(name, 0.0)
            with self._lock:
                self._names.add(name)
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInputError(f"metric {name} = {value}: the value must be a finite number")
        given = None if step is None else operator.index(step)
        if given is not None and not -(2**63) <= given < 2**63:
            raise InvalidInputError(f"metric {name}: step {given} is out of range")
        now = time.time()
        with self._lock:
            chosen = self._next_step.get(name, 0) if given is None else given
            if not -(2**63) <= chosen < 2**63:
                raise InvalidInputError(f"metric {name}: step {chosen} is out of range")
            self._next_step[name] = chosen + 1
            if not self._buffer:
                self._oldest = now
            self._buffer.append((name, chosen, number, now))
            if len(self._buffer) > MAX_BUFFERED_POINTS:
                excess = len(self._buffer) - MAX_BUFFERED_POINTS
                del self._buffer[:excess]
                self._dropped += excess
            # While writes fail, the loop is not slowed by a failing write per call: the
            # background flusher retries once a period.
            full = len(self._buffer) >= FLUSH_POINTS and now - self._failed_at >= FLUSH_SECONDS
        if full:
            self._flush_or_keep()

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        for name, value in metrics.items():
            self.log_metric(name, value, step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Merge parameters into the run's recorded parameters (atomic: calls from several
        threads each keep all of theirs)."""
        with self._state_lock:
            merged = {**self.params, **params}
            try:
                text = json.dumps(merged, allow_nan=False, default=str)
            except ValueError:
                raise InvalidInputError(
                    "parameters must be finite numbers (no NaN or infinity)"
                ) from None
            self._registry._core.set_run_params(self.id, text)
            self.params = merged

    def log_artifact(
        self, path: Union[str, os.PathLike[str]], name: Optional[str] = None
    ) -> tuple[str, int]:
        """Store a file in the object store as an artifact of this run: (digest, size)."""
        return self._registry._core.add_run_artifact(
            self.id, os.fspath(path), name or Path(path).name
        )

    def register_model(
        self,
        name: str,
        path: Union[str, os.PathLike[str]],
        version: Optional[str] = None,
        **kwargs: Any,
    ) -> ModelVersion:
        """Register a model produced by this run (the version records the run, and through it
        the recipe and the recipe's datasets)."""
        self.flush()
        return self._registry.register_model(name, path, version, run=self.id, **kwargs)

    def flush(self) -> None:
        """Write buffered metric points now. If the write fails the points stay buffered."""
        with self._lock:
            points, self._buffer = self._buffer, []
        if not points:
            return
        try:
            self._registry._core.log_metrics(self.id, points)
        except BaseException:
            with self._lock:
                self._buffer[:0] = points
            raise

    def _flush_or_keep(self) -> None:
        """Flush; if the write fails (a full disk), keep the points, say so once, and let
        the training loop go on at full speed."""
        try:
            self.flush()
        except Exception as exc:
            with self._lock:
                self._failed_at = time.time()
                # The next attempt waits a full period.
                self._oldest = self._failed_at
                warn = not self._warned
                self._warned = True
            if warn:
                import warnings

                warnings.warn(
                    f"pacha: cannot write the metrics of run {self.id[:12]} ({exc}); keeping "
                    f"the newest {MAX_BUFFERED_POINTS} points in memory and retrying every "
                    f"{FLUSH_SECONDS:g} s",
                    RuntimeWarning,
                    stacklevel=3,
                )
        else:
            with self._lock:
                self._failed_at = 0.0

    def _flush_periodically(self) -> None:
        last_beat = time.time()
        while not self._stop.wait(FLUSH_SECONDS / 4):
            with self._lock:
                due = bool(self._buffer) and time.time() - self._oldest >= FLUSH_SECONDS
            if not due and time.time() - last_beat >= HEARTBEAT_SECONDS:
                # Nothing written for a while: say the run is alive anyway, so that a
                # training loop that logs rarely is not taken for an abandoned run.
                with contextlib.suppress(Exception):
                    self._registry._core.heartbeat_run(self.id)
                last_beat = time.time()
            if due:
                last_beat = time.time()
                # Warned about (once) by the logging thread instead, if at all: a warning
                # from this thread would not reach the user's code.
                try:
                    self.flush()
                except Exception:
                    with self._lock:
                        self._failed_at = self._oldest = time.time()
                else:
                    with self._lock:
                        self._failed_at = 0.0

    def finish(self, status: str = "completed", error: Optional[str] = None) -> None:
        """Write what is buffered and end the run. The run is ended even if the last write
        fails (its error is then recorded and raised). Finishing a run that this object has
        already ended does nothing."""
        with self._state_lock:
            if self.status != "running":
                return
            self._stop.set()
            flush_error: Optional[BaseException] = None
            try:
                self.flush()
            except Exception as exc:
                flush_error = exc
                status = "failed"
                error = f"{error + '; ' if error else ''}last metrics could not be written: {exc}"
            if self._dropped:
                note = (
                    f"{self._dropped} metric point(s) were dropped while they could not be "
                    "written (the newest were kept)"
                )
                error = f"{error}; {note}" if error else note
            self.status = self._registry._core.finish_run(self.id, status, error).status
        if flush_error is not None:
            raise flush_error

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self.status != "running":  # finished explicitly inside the block
            self._stop.set()
            return
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            self.finish("completed")
            return
        if isinstance(exc, KeyboardInterrupt):
            status, error = "cancelled", "interrupted (KeyboardInterrupt)"
        else:
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:4000]
        # The run is ended either way; the user's own exception is the one that matters.
        with contextlib.suppress(Exception):
            self.finish(status, error)
