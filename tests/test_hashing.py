"""BLAKE3 digests against an independent implementation (the `blake3` package)."""

from __future__ import annotations

import array
import os
import threading
from pathlib import Path

import blake3
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pacha
from pacha import _core
from support import write_pattern


def reference(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def pattern(n: int) -> bytes:
    return bytes((i * 131 + 7) % 251 for i in range(n))


def edge_lengths() -> list[int]:
    lengths = set(range(1026))
    power = 1
    while power <= 1 << 20:
        lengths.update({power - 1, power, power + 1})
        power <<= 1
    return sorted(lengths)


def test_every_length_and_power_of_two_boundary_matches_reference() -> None:
    big = pattern((1 << 20) + 1)
    for n in edge_lengths():
        data = big[:n]
        assert pacha.hash_bytes(data) == reference(data), n


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        _core.PARALLEL_THRESHOLD - 1,
        _core.PARALLEL_THRESHOLD,
        _core.PARALLEL_THRESHOLD + 1,
        3 * _core.PARALLEL_THRESHOLD + 12345,
        (64 << 20) + 7,
    ],
)
def test_hash_file_on_both_sides_of_the_parallel_threshold(tmp_path: Path, size: int) -> None:
    path = write_pattern(tmp_path / "f", size, seed=size)
    expected = blake3.blake3(path.read_bytes()).hexdigest()
    assert pacha.hash_file(path) == expected
    assert pacha.hash_file(str(path)) == expected
    hasher = pacha.Hasher()
    hasher.update_file(path)
    assert hasher.hexdigest() == expected


@given(st.binary(max_size=20000), st.lists(st.integers(0, 20000), max_size=8))
def test_hasher_split_points_do_not_matter(data: bytes, cuts: list[int]) -> None:
    hasher = pacha.Hasher()
    points = sorted({min(c, len(data)) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        hasher.update(data[start:point])
        start = point
    assert hasher.hexdigest() == reference(data)
    assert hasher.digest() == bytes.fromhex(reference(data))
    assert pacha.hash_bytes(data) == reference(data)


@given(st.binary(min_size=1, max_size=4096))
def test_hash_file_random_contents(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("h") / "f"
    path.write_bytes(data)
    assert pacha.hash_file(path) == reference(data)


def test_buffer_protocol_inputs_without_copy_semantics() -> None:
    raw = pattern(10000)
    expected = reference(raw)
    assert pacha.hash_bytes(bytearray(raw)) == expected
    assert pacha.hash_bytes(memoryview(raw)) == expected
    assert pacha.hash_bytes(array.array("B", raw)) == expected
    floats = np.arange(1000, dtype=np.float64)
    assert pacha.hash_bytes(floats) == reference(floats.tobytes())
    hasher = pacha.Hasher(floats)
    assert hasher.hexdigest() == reference(floats.tobytes())


def test_non_contiguous_buffers_are_refused_clearly() -> None:
    strided = np.arange(100, dtype=np.uint8)[::2]
    with pytest.raises(BufferError, match="contiguous"):
        pacha.hash_bytes(strided)
    with pytest.raises(TypeError):
        pacha.hash_bytes("text is not bytes")  # type: ignore[arg-type]


def test_hasher_is_hashlib_like() -> None:
    h = pacha.Hasher(b"abc")
    assert (h.name, h.digest_size, h.block_size) == ("blake3", 32, 64)
    c = h.copy()
    h.update(b"def")
    assert c.hexdigest() == reference(b"abc")
    assert h.hexdigest() == reference(b"abcdef")


def test_missing_file_is_file_not_found_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError) as info:
        pacha.hash_file(missing)
    assert info.value.filename == str(missing)
    h = pacha.Hasher(b"keep")
    with pytest.raises(FileNotFoundError):
        h.update_file(missing)
    assert h.hexdigest() == reference(b"keep"), "a failed update_file must not change the state"


def test_directory_is_is_a_directory_error(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as info:
        pacha.hash_file(tmp_path)
    assert info.value.filename == str(tmp_path)


def test_a_pipe_is_hashed_as_a_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = pattern(300000)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    assert pacha.hash_file(fifo) == reference(data)
    writer.join()


def test_progress_reports_bytes(tmp_path: Path) -> None:
    path = write_pattern(tmp_path / "f", 5 << 20)
    progress = pacha.Progress()
    pacha.hash_file(path, progress)
    assert progress.done == progress.total == 5 << 20
