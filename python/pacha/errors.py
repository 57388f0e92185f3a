"""The exceptions pacha raises.

Each also subclasses the matching built-in, so ``except LookupError`` or
``except ValueError`` keeps working in code that does not know pacha. This module imports
nothing from the native core: it can be imported (and its classes caught) on its own.
Operating-system failures (a missing file, a full disk) are raised as the built-in
``OSError`` subclasses (``FileNotFoundError``, ``PermissionError``, ...) with ``filename`` set.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "AlreadyExistsError",
    "BackendError",
    "CancelledError",
    "DatabaseError",
    "IntegrityError",
    "InternalError",
    "InvalidInputError",
    "InvalidTransitionError",
    "LineageCycleError",
    "NotFoundError",
    "PachaError",
    "ReadOnlyRegistryError",
    "RegistryBusyError",
    "SourceChangedError",
    "UnsafeRegistryError",
]


class PachaError(Exception):
    """Base class of every error specific to pacha.

    Attributes:
        code: a stable name of the kind of error, for scripts (e.g. ``"not_found"``,
            ``"version_exists"``, ``"in_production"``).
        detail: the message without the words of the Python API's remedy (the CLI words
            the remedy its own way), or None when the message has none.
        remedy: what the caller can ask for to go ahead anyway: ``"replace"`` (pass
            ``force=True``), ``"force_delete"`` (``force=True``), ``"new_version"``
            (``bump=``), or None.
    """

    code: str = "error"
    detail: Optional[str] = None
    remedy: Optional[str] = None


class NotFoundError(PachaError, LookupError):
    """The object, artifact or version asked for does not exist."""

    code = "not_found"


class AlreadyExistsError(PachaError, FileExistsError):
    """Something already exists: a registered version (versions are immutable), or an output
    path that overwriting was not asked for."""

    code = "already_exists"


class InvalidInputError(PachaError, ValueError):
    """Input that pacha refuses: a malformed digest, a FIFO where a file was expected, ..."""

    code = "invalid_input"


class SourceChangedError(InvalidInputError):
    """A file changed while pacha was reading it; nothing was stored."""

    code = "source_changed"


class LineageCycleError(InvalidInputError):
    """A lineage edge that would make a node its own ancestor; the message names the
    cycle."""

    code = "lineage_cycle"


class InvalidTransitionError(PachaError, ValueError):
    """A stage change the lifecycle rules forbid; the message lists the allowed targets."""

    code = "invalid_transition"


class RegistryBusyError(PachaError, TimeoutError):
    """Another process held the registry's database for longer than the wait allows."""

    code = "busy"


class DatabaseError(PachaError):
    """The registry database failed (unreadable file, newer schema than this pacha, ...)."""

    code = "database"


class UnsafeRegistryError(PachaError, PermissionError):
    """A registry pacha will not use: a symbolic link it did not create where it keeps its
    own files (never followed), or a directory every user can write to."""

    code = "unsafe_registry"


class ReadOnlyRegistryError(PachaError, PermissionError):
    """A write to a registry that may only be read here: a read-only mount, a teammate's
    registry that is not shared with your group, or one opened with ``read_only=True``."""

    code = "read_only"


class BackendError(PachaError, ConnectionError):
    """A remote service the registry runs on (an S3-compatible object store, PostgreSQL)
    failed or refused: unreachable, wrong credentials, a missing bucket. The message names
    what to check and never holds a secret."""

    code = "backend"


class InternalError(PachaError):
    """A bug in pacha (a panic in the native core, caught before it could crash the
    process). Nothing was changed by the failed call; please report it."""

    code = "internal"


class CancelledError(PachaError):
    """The operation was cancelled through its ``Progress``; nothing was left half-written."""

    code = "cancelled"


class IntegrityError(PachaError, ValueError):
    """Stored bytes do not match their BLAKE3 address: the object is corrupt.

    Attributes:
        expected: the digest the bytes should have (the object's address).
        actual: the digest they actually have.
        path: the object file that is damaged.
    """

    code = "integrity"

    def __init__(
        self,
        message: str,
        expected: Optional[str] = None,
        actual: Optional[str] = None,
        path: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
