from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

import pacha
from services import PostgresCluster, S3Server, ServiceUnavailable, start_postgres, start_s3

T = TypeVar("T")

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# An AWS SDK in this process or its children never asks 169.254.169.254 for credentials.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# A developer's own registry settings must never reach the tests (PACHA_REGISTRY would win
# over the PACHA_HOME every test sets; a config file could name a team registry).
for _setting in ("PACHA_REGISTRY", "PACHA_OBJECTS", "PACHA_CONFIG"):
    os.environ.pop(_setting, None)
# Downloads from shared registries are cached here, never in the developer's ~/.cache.
os.environ["PACHA_CACHE"] = str(
    Path(os.environ.get("TMPDIR", "/tmp")) / f"pacha-tests-cache-{os.getpid()}"
)
os.environ["XDG_CONFIG_HOME"] = str(
    Path(os.environ.get("TMPDIR", "/tmp")) / f"pacha-tests-no-config-{os.getpid()}"
)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def cli(registry: Path, tmp_path: Path):
    """Run the real `pacha` command line in a subprocess against a private registry."""

    def run(*args: str, input: bytes | None = None, cwd: Path | None = None) -> CliResult:
        env = {**os.environ, "PACHA_HOME": str(registry), "COLUMNS": "200"}
        proc = subprocess.run(
            [sys.executable, "-m", "pacha", *args],
            input=input,
            capture_output=True,
            env=env,
            cwd=cwd or tmp_path,
            timeout=120,
        )
        return CliResult(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    return run


# --- real services (tests/services.py): started on first use, once per session -------------
# A service that cannot start skips the tests that need it, with the reason; with
# PACHA_REQUIRE_SERVICES=1 (set by CI) those tests fail instead.


def _start_service(what: str, start: Callable[[], T]) -> T:
    try:
        return start()
    except ServiceUnavailable as e:
        error = e  # skip or fail outside the except block: no chained traceback
    if os.environ.get("PACHA_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} could not start (PACHA_REQUIRE_SERVICES=1): {error}", pytrace=False)
    pytest.skip(f"{what} could not start: {error.one_line()}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1: `.new_database()`, `.url(db)`
    (superuser `postgres`, trusted), `.user_url(db)` (role `pacha` with `.password`)."""
    cluster = _start_service("PostgreSQL 15", start_postgres)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_db(postgres: PostgresCluster) -> str:
    """The name of a fresh, empty database owned by the password role `pacha`."""
    return postgres.new_database()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A SeaweedFS S3 server on 127.0.0.1 that enforces SigV4: `.endpoint_url`, `.region`,
    `.access_key`, `.secret_key`, `.new_bucket()`, `.client()` (boto3), `.env()`."""
    server = _start_service("S3 (SeaweedFS weed mini)", start_s3)
    try:
        with pytest.MonkeyPatch.context() as mp:
            # An SDK that is not told otherwise talks to this server, never to AWS.
            mp.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
            mp.setenv("AWS_DEFAULT_REGION", server.region)
            no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))
            mp.setenv("NO_PROXY", no_proxy)
            mp.setenv("no_proxy", no_proxy)
            yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3: S3Server) -> str:
    """The name of a fresh, empty bucket on the `s3` server."""
    return s3.new_bucket()


# --- backend pairs: the conformance suite -----------------------------------------------
# Tests that take `backend` (or a module's `reg` built on it) run once per pair: a registry
# directory (SQLite and local files), and a shared registry (PostgreSQL and S3, a fresh
# database and bucket per test).


@dataclass
class Backend:
    """One backend pair, with a fresh registry on it."""

    name: str
    #: The registry directory ("local"); None for "shared".
    path: Path | None
    #: The PostgreSQL URL and the S3 URL ("shared").
    metadata: str | None = None
    objects: str | None = None
    server: S3Server | None = None

    @property
    def shared(self) -> bool:
        return self.path is None

    def forge(self, digest: str, offset: int = 0) -> None:
        """Flip one byte of a stored object behind pacha's back (bit rot on a disk, bytes
        replaced in the bucket)."""
        if self.path is not None:
            from support import corrupt

            corrupt(self.path / "objects" / digest[:2] / digest, offset)
            return
        assert self.server is not None and self.objects is not None
        bucket, _, prefix = self.objects.removeprefix("s3://").partition("/")
        key = f"{prefix}/objects/{digest[:2]}/{digest}"
        client = self.server.client()
        data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        data[offset] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(data))

    def open(self, **kwargs: Any) -> pacha.Registry:
        if self.path is not None:
            return pacha.Registry(self.path, **kwargs)
        return pacha.Registry(metadata=self.metadata, objects=self.objects, **kwargs)

    def env(self) -> dict[str, str]:
        """The environment a `pacha` subprocess needs to open this registry."""
        if self.path is not None:
            return {"PACHA_HOME": str(self.path)}
        assert self.metadata is not None and self.objects is not None
        return {"PACHA_REGISTRY": self.metadata, "PACHA_OBJECTS": self.objects}


@pytest.fixture(scope="session")
def conformance_bucket(s3: S3Server) -> str:
    return s3.new_bucket("conformance")


@pytest.fixture(params=["local", "shared"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    if request.param == "local":
        return Backend("local", tmp_path / "registry")
    local_only = request.node.get_closest_marker("local_only")
    if local_only is not None:
        pytest.skip(f"about a registry directory: {local_only.args[0]}")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    server: S3Server = request.getfixturevalue("s3")
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PACHA_CACHE", str(tmp_path / "download-cache"))
    database = cluster.new_database("conformance")
    # One bucket, a prefix per test: SeaweedFS gives each bucket volumes of its own and runs
    # out of them after about seventy.
    bucket = request.getfixturevalue("conformance_bucket")
    shared = Backend(
        "shared", None, cluster.user_url(database), f"s3://{bucket}/{database}", server
    )
    # `pacha.Registry()` and a `pacha` subprocess open it too (PACHA_REGISTRY beats the
    # PACHA_HOME the `cli` fixture sets).
    for key, value in shared.env().items():
        monkeypatch.setenv(key, value)
    return shared
