"""The download cache of shared registries: every version downloaded from a bucket is kept
here, keyed by BLAKE3 digest, so that downloading the same bytes again moves nothing over
the network. Its place: ``$PACHA_CACHE``, else ``$XDG_CACHE_HOME/pacha``, else
``~/.cache/pacha``. It holds only verified copies of immutable objects: pruning it, or
deleting the directory, loses nothing (the next download fetches again)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Union

from pydantic import BaseModel, Field

from pacha import _core
from pacha.errors import InvalidInputError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


class CacheInfo(BaseModel):
    """What the download cache holds (after a prune, what it kept), and what a prune removed
    (with ``dry_run``, would remove)."""

    path: Path = Field(description="The cache's directory.")
    objects: int
    bytes: int
    removed: int = 0
    freed: int = 0
    dry_run: bool = False


def parse_size(text: Union[str, int]) -> int:
    """Bytes in ``text``: a number with an optional binary unit (``500M``, ``10GiB``,
    ``1.5G``; K, M, G, T are powers of 1024)."""
    if isinstance(text, int):
        if text < 0:
            raise InvalidInputError(f"invalid size {text}: give a number of bytes >= 0")
        return text
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidInputError(
            f"invalid size {text!r}: give a number with an optional unit, e.g. 500M or 20G"
        )
    whole, _, fraction = match.group(1).partition(".")
    unit = _UNITS[match.group(2).lower()]
    size = (
        int(whole) * unit + (int(fraction) * unit) // 10 ** len(fraction)
        if fraction
        else int(whole) * unit
    )
    if size >= 1 << 64:
        raise InvalidInputError(f"invalid size {text!r}: larger than any disk")
    return size


def cache_info() -> CacheInfo:
    """What the download cache holds; creates nothing."""
    path, objects, size, _, _ = _core.download_cache_usage()
    return CacheInfo(path=path, objects=objects, bytes=size)


def prune_cache(max_size: Union[str, int] = 0, *, dry_run: bool = False) -> CacheInfo:
    """Remove the least recently used copies until the cache holds at most ``max_size``
    (bytes, or text such as ``"20G"``; 0, the default, empties it). Safe while other
    processes download: one that needs a removed copy fetches it again."""
    path, objects, size, removed, freed = _core.prune_download_cache(parse_size(max_size), dry_run)
    return CacheInfo(
        path=path, objects=objects, bytes=size, removed=removed, freed=freed, dry_run=dry_run
    )
