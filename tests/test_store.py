"""The object store through the Python API: round trips, dedup, damage, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from pathlib import Path

import blake3
import pytest

import pacha
from pacha import _core
from support import write_pattern


@pytest.fixture
def store(tmp_path: Path) -> pacha.ObjectStore:
    return pacha.ObjectStore(tmp_path / "objects")


def object_path(store: pacha.ObjectStore, digest: str) -> Path:
    return Path(store.location) / digest[:2] / digest


def temp_files(store: pacha.ObjectStore) -> list[Path]:
    return list((Path(store.location) / "tmp").iterdir())


def damage(path: Path, action: str) -> None:
    path.chmod(0o644)
    data = path.read_bytes()
    if action == "flip":
        data = data[:100] + bytes([data[100] ^ 0x01]) + data[101:]
        path.write_bytes(data)
    elif action == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif action == "delete":
        path.unlink()
    elif action == "replace":
        path.write_bytes(os.urandom(len(data)))


SIZES = [
    0,
    1,
    4096,
    _core.SMALL_OBJECT_MAX - 1,
    _core.SMALL_OBJECT_MAX,
    _core.SMALL_OBJECT_MAX + 1,
    10 << 20,
    64 << 20,
]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(store: pacha.ObjectStore, tmp_path: Path, size: int) -> None:
    src = write_pattern(tmp_path / "src", size, seed=size)
    out = store.put_file(src)
    assert out.digest == blake3.blake3(src.read_bytes()).hexdigest()
    assert (out.size, out.written) == (size, True)
    obj = object_path(store, out.digest)
    assert stat.S_IMODE(obj.stat().st_mode) == 0o444
    dest = tmp_path / "deep" / "er" / "out.bin"
    assert store.export(out.digest, dest) == size
    assert dest.read_bytes() == src.read_bytes()
    assert store.contains(out.digest)
    assert store.size_of(out.digest) == size
    assert temp_files(store) == []


def test_registry_directory_is_private(tmp_path: Path) -> None:
    pacha.open_store(tmp_path / "reg")
    assert stat.S_IMODE((tmp_path / "reg").stat().st_mode) == 0o700


@pytest.mark.parametrize("size", [10, 5 << 20])
def test_identical_content_is_stored_once(
    store: pacha.ObjectStore, tmp_path: Path, size: int
) -> None:
    a = write_pattern(tmp_path / "a", size, seed=1)
    b = tmp_path / "b"
    b.write_bytes(a.read_bytes())
    first, second = store.put_file(a), store.put_file(b)
    assert first.digest == second.digest
    assert (first.written, second.written) == (True, False)
    assert [o.digest for o in store.list()] == [first.digest]


def test_put_bytes_and_listing_order(store: pacha.ObjectStore) -> None:
    digests = sorted(store.put_bytes(bytes([i]) * 10).digest for i in range(20))
    assert [o.digest for o in store.list()] == digests


def _ingest_in_child(root: str, src: str, queue: multiprocessing.Queue) -> None:
    try:
        out = pacha.ObjectStore(root).put_file(src)
        queue.put(("ok", out.digest))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(("error", repr(exc)))


@pytest.mark.parametrize("size", [1000, 8 << 20])
def test_concurrent_processes_ingesting_the_same_bytes(tmp_path: Path, size: int) -> None:
    root = tmp_path / "objects"
    src = write_pattern(tmp_path / "src", size, seed=3)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_ingest_in_child, args=(str(root), str(src), queue)) for _ in range(6)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=120)
    assert all(kind == "ok" for kind, _ in results), results
    assert len({digest for _, digest in results}) == 1
    store = pacha.ObjectStore(root)
    assert len(store.list()) == 1
    assert store.verify_all().ok
    assert temp_files(store) == []


@pytest.mark.parametrize("action", ["flip", "truncate", "delete", "replace"])
def test_damage_is_reported_and_refused(
    store: pacha.ObjectStore, tmp_path: Path, action: str
) -> None:
    src = write_pattern(tmp_path / "src", 200_000, seed=4)
    good = store.put_file(write_pattern(tmp_path / "good", 1000, seed=5))
    out = store.put_file(src)
    damage(object_path(store, out.digest), action)

    report = store.verify([(out.digest, out.size), (good.digest, good.size)])
    assert report.checked == 2 and not report.ok
    [problem] = report.problems
    expected_kind = {
        "flip": "corrupt",
        "truncate": "truncated",
        "delete": "missing",
        "replace": "corrupt",
    }
    assert problem.kind == expected_kind[action]
    assert problem.digest == out.digest

    dest = tmp_path / "out.bin"
    if action == "delete":
        with pytest.raises(pacha.NotFoundError):
            store.export(out.digest, dest)
    else:
        with pytest.raises(pacha.IntegrityError) as info:
            store.export(out.digest, dest)
        assert info.value.expected == out.digest
        assert info.value.actual not in (None, out.digest)
        assert info.value.path == str(object_path(store, out.digest))
        assert isinstance(info.value, ValueError)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []

    # Adding the original bytes again repairs a missing or truncated object.
    if action in ("truncate", "delete"):
        assert store.put_file(src).written
        assert store.verify([(out.digest, out.size)]).ok


def test_verify_all_reports_strays(store: pacha.ObjectStore) -> None:
    store.put_bytes(b"fine")
    (Path(store.location) / "zz").mkdir()
    (Path(store.location) / "ab").mkdir(exist_ok=True)
    (Path(store.location) / "ab" / "notes.txt").write_text("hi")
    report = store.verify_all()
    assert report.checked == 1
    assert sorted(p.kind for p in report.problems) == ["stray", "stray"]


def test_export_never_clobbers_unless_asked(store: pacha.ObjectStore, tmp_path: Path) -> None:
    out = store.put_bytes(b"new contents")
    dest = tmp_path / "existing"
    dest.write_bytes(b"precious")
    with pytest.raises(pacha.AlreadyExistsError):
        store.export(out.digest, dest)
    assert dest.read_bytes() == b"precious"
    store.export(out.digest, dest, overwrite=True)
    assert dest.read_bytes() == b"new contents"
    with pytest.raises(IsADirectoryError):
        store.export(out.digest, tmp_path, overwrite=True)


def test_bad_sources_are_refused_and_nothing_is_stored(
    store: pacha.ObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError) as info:
        store.put_file(tmp_path / "missing")
    assert info.value.filename == str(tmp_path / "missing")
    with pytest.raises(IsADirectoryError):
        store.put_file(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(pacha.InvalidInputError, match="FIFO"):
        store.put_file(fifo)
    unreadable = tmp_path / "secret"
    unreadable.write_bytes(b"x")
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(PermissionError):
            store.put_file(unreadable)
    with pytest.raises(pacha.InvalidInputError, match="64 lowercase"):
        store.contains("../../etc/passwd")
    assert store.list() == [] or os.geteuid() == 0


def test_cancelling_from_another_thread_leaves_nothing(
    store: pacha.ObjectStore, tmp_path: Path
) -> None:
    src = write_pattern(tmp_path / "big", 256 << 20, seed=6)
    progress = pacha.Progress()

    def cancel_when_started() -> None:
        while progress.done == 0:
            pass
        progress.cancel()

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    with pytest.raises(pacha.CancelledError):
        store.put_file(src, progress)
    canceller.join()
    assert store.list() == []
    assert temp_files(store) == []


@pytest.mark.parametrize("change", ["append", "rewrite_in_place"])
def test_a_file_that_changes_while_ingested_is_refused(
    store: pacha.ObjectStore, tmp_path: Path, change: str
) -> None:
    src = write_pattern(tmp_path / "growing", 384 << 20, seed=10)
    progress = pacha.Progress()

    def modify_mid_read() -> None:
        while progress.done == 0:
            pass
        if change == "append":
            with open(src, "ab") as f:
                f.write(b"late bytes")
        else:
            with open(src, "r+b") as f:
                f.seek(1000)
                f.write(b"changed")
            # Make sure the modification time moves even on coarse-timestamp filesystems.
            st = src.stat()
            os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    modifier = threading.Thread(target=modify_mid_read)
    modifier.start()
    with pytest.raises(pacha.SourceChangedError, match="changed while it was being read"):
        store.put_file(src, progress)
    modifier.join()
    assert store.list() == []
    assert temp_files(store) == []
