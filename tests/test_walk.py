"""Reading a directory to register it: what is left out by default, and what cannot be
smuggled in by changing the directory while it is read."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

import pacha
from pacha.errors import InvalidInputError, SourceChangedError
from support import write_pattern


def make_repo_folder(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "model.py").write_text("print('hi')\n")
    (root / "src" / "__pycache__").mkdir()
    (root / "src" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\x00pyc")
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n\tfsmonitor = touch /tmp/pwned\n")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "weights.bin").write_bytes(b"w" * 100)
    sub = root / "vendor" / "lib"
    sub.mkdir(parents=True)
    (sub / ".git").write_text("gitdir: ../../.git/modules/lib\n")  # a submodule's git file
    (sub / "lib.py").write_text("x = 1\n")
    return root


def test_git_and_bytecode_caches_are_left_out_by_default(
    cli, registry: Path, tmp_path: Path
) -> None:
    folder = make_repo_folder(tmp_path / "repo")
    result = cli("model", "register", "m", str(folder), "-v", "1.0.0", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["skipped"] == [".git", "src/__pycache__", "vendor/lib/.git"]
    assert doc["file_count"] == 3
    human = cli("model", "register", "m", str(folder), "-v", "1.0.1")
    assert human.returncode == 0
    assert "left out .git, src/__pycache__, vendor/lib/.git" in human.stderr
    assert "--include-vcs" in human.stderr
    out = tmp_path / "out"
    assert cli("model", "download", "m:1.0.0", "-o", str(out)).returncode == 0
    stored = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert stored == ["src/model.py", "vendor/lib/lib.py", "weights.bin"]


def test_include_vcs_keeps_them(registry: Path, tmp_path: Path) -> None:
    folder = make_repo_folder(tmp_path / "repo")
    reg = pacha.Registry(registry)
    v = reg.register_model("m", folder, "1.0.0", include_vcs=True)
    assert v.skipped == () and v.file_count == 7


def test_a_directory_with_nothing_but_skipped_entries_is_refused(
    registry: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "only-git"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    reg = pacha.Registry(registry)
    with pytest.raises(InvalidInputError, match=r"every entry .* is skipped \(\.git\)"):
        reg.register_model("m", folder, "1.0.0")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="the directory is empty"):
        reg.register_dataset("d", empty, "1.0.0")
    assert reg.list_models() == [] and reg.list_datasets() == []


def test_a_backslash_in_a_file_name_round_trips(registry: Path, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "a\\b.txt").write_text("backslash")
    (folder / "..\\up.txt").write_text("not a parent")
    reg = pacha.Registry(registry)
    reg.register_dataset("d", folder, "1.0.0")
    assert reg.verify().ok
    out = tmp_path / "out"
    reg.download_dataset("d:1.0.0", out)
    assert sorted(p.name for p in out.iterdir()) == ["..\\up.txt", "a\\b.txt"]
    assert (out / "..\\up.txt").read_text() == "not a parent"
    assert not (tmp_path / "up.txt").exists()


def test_modes_survive_a_round_trip(registry: Path, tmp_path: Path) -> None:
    folder = tmp_path / "modes"
    folder.mkdir()
    modes = {"private.key": 0o600, "script.sh": 0o750, "shared.txt": 0o644, "ro.txt": 0o444}
    for name, mode in modes.items():
        (folder / name).write_text(name)
        (folder / name).chmod(mode)
    reg = pacha.Registry(registry)
    reg.register_dataset("d", folder, "1.0.0")
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        reg.download_dataset("d:1.0.0", out)
    finally:
        os.umask(old)
    for name, mode in modes.items():
        assert (out / name).stat().st_mode & 0o777 == mode, name


def test_swapping_a_subdirectory_for_a_link_never_stores_an_outside_file(
    registry: Path, tmp_path: Path
) -> None:
    """A thread keeps replacing `data/sub` by a link to a directory outside (holding files
    of the same names) while the directory is registered again and again: every attempt
    either stores the real files or is refused; the outside files are never stored."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(20):
        (data / f"top{i}.txt").write_text(f"top {i}\n")
        (data / "sub" / f"f{i}.txt").write_text(f"innocuous {i}\n")
        (outside / f"f{i}.txt").write_text(f"SECRET {i}\n")
    write_pattern(data / "sub" / "big.bin", 200_000, seed=1)
    write_pattern(outside / "big.bin", 200_000, seed=2)
    secrets = {pacha.hash_file(p) for p in outside.iterdir()}
    real, parked = data / "sub", data / "sub.real"
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            real.rename(parked)
            real.symlink_to(outside, target_is_directory=True)
            real.unlink()
            parked.rename(real)

    reg = pacha.Registry(registry)
    swapper = threading.Thread(target=swap)
    swapper.start()
    outcomes = {"registered": 0, "refused": 0}
    try:
        for attempt in range(300):
            try:
                reg.register_dataset("d", data, f"1.0.{attempt}")
                outcomes["registered"] += 1
            except (SourceChangedError, InvalidInputError, FileNotFoundError):
                outcomes["refused"] += 1
    finally:
        stop.set()
        swapper.join()
    stored = {o.digest for o in reg.store.list()}
    assert not stored & secrets, outcomes
    assert outcomes["registered"] + outcomes["refused"] == 300
