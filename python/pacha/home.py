"""Where the registry lives: the registry directory to open (resolved by `pacha.config`:
``--registry``, else ``$PACHA_REGISTRY``, else ``$PACHA_HOME``, else the config file, else
``~/.pacha``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from pacha.config import OBJECTS_DIR, registry_directory

if TYPE_CHECKING:
    from pacha._core import ObjectStore

__all__ = ["OBJECTS_DIR", "open_store", "registry_path"]

PathLike = Union[str, "os.PathLike[str]"]


def registry_path(path: Optional[PathLike] = None) -> Path:
    """The registry directory to use: ``path``, else ``$PACHA_REGISTRY``, else
    ``$PACHA_HOME``, else the config file's ``registry.metadata``, else ``~/.pacha`` (see
    `pacha.config`). A location this build cannot open (PostgreSQL metadata, S3 objects) is
    refused with `InvalidInputError`."""
    return registry_directory(path)


def open_store(
    registry: Optional[PathLike] = None, *, read_only: bool = False, create: bool = True
) -> ObjectStore:
    """The registry's object store; the registry is opened (and created, unless
    ``create=False``) as `pacha.Registry` opens it."""
    from pacha.config import registry_location

    return registry_location(registry).open(read_only=read_only, create=create).store
