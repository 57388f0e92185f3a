"""Versions as plain, JSON-ready dicts: the one definition of a version's JSON form.

Built straight from the core's records, without pydantic, so that the CLI's read commands
start fast; `ArtifactVersion.to_json()` produces the same dict from a pydantic model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from pacha import _core

__all__ = ["from_core", "stored_object", "transition_dict", "utc_text", "version_dict"]


def stored_object(text: Optional[str], what: str) -> Optional[dict[str, Any]]:
    """A JSON object kept in the registry database (a card, a run's parameters), or None when
    there is none. A damaged cell is a `DatabaseError` naming it, never a traceback."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        from pacha.errors import DatabaseError

        raise DatabaseError(
            f"registry database: the {what} is damaged (not a JSON object); restore the "
            "database from a backup"
        )
    return value


def utc_text(value: Union[datetime, str]) -> str:
    """A timestamp as the registry writes it: UTC, milliseconds, ``Z``."""
    if isinstance(value, str):
        return value
    text = value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def transition_dict(
    from_stage: Optional[str], to_stage: str, at: Union[datetime, str], by: str
) -> dict[str, Any]:
    return {"from_stage": from_stage, "to_stage": to_stage, "at": utc_text(at), "by": by}


def version_dict(
    *,
    kind: str,
    name: str,
    version: str,
    stage: str,
    digest: str,
    layout: str,
    size: int,
    file_count: int,
    description: Optional[str],
    aliases: Iterable[str],
    tags: Mapping[str, str],
    created_at: Union[datetime, str],
    created_by: str,
    history: Iterable[Mapping[str, Any]],
    document: Optional[Mapping[str, Any]],
    run: Optional[str] = None,
) -> dict[str, Any]:
    """The JSON form of one version (keys in a fixed order)."""
    return {
        "kind": kind,
        "name": name,
        "version": version,
        "stage": stage,
        "digest": digest,
        "layout": layout,
        "size": size,
        "file_count": file_count,
        "description": description,
        "aliases": list(aliases),
        "tags": dict(tags),
        "created_at": utc_text(created_at),
        "created_by": created_by,
        "history": [dict(t) for t in history],
        "document": dict(document) if document is not None else None,
        "run": run,
    }


def from_core(
    info: _core.VersionInfo,
    history: Optional[Iterable[_core.TransitionInfo]] = None,
    *,
    listing: bool = False,
) -> dict[str, Any]:
    """The JSON form of a record from the core. In a `listing`, a damaged card is shown as
    none (one damaged cell must not hide every other version); elsewhere it is an error."""
    from pacha.errors import DatabaseError

    try:
        document = stored_object(info.card, f"card of {info.name}:{info.version}")
    except DatabaseError:
        if not listing:
            raise
        document = None
    return version_dict(
        kind=info.kind,
        name=info.name,
        version=info.version,
        stage=info.stage,
        digest=info.digest,
        layout=info.layout,
        size=info.size,
        file_count=info.file_count,
        description=info.description,
        aliases=info.aliases,
        tags=dict(info.tags),
        created_at=info.created_at,
        created_by=info.created_by,
        history=[transition_dict(t.from_stage, t.to_stage, t.at, t.by) for t in history or []],
        document=document,
        run=info.run_id,
    )
