"""Corruption is found, named and healed: a flipped byte, a truncated object, a deleted
object and an object replaced by another file, in a model file and in a dataset directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import pacha
from support import corrupt, write_pattern

BIG = 3 << 20  # above the 1 MiB small-object limit: existing copies are trusted by size


def _flip(path: Path) -> None:
    corrupt(path, offset=12345)


def _truncate(path: Path) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _delete(path: Path) -> None:
    path.unlink()


def _replace(path: Path) -> None:
    """Another file of the same size under the object's name (e.g. a bad restore)."""
    size = path.stat().st_size
    path.unlink()
    write_pattern(path, size, seed=99)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped byte": (_flip, "corrupt"),
    "truncated": (_truncate, "truncated"),
    "deleted": (_delete, "missing"),
    "replaced": (_replace, "corrupt"),
}


def _pacha(registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PACHA_HOME": str(registry)}
    return subprocess.run(
        [sys.executable, "-m", "pacha", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_named_refused_and_healed(damage: str, registry: Path, tmp_path: Path) -> None:
    """verify exits 1 naming every version the object breaks (a model, another model with the
    same bytes, a dataset that holds them as one of its files); download refuses and leaves
    nothing; registering the same bytes again repairs the object for every version."""
    reg = pacha.Registry(registry)
    weights = write_pattern(tmp_path / "weights.bin", BIG, seed=1)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "copy.bin").write_bytes(weights.read_bytes())
    (tree / "readme.txt").write_text("intact")
    reg.register_model("m", weights, "1.0.0")
    reg.register_model("twin", weights, "1.0.0")
    reg.register_dataset("d", tree, "1.0.0")
    digest = pacha.hash_file(weights)
    obj = registry / "objects" / digest[:2] / digest
    harm, kind = DAMAGE[damage]
    harm(obj)

    result = _pacha(registry, "verify", "--json")
    assert result.returncode == 1
    [problem] = json.loads(result.stdout)["problems"]
    assert (problem["digest"], problem["kind"]) == (digest, kind)
    assert sorted(problem["breaks"]) == ["d:1.0.0", "m:1.0.0", "twin:1.0.0"]

    out = tmp_path / "out"
    out.mkdir()
    for args in (["model", "download", "m:1.0.0"], ["data", "download", "d:1.0.0"]):
        refused = _pacha(registry, *args, "-o", str(out / "x"))
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "Traceback" not in refused.stderr
        assert list(out.iterdir()) == [], f"{args} left partial output"

    # The same bytes registered again: the damaged copy does not count as present.
    healed = _pacha(registry, "model", "register", "m", str(weights), "-v", "1.0.1", "-q")
    assert healed.returncode == 0, healed.stderr
    assert _pacha(registry, "verify").returncode == 0
    for ref, dest in (("m:1.0.0", out / "m.bin"), ("twin:1.0.0", out / "t.bin")):
        reg.download_model(ref, dest)
        assert pacha.hash_file(dest) == digest
    reg.download_dataset("d:1.0.0", out / "d")
    assert pacha.hash_file(out / "d" / "copy.bin") == digest


def test_small_objects_heal_without_a_verify_first(registry: Path, tmp_path: Path) -> None:
    """Objects up to 1 MiB are compared byte for byte before being trusted, so re-adding the
    bytes repairs even damage nobody has noticed yet."""
    reg = pacha.Registry(registry)
    data = write_pattern(tmp_path / "small.bin", 4096, seed=2)
    reg.register_model("s", data, "1.0.0")
    digest = pacha.hash_file(data)
    corrupt(registry / "objects" / digest[:2] / digest, offset=100)
    reg.register_model("s", data, "1.0.1")
    assert reg.verify().ok


def test_a_pack_with_a_damaged_header_is_set_aside_and_its_objects_repaired(
    tmp_path: Path,
) -> None:
    """A damaged pack would block every directory registration; it is set aside instead
    (kept, and named by verify), its objects are reported missing, and repair heals them."""
    registry = tmp_path / "registry"
    first, second = tmp_path / "first", tmp_path / "second"
    for directory, seed in ((first, 1), (second, 2)):
        directory.mkdir()
        for i in range(30):
            (directory / f"{i}.txt").write_text(f"{seed} row {i}\n")
    reg = pacha.Registry(registry)
    reg.register_dataset("first", first, "1.0.0")
    pack = registry / "objects" / "packs" / "small.sqlite"
    with open(pack, "r+b") as f:
        f.write(b"\0" * 100)
    reg.register_dataset("second", second, "1.0.0")
    result = reg.verify()
    kinds = sorted({(p.kind, tuple(p.breaks)) for p in result.problems})
    assert ("missing", ("first:1.0.0",)) in kinds
    assert any("damaged pack set aside" in p.detail for p in result.problems)
    assert not any("second:1.0.0" in p.breaks for p in result.problems)
    repaired = reg.repair("first:1.0.0", first)
    assert repaired.ok and repaired.damaged >= 30
    left = reg.verify().problems  # only the pack kept aside (and its journal)
    assert left and all(p.kind == "stray" and "set aside" in p.detail for p in left)
    out = tmp_path / "out"
    reg.download_dataset("first:1.0.0", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in first.iterdir())
