"""Printing for the CLI: JSON documents, listings, rich consoles, one-line errors."""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Collection, Mapping, Sequence
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


# Listings are printed by hand rather than with rich.table: importing rich's table and console
# costs about 30 ms, a fifth of the 150 ms a `pacha model list` may take from start to end.
_ANSI = {"bold green": "\x1b[1;32m", "yellow": "\x1b[33m", "dim": "\x1b[2m"}


def _width(cell: str) -> int:
    """Terminal columns taken by `cell` (wide East Asian characters count twice)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in cell)


def print_columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[str] = (),
    styles: Mapping[tuple[int, int], str] | None = None,
) -> None:
    """Aligned columns on stdout, two spaces apart, with a header line. Cells are shown
    literally (control characters escaped); `right` names right-aligned columns; `styles`
    colours cells ((row, column) -> "bold green", "yellow" or "dim") on a terminal, unless
    NO_COLOR is set (non-empty) or TERM is dumb."""
    cells = [[one_line(str(cell)) for cell in row] for row in rows]
    widths = [max([_width(h), *(_width(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    colour = (
        sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    )
    styles = styles or {}

    def line(row: Sequence[str], row_index: int) -> str:
        parts = []
        for column, (cell, width) in enumerate(zip(row, widths)):
            pad = " " * (width - _width(cell))
            shown = f"{pad}{cell}" if headers[column] in right else f"{cell}{pad}"
            style = _ANSI.get(styles.get((row_index, column), "")) if colour else None
            parts.append(f"{style}{shown}\x1b[0m" if style else shown)
        return "  ".join(parts).rstrip()

    out = [line(headers, -1)]
    out.extend(line(row, i) for i, row in enumerate(cells))
    sys.stdout.write("\n".join(out) + "\n")


def describe_paths(paths: Sequence[str], shown: int = 3) -> str:
    """``a/, b/ and 3 more`` for a message (each escaped to stay on one line)."""
    names = [one_line(p) for p in paths[:shown]]
    rest = len(paths) - len(names)
    return ", ".join(names) + (f" and {rest} more" if rest else "")


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


def one_line(text: str) -> str:
    """Control characters (a newline or an escape sequence in a file name) shown escaped, so
    that an error stays one line and cannot drive the terminal."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def for_terminal(text: str) -> str:
    """Text from the registry as printed to stdout: on a terminal, control characters
    (escape sequences that could recolour, retitle or clear the terminal, or rewrite what
    was printed) are shown escaped, keeping newlines and tabs; piped, it is left exactly as
    stored."""
    if not sys.stdout.isatty():
        return text
    return "".join(
        c if c.isprintable() or c in " \n\t" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def describe_error(exc: BaseException) -> str:
    """One line naming the problem and, where there is one, the fix."""
    return one_line(_describe(exc))


#: The command line's words for what a user can pass to go ahead where an error refused
#: (`PachaError.remedy`); the Python API words the same remedies as ``force=True``/``bump=``.
_CLI_REMEDIES = {
    "replace": "; pass --force to replace it",
    "force_delete": ", or pass --force to delete it anyway",
    "new_version": " (e.g. with --bump patch)",
}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PachaError):
        text = exc.detail if exc.detail is not None else str(exc)
        if exc.remedy is not None:
            text += _CLI_REMEDIES.get(exc.remedy, "")
        return " ".join(text.split())
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        where = f"{exc.filename}: " if exc.filename else ""
        hint = next((h for cls, h in _OS_HINTS.items() if isinstance(exc, cls)), None)
        if exc.errno == 28:  # ENOSPC
            what = "No space left on device: the disk is full"
            hint = (
                "free some space: delete versions you no longer need and run `pacha gc`, "
                "or remove other files; then try again"
            )
        return f"{where}{what}" + (f" ({hint})" if hint else "")
    return str(exc)
