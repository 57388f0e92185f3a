"""Downloads from a shared registry (PostgreSQL + S3) go through a local cache keyed by
digest: the second download of the same bytes, or of a version sharing most of its files,
moves nothing over the network; every byte is verified on the way out of the cache too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pacha
from conftest import Backend
from support import corrupt, write_pattern

# Only the shared pair: a registry directory's downloads need no cache.
pytestmark = pytest.mark.parametrize("backend", ["shared"], indirect=True)


@pytest.fixture
def shared(backend: Backend) -> Backend:
    return backend


def remove_from_bucket(backend: Backend, digest: str) -> None:
    """Take an object away from the bucket: what a download then gets can only come from
    the cache."""
    assert backend.server is not None and backend.objects is not None
    bucket, _, prefix = backend.objects.removeprefix("s3://").partition("/")
    backend.server.client().delete_object(
        Bucket=bucket, Key=f"{prefix}/objects/{digest[:2]}/{digest}"
    )


def cached_copy(digest: str) -> Path:
    return Path(os.environ["PACHA_CACHE"]) / "objects" / digest[:2] / digest


def test_a_second_download_comes_from_the_cache(shared: Backend, tmp_path: Path) -> None:
    reg = shared.open()
    source = write_pattern(tmp_path / "weights.bin", 3 << 20, seed=1)
    version = reg.register_model("m", source, "1.0.0")
    reg.download_model("m:1.0.0", tmp_path / "first.bin")
    assert cached_copy(version.digest).is_file()
    remove_from_bucket(shared, version.digest)
    reg.download_model("m:1.0.0", tmp_path / "second.bin")
    assert (tmp_path / "second.bin").read_bytes() == source.read_bytes()
    # The bucket is the truth: verify reports what it lacks, whatever the cache holds.
    [problem] = reg.verify().problems
    assert (problem.kind, problem.digest) == ("missing", version.digest)


def test_a_version_sharing_files_fetches_only_what_is_new(shared: Backend, tmp_path: Path) -> None:
    reg = shared.open()
    tree = tmp_path / "ckpt"
    tree.mkdir()
    for i in range(5):
        write_pattern(tree / f"shard-{i}.bin", 200_000, seed=i)
    reg.register_model("m", tree, "1.0.0")
    reg.download_model("m:1.0.0", tmp_path / "v1")
    write_pattern(tree / "shard-5.bin", 200_000, seed=5)
    reg.register_model("m", tree, "1.1.0")
    for i in range(5):
        remove_from_bucket(shared, pacha.hash_file(tree / f"shard-{i}.bin"))
    reg.download_model("m:1.1.0", tmp_path / "v2")
    assert sorted(p.name for p in (tmp_path / "v2").iterdir()) == [
        f"shard-{i}.bin" for i in range(6)
    ]
    for i in range(6):
        name = f"shard-{i}.bin"
        assert (tmp_path / "v2" / name).read_bytes() == (tree / name).read_bytes()


def test_a_damaged_cached_copy_is_fetched_again(shared: Backend, tmp_path: Path) -> None:
    reg = shared.open()
    source = write_pattern(tmp_path / "weights.bin", 2 << 20, seed=2)
    version = reg.register_model("m", source, "1.0.0")
    reg.download_model("m:1.0.0", tmp_path / "first.bin")
    corrupt(cached_copy(version.digest), offset=1 << 20)
    reg.download_model("m:1.0.0", tmp_path / "second.bin")
    assert (tmp_path / "second.bin").read_bytes() == source.read_bytes()
    # ... and the cache holds good bytes again.
    assert pacha.hash_file(cached_copy(version.digest)) == version.digest


def test_forged_bytes_in_the_bucket_reach_neither_the_output_nor_the_cache(
    shared: Backend, tmp_path: Path
) -> None:
    reg = shared.open()
    version = reg.register_model("m", write_pattern(tmp_path / "w.bin", 1 << 20), "1.0.0")
    shared.forge(version.digest, offset=12345)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(pacha.IntegrityError):
        reg.download_model("m:1.0.0", out / "w.bin")
    assert list(out.iterdir()) == []
    assert not cached_copy(version.digest).exists()


def test_a_cache_that_cannot_be_made_only_costs_the_network(
    shared: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_bytes(b"not a directory")
    monkeypatch.setenv("PACHA_CACHE", str(in_the_way / "cache"))
    reg = shared.open()
    source = write_pattern(tmp_path / "w.bin", 1 << 20)
    reg.register_model("m", source, "1.0.0")
    reg.download_model("m:1.0.0", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()


def test_pruning_keeps_the_most_recently_used_copies(shared: Backend, tmp_path: Path) -> None:
    reg = shared.open()
    old = write_pattern(tmp_path / "old.bin", 2 << 20, seed=11)
    new = write_pattern(tmp_path / "new.bin", 3 << 20, seed=12)
    reg.register_model("old", old, "1.0.0")
    reg.register_model("new", new, "1.0.0")
    reg.download_model("old:1.0.0", tmp_path / "o1.bin")
    reg.download_model("new:1.0.0", tmp_path / "n1.bin")
    info = pacha.cache_info()
    assert (info.path, info.objects, info.bytes) == (
        Path(os.environ["PACHA_CACHE"]),
        2,
        (2 << 20) + (3 << 20),
    )
    # `old` was used longest ago; reading it again makes it the most recently used.
    os.utime(cached_copy(pacha.hash_file(old)), (1, 1))
    os.utime(cached_copy(pacha.hash_file(new)), (2, 2))
    reg.download_model("old:1.0.0", tmp_path / "o2.bin")
    dry = pacha.prune_cache("2M", dry_run=True)
    assert (dry.removed, dry.freed, dry.objects, dry.bytes) == (1, 3 << 20, 1, 2 << 20)
    assert cached_copy(pacha.hash_file(new)).is_file()
    pruned = pacha.prune_cache(2 << 20)
    assert (pruned.removed, pruned.freed) == (1, 3 << 20)
    assert not cached_copy(pacha.hash_file(new)).exists()
    assert cached_copy(pacha.hash_file(old)).is_file()
    # What went is fetched again, verified, and cached again.
    reg.download_model("new:1.0.0", tmp_path / "n2.bin")
    assert (tmp_path / "n2.bin").read_bytes() == new.read_bytes()
    assert cached_copy(pacha.hash_file(new)).is_file()
    cleared = pacha.prune_cache(0)
    assert (cleared.removed, cleared.objects, cleared.bytes) == (2, 0, 0)
    assert pacha.cache_info().objects == 0


def test_cache_commands(shared: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import subprocess
    import sys

    def pacha_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pacha", "cache", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # Nothing cached yet, and nothing created by looking.
    monkeypatch.setenv("PACHA_CACHE", str(tmp_path / "fresh-cache"))
    empty = json.loads(pacha_cli("info", "--json").stdout)
    assert (empty["objects"], empty["bytes"]) == (0, 0)
    assert not (tmp_path / "fresh-cache").exists()
    reg = shared.open()
    source = write_pattern(tmp_path / "w.bin", 1 << 20, seed=3)
    reg.register_model("m", source, "1.0.0")
    reg.download_model("m:1.0.0", tmp_path / "out.bin")
    shown = pacha_cli("info")
    assert shown.returncode == 0 and "1 object(s), 1.0 MiB" in shown.stdout, shown.stdout
    bad = pacha_cli("prune", "--max-size", "lots")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "500M" in bad.stderr
    assert "Traceback" not in bad.stderr
    dry = pacha_cli("clear", "--dry-run")
    assert dry.returncode == 0 and "would remove 1 object(s)" in dry.stdout, dry.stdout
    cleared = json.loads(pacha_cli("clear", "--json").stdout)
    assert (cleared["removed"], cleared["objects"]) == (1, 0)
