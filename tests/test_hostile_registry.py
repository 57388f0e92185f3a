"""A hostile or damaged registry directory: links planted where pacha keeps its own files,
loose permissions, another user's registry, a read-only file system.

The store must never follow a link it did not create (a teammate with write access to a
shared registry could otherwise make your pacha truncate or overwrite any file you own), must
report such links in `verify`, and must refuse a registry anyone can write to.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pacha
from pacha.errors import ReadOnlyRegistryError, UnsafeRegistryError
from support import write_pattern

BIG = 2 << 20  # above SMALL_OBJECT_MAX: the size-marker path


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of the user's, outside the registry, that nothing may touch."""
    path = tmp_path / "victim" / "precious.txt"
    path.parent.mkdir()
    path.write_text("do not truncate me\n")
    return path


def unchanged(victim: Path) -> bool:
    return victim.read_text() == "do not truncate me\n"


def object_path(registry: Path, digest: str) -> Path:
    return registry / "objects" / digest[:2] / digest


def test_a_link_planted_as_a_size_marker_is_never_followed(
    registry: Path, tmp_path: Path, victim: Path
) -> None:
    reg = pacha.Registry(registry)
    src = write_pattern(tmp_path / "model.bin", BIG, seed=1)
    (registry / "objects" / "sizes" / str(BIG)).symlink_to(victim)
    reg.register_model("m", src, "1.0.0")
    other = write_pattern(tmp_path / "other.bin", BIG, seed=2)
    reg.register_model("m", other, "1.0.1")
    assert unchanged(victim)
    result = reg.verify()
    assert [(p.kind, Path(p.path).name) for p in result.problems] == [("stray", str(BIG))]
    assert "symbolic link" in result.problems[0].detail


def test_a_link_planted_as_a_damage_marker_is_never_followed(
    registry: Path, tmp_path: Path, victim: Path
) -> None:
    reg = pacha.Registry(registry)
    v = reg.register_model("m", write_pattern(tmp_path / "model.bin", BIG, seed=1), "1.0.0")
    (registry / "objects" / "damaged" / v.digest).symlink_to(victim)
    obj = object_path(registry, v.digest)
    obj.chmod(0o644)
    with open(obj, "r+b") as f:
        f.write(b"\0")
    result = reg.verify()
    assert unchanged(victim)
    assert {p.kind for p in result.problems} == {"corrupt", "stray"}


def test_a_shard_replaced_by_a_link_is_refused_and_reported(
    cli, registry: Path, tmp_path: Path, victim: Path
) -> None:
    src = write_pattern(tmp_path / "model.bin", 10_000, seed=3)
    digest = pacha.hash_file(src)
    pacha.Registry(registry)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (registry / "objects" / digest[:2]).symlink_to(elsewhere, target_is_directory=True)
    result = cli("model", "register", "m", str(src), "-v", "1.0.0")
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "symbolic link that pacha did not create" in line and digest[:2] in line
    assert list(elsewhere.iterdir()) == []
    assert cli("model", "list").stdout.strip().startswith("no models")
    verify = cli("verify", "--json")
    assert verify.returncode == 1
    import json

    problems = json.loads(verify.stdout)["problems"]
    assert [(p["kind"], Path(p["path"]).name) for p in problems] == [("stray", digest[:2])]


def test_an_object_replaced_by_a_link_is_damage_that_registering_again_heals(
    cli, registry: Path, tmp_path: Path
) -> None:
    src = write_pattern(tmp_path / "model.bin", BIG, seed=4)
    reg = pacha.Registry(registry)
    v = reg.register_model("m", src, "1.0.0")
    obj = object_path(registry, v.digest)
    decoy = tmp_path / "decoy.bin"
    shutil.copyfile(src, decoy)
    obj.unlink()
    obj.symlink_to(decoy)
    out = tmp_path / "out.bin"
    got = cli("model", "download", "m:1.0.0", "-o", str(out))
    assert got.returncode == 1 and "symbolic link" in one_line(got.stderr)
    assert not out.exists()
    problems = reg.verify().problems
    assert [(p.kind, p.digest) for p in problems] == [("corrupt", v.digest)]
    assert cli("store", "add", str(src)).returncode == 0
    assert obj.is_file() and not obj.is_symlink()
    assert decoy.read_bytes() == src.read_bytes()
    assert reg.verify().ok


def test_an_object_replaced_by_a_directory_is_healed_by_adding_it_again(
    cli, registry: Path, tmp_path: Path
) -> None:
    src = write_pattern(tmp_path / "model.bin", BIG, seed=5)
    reg = pacha.Registry(registry)
    v = reg.register_model("m", src, "1.0.0")
    obj = object_path(registry, v.digest)
    obj.unlink()
    (obj / "sub").mkdir(parents=True)
    (obj / "sub" / "file").write_text("x")
    assert [p.kind for p in reg.verify().problems] == ["corrupt"]
    assert cli("store", "add", str(src)).returncode == 0
    assert obj.is_file()
    assert reg.verify().ok


@pytest.mark.parametrize("what", ["gc.lock", "gc.intent", "registry.db"])
def test_a_link_in_place_of_a_registry_file_is_refused(
    cli, registry: Path, tmp_path: Path, victim: Path, what: str
) -> None:
    pacha.Registry(registry)
    planted = registry / what
    planted.unlink(missing_ok=True)
    planted.symlink_to(victim)
    result = cli("model", "register", "m", str(victim), "-v", "1.0.0")
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert what in line and "symbolic link" in line
    assert unchanged(victim)


@pytest.mark.parametrize("what", ["tmp", "packs"])
def test_a_link_in_place_of_a_store_directory_is_refused_and_reads_still_work(
    cli, registry: Path, tmp_path: Path, what: str
) -> None:
    reg = pacha.Registry(registry)
    reg.register_model("kept", write_pattern(tmp_path / "kept.bin", 1000, seed=6), "1.0.0")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = registry / "objects" / what
    if planted.exists():
        shutil.rmtree(planted)
    planted.symlink_to(elsewhere, target_is_directory=True)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        (data / f"{i}.txt").write_text(f"row {i}\n")
    write_pattern(data / "big.bin", BIG, seed=7)
    result = cli("data", "register", "d", str(data), "-v", "1.0.0")
    assert result.returncode == 1
    assert "symbolic link" in one_line(result.stderr)
    assert list(elsewhere.iterdir()) == []
    assert cli("model", "get", "kept:1.0.0").returncode == 0
    problems = pacha.Registry(registry).verify().problems
    assert any(Path(p.path).name == what and "symbolic link" in p.detail for p in problems)


def test_a_registry_anyone_can_write_to_is_refused(cli, registry: Path, tmp_path: Path) -> None:
    pacha.Registry(registry)
    registry.chmod(0o777)
    for args in (
        ("model", "list"),
        ("model", "register", "m", str(registry / "registry.db"), "-v", "1.0.0"),
    ):
        result = cli(*args)
        assert result.returncode == 1
        line = one_line(result.stderr)
        assert "every user can write to it" in line and "chmod o-w" in line
    with pytest.raises(UnsafeRegistryError):
        pacha.Registry(registry)
    registry.chmod(0o700)
    assert cli("model", "list").returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the registry to another user")
def test_another_users_registry_is_read_only_unless_shared_with_your_group(
    cli, registry: Path, tmp_path: Path
) -> None:
    src = write_pattern(tmp_path / "model.bin", 5000, seed=8)
    pacha.Registry(registry).register_model("m", src, "1.0.0")
    nobody = 65534
    for path in [registry, *registry.rglob("*")]:
        os.lchown(path, nobody, nobody)
    reg = pacha.Registry(registry)
    assert reg.read_only_reason is not None and "belongs to uid 65534" in reg.read_only_reason
    assert [v.version for v in reg.list_model_versions("m")] == ["1.0.0"]
    reg.download_model("m:1.0.0", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert reg.verify().ok
    with pytest.raises(ReadOnlyRegistryError, match="read-only here"):
        reg.register_model("m", src, "1.0.1")
    with pytest.raises(ReadOnlyRegistryError):
        reg.stage_model("m:1.0.0", "staging")
    result = cli("model", "register", "m", str(src), "-v", "1.0.1")
    assert result.returncode == 1 and "read-only here" in one_line(result.stderr)

    # Shared with a group we are in (setgid, group-writable): writable, and what is created
    # belongs to that group with group access.
    os.chown(registry, nobody, os.getegid())
    registry.chmod(0o2770)
    reg = pacha.Registry(registry)
    assert reg.read_only_reason is None
    other = write_pattern(tmp_path / "other.bin", BIG, seed=9)
    v = reg.register_model("m", other, "1.0.1")
    shard = object_path(registry, v.digest).parent
    assert stat.S_IMODE(shard.stat().st_mode) == 0o2770
    assert shard.stat().st_gid == os.getegid()


def test_modes_of_a_private_registry(registry: Path, tmp_path: Path) -> None:
    registry.mkdir(mode=0o755)
    registry.chmod(0o755)
    reg = pacha.Registry(registry)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    write_pattern(data / "b.bin", BIG, seed=10)
    reg.register_dataset("d", data, "1.0.0")
    reg.gc(grace=3600)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.lstat().st_mode)

    assert mode(registry) == 0o700, "an empty directory made into a registry becomes private"
    for path in [registry / "registry.db", registry / "gc.lock", registry / "gc.intent"]:
        assert mode(path) == 0o600, path
    packs = registry / "objects" / "packs"
    assert mode(packs) == 0o700
    assert mode(packs / "small.sqlite") == 0o600
    for sub in ("objects", "objects/tmp", "objects/sizes", "objects/damaged"):
        assert mode(registry / sub) == 0o700, sub


def test_a_directory_holding_other_files_keeps_its_mode(registry: Path) -> None:
    registry.mkdir()
    registry.chmod(0o750)
    (registry / "notes.txt").write_text("mine")
    pacha.Registry(registry)
    assert stat.S_IMODE(registry.stat().st_mode) == 0o750
    assert stat.S_IMODE((registry / "registry.db").stat().st_mode) == 0o600


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A registry on a small tmpfs, remounted read-only by the test."""
    mount = tmp_path / "mounts" / "mnt"
    mount.mkdir(parents=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def test_a_registry_on_a_read_only_mount_can_be_read(
    cli, read_only_mount: Path, tmp_path: Path
) -> None:
    registry = read_only_mount / "reg"
    src = write_pattern(tmp_path / "model.bin", BIG, seed=11)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    reg = pacha.Registry(registry)
    reg.register_model("m", src, "1.0.0")
    reg.register_dataset("d", data, "1.0.0")
    del reg
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)

    env_registry = ("--registry", str(registry))
    assert cli(*env_registry, "model", "list").returncode == 0
    got = cli(*env_registry, "model", "get", "m:1.0.0", "--json")
    assert got.returncode == 0, got.stderr
    out = tmp_path / "out.bin"
    assert cli(*env_registry, "model", "download", "m@latest", "-o", str(out)).returncode != 0
    assert cli(*env_registry, "model", "download", "m:1.0.0", "-o", str(out)).returncode == 0
    assert out.read_bytes() == src.read_bytes()
    assert (
        cli(*env_registry, "data", "download", "d:1.0.0", "-o", str(tmp_path / "d")).returncode == 0
    )
    assert cli(*env_registry, "verify").returncode == 0
    assert cli(*env_registry, "stats").returncode == 0
    refused = cli(*env_registry, "model", "register", "m", str(src), "-v", "2.0.0")
    assert refused.returncode == 1
    assert "mounted read-only" in one_line(refused.stderr)


def test_read_commands_never_create_a_registry(cli, tmp_path: Path) -> None:
    typo = tmp_path / "typo" / "path"
    for args in (
        ("model", "list"),
        ("data", "get", "x:1.0.0"),
        ("run", "list"),
        ("stats",),
        ("verify",),
        ("gc",),
        ("lineage", "impact", "dataset/x:1.0.0"),
        ("store", "list"),
    ):
        result = cli("--registry", str(typo), *args)
        assert result.returncode == 1, args
        assert "there is no registry at" in one_line(result.stderr), args
    assert not typo.exists() and not typo.parent.exists()


# ---- where downloads may land ----


def test_download_never_replaces_a_mount_point_or_a_directory_holding_one(
    cli, registry: Path, tmp_path: Path, read_only_mount: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    pacha.Registry(registry).register_dataset("d", data, "1.0.0")
    subprocess.run(["mount", "-o", "remount,rw", str(read_only_mount)], check=True)
    (read_only_mount / "precious.txt").write_text("on another file system")
    for target in (read_only_mount, read_only_mount.parent):
        result = cli("data", "download", "d:1.0.0", "-o", str(target), "--force")
        assert result.returncode == 1
        assert "mount point" in one_line(result.stderr)
    assert (read_only_mount / "precious.txt").read_text() == "on another file system"


def test_replacing_a_directory_says_what_it_removed(cli, registry: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "sub" / "b.txt").write_text("b")
    pacha.Registry(registry).register_dataset("d", data, "1.0.0")
    out = tmp_path / "out"
    assert cli("data", "download", "d:1.0.0", "-o", str(out)).returncode == 0
    again = cli("data", "download", "d:1.0.0", "-o", str(out), "--force")
    assert again.returncode == 0 and "removed" not in again.stderr
    (out / "notes.txt").write_text("mine")
    (out / "scratch").mkdir()
    (out / "scratch" / "x").write_text("x")
    import json

    replaced = cli("data", "download", "d:1.0.0", "-o", str(out), "--force", "--json")
    assert replaced.returncode == 0
    assert json.loads(replaced.stdout)["removed"] == ["notes.txt", "scratch/", "scratch/x"]
    (out / "notes.txt").write_text("mine")
    human = cli("data", "download", "d:1.0.0", "-o", str(out), "--force")
    assert "removed 1 entry that were not part of d:1.0.0 (notes.txt)" in human.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "sub"]


def test_a_single_file_keeps_its_mode(registry: Path, tmp_path: Path) -> None:
    key = tmp_path / "private.key"
    key.write_text("secret")
    key.chmod(0o600)
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    reg = pacha.Registry(registry)
    reg.register_model("key", key, "1.0.0")
    reg.register_model("script", script, "1.0.0")
    old = os.umask(0o022)
    try:
        reg.download_model("key:1.0.0", tmp_path / "out.key")
        reg.download_model("script:1.0.0", tmp_path / "out.sh")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out.sh").stat().st_mode) == 0o755


def test_leftover_parts_of_killed_downloads_are_removed_by_the_next(
    registry: Path, tmp_path: Path
) -> None:
    import fcntl
    import time

    reg = pacha.Registry(registry)
    reg.register_model("m", write_pattern(tmp_path / "m.bin", 4096, seed=12), "1.0.0")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stale_file = out_dir / ".pacha-abcdef.part"
    stale_file.write_bytes(b"half a model")
    stale_dir = out_dir / ".pacha-123456.part"
    (stale_dir / "inner").mkdir(parents=True)
    (stale_dir / "inner" / "f").write_text("half a tree")
    live = out_dir / ".pacha-live00.part"
    live.write_bytes(b"being written")
    young = out_dir / ".pacha-young0.part"
    young.write_bytes(b"just created")
    old = time.time() - 3600
    for path in (stale_file, stale_dir, live):
        os.utime(path, (old, old))
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        reg.download_model("m:1.0.0", out_dir / "m.bin")
    assert sorted(p.name for p in out_dir.iterdir()) == [
        ".pacha-live00.part",
        ".pacha-young0.part",
        "m.bin",
    ]
