"""The shared registry (PostgreSQL + S3) against the tools teams use, on the same servers in
the same run: boto3 for bytes, MLflow's model registry (its tracking server) on the same
PostgreSQL for versions.

Called by `benches/run.py` (its rows join the table there); starts its own PostgreSQL 15 and
SeaweedFS with `tests/services.py`, on 127.0.0.1 only, and stops them. A server that cannot
start skips these rows, saying why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run import Peers, Results

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def _script(python: str, code: str, env: dict[str, str], *args: str) -> float:
    """Run `code` (which prints its own elapsed seconds last) with `env`; its seconds."""
    done = subprocess.run(
        [python, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-1500:])
    return float(done.stdout.strip().splitlines()[-1])


PACHA_REGISTER = """
import sys, time, pacha
reg = pacha.Registry(metadata=sys.argv[1], objects=sys.argv[2])
t = time.perf_counter()
reg.register_model("m", sys.argv[3], "1.0.0")
print(time.perf_counter() - t)
"""

BOTO3_UPLOAD = """
import sys, time, boto3
client = boto3.client("s3")
t = time.perf_counter()
client.upload_file(sys.argv[3], sys.argv[1], sys.argv[2])
print(time.perf_counter() - t)
"""

BOTO3_UPLOAD_TREE = """
import os, sys, time, boto3
from concurrent.futures import ThreadPoolExecutor
client = boto3.client("s3")
root, bucket, prefix = sys.argv[3], sys.argv[1], sys.argv[2]
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
t = time.perf_counter()
def put(path):
    client.upload_file(path, bucket, prefix + "/" + os.path.relpath(path, root))
with ThreadPoolExecutor(16) as pool:
    list(pool.map(put, files))
print(time.perf_counter() - t)
"""

PACHA_DOWNLOAD = """
import sys, time, pacha
reg = pacha.Registry(metadata=sys.argv[1], objects=sys.argv[2])
t = time.perf_counter()
reg.download_model("m:1.0.0", sys.argv[3], force=True)
print(time.perf_counter() - t)
"""

BOTO3_DOWNLOAD = """
import sys, time, boto3
client = boto3.client("s3")
t = time.perf_counter()
client.download_file(sys.argv[1], sys.argv[2], sys.argv[3])
print(time.perf_counter() - t)
"""

LOCAL_VERIFY = """
import sys, time, pacha
t = time.perf_counter(); pacha.hash_file(sys.argv[1]); print(time.perf_counter() - t)
"""

PACHA_VERSIONS = """
import os, sys, time, pacha
reg = pacha.Registry(metadata=sys.argv[1], objects=sys.argv[2])
n, work = int(sys.argv[3]), sys.argv[4]
paths = []
for i in range(n):
    path = os.path.join(work, f"v{i}.bin")
    with open(path, "wb") as f:
        f.write(b"version %d " % i + os.urandom(64))
    paths.append(path)
t = time.perf_counter()
for path in paths:
    reg.register_model(sys.argv[5], path, bump="patch")
print(time.perf_counter() - t)
"""

MLFLOW_VERSIONS = """
import sys, time, logging
logging.disable(logging.WARNING)
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1])
name, n = sys.argv[2], int(sys.argv[3])
client.create_registered_model(name)
t = time.perf_counter()
for i in range(n):
    client.create_model_version(name, source=f"s3://bucket/models/{i}", run_id=None)
print(time.perf_counter() - t)
"""


def bench_shared(
    quick: bool, rounds: int, peers: Peers, work: Path, results: Results, row: Any
) -> None:
    """Add the shared-registry rows to `results` (`row` builds a `run.Row`)."""
    try:
        from services import ServiceUnavailable, start_postgres, start_s3
    except ImportError as e:
        results.skipped.append(f"shared registry rows: tests/services.py not importable ({e})")
        return
    try:
        import boto3  # noqa: F401  (the peer runs in a child; this checks it is there)
    except ImportError:
        results.skipped.append("shared registry rows: boto3 not installed (pip install boto3)")
        return
    try:
        pg = start_postgres()
    except ServiceUnavailable as e:
        results.skipped.append(f"shared registry rows: PostgreSQL did not start: {e.one_line()}")
        return
    try:
        s3 = start_s3()
    except ServiceUnavailable as e:
        pg.stop()
        results.skipped.append(f"shared registry rows: S3 did not start: {e.one_line()}")
        return
    try:
        _rows(quick, rounds, peers, work, results, row, pg, s3)
    finally:
        s3.stop()
        pg.stop()


def _rows(
    quick: bool,
    rounds: int,
    peers: Peers,
    work: Path,
    results: Results,
    row: Any,
    pg: Any,
    s3: Any,
) -> None:
    from run import make_dir, make_file

    mib = 1 << 20
    big = make_file(work / "shared-big.bin", (128 if quick else 1024) * mib)
    big_label = "128 MiB" if quick else "1 GiB"
    files = 1000 if quick else 10_000
    tree = make_dir(work / f"shared-tree-{files}", files, 4096)
    bucket = s3.new_bucket("bench")
    env = {**os.environ, **s3.env()}
    env.pop("PACHA_REGISTRY", None)
    env.pop("PACHA_OBJECTS", None)
    counter = iter(range(1_000_000))

    def fresh_registry() -> tuple[str, str]:
        """A new database and a new prefix: nothing is there yet."""
        database = pg.new_database("bench")
        return pg.user_url(database), f"s3://{bucket}/{database}"

    def pacha_register(source: Path) -> float:
        metadata, objects = fresh_registry()
        return _script(sys.executable, PACHA_REGISTER, env, metadata, objects, str(source))

    def boto3_upload(code: str, source: Path) -> float:
        return _script(sys.executable, code, env, bucket, f"boto3-{next(counter)}", str(source))

    # 1. a large file
    p, b = _paired(lambda: pacha_register(big), lambda: boto3_upload(BOTO3_UPLOAD, big), rounds)
    results.rows.append(
        row(
            f"shared: register {big_label}",
            "Registry.register_model (PostgreSQL + S3)",
            "boto3 upload_file (multipart)",
            p,
            b,
            b / p,
            "≥ 1 x boto3 throughput",
            b / p >= 1.0,
        )
    )

    # 2. many small files
    p, b = _paired(
        lambda: pacha_register(tree), lambda: boto3_upload(BOTO3_UPLOAD_TREE, tree), rounds
    )
    results.rows.append(
        row(
            f"shared: register {files:,} x 4 KiB",
            "Registry.register_model (directory)",
            "boto3 upload_file, 16 threads",
            p,
            b,
            b / p,
            "—",
            None,
            note="pacha packs small files: a few PUTs",
        )
    )
    if peers.dvc:
        dvc = peers.dvc

        def dvc_push() -> float:
            repo = work / f"dvc-{next(counter)}"
            repo.mkdir()
            # A copy: `dvc add` refuses a directory reached through a link.
            shutil.copytree(tree, repo / "data")
            steps = [
                ["init", "--no-scm", "-q"],
                ["config", "cache.type", "copy"],
                ["remote", "add", "-d", "store", f"s3://{bucket}/{repo.name}"],
                ["remote", "modify", "store", "endpointurl", s3.endpoint_url],
                ["add", "-q", "data"],
            ]
            for step in steps:
                subprocess.run([dvc, *step], cwd=repo, env=env, check=True, capture_output=True)
            started = time.perf_counter()
            subprocess.run([dvc, "push", "-q"], cwd=repo, env=env, check=True, capture_output=True)
            return time.perf_counter() - started

        try:
            p, d = _paired(lambda: pacha_register(tree), dvc_push, rounds)
            results.rows.append(
                row(
                    f"shared: register {files:,} x 4 KiB",
                    "Registry.register_model (directory)",
                    "dvc push (same bucket)",
                    p,
                    d,
                    d / p,
                    "≥ 10 x faster than dvc push",
                    d / p >= 10.0,
                )
            )
        except (subprocess.CalledProcessError, OSError) as e:
            detail = getattr(e, "stderr", b"") or b""
            results.skipped.append(f"dvc push: {e} {detail[-300:]!r}")

    # 3. downloads: cold cache, warm cache
    metadata, objects = fresh_registry()
    _script(sys.executable, PACHA_REGISTER, env, metadata, objects, str(big))
    out = work / "shared-out.bin"
    key = f"boto3-big-{next(counter)}"
    _script(sys.executable, BOTO3_UPLOAD, env, bucket, key, str(big))

    def pacha_download(cache: Path) -> float:
        return _script(
            sys.executable,
            PACHA_DOWNLOAD,
            {**env, "PACHA_CACHE": str(cache)},
            metadata,
            objects,
            str(out),
        )

    def cold() -> float:
        return pacha_download(work / f"cache-{next(counter)}")

    def boto3_download() -> float:
        return _script(sys.executable, BOTO3_DOWNLOAD, env, bucket, key, str(work / "b.bin"))

    p, b = _paired(cold, boto3_download, rounds)
    results.rows.append(
        row(
            f"shared: download {big_label}, cold cache",
            "Registry.download_model (verified)",
            "boto3 download_file",
            p,
            b,
            b / p,
            "≥ 1 x boto3",
            b / p >= 1.0,
        )
    )
    warm_cache = work / "cache-warm"
    pacha_download(warm_cache)
    p, v = _paired(
        lambda: pacha_download(warm_cache),
        lambda: _script(sys.executable, LOCAL_VERIFY, env, str(big)),
        rounds,
    )
    results.rows.append(
        row(
            f"shared: download {big_label}, warm cache",
            "Registry.download_model (from the cache)",
            "pacha.hash_file of the local file",
            p,
            v,
            v / p,
            "≤ 1.2 x local verify",
            p <= 1.2 * v,
            note="a download also writes and fsyncs the output",
        )
    )

    # 4. many versions, one process
    versions = 200 if quick else 1000
    scratch = work / "versions"
    scratch.mkdir(exist_ok=True)

    def pacha_versions() -> float:
        metadata, objects = fresh_registry()
        name = f"m{next(counter)}"
        return _script(
            sys.executable,
            PACHA_VERSIONS,
            env,
            metadata,
            objects,
            str(versions),
            str(scratch),
            name,
        )

    if peers.mlflow and peers.python:
        python = peers.python

        def mlflow_versions() -> float:
            database = pg.new_database("mlflow")
            url = pg.user_url(database).replace("postgresql://", "postgresql+psycopg2://")
            return _script(python, MLFLOW_VERSIONS, env, url, f"m{next(counter)}", str(versions))

        try:
            with _mlflow_server(python, pg, env) as server:

                def mlflow_server_versions() -> float:
                    return _script(
                        python, MLFLOW_VERSIONS, env, server, f"m{next(counter)}", str(versions)
                    )

                p, m = _paired(pacha_versions, mlflow_server_versions, rounds)
            results.rows.append(
                row(
                    f"shared: {versions} model versions, one process",
                    "Registry.register_model --bump (PostgreSQL + S3)",
                    "MLflow create_model_version (MLflow server, same PostgreSQL)",
                    p,
                    m,
                    m / p,
                    "≥ 5 x faster",
                    m / p >= 5.0,
                    note="pacha also uploads each version's bytes to S3 (one PUT each); "
                    "MLflow records a source URI only",
                )
            )
            p, m = _paired(pacha_versions, mlflow_versions, rounds)
            results.rows.append(
                row(
                    f"shared: {versions} model versions, one process",
                    "Registry.register_model --bump (PostgreSQL + S3)",
                    "MLflow create_model_version (its SQLAlchemy store in-process, no server)",
                    p,
                    m,
                    m / p,
                    "— (harsher than the issue's peer)",
                    None,
                    note="MLflow's client on its store directly: no HTTP hop",
                )
            )
        except RuntimeError as e:
            results.skipped.append(f"MLflow on PostgreSQL: {str(e).strip()[-300:]}")
    else:
        p = min(pacha_versions() for _ in range(rounds))
        results.rows.append(
            row(
                f"shared: {versions} model versions, one process",
                "Registry.register_model --bump",
                "—",
                p,
                float("nan"),
                float("nan"),
                "≥ 5 x MLflow",
                None,
                note="MLflow not installed (--with-peers)",
            )
        )

    # 5. several processes at once
    per_process = 20 if quick else 100
    metadata, objects = fresh_registry()

    def processes_at_once(n: int) -> float:
        name = f"m{next(counter)}"
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    textwrap.dedent(PACHA_VERSIONS),
                    metadata,
                    objects,
                    str(per_process),
                    str(_scratch(work, i)),
                    name,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(n)
        ]
        errors = [p.communicate()[1] for p in procs if p.wait() != 0]
        if errors:
            raise RuntimeError(f"{len(errors)} of {n} processes failed: {errors[0][-500:]!r}")
        return time.perf_counter() - started

    one = processes_at_once(1)
    eight = processes_at_once(8)
    throughput_one, throughput_eight = per_process / one, 8 * per_process / eight
    results.rows.append(
        row(
            f"shared: 8 processes x {per_process} versions of one name",
            "8 processes",
            "1 process",
            eight,
            one,
            throughput_eight / throughput_one,
            "zero errors, throughput grows",
            throughput_eight > throughput_one,
            note=f"{throughput_eight:.0f} vs {throughput_one:.0f} versions/s, no errors",
        )
    )


@contextlib.contextmanager
def _mlflow_server(python: str, pg: Any, env: dict[str, str]) -> Iterator[str]:
    """An MLflow tracking server (one worker) on a fresh database of `pg`, on 127.0.0.1;
    yields its URL and stops it."""
    from services import _free_ports

    database = pg.new_database("mlflowserver")
    url = pg.user_url(database).replace("postgresql://", "postgresql+psycopg2://")
    [port] = _free_ports(1)
    mlflow = str(Path(python).parent / "mlflow")
    log = open(pg.base_dir / "mlflow-server.log", "wb")  # noqa: SIM115  (closed below)
    command = [mlflow, "server", "--backend-store-uri", url, "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "1"],
        env={**env, "MLFLOW_TRACKING_URI": ""},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{address}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the MLflow server did not start: "
                    + (pg.base_dir / "mlflow-server.log").read_text("utf-8", "replace")[-300:]
                )
            time.sleep(0.5)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _scratch(work: Path, i: int) -> Path:
    path = work / f"proc-{i}"
    path.mkdir(exist_ok=True)
    return path


def _paired(a: Any, b: Any, rounds: int) -> tuple[float, float]:
    from run import paired

    return paired(a, b, rounds)
