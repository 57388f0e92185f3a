"""Packed small objects: a directory's files of at most 64 KiB are rows of
``objects/packs/small.sqlite``, not loose files (docs/store-format.md, "Packed objects").
What is packed and what stays loose, reuse, damage and its repair, garbage collection, a
registration that fails after part of its batch was written, and concurrent writers."""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import pytest

import pacha
from pacha.errors import IntegrityError
from support import tree_listing, write_pattern

KiB = 1024
MiB = 1024 * KiB
DAY_MS = 24 * 3600 * 1000
# The largest packed object (PACK_MAX in rust/pacha-core/src/store/pack.rs; not exported).
PACK_MAX = getattr(pacha._core, "PACK_MAX", 64 * KiB)
# A batch writes its pending small objects once they reach this many bytes (local.rs).
PACK_FLUSH_BYTES = 8 * MiB

Rows = dict[str, tuple[int, bytes]]


# ---- helpers ----


def _pack(registry: Path) -> Path:
    return registry / "objects" / "packs" / "small.sqlite"


@contextmanager
def _read_only(registry: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"{_pack(registry).as_uri()}?mode=ro", uri=True)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def _writable(registry: Path) -> Iterator[sqlite3.Connection]:
    """A connection for damaging the pack by hand, committed on success."""
    connection = sqlite3.connect(_pack(registry))
    try:
        with connection:
            yield connection
    finally:
        connection.close()


def _rows(registry: Path) -> Rows:
    """Every packed row: hex address -> (length of the stored bytes, bytes)."""
    if not _pack(registry).exists():
        return {}
    with _read_only(registry) as connection:
        rows = connection.execute("SELECT digest, length(data), data FROM objects").fetchall()
    return {bytes(digest).hex(): (size, bytes(data)) for digest, size, data in rows}


def _row_count(registry: Path) -> int:
    with _read_only(registry) as connection:
        (count,) = connection.execute("SELECT count(*) FROM objects").fetchone()
    return int(count)


def _touched(registry: Path) -> dict[str, int]:
    with _read_only(registry) as connection:
        rows = connection.execute("SELECT digest, touched_ms FROM objects").fetchall()
    return {bytes(digest).hex(): int(touched) for digest, touched in rows}


def _set_touched(registry: Path, digests: set[str], touched_ms: int) -> None:
    with _writable(registry) as connection:
        connection.executemany(
            "UPDATE objects SET touched_ms = ? WHERE digest = ?",
            [(touched_ms, bytes.fromhex(d)) for d in digests],
        )


def _loose(registry: Path) -> set[str]:
    """The addresses of the loose objects: regular files in the two-hex shard directories."""
    objects = registry / "objects"
    if not objects.exists():
        return set()
    return {
        p.name
        for shard in objects.iterdir()
        if shard.is_dir()
        and len(shard.name) == 2
        and all(c in "0123456789abcdef" for c in shard.name)
        for p in shard.iterdir()
    }


def _digests(root: Path, packed: bool) -> set[str]:
    """BLAKE3 (an independent implementation) of the files under `root` that are packed
    (at most PACK_MAX bytes), or of those that are not."""
    return {
        blake3.blake3(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and (p.stat().st_size <= PACK_MAX) == packed
    }


def _small_tree(root: Path, files: int, seed: int, low: int = 1, high: int = 60 * KiB) -> Path:
    """`files` files of random sizes in [low, high] bytes, spread over nested directories."""
    rng = random.Random(seed)
    for i in range(files):
        sub = root / f"part-{i % 3}" / (f"shard-{i % 5}" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:04d}.bin").write_bytes(rng.randbytes(rng.randint(low, high)))
    return root


def _pacha(registry: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PACHA_HOME": str(registry), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "pacha", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


# ---- 1. what is packed ----


def test_small_files_are_rows_and_everything_else_stays_loose(
    registry: Path, tmp_path: Path
) -> None:
    """300 files of 1-60 KiB in nested directories, twins of some of them, an empty file,
    one of exactly 64 KiB, an executable script and an empty directory are rows of the
    pack, each stored once; files of 64 KiB + 1, 300 KiB and 1.5 MiB and the manifest are
    loose. The rows hash to their addresses, the store finds them by address, the download
    is bit-exact and verify (API, `pacha verify`, `pacha store verify`) is clean."""
    src = _small_tree(tmp_path / "src", 300, seed=1, low=1 * KiB)
    twins = src / "twins" / "deeper"
    twins.mkdir(parents=True)
    originals = sorted((src / "part-0").glob("*.bin"))[:5]
    for i, original in enumerate(originals):
        shutil.copyfile(original, twins / f"twin-{i}.bin")
    (src / "empty.txt").write_bytes(b"")
    write_pattern(src / "exactly-64k.bin", PACK_MAX, seed=2)
    write_pattern(src / "one-more.bin", PACK_MAX + 1, seed=3)
    write_pattern(src / "medium.bin", 300 * KiB, seed=4)
    write_pattern(src / "large.bin", 3 * MiB // 2, seed=5)
    script = src / "run.sh"
    script.write_text("#!/bin/sh\necho packed\n")
    script.chmod(0o755)
    (src / "no-files-here").mkdir()

    reg = pacha.Registry(registry)
    version = reg.register_dataset("d", src, "1.0.0")
    assert version.file_count == 300 + 5 + 6

    small, large = _digests(src, packed=True), _digests(src, packed=False)
    assert len(small) == 300 + 3, "the twins are one row each with their originals"
    rows = _rows(registry)
    assert set(rows) == small
    for digest, (size, data) in rows.items():
        assert size == len(data) and blake3.blake3(data).hexdigest() == digest
    empty = blake3.blake3(b"").hexdigest()
    assert rows[empty] == (0, b"")

    loose = _loose(registry)
    assert loose == large | {version.digest}, "big files and the manifest are loose"
    assert not loose & small, "a packed file was also written loose"

    for digest, (size, data) in list(rows.items())[:20]:
        assert reg.store.contains(digest) and reg.store.size_of(digest) == size
        assert reg.store.get_bytes(digest, PACK_MAX) == data

    out = tmp_path / "out"
    reg.download_dataset("d:1.0.0", out)
    assert tree_listing(out) == tree_listing(src)

    result = reg.verify()
    assert result.ok and result.checked == len(rows) + len(loose), result
    assert _pacha(registry, "verify", "-q", cwd=tmp_path).returncode == 0
    store_verify = _pacha(registry, "store", "verify", "--json", "-q", cwd=tmp_path)
    assert store_verify.returncode == 0, store_verify.stderr
    report = json.loads(store_verify.stdout)
    assert report["ok"] and report["checked"] == len(rows) + len(loose), report


# ---- 2. reuse ----


def test_registering_again_adds_no_rows_and_one_changed_file_adds_one(
    registry: Path, tmp_path: Path
) -> None:
    """The same directory again: no row added or changed (only its gc clock refreshed), no
    loose object added. Then one file changed: exactly one new row and one new manifest;
    the old version still downloads its old bytes."""
    src = _small_tree(tmp_path / "src", 120, seed=10)
    reg = pacha.Registry(registry)
    first = reg.register_dataset("d", src, "1.0.0")
    rows, loose = _rows(registry), _loose(registry)
    assert len(rows) == 120 and loose == {first.digest}

    two_days_ago = int(time.time() * 1000) - 2 * DAY_MS
    _set_touched(registry, set(rows), two_days_ago)
    before_again = int(time.time() * 1000)
    again = reg.register_dataset("d", src, "1.0.1")
    assert again.digest == first.digest
    assert _rows(registry) == rows, "reusing packed bytes rewrote or added rows"
    assert _loose(registry) == loose
    stale = {d: t for d, t in _touched(registry).items() if t < before_again}
    assert not stale, f"{len(stale)} reused row(s) kept their old gc clock"

    changed = sorted(src.rglob("*.bin"))[17]
    old_bytes = changed.read_bytes()
    changed.write_bytes(bytes([old_bytes[0] ^ 0xFF]) + old_bytes[1:])
    third = reg.register_dataset("d", src, "1.0.2")
    after = _rows(registry)
    new_digest = blake3.blake3(changed.read_bytes()).hexdigest()
    assert set(after) == set(rows) | {new_digest} and len(after) == len(rows) + 1
    assert {d: after[d] for d in rows} == rows, "the old rows changed"
    assert _loose(registry) == loose | {third.digest}

    reg.download_dataset("d:1.0.2", tmp_path / "new")
    assert tree_listing(tmp_path / "new") == tree_listing(src)
    reg.download_dataset("d:1.0.0", tmp_path / "old")
    relative = changed.relative_to(src)
    assert (tmp_path / "old" / relative).read_bytes() == old_bytes
    assert reg.verify().ok


# ---- 3. damage ----


def test_a_damaged_row_is_reported_refused_and_repaired(registry: Path, tmp_path: Path) -> None:
    """One flipped byte in a packed row: verify (API and `pacha verify`, `pacha store
    verify`) names the object, kind corrupt, and every version it breaks; downloading
    either version refuses in one line and leaves nothing; another dataset is unaffected.
    Registering the original directory again repairs the row for every version."""
    src = _small_tree(tmp_path / "src", 40, seed=20, low=100)
    victim = sorted(src.rglob("*.bin"))[7]
    twin_src = tmp_path / "twin"
    twin_src.mkdir()
    shutil.copyfile(victim, twin_src / "same-bytes.bin")
    (twin_src / "own.txt").write_text("twin's own file")
    other_src = _small_tree(tmp_path / "other", 10, seed=21)
    reg = pacha.Registry(registry)
    reg.register_dataset("d", src, "1.0.0")
    reg.register_dataset("twin", twin_src, "1.0.0")
    reg.register_dataset("other", other_src, "1.0.0")
    digest = blake3.blake3(victim.read_bytes()).hexdigest()
    original = victim.read_bytes()
    assert _rows(registry)[digest] == (len(original), original)

    middle = len(original) // 2
    damaged = original[:middle] + bytes([original[middle] ^ 0x01]) + original[middle + 1 :]
    with _writable(registry) as connection:
        changed = connection.execute(
            "UPDATE objects SET data = ? WHERE digest = ?", (damaged, bytes.fromhex(digest))
        ).rowcount
    assert changed == 1

    result = reg.verify()
    assert not result.ok
    [problem] = result.problems
    assert (problem.digest, problem.kind) == (digest, "corrupt")
    assert Path(problem.path) == _pack(registry)
    assert sorted(problem.breaks) == ["d:1.0.0", "twin:1.0.0"]

    cli = _pacha(registry, "verify", "--json", "-q", cwd=tmp_path)
    assert cli.returncode == 1, cli.stderr
    [reported] = json.loads(cli.stdout)["problems"]
    assert (reported["digest"], reported["kind"]) == (digest, "corrupt")
    assert sorted(reported["breaks"]) == ["d:1.0.0", "twin:1.0.0"]
    assert _pacha(registry, "verify", "-q", cwd=tmp_path).returncode == 1
    store = _pacha(registry, "store", "verify", "--json", "-q", cwd=tmp_path)
    assert store.returncode == 1
    [stored] = json.loads(store.stdout)["problems"]
    assert (stored["digest"], stored["kind"]) == (digest, "corrupt")

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for ref in ("d:1.0.0", "twin:1.0.0"):
        refused = _pacha(registry, "data", "download", ref, "-o", str(outputs / "x"), cwd=tmp_path)
        _assert_one_line_error(refused)
        assert digest in refused.stderr, refused.stderr
        assert list(outputs.iterdir()) == [], f"{ref}: partial output left behind"
    with pytest.raises(IntegrityError):
        reg.download_dataset("d:1.0.0", outputs / "api")
    assert list(outputs.iterdir()) == [], "the API's download left partial output"
    reg.download_dataset("other:1.0.0", tmp_path / "other-out")
    assert tree_listing(tmp_path / "other-out") == tree_listing(other_src)

    healed = _pacha(registry, "data", "register", "d", str(src), "-v", "1.0.1", "-q", cwd=tmp_path)
    assert healed.returncode == 0, healed.stderr
    assert _rows(registry)[digest] == (len(original), original)
    assert _pacha(registry, "verify", "-q", cwd=tmp_path).returncode == 0
    assert reg.verify().ok
    reg.download_dataset("d:1.0.0", outputs / "d")
    assert tree_listing(outputs / "d") == tree_listing(src)
    reg.download_dataset("twin:1.0.0", outputs / "twin")
    assert tree_listing(outputs / "twin") == tree_listing(twin_src)


# ---- 4. garbage collection ----


def test_gc_removes_unreferenced_rows_and_keeps_referenced_ones(
    registry: Path, tmp_path: Path
) -> None:
    """Datasets A and B share 20 small files. With A deleted: a dry run (CLI) removes
    nothing; the default grace period spares rows touched recently and removes the 30 of
    A's own rows whose gc clock is two days old; grace 0 removes the rest of A's own rows
    and its manifest; the shared rows and B's survive, and B still downloads. With B
    deleted too, the pack is empty."""
    a_src = _small_tree(tmp_path / "a", 60, seed=30)
    b_src = _small_tree(tmp_path / "b", 40, seed=31)
    shared = _small_tree(tmp_path / "shared", 20, seed=32)
    for tree in (a_src, b_src):
        shutil.copytree(shared, tree / "shared")
    reg = pacha.Registry(registry)
    a = reg.register_dataset("a", a_src, "1.0.0")
    reg.register_dataset("b", b_src, "1.0.0")
    a_small, b_small = _digests(a_src, packed=True), _digests(b_src, packed=True)
    a_only = a_small - b_small
    assert len(a_only) == 60 and len(a_small & b_small) == 20
    rows = _rows(registry)
    assert set(rows) == a_small | b_small
    reg.delete_dataset("a:1.0.0")
    loose = _loose(registry)
    a_manifest = (registry / "objects" / a.digest[:2] / a.digest).stat().st_size

    dry = _pacha(registry, "gc", "--grace", "0", "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["objects_removed"] == 60 + 1, report
    assert report["bytes_freed"] == sum(rows[d][0] for d in a_only) + a_manifest, report
    assert _rows(registry) == rows and _loose(registry) == loose, "a dry run removed something"

    old = set(sorted(a_only)[:30])
    _set_touched(registry, old, int(time.time() * 1000) - 2 * DAY_MS)
    default = reg.gc()
    assert (default.objects_removed, default.young_objects_kept) == (30, 30 + 1)
    assert default.bytes_freed == sum(rows[d][0] for d in old)
    assert set(_rows(registry)) == (a_small | b_small) - old

    done = reg.gc(grace=0)
    assert done.objects_removed == 30 + 1, "the rest of A's own rows and its manifest"
    assert done.bytes_freed == sum(rows[d][0] for d in a_only - old) + a_manifest
    assert _rows(registry) == {d: rows[d] for d in b_small}, "a referenced row was removed"
    assert _loose(registry) == loose - {a.digest}
    assert reg.verify().ok
    reg.download_dataset("b:1.0.0", tmp_path / "b-out")
    assert tree_listing(tmp_path / "b-out") == tree_listing(b_src)
    assert reg.gc(grace=0).objects_removed == 0, "a second collection found more garbage"

    reg.delete_dataset("b:1.0.0")
    assert reg.gc(grace=0).objects_removed == len(b_small) + 1
    assert _row_count(registry) == 0 and _loose(registry) == set()


def test_gc_gives_the_freed_pack_pages_back(registry: Path, tmp_path: Path) -> None:
    """After gc removes every row (4 MiB of them), the pack file has no free pages left
    and has shrunk to a fraction of its size."""
    src = _small_tree(tmp_path / "src", 100, seed=40, low=40 * KiB, high=40 * KiB)
    reg = pacha.Registry(registry)
    reg.register_dataset("d", src, "1.0.0")
    full = _pack(registry).stat().st_size
    assert full >= 4 * MiB
    reg.delete_dataset("d:1.0.0")
    assert reg.gc(grace=0).objects_removed == 100 + 1
    assert _row_count(registry) == 0
    with _read_only(registry) as connection:
        (free_pages,) = connection.execute("PRAGMA freelist_count").fetchone()
    assert (free_pages, _pack(registry).stat().st_size < full // 4) == (0, True), (
        f"{free_pages} free pages; {_pack(registry).stat().st_size} of {full} bytes kept"
    )


# ---- 5. a registration that fails after part of its batch was packed ----


@contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """No file may grow beyond `limit` bytes in this process (EFBIG, as Python ignores
    SIGXFSZ) until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip(f"the hard RLIMIT_FSIZE ({hard}) is below {limit}")
    if signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN:
        pytest.skip("SIGXFSZ is not ignored: exceeding the limit would kill the process")
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_registration_failing_after_a_flush_leaves_no_unreferenced_rows(
    registry: Path, tmp_path: Path
) -> None:
    """200 files of 60 KiB (12 MiB: more than a batch holds, so at least one transaction of
    rows commits while the files are read) and one 18 MiB file that cannot be written (a
    16 MiB file size limit): registration fails with EFBIG, and the rows it had committed
    are removed again, except those a committed version references. Nothing else is left:
    no version, loose object or temp file. Without the limit the same directory registers."""
    assert 200 * 60 * KiB > PACK_FLUSH_BYTES
    keep_src = _small_tree(tmp_path / "keep", 40, seed=50, low=60 * KiB, high=60 * KiB)
    src = tmp_path / "src"
    shutil.copytree(keep_src, src / "from-keep")
    _small_tree(src / "own", 160, seed=51, low=60 * KiB, high=60 * KiB)
    write_pattern(src / "huge.bin", 18 * MiB, seed=52)
    reg = pacha.Registry(registry)

    # A fresh registry: the pack exists afterwards only if a batch of rows was written.
    with _file_size_limit(16 * MiB), pytest.raises(OSError) as raised:
        reg.register_dataset("d", src, "1.0.0")
    assert raised.value.errno == errno.EFBIG, raised.value
    assert _pack(registry).exists(), "no rows were written before the failure: test setup"
    assert _row_count(registry) == 0, "the failed registration left rows behind"
    assert _loose(registry) == set()
    assert list((registry / "objects" / "tmp").iterdir()) == []
    assert reg.list_datasets() == []

    keep = reg.register_dataset("keep", keep_src, "1.0.0")
    referenced = _digests(keep_src, packed=True)
    assert set(_rows(registry)) == referenced
    with _file_size_limit(16 * MiB), pytest.raises(OSError) as raised:
        reg.register_dataset("d", src, "1.0.0")
    assert raised.value.errno == errno.EFBIG, raised.value
    assert set(_rows(registry)) == referenced, (
        "rows of the failed registration were kept, or rows of a committed version removed"
    )
    assert _loose(registry) == {keep.digest}
    assert [n.name for n in reg.list_datasets()] == ["keep"]
    assert reg.verify().ok

    registered = reg.register_dataset("d", src, "1.0.0")
    assert set(_rows(registry)) == _digests(src, packed=True)
    reg.download_dataset("d:1.0.0", tmp_path / "out")
    assert tree_listing(tmp_path / "out") == tree_listing(src)
    assert registered.file_count == 201 and reg.verify().ok


# ---- 6. concurrent writers ----

_REGISTER_WHEN_TOLD = """
import pathlib, sys, time
import pacha
registry, name, source, go = sys.argv[1:5]
reg = pacha.Registry(registry)
deadline = time.monotonic() + 60
while not pathlib.Path(go).exists() and time.monotonic() < deadline:
    time.sleep(0.001)
print(reg.register_dataset(name, source, "1.0.0").digest)
"""


def test_concurrent_registrations_into_a_new_pack(registry: Path, tmp_path: Path) -> None:
    """Three processes started together register directories of small files (20 of them
    the same in all three) into a registry that has no pack yet: all succeed, the pack
    holds each distinct file once, and every dataset downloads bit-exactly."""
    shared = _small_tree(tmp_path / "shared", 20, seed=60)
    sources = []
    for w in range(3):
        source = _small_tree(tmp_path / f"src{w}", 150, seed=61 + w)
        shutil.copytree(shared, source / "shared")
        sources.append(source)
    pacha.Registry(registry)  # the metadata database exists; the pack does not
    assert not _pack(registry).exists()
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _REGISTER_WHEN_TOLD, str(registry), f"d{w}", str(s), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w, s in enumerate(sources)
    ]
    time.sleep(0.3)  # let them import pacha and open the registry
    go.touch()
    digests = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        digests.append(out.strip())

    expected: set[str] = set().union(*(_digests(s, packed=True) for s in sources))
    assert len(expected) == 3 * 150 + 20
    assert set(_rows(registry)) == expected
    reg = pacha.Registry(registry)
    for w, source in enumerate(sources):
        version = reg.get_dataset(f"d{w}:1.0.0")
        assert version.digest == digests[w]
        reg.download_dataset(version.ref, tmp_path / f"out{w}")
        assert tree_listing(tmp_path / f"out{w}") == tree_listing(source)
    assert reg.verify().ok


# ---- a packed copy and a loose copy of the same bytes ----


def test_registering_a_file_again_repairs_its_damaged_packed_copy(
    registry: Path, tmp_path: Path
) -> None:
    """A model's bytes are also a small file of a dataset registered first, so the model
    reuses the packed copy (no loose one is written). With the row damaged, both versions are
    broken; registering the model file again repairs the row and makes both whole."""
    weights = write_pattern(tmp_path / "weights.bin", 5000, seed=70)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(weights, src / "weights.bin")
    (src / "notes.txt").write_text("notes")
    reg = pacha.Registry(registry)
    reg.register_dataset("d", src, "1.0.0")
    reg.register_model("m", weights, "1.0.0")
    digest = pacha.hash_file(weights)
    assert digest in _rows(registry) and digest not in _loose(registry)
    with _writable(registry) as connection:
        connection.execute(
            "UPDATE objects SET data = ? WHERE digest = ?",
            (b"\x00" * 5000, bytes.fromhex(digest)),
        )
    [problem] = reg.verify().problems
    assert problem.digest == digest
    assert sorted(problem.breaks) == ["d:1.0.0", "m:1.0.0"]
    with pytest.raises(pacha.IntegrityError):
        reg.download_model("m:1.0.0", tmp_path / "before.bin")
    assert not (tmp_path / "before.bin").exists()

    reg.register_model("m", weights, "1.0.1")
    problems = [(p.digest, sorted(p.breaks)) for p in reg.verify().problems]
    assert problems == [], problems
    reg.download_model("m:1.0.0", tmp_path / "out.bin")
    assert pacha.hash_file(tmp_path / "out.bin") == digest
    reg.download_dataset("d:1.0.0", tmp_path / "d-out")
    assert (tmp_path / "d-out" / "weights.bin").read_bytes() == weights.read_bytes()
