"""The real services the PostgreSQL and S3 backends are tested against (tests/services.py).

These check the services themselves: PostgreSQL takes the password role and refuses a wrong
password; the S3 server round-trips objects, enforces SigV4 signatures, honours
`If-None-Match: *` and pages listings past 1,000 keys; both listen on loopback only.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import psycopg
import pytest
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from services import PostgresCluster, S3Server

# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_accepts_the_password_role_and_runs_queries(
    postgres: PostgresCluster, postgres_db
):
    with psycopg.connect(postgres.user_url(postgres_db), connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), host(inet_server_addr()), 40 + 2"
        ).fetchone()
        assert row == ("pacha", postgres_db, "127.0.0.1", 42)
        # The role owns its fresh database: it can create tables in it.
        conn.execute("CREATE TABLE t (id integer PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO t VALUES (1, 'één'), (2, 'two')")
        assert conn.execute("SELECT name FROM t ORDER BY id").fetchall() == [("één",), ("two",)]


def test_postgres_refuses_a_wrong_or_missing_password(postgres: PostgresCluster, postgres_db):
    wrong = postgres.user_url(postgres_db).replace(postgres.password, "not-" + postgres.password)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)
    no_password = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{postgres_db}"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(no_password, connect_timeout=5, passfile=os.devnull)


def test_postgres_databases_are_fresh_and_the_superuser_is_trusted(postgres: PostgresCluster):
    first, second = postgres.new_database(), postgres.new_database()
    assert first != second
    assert postgres.url(first) == f"postgresql://postgres@127.0.0.1:{postgres.port}/{first}"
    with psycopg.connect(postgres.url(first), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        conn.execute("CREATE TABLE only_here (x integer)")
    assert postgres.psql("SELECT to_regclass('only_here') IS NOT NULL", first) == "t"
    assert postgres.psql("SELECT to_regclass('only_here') IS NULL", second) == "t"
    assert postgres.psql("SHOW listen_addresses") == "127.0.0.1"
    assert postgres.psql("SELECT rolname FROM pg_roles WHERE rolname = 'pacha'") == "pacha"


def test_the_postgres_password_is_in_no_log_and_no_command_line(postgres: PostgresCluster):
    # A failed login is logged; the password given is not.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres.user_url().replace(postgres.password, "x"), connect_timeout=5)
    logs = [postgres.log_path, *postgres.base_dir.glob("*.log")]
    assert all(postgres.password not in p.read_text("utf-8", "replace") for p in logs)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert postgres.password.encode() not in cmdline.read_bytes()
        except OSError:
            continue


# --------------------------------------------------------------------------- S3


def test_s3_signed_put_then_get_round_trips(s3: S3Server, s3_bucket):
    client = s3.client()
    small = secrets.token_bytes(100_000)
    client.put_object(Bucket=s3_bucket, Key="dir/small.bin", Body=small)
    got = client.get_object(Bucket=s3_bucket, Key="dir/small.bin")
    assert got["Body"].read() == small
    assert got["ETag"].strip('"') == hashlib.md5(small).hexdigest()
    assert client.head_object(Bucket=s3_bucket, Key="dir/small.bin")["ContentLength"] == 100_000
    # Multipart: 11 MiB in 5 MiB parts.
    big = secrets.token_bytes(11 << 20)
    mib5 = 5 << 20
    config = TransferConfig(multipart_threshold=mib5, multipart_chunksize=mib5)
    client.upload_fileobj(io.BytesIO(big), s3_bucket, "big.bin", Config=config)
    out = io.BytesIO()
    client.download_fileobj(s3_bucket, "big.bin", out)
    assert out.getvalue() == big
    ranged = client.get_object(Bucket=s3_bucket, Key="big.bin", Range="bytes=5-9")
    assert ranged["Body"].read() == big[5:10]


def _error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = excinfo.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def _plain_http(method: str, url: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_s3_refuses_unsigned_and_wrongly_signed_requests(s3: S3Server, s3_bucket):
    client = s3.client()
    client.put_object(Bucket=s3_bucket, Key="secret.txt", Body=b"private")
    url = f"{s3.endpoint_url}/{s3_bucket}"

    # No signature at all, by hand and through the SDK.
    assert _plain_http("GET", f"{url}/secret.txt") == 403
    assert _plain_http("GET", f"{url}?list-type=2") == 403
    assert _plain_http("PUT", f"{url}/planted.txt", b"x") == 403
    unsigned = boto3.session.Session().client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        config=Config(signature_version=UNSIGNED, proxies={}, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as e:
        unsigned.get_object(Bucket=s3_bucket, Key="secret.txt")
    assert _error_code(e)[0] == 403

    # Signed, but with the wrong secret or an unknown key.
    with pytest.raises(ClientError) as e:
        s3.client(secret_key=s3.secret_key + "x").get_object(Bucket=s3_bucket, Key="secret.txt")
    assert _error_code(e) == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError) as e:
        s3.client(secret_key="y" * 40).put_object(Bucket=s3_bucket, Key="planted.txt", Body=b"x")
    assert _error_code(e) == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError) as e:
        s3.client(access_key="AKIDUNKNOWN0000000000").list_objects_v2(Bucket=s3_bucket)
    assert _error_code(e) == (403, "InvalidAccessKeyId")

    # Nothing refused was written.
    listed = client.list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in listed.get("Contents", [])] == ["secret.txt"]


def test_s3_if_none_match_star_refuses_to_overwrite(s3: S3Server, s3_bucket):
    client = s3.client()
    client.put_object(Bucket=s3_bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=s3_bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert _error_code(e) == (412, "PreconditionFailed")
    assert client.get_object(Bucket=s3_bucket, Key="once")["Body"].read() == b"first"


def test_s3_has_no_bucket_it_was_not_asked_for(s3: S3Server):
    # Like AWS: a PUT into a missing bucket does not create it (-s3.autoCreateBucket=false).
    with pytest.raises(ClientError) as e:
        s3.client().put_object(Bucket="never-created-" + secrets.token_hex(4), Key="k", Body=b"")
    assert _error_code(e) == (404, "NoSuchBucket")


def test_s3_listing_more_than_1000_keys_is_paginated(s3: S3Server, s3_bucket):
    client = s3.client()
    keys = [f"k/{i:05d}" for i in range(1001)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=s3_bucket, Key=k, Body=b""), keys))
    first = client.list_objects_v2(Bucket=s3_bucket, Prefix="k/")
    assert first["IsTruncated"] is True
    assert first["KeyCount"] == 1000
    second = client.list_objects_v2(
        Bucket=s3_bucket, Prefix="k/", ContinuationToken=first["NextContinuationToken"]
    )
    assert second["IsTruncated"] is False
    assert [o["Key"] for o in first["Contents"] + second["Contents"]] == keys


# --------------------------------------------------------------------------- both


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _inet_sockets(pid: int) -> list[tuple[str, str, str]]:
    """(protocol, local address, remote address) of every TCP/UDP socket of `pid`."""
    inodes = _socket_inodes(pid)
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                found.append((proto, _address(fields[1]), _address(fields[2])))
    return found


def _address(hex_addr: str) -> str:
    host, _port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    v6 = b"".join(words)
    if v6[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in v6[12:])
    return "::1" if v6 == b"\0" * 15 + b"\1" else ("::" if v6 == b"\0" * 16 else v6.hex())


def test_both_services_listen_and_talk_on_loopback_only(postgres: PostgresCluster, s3: S3Server):
    s3.new_bucket()  # some traffic between SeaweedFS's parts first
    for name, pid in (("postgres", postgres.pid), ("weed", s3.pid)):
        assert pid is not None, f"{name} is not running"
        sockets = _inet_sockets(pid)
        assert sockets, f"{name} has no sockets?"
        for proto, local, remote in sockets:
            assert local == "127.0.0.1", (name, proto, local, remote)
            assert remote in ("127.0.0.1", "0.0.0.0"), (name, proto, local, remote)
    # SeaweedFS's telemetry is on by default; when on, it says so in its log at startup.
    args = Path(f"/proc/{s3.pid}/cmdline").read_bytes().decode().split("\0")
    assert "-master.telemetry=false" in args
    assert "anonymous cluster statistics" not in s3.logs()
