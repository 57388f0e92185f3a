"""Reading small user files (cards, datasheets, recipes) as hostile input: without blocking
on a FIFO, only if they are regular files, and never more than a bound."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pacha.errors import InvalidInputError

__all__ = ["read_regular_file"]

_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def read_regular_file(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit + 1`` bytes of the regular file at ``path`` (one more than allowed, so
    that the caller can tell "too large"). A directory is `IsADirectoryError`; a FIFO, device
    or socket is `InvalidInputError` — opened without blocking and never read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "special file")
            raise InvalidInputError(f"{what} {path} is a {kind}, not a regular file")
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
