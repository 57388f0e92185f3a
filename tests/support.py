"""Helpers shared by the tests."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pacha


def write_pattern(path: Path, size: int, seed: int = 0) -> Path:
    """Write `size` deterministic pseudo-random bytes without holding them all in memory."""
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, 1 << 20)
            f.write(rng.randbytes(n))
            remaining -= n
    return path


def reopen(reg: pacha.Registry) -> pacha.Registry:
    """A second handle on the registry `reg` is (for a shared one, as the environment the
    `backend` fixture sets names it)."""
    return pacha.Registry(reg.path) if reg.path is not None else pacha.Registry()


def stored_objects(reg: pacha.Registry) -> list[str]:
    """The digests of every object in the registry's store, whatever its backend."""
    return sorted(o.digest for o in reg.store.list())


def object_files(registry: Path) -> list[str]:
    root = registry / "objects"
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def corrupt(path: Path, offset: int = 0) -> None:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def tree_listing(root: Path) -> dict[str, Any]:
    """Relative path -> ("dir",) or ("file", bytes, executable)."""
    listing: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            listing[rel] = ("dir",)
        else:
            listing[rel] = ("file", p.read_bytes(), bool(p.stat().st_mode & 0o111))
    return listing


def make_hf_folder(root: Path) -> Path:
    """A fake Hugging Face model folder."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    (root / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"vocab": {}}}))
    (root / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    (root / "special_tokens_map.json").write_text('{"unk_token": "[UNK]"}')
    (root / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (root / "added_tokens.json").write_bytes(b"")
    write_pattern(root / "model-00001-of-00002.safetensors", 300_000, seed=42)
    write_pattern(root / "model-00002-of-00002.safetensors", 300_000, seed=42)
    (root / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    nested = root / "onnx" / "quantized"
    nested.mkdir(parents=True)
    write_pattern(nested / "model int8.onnx", 5000, seed=3)
    (root / "empty").mkdir()
    (root / "outer" / "inner-empty").mkdir(parents=True)
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    return root
