"""`pacha recover`: give a registry whose database was lost back every object it holds.

What objects still tell: a directory's tree manifest lists its files (names, sizes, modes);
a recipe was stored as its TOML text, which names it and its version. What only the
database knew is gone: names and version numbers of models and datasets, stages and their
history, aliases, tags, cards and datasheets, runs and their metrics and artifacts' names,
lineage. So each recovered directory or file becomes a version ``0.0.0`` of its own name,
``recovered-<first 12 hex digits of its digest>``, as a model when its contents look like one
(weights, or a ``config.json``) and as a dataset otherwise, with a description saying what
it holds; recipes get their own names and versions back. Nothing is deleted: the old
database file is kept under another name, and every object stays where it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from pacha import _core

__all__ = ["NOT_RECOVERABLE", "RecoveryReport", "recover"]

#: What a registry's objects cannot tell, said by every recovery.
NOT_RECOVERABLE = (
    "names and version numbers of models and datasets, stages and their history, aliases, "
    "tags, cards and datasheets, runs (parameters, metrics, artifact names) and lineage"
)

_WEIGHTS = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".onnx", ".h5",
    ".keras", ".pb", ".tflite", ".msgpack", ".mlmodel", ".pkl", ".joblib",
)  # fmt: skip

#: Bytes read to tell what a single object is.
_SNIFF = 4096


@dataclass
class RecoveryReport:
    """What `recover` did: the versions it recorded, and what it kept aside."""

    registry: str
    recovered: list[dict[str, Any]] = field(default_factory=list)
    kept_database_files: list[str] = field(default_factory=list)
    not_recoverable: str = NOT_RECOVERABLE

    def to_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "recovered": self.recovered,
            "kept_database_files": self.kept_database_files,
            "not_recoverable": self.not_recoverable,
        }


def _looks_like_a_model_tree(paths: list[str]) -> bool:
    names = [p.rsplit("/", 1)[-1].lower() for p in paths]
    return "config.json" in names or any(n.endswith(_WEIGHTS) for n in names)


def _looks_like_a_model_file(head: bytes) -> bool:
    """Weights formats recognisable from their first bytes: GGUF, safetensors (a little-
    endian header length, then JSON), a PyTorch zip archive or a pickle."""
    if head.startswith((b"GGUF", b"PK\x03\x04")) or head[:1] == b"\x80":
        return True
    return len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30


def _recipe(store: _core.ObjectStore, digest: str, size: int) -> Optional[dict[str, Any]]:
    """The parsed recipe, when the object is one (a TOML text naming a recipe)."""
    from pacha.errors import PachaError
    from pacha.recipes import MAX_RECIPE_BYTES, parse_recipe_text, validate_recipe_data

    if size > MAX_RECIPE_BYTES:
        return None
    try:
        text = store.get_bytes(digest, MAX_RECIPE_BYTES).decode("utf-8")
        data = parse_recipe_text(text, digest)
    except (UnicodeDecodeError, PachaError, OSError):
        return None
    if not isinstance(data.get("name"), str) or not isinstance(data.get("version"), str):
        return None
    problems = validate_recipe_data(data)
    return None if any(p.severity == "error" for p in problems) else data


def recover(path: Optional[os.PathLike[str] | str] = None) -> RecoveryReport:
    """Recover the registry at `path` (default as `pacha.Registry`) whose database is
    missing or empty; see the module's documentation for what can and cannot be."""
    from pacha.home import registry_path
    from pacha.recipes import recipe_json
    from pacha.registry import _actor

    root = registry_path(path)
    core, kept = _core.Registry.recover_database(root)
    report = RecoveryReport(registry=str(root), kept_database_files=[str(k) for k in kept])
    store = core.store
    actor = _actor()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    objects = {o.digest: o.size for o in store.list()}
    trees = {d: files for d in objects if (files := core.tree_files(d)) is not None}
    # A tree's manifest and files are recovered as the tree; everything else stands alone.
    in_trees: set[str] = set()
    for digest in trees:
        in_trees |= _tree_objects(core, digest)
    for digest, files in sorted(trees.items()):
        paths = [p for p, _ in files]
        kind = "model" if _looks_like_a_model_tree(paths) else "dataset"
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        info = core.adopt(
            kind,
            f"recovered-{digest[:12]}",
            "0.0.0",
            digest,
            description=f"recovered by `pacha recover` on {when}: a directory of "
            f"{len(paths)} files ({shown})",
            actor=actor,
        )
        report.recovered.append(_entry(info, "directory"))
    for digest, size in sorted(objects.items()):
        if digest in in_trees:
            continue
        recipe = _recipe(store, digest, size)
        if recipe is not None:
            info = core.adopt(
                "recipe",
                recipe["name"],
                recipe["version"],
                digest,
                description=recipe.get("description"),
                card=recipe_json(recipe),
                actor=actor,
            )
            report.recovered.append(_entry(info, "recipe"))
            continue
        kind = "model" if _looks_like_a_model_file(store.read_prefix(digest, _SNIFF)) else "dataset"
        info = core.adopt(
            kind,
            f"recovered-{digest[:12]}",
            "0.0.0",
            digest,
            description=f"recovered by `pacha recover` on {when}: a file of {size} bytes "
            "(its name was in the lost database)",
            actor=actor,
        )
        report.recovered.append(_entry(info, "file"))
    return report


def _tree_objects(core: _core.Registry, digest: str) -> set[str]:
    """The objects of the tree stored as `digest`: its manifest and its files."""
    found = {digest}
    manifest = json.loads(core.store.get_bytes(digest, 512 << 20))
    found.update(entry["digest"] for entry in manifest.get("entries", []))
    return found


def _entry(info: _core.VersionInfo, what: str) -> dict[str, Any]:
    return {
        "kind": info.kind,
        "name": info.name,
        "version": info.version,
        "digest": info.digest,
        "size": info.size,
        "files": info.file_count,
        "was": what,
    }
