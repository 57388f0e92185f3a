"""The object store in an S3-compatible bucket, against a real SeaweedFS server that enforces
SigV4 (tests/services.py): round trips, deduplication, integrity on every read, forged
objects caught, and one clear line for a wrong secret, a wrong endpoint or a missing bucket,
never holding a credential."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

import pacha
from pacha._core import ObjectStore


@pytest.fixture
def s3_env(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture
def store(s3_env: Any, s3_bucket: str) -> ObjectStore:
    return ObjectStore.open(f"s3://{s3_bucket}/team/reg")


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_small_and_multipart_objects_round_trip_verified(
    store: ObjectStore, s3_env: Any, s3_bucket: str, tmp_path: Path
) -> None:
    small = os.urandom(1000)
    large = os.urandom(40 << 20)  # several parts
    for name, data in [("small.bin", small), ("large.bin", large)]:
        source = _file(tmp_path, name, data)
        put = store.put_file(source)
        assert put.digest == blake3(data).hexdigest() and put.size == len(data)
        # Only a conditional PUT proves this call created the object; a multipart upload
        # cannot be conditional, so it never claims the object (gc owns it if unreferenced).
        assert put.written == (len(data) <= 16 << 20)
        again = store.put_file(source)
        assert not again.written, "the same bytes are not sent twice"
        out = tmp_path / f"out-{name}"
        assert store.export(put.digest, out) == len(data)
        assert out.read_bytes() == data
    keys = {o["Key"] for o in s3_env.client().list_objects_v2(Bucket=s3_bucket)["Contents"]}
    digest = blake3(small).hexdigest()
    assert f"team/reg/objects/{digest[:2]}/{digest}" in keys
    assert store.location == f"s3://{s3_bucket}/team/reg"
    assert {o.digest for o in store.list()} == {
        blake3(small).hexdigest(),
        blake3(large).hexdigest(),
    }
    report = store.verify_all()
    assert report.checked == 2 and not report.problems


def test_a_forged_object_is_caught_by_verify_and_by_download(
    store: ObjectStore, s3_env: Any, s3_bucket: str, tmp_path: Path
) -> None:
    data = b"the real weights" * 1000
    put = store.put_file(_file(tmp_path, "w.bin", data))
    key = f"team/reg/objects/{put.digest[:2]}/{put.digest}"
    s3_env.client().put_object(Bucket=s3_bucket, Key=key, Body=b"forged!!" * 2000)
    report = store.verify([(put.digest, None)])
    assert [p.kind for p in report.problems] == ["corrupt"]
    out = tmp_path / "out.bin"
    with pytest.raises(pacha.IntegrityError):
        store.export(put.digest, out)
    assert not out.exists() and not list(tmp_path.glob(".pacha-*"))
    with pytest.raises(pacha.IntegrityError):
        store.get_bytes(put.digest, 1 << 20)


def test_an_object_of_the_wrong_size_is_replaced_by_adding_the_bytes_again(
    store: ObjectStore, s3_env: Any, s3_bucket: str, tmp_path: Path
) -> None:
    data = b"weights " * 5000
    source = _file(tmp_path, "w.bin", data)
    put = store.put_file(source)
    key = f"team/reg/objects/{put.digest[:2]}/{put.digest}"
    s3_env.client().put_object(Bucket=s3_bucket, Key=key, Body=data[:100])
    assert [p.kind for p in store.verify([(put.digest, len(data))]).problems] == ["truncated"]
    store.put_file(source)
    assert not store.verify([(put.digest, len(data))]).problems
    out = tmp_path / "out.bin"
    store.export(put.digest, out)
    assert out.read_bytes() == data


def test_missing_objects_and_strays_are_reported(
    store: ObjectStore, s3_env: Any, s3_bucket: str, tmp_path: Path
) -> None:
    put = store.put_file(_file(tmp_path, "a.bin", b"a" * 100))
    s3_env.client().put_object(Bucket=s3_bucket, Key="team/reg/objects/zz/not-an-object", Body=b"x")
    s3_env.client().delete_object(
        Bucket=s3_bucket, Key=f"team/reg/objects/{put.digest[:2]}/{put.digest}"
    )
    missing = store.verify([(put.digest, None)])
    assert [p.kind for p in missing.problems] == ["missing"]
    everything = store.verify_all()
    assert [p.kind for p in everything.problems] == ["stray"]


def test_listing_pages_past_a_thousand_keys(store: ObjectStore, tmp_path: Path) -> None:
    digests = {store.put_bytes(f"object {i}".encode()).digest for i in range(1100)}
    assert {o.digest for o in store.list()} == digests


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("wrong secret", "access denied"),
        ("wrong endpoint", "cannot reach"),
        ("missing bucket", "bucket does not exist"),
    ],
)
def test_a_misconfigured_store_is_one_clear_line_in_bounded_time(
    s3_env: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, case: str, needle: str
) -> None:
    bucket = s3_bucket
    if case == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-" + "x" * 20)
    elif case == "wrong endpoint":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    else:
        bucket = "no-such-bucket-here"
    started = time.monotonic()
    with pytest.raises(pacha.BackendError) as refused:
        ObjectStore.open(f"s3://{bucket}/p")
    assert time.monotonic() - started < 60
    message = str(refused.value)
    assert needle in message and "\n" not in message
    assert refused.value.code == "backend"
    assert s3_env.secret_key not in message and "not-the-secret" not in message


@pytest.mark.parametrize(
    "uri",
    [
        "s3://",
        "s3://A/b",
        "s3://ab",
        "s3://bucket/../x",
        "s3://bucket/a//b",
        "s3://b\n/x",
        "s3://bucket/a~b",
    ],
)
def test_malformed_bucket_urls_are_refused(uri: str) -> None:
    with pytest.raises(pacha.InvalidInputError, match="s3://BUCKET/PREFIX"):
        ObjectStore.open(uri)


def test_a_forked_child_uses_the_store_with_its_own_client(
    store: ObjectStore, tmp_path: Path
) -> None:
    """The parent's runtime threads and connections do not exist in a forked child (a
    DataLoader worker): the child builds its own instead of waiting forever."""
    parent = store.put_bytes(b"from the parent")
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if everything worked
        code = 1
        try:
            child = store.put_bytes(b"from the child")
            out = tmp_path / "child.out"
            store.export(parent.digest, out)
            code = 0 if out.read_bytes() == b"from the parent" and child.written else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("a forked child hung on the S3 store")
    assert store.contains(blake3(b"from the child").hexdigest())
