"""Printing for the CLI: JSON documents, rich tables on stderr/stdout, one-line errors."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from pacha.errors import PachaError

if TYPE_CHECKING:
    from rich.console import Console


def stdout_console() -> Console:
    from rich.console import Console

    # Piped output keeps whole digests and paths on one line instead of an 80-column layout.
    return Console(width=None if sys.stdout.isatty() else 10_000)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def print_json(document: Any) -> None:
    """One JSON document on stdout, for scripts."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable; keeps type checkers content


def is_user_error(exc: BaseException) -> bool:
    """Errors a user can act on (bad paths, corrupt objects, full disks), as opposed to bugs."""
    return isinstance(exc, (PachaError, OSError))


_OS_HINTS = {
    FileNotFoundError: "check the path",
    PermissionError: "check the file's permissions",
    IsADirectoryError: "give a file, not a directory",
    NotADirectoryError: "a parent of this path is not a directory",
}


def _one_line(text: str) -> str:
    """Control characters (a newline or an escape sequence in a file name) shown escaped, so
    that an error stays one line and cannot drive the terminal."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def describe_error(exc: BaseException) -> str:
    """One line naming the problem and, where there is one, the fix."""
    return _one_line(_describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PachaError):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        where = f"{exc.filename}: " if exc.filename else ""
        hint = next((h for cls, h in _OS_HINTS.items() if isinstance(exc, cls)), None)
        if exc.errno == 28:  # ENOSPC
            hint = "free some space (or point --registry elsewhere) and try again"
        return f"{where}{what}" + (f" ({hint})" if hint else "")
    return str(exc)
