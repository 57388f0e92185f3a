"""Progress bars for long operations.

The core updates a `Progress` object's counters while it works with the GIL released; a
small thread here polls them and drives a rich progress bar on stderr. The bar only appears
for work over 64 MiB, on a terminal, and never with ``--quiet``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pacha._core import Progress

#: Work smaller than this finishes too fast for a bar to help.
BAR_THRESHOLD = 64 << 20
_POLL_SECONDS = 0.1


@contextmanager
def transfer_progress(description: str, *, quiet: bool = False) -> Iterator[Progress]:
    """Yield a `Progress` to pass to a core call; show a bar while that call runs."""
    progress = Progress()
    if quiet or not sys.stderr.isatty():
        yield progress
        return
    stop = threading.Event()
    poller = threading.Thread(
        target=_poll, args=(progress, description, stop), name="pacha-progress", daemon=True
    )
    poller.start()
    try:
        yield progress
    finally:
        stop.set()
        poller.join()


def _poll(progress: Progress, description: str, stop: threading.Event) -> None:
    # Wait until the total is known and large enough to be worth a bar.
    while not stop.wait(_POLL_SECONDS):
        if progress.total >= BAR_THRESHOLD:
            break
    else:
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    from pacha.cli.output import stderr_console

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=progress.total)
        while not stop.wait(_POLL_SECONDS):
            bar.update(task, completed=progress.done, total=progress.total)
        bar.update(task, completed=progress.done, total=progress.total)
