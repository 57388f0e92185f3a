"""Where the registry lives: ``--registry PATH``, else ``$PACHA_HOME``, else ``~/.pacha``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

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


def open_store(registry: Optional[PathLike] = None) -> ObjectStore:
    """Open the registry's object store, creating the registry (mode 0700) if needed."""
    root = registry_path(registry)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return ObjectStore(root / OBJECTS_DIR)
