"""Small files in a shared registry's bucket travel packed: a directory of many small files
becomes a few pack objects, what the registry has already is learned from one index query,
and packed objects are verified, downloaded, forged, collected and swept like any other."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import pacha
from conftest import Backend

pytestmark = pytest.mark.parametrize("backend", ["shared"], indirect=True)


def small_files(root: Path, count: int, seed: int = 0, size: int = 4096) -> Path:
    rng = random.Random(seed)
    for i in range(count):
        path = root / f"{i // 250:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return root


def keys(backend: Backend, kind: str) -> list[str]:
    """The keys under PREFIX/`kind`/ in the bucket."""
    assert backend.server is not None and backend.objects is not None
    bucket, _, prefix = backend.objects.removeprefix("s3://").partition("/")
    pages = backend.server.client().get_paginator("list_objects_v2")
    return [
        item["Key"]
        for page in pages.paginate(Bucket=bucket, Prefix=f"{prefix}/{kind}/")
        for item in page.get("Contents", [])
    ]


def test_two_thousand_small_files_are_one_pack_and_come_back_bit_exact(
    backend: Backend, tmp_path: Path
) -> None:
    reg = backend.open()
    tree = small_files(tmp_path / "data", 2000)
    version = reg.register_dataset("d", tree, "1.0.0")
    assert version.file_count == 2000
    # One pack for the files; one loose object: the manifest.
    assert len(keys(backend, "packs")) == 1
    assert len(keys(backend, "objects")) == 1
    out = tmp_path / "out"
    reg.download_dataset("d:1.0.0", out)
    for path in tree.rglob("*.bin"):
        assert (out / path.relative_to(tree)).read_bytes() == path.read_bytes()
    assert reg.verify().ok
    assert len(reg.store.list()) == 2001


def test_what_the_registry_has_is_not_sent_again(backend: Backend, tmp_path: Path) -> None:
    reg = backend.open()
    tree = small_files(tmp_path / "data", 300)
    reg.register_dataset("d", tree, "1.0.0")
    reg.register_dataset("copy", tree, "1.0.0")
    assert len(keys(backend, "packs")) == 1
    small_files(tmp_path / "data" / "new", 5, seed=9)
    reg.register_dataset("d", tree, "1.1.0")
    packs = keys(backend, "packs")
    assert len(packs) == 2
    assert backend.server is not None and backend.objects is not None
    bucket = backend.objects.removeprefix("s3://").partition("/")[0]
    sizes = sorted(
        backend.server.client().head_object(Bucket=bucket, Key=k)["ContentLength"] for k in packs
    )
    # The second pack holds the five new files only.
    assert sizes == [5 * 4096, 300 * 4096]


def test_a_forged_packed_file_is_named_by_verify_and_refused_by_download(
    backend: Backend, tmp_path: Path
) -> None:
    reg = backend.open()
    tree = small_files(tmp_path / "data", 50)
    reg.register_dataset("d", tree, "1.0.0")
    [pack] = keys(backend, "packs")
    assert backend.server is not None and backend.objects is not None
    bucket = backend.objects.removeprefix("s3://").partition("/")[0]
    client = backend.server.client()
    body = bytearray(client.get_object(Bucket=bucket, Key=pack)["Body"].read())
    body[4096 * 7 + 100] ^= 0xFF  # inside the eighth member
    client.put_object(Bucket=bucket, Key=pack, Body=bytes(body))
    result = reg.verify()
    [problem] = result.problems
    assert problem.kind == "corrupt" and problem.breaks == ["d:1.0.0"]
    out = tmp_path / "out"
    with pytest.raises(pacha.IntegrityError):
        reg.download_dataset("d:1.0.0", out)
    assert not out.exists()


def test_gc_removes_a_deleted_versions_pack_and_sweeps_orphans(
    backend: Backend, tmp_path: Path
) -> None:
    reg = backend.open()
    keep = small_files(tmp_path / "keep", 20, seed=1)
    drop = small_files(tmp_path / "drop", 20, seed=2)
    reg.register_dataset("keep", keep, "1.0.0")
    reg.register_dataset("drop", drop, "1.0.0")
    assert len(keys(backend, "packs")) == 2
    # A pack a killed registration uploaded but never recorded.
    assert backend.server is not None and backend.objects is not None
    bucket, _, prefix = backend.objects.removeprefix("s3://").partition("/")
    orphan = f"{prefix}/packs/{pacha.hash_bytes(b'orphan')}"
    backend.server.client().put_object(Bucket=bucket, Key=orphan, Body=b"orphan")
    reg.delete_dataset("drop:1.0.0")
    # Two phases on a shared registry: the first run marks, a later one removes.
    marking = reg.gc(grace=0)
    assert (marking.objects_removed, marking.objects_marked) == (0, 21)
    assert marking.temp_files_removed == 1  # the orphan pack
    assert len(keys(backend, "packs")) == 2
    result = reg.gc(grace=0)
    assert (result.objects_removed, result.objects_marked) == (21, 0)  # 20 files + manifest
    assert len(keys(backend, "packs")) == 1
    assert orphan not in keys(backend, "packs")
    assert reg.verify().ok
    reg.download_dataset("keep:1.0.0", tmp_path / "out")
    assert reg.gc(grace=0).objects_removed == 0


def test_many_processes_packing_at_once_lose_nothing(backend: Backend, tmp_path: Path) -> None:
    import subprocess
    import sys

    trees = [small_files(tmp_path / f"t{i}", 200, seed=i % 2) for i in range(4)]
    script = (
        "import sys, pacha\npacha.Registry().register_dataset(sys.argv[1], sys.argv[2], '1.0.0')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"d{i}", str(tree)],
            env=os.environ.copy(),
            stderr=subprocess.PIPE,
        )
        for i, tree in enumerate(trees)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    reg = backend.open()
    assert reg.verify().ok
    for i, tree in enumerate(trees):
        out = tmp_path / f"out{i}"
        reg.download_dataset(f"d{i}:1.0.0", out)
        assert sorted(p.name for p in out.rglob("*.bin")) == sorted(
            p.name for p in tree.rglob("*.bin")
        )
