"""Delete and garbage collection: what is removed, what is never removed, and gc running
while other processes register."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pacha
from support import object_files, write_pattern

DAY = 24 * 3600


def _tree(root: Path, files: int, seed: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"part-{i}.bin").write_bytes(f"{seed}-{i}".encode() * 10)
    return root


def test_gc_removes_only_what_nothing_references(registry: Path, tmp_path: Path) -> None:
    """Deleted versions' bytes go; bytes shared with a live version, a tree's files and run
    artifacts stay; downloads and verify are unaffected."""
    reg = pacha.Registry(registry)
    unique = write_pattern(tmp_path / "unique.bin", 3 << 20, seed=1)
    shared = write_pattern(tmp_path / "shared.bin", 1000, seed=2)
    reg.register_model("m", unique, "1.0.0")
    reg.register_model("m", shared, "1.0.1")
    reg.register_model("other", shared, "1.0.0")  # same bytes, another name
    reg.register_dataset("tree", _tree(tmp_path / "tree", 5, seed=3), "1.0.0")
    with reg.start_run() as run:
        run.log_artifact(write_pattern(tmp_path / "ckpt.bin", 5000, seed=4))
    reg.delete_model("m:1.0.0")
    reg.delete_model("m:1.0.1")
    before = object_files(registry)

    young = reg.gc()  # default grace: everything is younger than a day
    assert (young.objects_removed, young.young_objects_kept) == (0, 1)
    dry = reg.gc(grace=0, dry_run=True)
    assert (dry.objects_removed, dry.bytes_freed) == (1, 3 << 20)
    assert object_files(registry) == before, "a dry run removed something"

    done = reg.gc(grace=0)
    assert (done.objects_removed, done.bytes_freed) == (1, 3 << 20)
    assert len(object_files(registry)) == len(before) - 1
    assert reg.verify().ok
    out = tmp_path / "out.bin"
    reg.download_model("other:1.0.0", out)
    assert out.read_bytes() == shared.read_bytes()
    reg.download_dataset("tree:1.0.0", tmp_path / "tree-out")
    assert reg.gc(grace=0).objects_removed == 0, "a second collection found more garbage"


def test_deleting_a_tree_frees_its_files(registry: Path, tmp_path: Path) -> None:
    """A directory's manifest and files are collected with it, unless another version has
    them."""
    reg = pacha.Registry(registry)
    reg.register_dataset("d", _tree(tmp_path / "a", 4, seed=1), "1.0.0")
    reg.register_dataset("d", _tree(tmp_path / "b", 4, seed=2), "1.0.1")
    reg.delete_dataset("d:1.0.0")
    result = reg.gc(grace=0)
    assert result.objects_removed == 5, "four files and the manifest"
    assert reg.verify().ok


def test_stale_temp_files_and_loose_objects_respect_the_grace_period(
    registry: Path, tmp_path: Path
) -> None:
    """Temp files of an interrupted write and objects added without metadata (`store add`)
    are removed only once older than the grace period."""
    reg = pacha.Registry(registry)
    loose = reg.store.put_file(write_pattern(tmp_path / "loose.bin", 2000, seed=5))
    tmp_dir = registry / "objects" / "tmp"
    old_temp, new_temp = tmp_dir / "0123abcd.tmp", tmp_dir / "4567ef01.tmp"
    old_temp.write_bytes(b"x" * 100)
    new_temp.write_bytes(b"y" * 10)
    two_days_ago = time.time() - 2 * DAY
    os.utime(old_temp, (two_days_ago, two_days_ago))

    result = reg.gc()
    assert (result.temp_files_removed, result.temp_bytes_freed) == (1, 100)
    assert not old_temp.exists() and new_temp.exists()
    assert result.young_objects_kept == 1 and reg.store.contains(loose.digest)

    object_path = registry / "objects" / loose.digest[:2] / loose.digest
    os.utime(object_path, (two_days_ago, two_days_ago))
    assert reg.gc().objects_removed == 1
    assert not reg.store.contains(loose.digest)


def test_reusing_bytes_protects_them_from_the_grace_period(registry: Path, tmp_path: Path) -> None:
    """Registering bytes that an old, unreferenced object already holds makes the object
    young again, so a collection with a grace period cannot take it from the new version."""
    reg = pacha.Registry(registry)
    data = write_pattern(tmp_path / "w.bin", 3000, seed=6)
    reg.register_model("m", data, "1.0.0")
    reg.delete_model("m:1.0.0")
    digest = pacha.hash_file(data)
    object_path = registry / "objects" / digest[:2] / digest
    two_days_ago = time.time() - 2 * DAY
    os.utime(object_path, (two_days_ago, two_days_ago))
    reg.register_model("m", data, "1.0.1")
    assert object_path.stat().st_mtime > two_days_ago + DAY
    assert reg.gc().objects_removed == 0
    assert reg.verify().ok


def test_gc_cli(cli, registry: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`pacha gc` reports in text and JSON; a bad --grace is one line on stderr, exit 1."""
    data = write_pattern(tmp_path / "f.bin", 4096, seed=7)
    assert cli("model", "register", "m", str(data), "-v", "1.0.0", "-q").returncode == 0
    assert cli("model", "delete", "m:1.0.0").returncode == 0
    dry = cli("gc", "--grace", "0", "--dry-run")
    assert dry.returncode == 0 and "would remove 1 object(s)" in dry.stdout
    done = cli("gc", "--grace", "0s", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["objects_removed"] == 1 and report["bytes_freed"] == 4096
    assert report["dry_run"] is False
    for bad in ("soon", "-1", "5x", "inf"):
        result = cli("gc", "--grace", bad)
        assert result.returncode == 1, bad
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


_REGISTER_LOOP = """
import sys, pacha
reg = pacha.Registry(sys.argv[1])
worker, rounds, shared = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for i in range(rounds):
    # Alternately new bytes and bytes a deleted version left behind (garbage gc is removing).
    path = shared if i % 2 else f"{sys.argv[5]}/w{worker}-{i}.bin"
    if not i % 2:
        open(path, "wb").write(f"worker {worker} round {i}".encode() * 50)
    reg.register_model(f"w{worker}", path, f"1.0.{i}")
    print(f"w{worker}:1.0.{i} {path}", flush=True)
"""


@pytest.mark.fault
def test_gc_in_a_loop_while_others_register(registry: Path, tmp_path: Path) -> None:
    """Nothing registered is ever lost to a concurrent collection, even with no grace
    period and bytes that were garbage a moment before."""
    reg = pacha.Registry(registry)
    shared = write_pattern(tmp_path / "shared.bin", 200_000, seed=8)
    reg.register_model("seed", shared, "1.0.0")
    reg.delete_model("seed:1.0.0")  # its object is garbage from now on
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _REGISTER_LOOP,
                str(registry),
                str(w),
                "20",
                str(shared),
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    collections = 0
    while any(w.poll() is None for w in workers):
        reg.gc(grace=0)
        collections += 1
    registered = []
    for w in workers:
        out, _ = w.communicate()
        assert w.returncode == 0
        registered += [line.split() for line in out.splitlines()]
    assert len(registered) == 60 and collections > 1
    reg.gc(grace=0)
    assert reg.verify().ok
    for ref, source in registered:
        out = tmp_path / "check.bin"
        reg.download_model(ref, out, force=True)
        assert pacha.hash_file(out) == pacha.hash_file(source), ref
