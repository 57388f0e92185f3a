# Stubs for the native module built from rust/pacha-py. Checked against the compiled module
# by tests/test_api.py (mypy.stubtest): change both together.

import builtins
import os
from typing import Optional, Union, final

from typing_extensions import Buffer

_Path = Union[str, os.PathLike[str]]

__all__ = [
    "PARALLEL_THRESHOLD",
    "SMALL_OBJECT_MAX",
    "Hasher",
    "ObjectInfo",
    "ObjectStore",
    "Problem",
    "Progress",
    "PutOutcome",
    "VerifyReport",
    "__version__",
    "hash_bytes",
    "hash_file",
]

__version__: str
PARALLEL_THRESHOLD: int
SMALL_OBJECT_MAX: int

def hash_file(path: _Path, progress: Optional[Progress] = None) -> str:
    """BLAKE3-256 of the file at ``path`` as 64 hex characters, identical to ``b3sum``."""

def hash_bytes(data: Buffer) -> str:
    """BLAKE3-256 of any C-contiguous buffer, without copying it."""

@final
class Hasher:
    """Incremental BLAKE3 with the hashlib interface."""

    name: str
    digest_size: int
    block_size: int
    def __new__(cls, data: Optional[Buffer] = None) -> Hasher: ...
    def update(self, data: Buffer) -> None: ...
    def update_file(self, path: _Path, progress: Optional[Progress] = None) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...

@final
class Progress:
    """Progress of one long operation; readable from another thread while it runs."""

    def __new__(cls) -> Progress: ...
    @property
    def done(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def cancelled(self) -> bool: ...
    def cancel(self) -> None: ...

@final
class PutOutcome:
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def written(self) -> bool: ...

@final
class ObjectInfo:
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...

@final
class Problem:
    """One problem found by verify: kind is corrupt, truncated, missing, unreadable or stray."""

    @property
    def kind(self) -> str: ...
    @property
    def digest(self) -> Optional[str]: ...
    @property
    def path(self) -> str: ...
    @property
    def detail(self) -> str: ...

@final
class VerifyReport:
    @property
    def checked(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def problems(self) -> list[Problem]: ...
    @property
    def ok(self) -> bool: ...

@final
class ObjectStore:
    """A content-addressed object store (a local directory)."""

    def __new__(cls, root: _Path) -> ObjectStore: ...
    @property
    def location(self) -> str: ...
    def put_file(self, path: _Path, progress: Optional[Progress] = None) -> PutOutcome: ...
    def put_bytes(self, data: Buffer) -> PutOutcome: ...
    def contains(self, digest: str) -> bool: ...
    def size_of(self, digest: str) -> Optional[int]: ...
    def export(
        self,
        digest: str,
        dest: _Path,
        overwrite: bool = False,
        progress: Optional[Progress] = None,
    ) -> int: ...
    def list(self) -> builtins.list[ObjectInfo]: ...
    def verify(
        self,
        expected: builtins.list[tuple[str, Optional[int]]],
        progress: Optional[Progress] = None,
    ) -> VerifyReport: ...
    def verify_all(self, progress: Optional[Progress] = None) -> VerifyReport: ...
