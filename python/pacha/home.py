"""Where the registry lives: ``--registry PATH``, else ``$PACHA_HOME``, else ``~/.pacha``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from pacha._core import ObjectStore

__all__ = ["OBJECTS_DIR", "open_store", "registry_path"]

#: The object store's directory inside a registry (see docs/store-format.md).
OBJECTS_DIR = "objects"

PathLike = Union[str, "os.PathLike[str]"]


def registry_path(path: Optional[PathLike] = None) -> Path:
    """The registry directory to use: ``path``, else ``$PACHA_HOME``, else ``~/.pacha``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get("PACHA_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".pacha"


def open_store(
    registry: Optional[PathLike] = None, *, read_only: bool = False, create: bool = True
) -> ObjectStore:
    """The registry's object store; the registry is opened (and created, unless
    ``create=False``) as `pacha.Registry` opens it."""
    from pacha._core import Registry

    return Registry(registry_path(registry), read_only=read_only, create=create).store
