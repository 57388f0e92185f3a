"""The shared registry (PostgreSQL metadata, S3 objects) through the real `pacha` command line
in subprocesses and through the API, against the real servers of tests/services.py: a whole
walkthrough, misconfigured locations, concurrent writers, forged objects, servers that die
mid-registration and hostile input. Every pacha process here talks to 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

import pacha
from conftest import Backend
from services import PostgresCluster, S3Server, ServiceUnavailable, start_postgres, start_s3
from support import make_hf_folder, tree_listing, write_pattern

RECIPE = """\
name = "bert-finetune"
version = "1.0.0"
description = "Fine-tune BERT on SQuAD"
architecture = "bert-base"
random_seed = 42

[hyperparameters]
learning_rate = 3e-5
batch_size = 32
epochs = 3

[optimizer]
type = "adamw"

[data]
train = "squad:1.0.0"
validation = "squad:1.0.0"
"""

BIG = 200 << 20  # a registration that takes seconds: long enough to be interrupted
BOUND = 60.0  # seconds a failing command may take, at most

# Variables that would steer a `pacha` subprocess somewhere other than where a test says.
_STEERING = ("PACHA_", "AWS_", "PG")


# ---- the shared pair -------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Pair:
    """A fresh shared registry: a database of the session's PostgreSQL cluster and a prefix
    of one bucket of the session's S3 server."""

    postgres: PostgresCluster
    s3: S3Server
    database: str
    bucket: str
    prefix: str
    tmp: Path

    @property
    def metadata(self) -> str:
        return self.postgres.user_url(self.database)

    @property
    def objects(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def secrets(self) -> list[str]:
        return [self.s3.secret_key, self.postgres.password]

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_STEERING)}
        env.update(self.s3.env())
        env.update(
            PACHA_REGISTRY=self.metadata,
            PACHA_OBJECTS=self.objects,
            # Never a registry directory: a fallback to one would show as "no registry".
            PACHA_HOME=str(self.tmp / "no-pacha-home"),
            PACHA_CACHE=str(self.tmp / "download-cache"),
            COLUMNS="200",
        )
        env.update(overrides)
        return env

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "pacha", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or self.env(),
            cwd=self.tmp,
        )

    def pacha(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        started = time.monotonic()
        proc = self.popen(*args, env=env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"`pacha {' '.join(args)}` still running after {timeout:.0f} s")
        result = Result(
            proc.returncode,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
            time.monotonic() - started,
        )
        assert "Traceback" not in result.output, result.output
        return result

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Any:
        """Exit 0; the JSON document on stdout if it is one, else the text."""
        result = self.pacha(*args, env=env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        text = result.stdout.strip()
        return json.loads(text) if text[:1] in ("[", "{") else text

    def open(self) -> pacha.Registry:
        return pacha.Registry(metadata=self.metadata, objects=self.objects)

    def psql(self, sql: str) -> str:
        return self.postgres.psql(sql, self.database).strip()

    @cached_property
    def client(self) -> Any:
        """An independent S3 client (boto3)."""
        return self.s3.client()

    def bucket_keys(self) -> list[str]:
        """Every key under the prefix, as boto3 lists them."""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + "/"
        ):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return sorted(keys)

    def object_key(self, digest: str) -> str:
        return f"{self.prefix}/objects/{digest[:2]}/{digest}"

    def rewrite(self, key: str, how: Any) -> None:
        """Replace the bytes under `key` by `how(bytes)`, behind pacha's back."""
        data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=how(data))

    def flip_packed_byte(self, digest: str) -> None:
        """Flip the first byte of a packed object inside its pack."""
        pack, offset = self.psql(
            f"SELECT pack || ' ' || \"offset\" FROM packed_objects WHERE digest = '{digest}'"
        ).split()
        at = int(offset)
        self.rewrite(
            f"{self.prefix}/packs/{pack}", lambda d: d[:at] + bytes([d[at] ^ 1]) + d[at + 1 :]
        )

    def uploads(self) -> list[dict[str, Any]]:
        """Multipart uploads in progress (or abandoned) under the prefix."""
        answer = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix + "/")
        return list(answer.get("Uploads", []))

    def versions(self) -> list[str]:
        """`kind/name:version digest stage` of every version, read with psql."""
        text = self.psql(
            "SELECT a.kind || '/' || a.name || ':' || v.version || ' ' || v.digest || ' ' || "
            "v.stage FROM versions v JOIN artifacts a ON a.id = v.artifact_id ORDER BY 1"
        )
        return text.splitlines()

    def snapshot(self) -> tuple[Any, ...]:
        """The tables, the row count of each, every version, and the bucket's keys."""
        tables = self.psql(
            "SELECT table_name || '=' || (xpath('/row/c/text()', query_to_xml("
            "format('SELECT count(*) AS c FROM %I', table_name), false, true, '')))[1]::text "
            "FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        ).splitlines()
        return tables, self.versions(), self.bucket_keys()


def one_error_line(result: Result, *needles: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def no_secret(result: Result, secrets: Sequence[str]) -> None:
    for secret in secrets:
        assert secret not in result.output, f"a secret leaked: {result.output!r}"


def start_private(what: str, start: Any) -> Any:
    """A private server for a test that stops it (skipped or failed as conftest does)."""
    try:
        return start()
    except ServiceUnavailable as e:
        error = e
    if os.environ.get("PACHA_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} could not start (PACHA_REQUIRE_SERVICES=1): {error}", pytrace=False)
    pytest.skip(f"{what} could not start: {error.one_line()}")


def wait_for_upload(uploads: Any, proc: subprocess.Popen[bytes], limit: float = 60) -> None:
    """Wait until `uploads()` lists a multipart upload: the registration is sending bytes."""
    deadline = time.monotonic() + limit
    while not uploads():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the registration ended before its upload was seen: {out!r} {err!r}")
        assert time.monotonic() < deadline, "no multipart upload seen"
        time.sleep(0.02)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as f:
        for _ in range(BIG >> 20):
            f.write(os.urandom(1 << 20))
    return path


@pytest.fixture
def pair(postgres: PostgresCluster, s3: S3Server, conformance_bucket: str, tmp_path: Path) -> Pair:
    database = postgres.new_database("shared")
    # One bucket, a prefix per test (SeaweedFS runs out of volumes after ~70 buckets).
    return Pair(postgres, s3, database, conformance_bucket, f"shared/{database}", tmp_path)


@pytest.fixture
def api_env(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> Pair:
    """This process's environment pointed at the pair (for the API)."""
    for key in [k for k in os.environ if k.startswith(_STEERING)]:
        monkeypatch.delenv(key)
    for key, value in pair.env().items():
        if key.startswith(_STEERING):
            monkeypatch.setenv(key, value)
    return pair


def blob(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---- 1. the whole command line on the shared pair ---------------------------------------


def test_cli_walkthrough_on_the_shared_pair(api_env: Pair) -> None:
    pair = api_env
    tmp = pair.tmp
    init = pair.ok("init", "--json")
    assert init["registry"] == pair.metadata.replace(pair.postgres.password, "***")
    assert pair.postgres.password not in json.dumps(init)
    assert pair.versions() == []  # the tables exist (psql would fail otherwise), empty

    # register a file and a directory (nested, several files, an empty dir, an executable)
    weights = blob(tmp, "weights.bin", os.urandom(300_000))
    card = blob(tmp, "card.toml", b'description = "a test model"\nlicense = "mit"\n')
    file_v = pair.ok(
        "model", "register", "bert", str(weights), "-v", "1.0.0",
        "--card", str(card), "--metric", "accuracy=0.91", "--tag", "team=nlp", "--json",
    )  # fmt: skip
    assert (file_v["name"], file_v["version"], file_v["layout"]) == ("bert", "1.0.0", "file")
    assert file_v["digest"] == blake3(weights.read_bytes()).hexdigest()
    assert file_v["size"] == 300_000
    folder = make_hf_folder(tmp / "src" / "hf")
    tree_v = pair.ok("model", "register", "hf", str(folder), "-v", "1.0.0", "--json")
    assert tree_v["layout"] == "tree" and tree_v["file_count"] >= 10
    # Metadata in PostgreSQL, bytes in the bucket, nothing in a registry directory.
    assert pair.versions() == [
        f"model/bert:1.0.0 {file_v['digest']} development",
        f"model/hf:1.0.0 {tree_v['digest']} development",
    ]
    assert pair.object_key(file_v["digest"]) in pair.bucket_keys()
    assert not (tmp / "no-pacha-home").exists()

    # list, get
    names = pair.ok("model", "list", "--json")
    assert names == [
        {"name": "bert", "versions": 1, "latest": "1.0.0"},
        {"name": "hf", "versions": 1, "latest": "1.0.0"},
    ]
    got = pair.ok("model", "get", "bert:latest", "--json")
    assert (got["version"], got["digest"], got["tags"]) == (
        "1.0.0",
        file_v["digest"],
        {"team": "nlp"},
    )
    assert [(h["from_stage"], h["to_stage"]) for h in got["history"]] == [(None, "development")]

    # stage, alias, tag, card
    assert pair.ok("model", "stage", "bert:1.0.0", "-t", "staging", "--json")["stage"] == "staging"
    aliased = pair.ok("model", "alias", "bert", "1.0.0", "champion", "--json")
    assert aliased["aliases"] == ["champion"]
    tagged = pair.ok("model", "tag", "bert@champion", "checked=yes", "--json")
    assert tagged["tags"] == {"team": "nlp", "checked": "yes"}
    got = pair.ok("model", "get", "bert@staging", "--json")
    assert (got["stage"], got["aliases"], got["tags"]["checked"]) == (
        "staging",
        ["champion"],
        "yes",
    )
    card_text = pair.ok("model", "card", "bert:1.0.0")
    assert card_text.startswith("---") and "accuracy" in card_text and "0.91" in card_text
    assert "a test model" in card_text

    # download a file and a directory: bit-exact
    out = tmp / "out"
    pair.ok("model", "download", "bert@champion", "-o", str(out / "w.bin"), "--json")
    assert (out / "w.bin").read_bytes() == weights.read_bytes()
    pair.ok("model", "download", "hf:1.0.0", "-o", str(out / "hf"), "--json")
    assert tree_listing(out / "hf") == tree_listing(folder)

    # verify, stats
    assert pair.ok("verify", "--json")["ok"] is True
    stats = pair.ok("stats", "--json")
    assert (stats["models"], stats["datasets"], stats["versions"]) == (2, 0, 2)

    # delete, then gc --grace 0 removes exactly the deleted version's own object
    doomed = blob(tmp, "doomed.bin", b"bytes only the deleted version has")
    doomed_digest = pair.ok("model", "register", "bert", str(doomed), "-v", "1.1.0", "--json")[
        "digest"
    ]
    assert pair.ok("gc", "--grace", "0", "--json")["objects_removed"] == 0
    before = pair.bucket_keys()
    assert pair.object_key(doomed_digest) in before
    pair.ok("model", "delete", "bert:1.1.0")
    one_error_line(pair.pacha("model", "get", "bert:1.1.0"), "bert:1.1.0")
    dry = pair.ok("gc", "--grace", "0", "--dry-run", "--json")
    assert (dry["objects_removed"], dry["objects_marked"]) == (0, 1)
    assert pair.bucket_keys() == before
    assert pair.ok("gc", "--json")["objects_marked"] == 0, "the default grace spares it"
    # Two phases: the first run marks, a later run removes what is still unreferenced.
    marking = pair.pacha("gc", "--grace", "0")
    assert marking.returncode == 0 and "marked 1 unreferenced object(s)" in marking.stdout
    assert pair.bucket_keys() == before
    dry = pair.ok("gc", "--grace", "0", "--dry-run", "--json")
    assert (dry["objects_removed"], dry["objects_marked"]) == (1, 0)
    gc = pair.ok("gc", "--grace", "0", "--json")
    assert (gc["objects_removed"], gc["bytes_freed"]) == (1, len(doomed.read_bytes()))
    assert pair.bucket_keys() == [k for k in before if k != pair.object_key(doomed_digest)]
    assert pair.ok("verify", "--json")["ok"] is True

    # recipes (their dataset first)
    squad = blob(tmp, "squad.json", b'{"data": []}')
    pair.ok("data", "register", "squad", str(squad), "-v", "1.0.0")
    recipe = blob(tmp, "recipe.toml", RECIPE.encode())
    pair.ok("recipe", "validate", str(recipe))
    pair.ok("recipe", "register", str(recipe))
    assert pair.ok("recipe", "list", "--json") == [
        {"name": "bert-finetune", "versions": 1, "latest": "1.0.0"}
    ]
    assert pair.ok("recipe", "get", "bert-finetune:1.0.0", "--toml") == RECIPE.strip()
    one_error_line(pair.pacha("recipe", "register", str(recipe)), "already registered")

    # runs
    run_id = pair.ok("run", "start", "bert-finetune:1.0.0", "--set", "learning_rate=1e-5")
    assert len(run_id) == 32, run_id
    pair.ok("run", "log", run_id, "loss=0.5", "accuracy=0.8", "--step", "1")
    pair.ok("run", "log", run_id[:8], "loss=0.3", "accuracy=0.9", "--step", "2")
    assert pair.ok("run", "finish", run_id, "--json")["status"] == "completed"
    run = pair.ok("run", "get", run_id, "--json")
    assert run["params"]["learning_rate"] == 1e-5 and run["params"]["batch_size"] == 32
    assert run["metrics"] == {"loss": 0.3, "accuracy": 0.9}
    assert [r["id"] for r in pair.ok("run", "list", "--json")] == [run_id]
    best = pair.ok("run", "best", "bert-finetune", "-v", "1.0.0", "-m", "accuracy", "--json")
    assert best["id"] == run_id

    # lineage
    tuned = blob(tmp, "tuned.bin", b"fine-tuned weights")
    pair.ok(
        "model", "register", "bert-tuned", str(tuned), "--bump", "minor", "--run", run_id,
        "--parent", "bert:1.0.0", "--dataset", "squad:1.0.0", "--recipe", "bert-finetune:1.0.0",
    )  # fmt: skip
    up = pair.ok("lineage", "show", "model/bert-tuned:0.1.0", "--up", "--json")
    assert {n["id"] for n in up["nodes"]} == {
        "model/bert-tuned:0.1.0",
        "model/bert:1.0.0",
        "dataset/squad:1.0.0",
        "recipe/bert-finetune:1.0.0",
        f"run/{run_id}",
    }
    assert {(e["from"], e["relation"]) for e in up["edges"]} >= {
        ("model/bert-tuned:0.1.0", "fine_tuned"),
        ("model/bert-tuned:0.1.0", "trained_on"),
        ("model/bert-tuned:0.1.0", "trained_with"),
        ("model/bert-tuned:0.1.0", "produced_by"),
    }
    added = pair.ok(
        "lineage", "add", "model/hf:1.0.0", "dataset/squad:1.0.0", "-r", "trained_on", "--json"
    )
    assert added["added"] is True
    impact = pair.ok("lineage", "impact", "dataset/squad:1.0.0", "--json")
    assert sorted(i["model"] for i in impact) == ["bert-tuned:0.1.0", "hf:1.0.0"]
    path = pair.ok("lineage", "path", "model/bert-tuned:0.1.0", "dataset/squad:1.0.0", "--json")
    assert [(e["from"], e["to"]) for e in path["edges"]] == [
        ("model/bert-tuned:0.1.0", "dataset/squad:1.0.0")
    ]
    one_error_line(
        pair.pacha(
            "lineage", "add", "model/bert:1.0.0", "model/bert-tuned:0.1.0", "-r", "fine_tuned"
        ),
        "cycle",
    )

    # The API sees the same registry the command line wrote.
    reg = pair.open()
    assert reg.path is None and pair.postgres.password not in reg.location
    assert [v.version for v in reg.list_model_versions("bert")] == ["1.0.0"]
    assert reg.get_run(run_id).status == "completed"
    assert reg.verify().ok
    assert pair.ok("verify", "--json")["ok"] is True


# ---- 2. misconfigured locations: one line, bounded time, no secret, nothing changed --------

WRONG_SECRET = "wrong-SECRET-value-0123456789abcdef"
WRONG_PASSWORD = "wrong-PASSWORD-0123456789abcdef"


def _closed_port() -> socket.socket:
    """A socket bound to a loopback port and not listening: connections to it are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _silent_port() -> socket.socket:
    """A loopback port that accepts connections (the kernel completes the handshake) and
    never answers a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@dataclass
class BadLocation:
    #: Environment overrides for the subprocess, and the `--registry`/`--objects` flags.
    env: dict[str, str]
    flags: list[str]
    needles: list[str]
    secrets: list[str]


def _bad_location(case: str, pair: Pair, port: int) -> BadLocation:
    pg_base = f"127.0.0.1:{pair.postgres.port}/{pair.database}"
    endpoint = f"http://127.0.0.1:{port}"
    if case == "wrong-endpoint" or case == "silent-endpoint":
        return BadLocation(
            {"AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint},
            [],
            ["object store", "AWS_ENDPOINT_URL"],
            [],
        )
    if case == "wrong-secret":
        return BadLocation(
            {"AWS_SECRET_ACCESS_KEY": WRONG_SECRET}, [], ["AWS_SECRET_ACCESS_KEY"], [WRONG_SECRET]
        )
    if case == "missing-bucket":
        flags = ["--registry", pair.metadata, "--objects", "s3://no-such-bucket-pacha/p"]
        return BadLocation({}, flags, ["no-such-bucket-pacha", "bucket does not exist"], [])
    if case == "unreachable-postgres" or case == "silent-postgres":
        url = f"postgresql://pacha:{WRONG_PASSWORD}@127.0.0.1:{port}/{pair.database}"
        return BadLocation(
            {"PACHA_REGISTRY": url},
            [],
            ["PostgreSQL", f"127.0.0.1:{port}", "server runs"],
            [WRONG_PASSWORD],
        )
    assert case == "wrong-postgres-password"
    url = f"postgresql://pacha:{WRONG_PASSWORD}@{pg_base}"
    return BadLocation(
        {},
        ["--registry", url, "--objects", pair.objects],
        ["PostgreSQL", "password"],
        [WRONG_PASSWORD],
    )


def _commands(tmp: Path) -> list[list[str]]:
    new = blob(tmp, "new.bin", b"bytes that must not be registered")
    return [
        ["model", "register", "intruder", str(new), "-v", "9.9.9", "--json"],
        ["model", "register", "bert", str(new), "--bump", "patch"],
        ["model", "list", "--json"],
        ["model", "download", "bert:1.0.0", "-o", str(tmp / "dl" / "w.bin"), "--json"],
        ["verify", "--json"],
        ["gc", "--grace", "0", "--json"],
        ["init", "--json"],
    ]


def _prepared(pair: Pair) -> tuple[Any, ...]:
    weights = blob(pair.tmp, "w.bin", b"the weights of bert 1.0.0")
    pair.ok("model", "register", "bert", str(weights), "-v", "1.0.0")
    doomed = blob(pair.tmp, "doomed.bin", b"an unreferenced object gc must not reach")
    pair.ok("model", "register", "bert", str(doomed), "-v", "1.1.0")
    pair.ok("model", "delete", "bert:1.1.0")  # its object stays until gc
    return pair.snapshot()


@pytest.mark.parametrize(
    "case",
    [
        "wrong-endpoint",
        "wrong-secret",
        "missing-bucket",
        "unreachable-postgres",
        "wrong-postgres-password",
    ],
)
def test_a_bad_location_is_one_line_in_bounded_time_and_changes_nothing(
    pair: Pair, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _prepared(pair)
    with _closed_port() as sock:
        bad = _bad_location(case, pair, sock.getsockname()[1])
        env = pair.env(**bad.env)
        secrets = [*pair.secrets, *bad.secrets]
        commands = _commands(pair.tmp)
        with ThreadPoolExecutor(len(commands)) as pool:
            results = list(
                pool.map(lambda c: pair.pacha(*bad.flags, *c, env=env, timeout=BOUND), commands)
            )
        for command, result in zip(commands, results):
            line = one_error_line(result, *bad.needles)
            assert "check" in line, line
            assert result.stdout == "", (command, result.stdout)
            assert result.seconds < BOUND, (command, result.seconds)
            no_secret(result, secrets)
        assert not (pair.tmp / "dl").exists()

        # The API: the same one-line error, as a BackendError, holding no secret.
        for key in [k for k in os.environ if k.startswith(_STEERING)]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith(_STEERING):
                monkeypatch.setenv(key, value)
        flags = dict(zip(bad.flags[::2], bad.flags[1::2]))
        started = time.monotonic()
        with pytest.raises(pacha.BackendError) as caught:
            if flags:
                pacha.Registry(metadata=flags["--registry"], objects=flags["--objects"])
            else:
                pacha.Registry()
        assert time.monotonic() - started < BOUND
        message = str(caught.value)
        assert "\n" not in message and all(n in message for n in bad.needles), message
        assert not any(s in message or s in repr(caught.value) for s in secrets), message
    assert pair.snapshot() == before


@pytest.mark.parametrize("case", ["silent-endpoint", "silent-postgres"])
def test_a_server_that_never_answers_is_one_line_in_bounded_time(pair: Pair, case: str) -> None:
    """An endpoint that accepts the connection and then says nothing (a firewall, a hung
    server) must not hang a command for minutes."""
    before = _prepared(pair)
    with _silent_port() as sock:
        bad = _bad_location(case, pair, sock.getsockname()[1])
        env = pair.env(**bad.env)
        commands = [_commands(pair.tmp)[0], ["model", "list", "--json"]]
        with ThreadPoolExecutor(len(commands)) as pool:
            results = list(
                pool.map(lambda c: pair.pacha(*bad.flags, *c, env=env, timeout=BOUND), commands)
            )
        for result in results:
            one_error_line(result, *bad.needles)
            no_secret(result, [*pair.secrets, *bad.secrets])
    assert pair.snapshot() == before


class _Recorder:
    """An HTTP server on a loopback port that records each request line and answers 404."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.requests.append(conn.recv(65536).split(b"\r\n", 1)[0])
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self.sock.close()


def test_missing_credentials_are_one_line_and_never_ask_the_instance_metadata_service(
    pair: Pair,
) -> None:
    """No AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and AWS_EC2_METADATA_DISABLED=true (as
    conftest sets): pacha must say which variables to set, and must not go asking an EC2
    instance metadata service for credentials. (The metadata endpoint is pointed at a loopback
    recorder, so that a pacha that does ask reaches only 127.0.0.1.)"""
    before = _prepared(pair)
    recorder = _Recorder()
    try:
        env = pair.env(
            AWS_EC2_METADATA_DISABLED="true",
            AWS_METADATA_ENDPOINT=recorder.url,
            AWS_EC2_METADATA_SERVICE_ENDPOINT=recorder.url,
            AWS_SHARED_CREDENTIALS_FILE=str(pair.tmp / "no-credentials"),
            AWS_CONFIG_FILE=str(pair.tmp / "no-config"),
        )
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        result = pair.pacha("model", "list", "--json", env=env, timeout=BOUND)
        assert recorder.requests == [], f"asked the metadata service: {recorder.requests}"
        one_error_line(result, "AWS_ACCESS_KEY_ID")
    finally:
        recorder.close()
    assert pair.snapshot() == before


def test_a_database_opened_with_another_registrys_objects_never_deletes_them(
    pair: Pair, postgres: PostgresCluster
) -> None:
    """Two teams' registries share a bucket under two prefixes. A typo pairing team A's
    database with team B's prefix must not let `gc` take B's objects for unreferenced ones:
    it is refused, or it removes nothing."""
    theirs = Pair(
        postgres, pair.s3, postgres.new_database("shared"), pair.bucket,
        f"shared/{pair.database}-b", pair.tmp / "b",
    )  # fmt: skip
    theirs.tmp.mkdir()
    theirs.ok(
        "model", "register", "theirs", str(blob(theirs.tmp, "t.bin", b"team B")), "-v", "1.0.0"
    )
    pair.ok("model", "register", "ours", str(blob(pair.tmp, "o.bin", b"team A")), "-v", "1.0.0")
    before = theirs.snapshot()
    mixed = pair.env(PACHA_OBJECTS=theirs.objects)
    result = pair.pacha("gc", "--grace", "0", "--json", env=mixed)
    if result.returncode == 0:
        assert json.loads(result.stdout)["objects_removed"] == 0, result.stdout
    else:
        one_error_line(result)
    assert theirs.snapshot() == before
    assert theirs.ok("verify", "--json")["ok"] is True


# ---- 3. concurrent writers ----------------------------------------------------------------

WRITERS = 8
ROUNDS = 3

# A writer process: opens the registry, waits for the starting gun, then registers ROUNDS
# versions of the shared name and of its own name with --bump patch, through the API.
WORKER = r"""
import json, os, sys, time
import pacha
i, rounds, src, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
reg = pacha.Registry()
while not os.path.exists(go):
    time.sleep(0.002)
done = []
for r in range(rounds):
    for name in ("shared", f"own-{i}"):
        v = reg.register_model(name, os.path.join(src, f"{name}-{i}-{r}.bin"), bump="patch")
        done.append([name, v.version, v.digest])
print(json.dumps(done))
"""


@pytest.mark.fault
def test_concurrent_processes_bumping_one_name_get_distinct_contiguous_versions(
    pair: Pair,
) -> None:
    """8 API processes (3 rounds each of the shared name and their own) and 8 `pacha model
    register shared --bump patch` processes, all at once."""
    pair.ok("init")
    src = pair.tmp / "src"
    src.mkdir()
    expected: dict[str, str] = {}  # digest -> name
    for i in range(WRITERS):
        for r in range(ROUNDS):
            for name in ("shared", f"own-{i}"):
                data = f"{name} written by process {i} in round {r}".encode()
                (src / f"{name}-{i}-{r}.bin").write_bytes(data)
                expected[blake3(data).hexdigest()] = name
        data = f"shared written by command line {i}".encode()
        (src / f"cli-{i}.bin").write_bytes(data)
        expected[blake3(data).hexdigest()] = "shared"
    go = pair.tmp / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(i), str(ROUNDS), str(src), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=pair.env(),
            cwd=pair.tmp,
        )
        for i in range(WRITERS)
    ]
    time.sleep(1.0)  # every worker has its registry open
    go.touch()
    clis = [
        pair.popen("model", "register", "shared", str(src / f"cli-{i}.bin"), "--bump", "patch",
                   "--json")
        for i in range(WRITERS)
    ]  # fmt: skip
    registered: list[tuple[str, str, str]] = []
    for proc in workers + clis:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and err == b"", err.decode()
        if proc in workers:
            registered += [tuple(r) for r in json.loads(out)]
        else:
            record = json.loads(out)
            registered.append((record["name"], record["version"], record["digest"]))

    # Each version was given once, to the content that asked for it.
    assert sorted(d for _, _, d in registered) == sorted(expected)
    assert all(expected[digest] == name for name, _, digest in registered)
    by_name: dict[str, list[str]] = {}
    for name, version, _ in registered:
        by_name.setdefault(name, []).append(version)
    shared = WRITERS * (ROUNDS + 1)
    assert sorted(by_name["shared"], key=lambda v: int(v.split(".")[2])) == [
        f"0.0.{k}" for k in range(1, shared + 1)
    ]
    for i in range(WRITERS):
        assert sorted(by_name[f"own-{i}"]) == [f"0.0.{k}" for k in range(1, ROUNDS + 1)]
    # What the registry holds is what each writer was told.
    listed = pair.ok("model", "list", "shared", "--json")
    assert {v["version"]: v["digest"] for v in listed} == {
        v: d for n, v, d in registered if n == "shared"
    }
    assert len(pair.versions()) == len(registered) == len(expected)
    verified = pair.pacha("verify")
    assert verified.returncode == 0, verified.output
    assert pair.ok("verify", "--json")["problems"] == []


# ---- 4. a forged object ------------------------------------------------------------------


def test_a_forged_object_is_reported_by_verify_and_refused_by_download(pair: Pair) -> None:
    small = blob(pair.tmp, "small.bin", b"small weights " * 100)
    large = write_pattern(pair.tmp / "src" / "large.bin", 20 << 20, seed=3)  # ranged reads
    folder = make_hf_folder(pair.tmp / "src" / "hf")
    forged = pair.ok("model", "register", "forged", str(small), "-v", "1.0.0", "--json")
    big = pair.ok("model", "register", "big", str(large), "-v", "1.0.0", "--json")
    pair.ok("model", "register", "tree", str(folder), "-v", "1.0.0", "--json")
    clean = pair.ok(
        "model", "register", "clean", str(blob(pair.tmp, "c", b"c")), "-v", "1.0.0", "--json"
    )
    assert pair.ok("verify", "--json")["ok"] is True

    client = pair.client

    def replace(digest: str, change: Any) -> None:
        key = pair.object_key(digest)
        data = client.get_object(Bucket=pair.bucket, Key=key)["Body"].read()
        client.put_object(Bucket=pair.bucket, Key=key, Body=change(data))

    # Same length, other bytes; the last byte of a multi-range object; one file of a tree
    # (a large one: small files of a directory may be packed together).
    replace(forged["digest"], lambda d: bytes(b ^ 0x5A for b in d))
    replace(big["digest"], lambda d: d[:-1] + bytes([d[-1] ^ 1]))
    member = blake3((folder / "model-00001-of-00002.safetensors").read_bytes()).hexdigest()
    replace(member, lambda d: d[:1000] + bytes(1000) + d[2000:])

    verified = pair.pacha("verify")
    assert verified.returncode == 1, verified.output
    for ref in ("forged:1.0.0", "big:1.0.0", "tree:1.0.0"):
        assert ref in verified.stdout, verified.stdout
    assert "clean:1.0.0" not in verified.stdout
    report = pair.pacha("verify", "--json")
    assert report.returncode == 1
    problems = json.loads(report.stdout)["problems"]
    assert {(p["digest"], p["kind"], tuple(p["breaks"])) for p in problems} == {
        (forged["digest"], "corrupt", ("forged:1.0.0",)),
        (big["digest"], "corrupt", ("big:1.0.0",)),
        (member, "corrupt", ("tree:1.0.0",)),
    }
    assert pair.pacha("verify", "clean:1.0.0").returncode == 0
    one = pair.pacha("verify", "forged:1.0.0")
    assert one.returncode == 1 and "forged:1.0.0" in one.stdout

    out = pair.tmp / "out"
    out.mkdir()
    for ref, target in [("forged:1.0.0", "f.bin"), ("big:1.0.0", "big.bin"), ("tree:1.0.0", "t")]:
        one_error_line(pair.pacha("model", "download", ref, "-o", str(out / target)), "integrity")
        assert sorted(p.name for p in out.iterdir()) == [], "no output, no partial file left"
    # --force onto an existing file: refused, the existing file untouched.
    existing = out / "keep.bin"
    existing.write_bytes(b"what was there before")
    one_error_line(
        pair.pacha("model", "download", "forged:1.0.0", "-o", str(existing), "--force"), "integrity"
    )
    assert existing.read_bytes() == b"what was there before"
    assert sorted(p.name for p in out.iterdir()) == ["keep.bin"]
    # The good version still downloads.
    pair.ok("model", "download", "clean:1.0.0", "-o", str(out / "c"))
    assert (out / "c").read_bytes() == b"c"
    assert clean["digest"] not in {p["digest"] for p in problems}


def test_damage_verify_found_is_healed_by_another_process_storing_the_bytes(pair: Pair) -> None:
    """What verify finds missing or damaged is marked in the database, so the next process
    that stores the same bytes writes them again (a repair by registering them anew), for a
    small object (same size, other bytes; deleted), a large one, and a packed one."""
    forged = blob(pair.tmp, "forged.bin", b"forged weights " * 100)
    gone = blob(pair.tmp, "gone.bin", b"deleted weights " * 100)
    large = write_pattern(pair.tmp / "src" / "large.bin", 3 << 20, seed=4)
    tree = pair.tmp / "src" / "tree"
    tree.mkdir()
    for i in range(5):
        (tree / f"part-{i}.txt").write_text(f"small file {i} " * 40)
    digests = {}
    for name, source in [("forged", forged), ("gone", gone), ("large", large), ("tree", tree)]:
        kind = "data" if name == "tree" else "model"
        registered = pair.ok(kind, "register", name, str(source), "-v", "1.0.0", "--json")
        digests[name] = registered["digest"]
    member = blake3((tree / "part-3.txt").read_bytes()).hexdigest()
    pair.rewrite(pair.object_key(digests["forged"]), lambda d: bytes(b ^ 0x5A for b in d))
    pair.client.delete_object(Bucket=pair.bucket, Key=pair.object_key(digests["gone"]))
    pair.rewrite(pair.object_key(digests["large"]), lambda d: d[:-1] + bytes([d[-1] ^ 1]))
    pair.flip_packed_byte(member)

    report = pair.pacha("verify", "--json")
    assert report.returncode == 1, report.output
    found = {(p["digest"], p["kind"]) for p in json.loads(report.stdout)["problems"]}
    assert found == {
        (digests["forged"], "corrupt"),
        (digests["gone"], "missing"),
        (digests["large"], "corrupt"),
        (member, "corrupt"),
    }

    # Other processes store the same bytes again, as new versions.
    for name, source in [("forged", forged), ("gone", gone), ("large", large), ("tree", tree)]:
        kind = "data" if name == "tree" else "model"
        pair.ok(kind, "register", name, str(source), "-v", "1.0.1", "--json")
    healed = pair.pacha("verify", "--json")
    assert healed.returncode == 0, healed.output
    out = pair.tmp / "out"
    pair.ok("model", "download", "forged:1.0.0", "-o", str(out / "forged.bin"))
    assert (out / "forged.bin").read_bytes() == forged.read_bytes()
    pair.ok("data", "download", "tree:1.0.0", "-o", str(out / "tree"))
    assert (out / "tree" / "part-3.txt").read_bytes() == (tree / "part-3.txt").read_bytes()
    assert pair.psql("SELECT count(*) FROM objects WHERE damaged_at IS NOT NULL") == "0"


def test_damage_is_healed_across_loose_and_packed_copies(pair: Pair) -> None:
    """A damaged loose object healed by a directory that packs the same bytes, and a
    damaged packed member healed by registering the same bytes as one file: afterwards every
    read finds the whole copy (the damaged one is removed or no longer named)."""
    loose_bytes, packed_bytes = b"loose then packed " * 50, b"packed then loose " * 50
    single = blob(pair.tmp, "single.bin", loose_bytes)
    tree = pair.tmp / "src" / "t"
    tree.mkdir(parents=True)
    (tree / "a.txt").write_bytes(packed_bytes)
    (tree / "b.txt").write_bytes(b"another small file " * 30)
    single_digest = pair.ok("model", "register", "single", str(single), "-v", "1.0.0", "--json")[
        "digest"
    ]
    pair.ok("data", "register", "t", str(tree), "-v", "1.0.0")
    pair.rewrite(pair.object_key(single_digest), lambda d: bytes(b ^ 1 for b in d))
    pair.flip_packed_byte(blake3(packed_bytes).hexdigest())
    assert pair.pacha("verify").returncode == 1

    # The loose object's bytes come back inside a directory (packed); the packed member's
    # bytes come back as a single file (loose).
    healer = pair.tmp / "src" / "healer"
    healer.mkdir()
    (healer / "same.bin").write_bytes(loose_bytes)
    pair.ok("data", "register", "healer", str(healer), "-v", "1.0.0")
    pair.ok(
        "model", "register", "alone", str(blob(pair.tmp, "alone.bin", packed_bytes)), "-v", "1.0.0"
    )
    report = pair.pacha("verify", "--json")
    assert report.returncode == 0, report.output
    out = pair.tmp / "out"
    pair.ok("model", "download", "single:1.0.0", "-o", str(out / "single.bin"))
    assert (out / "single.bin").read_bytes() == loose_bytes
    pair.ok("data", "download", "t:1.0.0", "-o", str(out / "t"))
    assert (out / "t" / "a.txt").read_bytes() == packed_bytes


# ---- 5. faults: servers that stop, a registration that is killed ------------------------


@pytest.mark.fault
@pytest.mark.slow
def test_s3_stopped_mid_upload_fails_in_one_line_and_records_no_version(
    postgres: PostgresCluster, big_file: Path, tmp_path: Path
) -> None:
    private: S3Server = start_private("S3 (private)", start_s3)
    try:
        pair = Pair(
            postgres, private, postgres.new_database("shared"), private.new_bucket("fault"),
            "reg", tmp_path,
        )  # fmt: skip
        pair.ok("init")
        proc = pair.popen("model", "register", "big", str(big_file), "-v", "1.0.0")
        wait_for_upload(pair.uploads, proc)
        private.stop()
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=120)
        result = Result(proc.returncode, out.decode(), err.decode(), time.monotonic() - stopped)
        assert "Traceback" not in result.output
        one_error_line(result, "object store", pair.objects)
        assert result.seconds < BOUND, result.seconds
        no_secret(result, pair.secrets)
        assert pair.versions() == []
        assert pair.psql("SELECT count(*) FROM version_objects") == "0"
    finally:
        private.stop()


@pytest.mark.fault
@pytest.mark.slow
def test_postgres_stopped_mid_registration_fails_in_one_line(
    s3: S3Server, conformance_bucket: str, big_file: Path, tmp_path: Path
) -> None:
    private: PostgresCluster = start_private("PostgreSQL (private)", start_postgres)
    try:
        database = private.new_database("fault")
        pair = Pair(
            private, s3, database, conformance_bucket, f"shared/pg-fault-{database}", tmp_path
        )
        pair.ok("init")
        proc = pair.popen("model", "register", "big", str(big_file), "-v", "1.0.0")
        wait_for_upload(pair.uploads, proc)
        private.stop()
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=120)
        result = Result(proc.returncode, out.decode(), err.decode(), time.monotonic() - stopped)
        assert "Traceback" not in result.output
        one_error_line(result, "PostgreSQL", "server runs")
        assert result.seconds < BOUND, result.seconds
        no_secret(result, pair.secrets)
    finally:
        private.stop()


@pytest.mark.fault
@pytest.mark.slow
def test_a_registration_killed_mid_upload_leaves_no_version_and_a_retry_succeeds(
    pair: Pair, big_file: Path
) -> None:
    small = blob(pair.tmp, "small.bin", b"registered before the crash")
    pair.ok("model", "register", "small", str(small), "-v", "1.0.0")
    args = ("model", "register", "big", str(big_file), "-v", "1.0.0", "--json")
    proc = pair.popen(*args)
    wait_for_upload(pair.uploads, proc)
    time.sleep(0.3)  # a few parts sent
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert [v.split()[0] for v in pair.versions()] == ["model/small:1.0.0"]
    one_error_line(pair.pacha("model", "get", "big:1.0.0"), "big")
    assert pair.ok("verify", "--json")["ok"] is True

    retried = pair.ok(*args)
    digest = retried["digest"]
    assert (retried["version"], retried["size"]) == ("1.0.0", BIG)
    assert digest == blake3(big_file.read_bytes()).hexdigest()
    pair.ok("gc", "--grace", "0")
    report = pair.ok("verify", "--json")
    assert report["ok"] is True and report["problems"] == []
    assert pair.object_key(digest) in pair.bucket_keys()
    head = pair.client.head_object(Bucket=pair.bucket, Key=pair.object_key(digest))
    assert head["ContentLength"] == BIG


@pytest.mark.fault
@pytest.mark.slow
def test_a_registration_whose_lock_connection_broke_records_nothing(
    pair: Pair, big_file: Path
) -> None:
    """The connection holding the collector's shared lock is cut mid-upload (as a server
    restart or a network drop would): the lock is gone, so a gc could have run meanwhile.
    The registration refuses to commit, in one line, and a retry succeeds."""
    args = ("model", "register", "big", str(big_file), "-v", "1.0.0", "--json")
    proc = pair.popen(*args)
    wait_for_upload(pair.uploads, proc)
    cut = pair.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
        "WHERE locktype = 'advisory' AND granted"
    )
    assert cut == "1", "one connection held the shared lock"
    out, err = proc.communicate(timeout=120)
    result = Result(proc.returncode, out.decode(), err.decode(), 0.0)
    one_error_line(result, "collector's lock broke", "run it again")
    assert pair.versions() == []
    retried = pair.ok(*args)
    assert retried["version"] == "1.0.0"
    assert pair.ok("verify", "--json")["ok"] is True


@pytest.mark.fault
@pytest.mark.slow
def test_a_broken_lock_connection_fails_only_the_registrations_it_held(
    api_env: Pair, big_file: Path
) -> None:
    """In one process, a registration is uploading when its lock connection is cut; one
    started afterwards takes the lock anew on a new connection and succeeds, while the
    first refuses to commit."""
    reg = api_env.open()
    outcome: dict[str, Any] = {}

    def big() -> None:
        try:
            reg.register_model("big", big_file, "1.0.0")
            outcome["big"] = "registered"
        except pacha.PachaError as e:
            outcome["big"] = e

    worker = threading.Thread(target=big)
    worker.start()
    deadline = time.monotonic() + 60
    while not api_env.uploads():
        assert worker.is_alive() and time.monotonic() < deadline, "no upload seen"
        time.sleep(0.02)
    cut = api_env.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
        "WHERE locktype = 'advisory' AND granted"
    )
    assert cut == "1"
    # pg_terminate_backend only signals: wait until the lock is really gone.
    while api_env.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") != "0":
        assert time.monotonic() < deadline + 30, "the cut connection kept its lock"
        time.sleep(0.02)
    small = reg.register_model("small", blob(api_env.tmp, "small.bin", b"after the cut"), "1.0.0")
    assert small.version == "1.0.0"
    worker.join(timeout=120)
    assert isinstance(outcome["big"], pacha.DatabaseError), outcome
    assert "collector's lock broke" in str(outcome["big"])
    assert [v.split()[0] for v in api_env.versions()] == ["model/small:1.0.0"]


def test_gc_removes_only_what_a_later_run_finds_still_unreferenced(pair: Pair) -> None:
    """Two-phase collection on the shared pair: a run marks what it finds unreferenced, a
    later run removes it only if nothing referenced it in between; a version registered in
    between with the same bytes saves them and takes the mark away."""
    weights = blob(pair.tmp, "w.bin", b"bytes a deleted version and a later one share")
    digest = pair.ok("model", "register", "m", str(weights), "-v", "1.0.0", "--json")["digest"]
    key = pair.object_key(digest)
    pair.ok("model", "delete", "m:1.0.0")
    first = pair.ok("gc", "--grace", "0", "--json")
    assert (first["objects_removed"], first["objects_marked"]) == (0, 1)
    assert pair.psql("SELECT count(*) FROM gc_marks") == "1"
    # Referenced again before the next run: kept, and the mark is gone with the commit.
    pair.ok("model", "register", "m", str(weights), "-v", "1.1.0")
    assert pair.psql("SELECT count(*) FROM gc_marks") == "0"
    second = pair.ok("gc", "--grace", "0", "--json")
    assert (second["objects_removed"], second["objects_kept"]) == (0, 1)
    assert key in pair.bucket_keys()
    # Unreferenced again, it starts over: marked by one run, removed by the next.
    pair.ok("model", "delete", "m:1.1.0")
    third = pair.ok("gc", "--grace", "0", "--json")
    assert (third["objects_removed"], third["objects_marked"]) == (0, 1)
    assert key in pair.bucket_keys()
    fourth = pair.ok("gc", "--grace", "0", "--json")
    assert (fourth["objects_removed"], fourth["objects_marked"]) == (1, 0)
    assert key not in pair.bucket_keys()
    assert pair.psql("SELECT count(*) FROM gc_marks") == "0"
    assert pair.ok("verify", "--json")["ok"] is True


@pytest.mark.fault
def test_gc_aborts_the_multipart_upload_a_killed_registration_left(
    pair: Pair, big_file: Path
) -> None:
    """A registration killed mid-upload leaves an incomplete multipart upload: parts the
    bucket keeps (and bills) but no listing of objects shows. Its id is recorded in the
    database while it runs: `gc` spares it while young and aborts it with --grace 0, as it
    removes the temp files of interrupted local writes."""
    proc = pair.popen("model", "register", "m", str(big_file), "-v", "1.0.0")
    wait_for_upload(pair.uploads, proc)
    # Recorded right after the bucket gave it an id.
    wait_for_upload(lambda: pair.psql("SELECT count(*) FROM uploads") == "1", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert pair.uploads(), "the killed registration left an upload"
    pair.ok("gc")
    assert pair.uploads(), "the default grace spares an upload that may still be running"
    assert pair.psql("SELECT count(*) FROM uploads") == "1"
    pair.ok("gc", "--grace", "0")
    assert pair.uploads() == [], "an abandoned multipart upload outlived gc --grace 0"
    assert pair.psql("SELECT count(*) FROM uploads") == "0"


# ---- 6. hostile names, references and URLs -----------------------------------------------

SQL = "'; DROP TABLE versions; --"


def _hostile_commands(pair: Pair, run_id: str) -> list[list[str]]:
    f = str(blob(pair.tmp, "h.bin", b"hostile"))
    recipe = blob(pair.tmp, "hostile.toml", f'name = "x{SQL}"\nversion = "1.0.0"\n'.encode())
    pg = f"127.0.0.1:{pair.postgres.port}"
    return [
        ["model", "register", f"x{SQL}", f, "-v", "1.0.0"],
        ["model", "register", "../x", f, "-v", "1.0.0"],
        ["model", "register", "x/../../y", f, "-v", "1.0.0"],
        ["model", "register", "a\u202eb", f, "-v", "1.0.0"],
        ["model", "register", "-v", "1.0.0", "--", "-rf", f],
        ["model", "register", "bert", f, "-v", f"1.0.1{SQL}"],
        ["data", "register", f"d{SQL}", f, "-v", "1.0.0"],
        ["model", "get", f"bert:1.0.0{SQL}"],
        ["model", "get", "bert@'; DELETE FROM versions; --"],
        ["model", "list", f"bert{SQL}"],
        ["model", "list", "--stage", "x' OR '1'='1"],
        ["model", "download", "bert:1.0.0' OR '1'='1", "-o", str(pair.tmp / "dl")],
        ["model", "stage", "bert:1.0.0", "-t", "production'; --"],
        ["model", "alias", "bert", "1.0.0", "a'; DROP TABLE aliases; --"],
        ["model", "alias", "bert", "--delete", "champion' OR '1'='1"],
        ["model", "tag", "bert:1.0.0", "k'; DROP TABLE tags; --=v"],
        ["model", "delete", "bert:1.0.0' OR 1=1 --", "--force"],
        ["lineage", "show", f"model/bert:1.0.0{SQL}"],
        ["lineage", "add", "model/bert:1.0.0", f"model/x{SQL}:1.0.0", "-r", "fine_tuned"],
        ["lineage", "add", "model/bert:1.0.0", "model/bert:1.0.0", "-r", "x'; --"],
        ["run", "get", "'; DROP TABLE runs; --"],
        ["run", "get", "______"],  # LIKE wildcards must not match the run
        ["run", "get", "%%%%%%"],
        ["run", "log", run_id, "lo'ss=1"],
        ["run", "finish", "%%%%%%"],
        ["recipe", "register", str(recipe)],
        ["--objects", f"s3://{pair.bucket}/../x", "model", "list"],
        ["--objects", f"s3://{pair.bucket}/{pair.prefix}/../other", "model", "list"],
        ["--objects", f"s3://{pair.bucket}/x{SQL}", "model", "list"],
        [
            "--registry",
            f"postgresql://pacha:{pair.postgres.password}@{pg}/{pair.database}{SQL}",
            "--objects",
            pair.objects,
            "model",
            "list",
        ],
        [
            "--registry",
            f"postgresql://pacha:{pair.postgres.password}@{pg}/../{pair.database}",
            "--objects",
            pair.objects,
            "init",
        ],
    ]


def test_hostile_names_references_and_urls_change_nothing(pair: Pair) -> None:
    weights = blob(pair.tmp, "w.bin", b"bert weights")
    pair.ok("model", "register", "bert", str(weights), "-v", "1.0.0")
    pair.ok("model", "alias", "bert", "1.0.0", "champion")
    run_id = pair.ok("run", "start")
    before = pair.snapshot()
    tables = before[0]
    assert any(t.startswith("versions=") for t in tables)

    commands = _hostile_commands(pair, run_id)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: pair.pacha(*c), commands))
    for command, result in zip(commands, results):
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") or command[0] == "recipe", (
            command,
            result.stderr,
        )
        if command[0] != "recipe":  # `recipe register` lists every problem, one a line
            one_error_line(result)
        no_secret(result, pair.secrets)
    assert not (pair.tmp / "dl").exists()
    assert pair.snapshot() == before
    assert pair.ok("run", "get", run_id, "--json")["metrics"] == {}

    # An unknown tag filter with quotes in it is a query that matches nothing.
    assert pair.ok("model", "list", "--tag", "k=v' OR '1'='1", "--json") == []


def test_hostile_text_that_is_accepted_is_stored_verbatim(pair: Pair) -> None:
    """Free text (descriptions, tag values) and Unicode names go in as data, never as SQL."""
    f = blob(pair.tmp, "w.bin", b"w")
    description = f'x{SQL} \\ " $1 %s ::text'
    record = pair.ok(
        "model", "register", "bert", str(f), "-v", "1.0.0", "-d", description,
        "--tag", f"note=v{SQL}", "--json",
    )  # fmt: skip
    assert (record["description"], record["tags"]) == (description, {"note": f"v{SQL}"})
    nfc, nfd = "caf\u00e9-\u540d\u524d", "cafe\u0301-\u540d\u524d"
    assert unicodedata.normalize("NFC", nfd) == nfc
    assert pair.ok("model", "register", nfd, str(f), "-v", "1.0.0", "--json")["name"] == nfc
    other = blob(pair.tmp, "o.bin", b"other")
    one_error_line(
        pair.pacha("model", "register", nfc, str(other), "-v", "1.0.0"), "already registered"
    )
    assert pair.ok("model", "get", f"{nfd}:1.0.0", "--json")["name"] == nfc
    assert [n["name"] for n in pair.ok("model", "list", "--json")] == ["bert", nfc]
    assert pair.psql("SELECT description FROM versions v JOIN artifacts a "
                     "ON a.id = v.artifact_id WHERE a.name = 'bert'") == description  # fmt: skip
    assert pair.psql(f"SELECT count(*) FROM artifacts WHERE name = '{nfc}'") == "1"
    assert len(pair.versions()) == 2
    assert pair.ok("verify", "--json")["ok"] is True


def test_nul_characters_through_the_api_change_nothing(api_env: Pair) -> None:
    pair = api_env
    reg = pair.open()
    weights = blob(pair.tmp, "w.bin", b"weights")
    reg.register_model("bert", weights, "1.0.0")
    before = pair.snapshot()
    attempts: list[Any] = [
        lambda: reg.register_model("a\x00b", weights, "1.0.0"),
        lambda: reg.register_model(f"x{SQL}\x00", weights, "1.0.0"),
        lambda: reg.register_dataset("a\x00b", weights, "1.0.0"),
        lambda: reg.register_model("bert", weights, "1.0.1\x00"),
        lambda: reg.register_model("bert", weights, "1.0.1", description="a\x00b"),
        lambda: reg.register_model("bert", weights, "1.0.1", tags={"k": "v\x00"}),
        lambda: reg.register_model("bert", weights, "1.0.1", tags={"k\x00": "v"}),
        lambda: reg.register_model("bert", f"{weights}\x00.evil", "1.0.1"),
        lambda: reg.get_model("bert\x00:1.0.0"),
        lambda: reg.get_model("bert:1.0.0\x00"),
        lambda: reg.tag_model("bert:1.0.0", {"k": "v\x00"}),
        lambda: reg.alias_model("bert:1.0.0", "al\x00"),
        lambda: reg.stage_model("bert:1.0.0", "staging\x00"),
        lambda: reg.delete_model("bert\x00:1.0.0", force=True),
        lambda: reg.add_edge("model/bert:1.0.0\x00", "model/bert:1.0.0", "fine_tuned"),
        lambda: pacha.Registry(metadata=pair.metadata + "\x00", objects=pair.objects),
        lambda: pacha.Registry(metadata=pair.metadata, objects=pair.objects + "\x00"),
        lambda: pacha.Registry(metadata=pair.metadata, objects=f"s3://{pair.bucket}/a/../b"),
    ]
    for i, attempt in enumerate(attempts):
        with pytest.raises((pacha.PachaError, ValueError, OSError)) as caught:
            attempt()
        assert "Traceback" not in str(caught.value), i
        assert not any(s in str(caught.value) for s in pair.secrets), i
    assert pair.snapshot() == before
    assert reg.verify().ok


@pytest.mark.parametrize("backend", ["shared"], indirect=True)
def test_a_prefix_another_registry_claimed_is_refused_to_a_new_database(
    backend: Backend, postgres: PostgresCluster, tmp_path: Path
) -> None:
    """The other direction of the pairing: a fresh database pointed at a prefix another
    registry's database already uses would take that registry's objects for garbage."""
    reg = backend.open()
    reg.register_model("m", blob(tmp_path, "m.bin", b"theirs"), "1.0.0")
    other = postgres.user_url(postgres.new_database("intruder"))
    with pytest.raises(pacha.InvalidInputError, match="holds the objects of another registry"):
        pacha.Registry(metadata=other, objects=backend.objects)
    assert reg.verify().ok
    assert [v.version for v in reg.list_model_versions()] == ["1.0.0"]
