#!/usr/bin/env python3
"""pacha against the tools people use instead, side by side on the same data in one run.

Generates its own data, runs pacha and each peer alternately (A B A B ...) after a warm-up of
each, and reports medians, the ratio per pair and peak RSS. Results go to
``<out>/latest.json`` and a bar chart of the ratios, ``<out>/latest.png``.

Peers: ``b3sum``, ``cp``, ``cp -r`` and ``find | xargs b3sum`` when installed; with
``--with-peers``, DVC, MLflow and the ``blake3`` Python package, installed into a separate
virtual environment (``~/.cache/pacha-bench-peers``; pacha itself never depends on them).
A peer that cannot be installed or run is skipped, and the output says so.

A benchmark, not a test: it never fails on a missed target.

Usage: python benches/run.py [--quick] [--with-peers] [--rounds N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import pacha

HERE = Path(__file__).resolve().parent
PEERS_VENV = Path.home() / ".cache" / "pacha-bench-peers"
PACHA = [sys.executable, "-m", "pacha"]
IN_PROCESS_HASH = (
    "import sys, time, pacha\n"
    "t = time.perf_counter(); pacha.hash_file(sys.argv[1]); print(time.perf_counter() - t)"
)
IN_PROCESS_VERIFY = (
    "import sys, time, pacha, pacha.models  # imports are start-up, not verification\n"
    "reg = pacha.Registry(sys.argv[1]); t = time.perf_counter(); ok = reg.verify().ok\n"
    "assert ok; print(time.perf_counter() - t)"
)


@dataclass
class Row:
    work: str
    pacha: str  # what pacha ran
    peer: str
    pacha_s: float
    peer_s: float
    # How many times faster pacha is (peer / pacha); for throughput rows, pacha / reference.
    ratio: float
    target: str
    met: Optional[bool]
    pacha_rss_mib: Optional[float] = None
    peer_rss_mib: Optional[float] = None
    note: str = ""


@dataclass
class Results:
    machine: dict[str, str]
    quick: bool
    rounds: int
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---- measuring ----


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run(
    cmd: list[str],
    *,
    cwd: Optional[Path] = None,
    env: Optional[dict[str, str]] = None,
    stdin: Optional[int] = None,
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command; raises if it fails.

    Peak RSS comes from GNU time when installed: a child's `ru_maxrss` as `wait4` reports it
    starts from its parent's resident size at fork, so this (large) process would hide it.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        wrapped = [TIME, "-f", "%M", "-o", rss_file.name, *cmd] if TIME else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if code != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({code}): {err[-500:]}")
        lines = rss_file.read().strip().splitlines()
        kib = float(lines[-1]) if TIME and lines else float(usage.ru_maxrss)
    return elapsed, kib / 1024


def timed_script(python: str, script: str, *args: str) -> float:
    """Run a Python script that prints its own elapsed seconds on its last line."""
    out = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-800:])
    return float(out.stdout.strip().splitlines()[-1])


Measure = Callable[[], float]


def paired(a: Measure, b: Measure, rounds: int) -> tuple[float, float]:
    """Medians of `rounds` alternating runs of a and b, after one warm-up of each."""
    a()
    b()
    sa, sb = [], []
    for _ in range(rounds):
        sa.append(a())
        sb.append(b())
    return statistics.median(sa), statistics.median(sb)


def median_of(fn: Measure, rounds: int) -> float:
    fn()
    return statistics.median(fn() for _ in range(rounds))


# ---- data ----


def make_file(path: Path, size: int) -> Path:
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 16 << 20)
                f.write(os.urandom(n))
                left -= n
    return path


def make_dir(path: Path, count: int, size: int) -> Path:
    if not path.exists():
        path.mkdir(parents=True)
        for i in range(count):
            sub = path / f"{i // 1000:03d}"
            sub.mkdir(exist_ok=True)
            (sub / f"f{i:06d}.bin").write_bytes(os.urandom(size))
    return path


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


# ---- peers ----


class Peers:
    def __init__(self, install: bool, skipped: list[str]) -> None:
        self.skipped = skipped
        self.b3sum = shutil.which("b3sum")
        if not self.b3sum:
            skipped.append("b3sum: not installed (apt-get install b3sum)")
        self.python: Optional[str] = None
        self.dvc: Optional[str] = None
        self.mlflow = False
        self.blake3 = False
        if install:
            self._install()
        else:
            skipped.append("dvc, mlflow, blake3 (Python): not requested (--with-peers)")

    def _install(self) -> None:
        python = PEERS_VENV / "bin" / "python"
        if not python.exists():
            print(f"installing peers into {PEERS_VENV} ...", file=sys.stderr)
            venv.create(PEERS_VENV, with_pip=True)
        # dvc-s3: DVC's S3 remotes; psycopg2: MLflow's driver for PostgreSQL (both for the
        # shared-registry rows).
        for package in ("dvc", "dvc-s3", "mlflow", "blake3", "psycopg2-binary"):
            done = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", package],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                self.skipped.append(f"{package}: pip install failed: {done.stderr.strip()[-200:]}")
        self.python = str(python)
        dvc = PEERS_VENV / "bin" / "dvc"
        self.dvc = str(dvc) if dvc.exists() else None
        check = "import importlib.util as u, sys; sys.exit(0 if u.find_spec(sys.argv[1]) else 1)"
        self.mlflow = subprocess.run([self.python, "-c", check, "mlflow"]).returncode == 0
        self.blake3 = subprocess.run([self.python, "-c", check, "blake3"]).returncode == 0
        if not self.dvc:
            self.skipped.append("dvc: not available after install")
        if not self.mlflow:
            self.skipped.append("mlflow: not available after install")


# ---- the work ----


def bench(quick: bool, rounds: int, peers: Peers, work: Path, results: Results) -> None:
    mib = 1 << 20
    big = make_file(work / "big.bin", (64 if quick else 1024) * mib)
    huge = make_file(work / "huge.bin", (128 if quick else 4096) * mib)
    dir4k = make_dir(work / "dir4k", 1000 if quick else 10_000, 4096)
    dir1k = make_dir(work / "dir1k", 5000 if quick else 100_000, 1024)
    big_label = "64 MiB" if quick else "1 GiB"
    huge_label = "128 MiB" if quick else "4 GiB"
    rows = results.rows

    def pacha_cmd(registry: Path, *args: str) -> list[str]:
        return [*PACHA, "--registry", str(registry), *args]

    # 1. hash: in process (how a pipeline calls it) and as a CLI process (with start-up)
    hash_pacha = lambda: run([*PACHA, "hash", str(big)])[0]  # noqa: E731
    hash_api = lambda: timed_script(sys.executable, IN_PROCESS_HASH, str(big))  # noqa: E731
    if peers.b3sum:
        b3sum = peers.b3sum
        b3 = lambda: run([b3sum, str(big)])[0]  # noqa: E731
        p, b = paired(hash_api, b3, rounds)
        rows.append(
            Row(
                f"hash {big_label}",
                "pacha.hash_file (in process)",
                "b3sum",
                p,
                b,
                b / p,
                "≤ 1.1 x b3sum",
                p <= 1.1 * b,
            )
        )
        p, b = paired(hash_pacha, b3, rounds)
        rows.append(
            Row(
                f"hash {big_label}",
                "pacha hash (CLI process)",
                "b3sum",
                p,
                b,
                b / p,
                "—",
                None,
                note="includes Python start-up",
            )
        )
    if peers.blake3 and peers.python:
        peer_script = (
            "import sys, time, blake3\nt=time.perf_counter()\n"
            "blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(sys.argv[1])\n"
            "print(time.perf_counter()-t)"
        )
        p, b = paired(
            lambda: timed_script(sys.executable, IN_PROCESS_HASH, str(big)),
            lambda: timed_script(peers.python, peer_script, str(big)),
            rounds,
        )
        rows.append(
            Row(
                f"hash {big_label} in process",
                "pacha.hash_file",
                "blake3 (Python, mmap, all threads)",
                p,
                b,
                b / p,
                "—",
                None,
            )
        )

    # 2. register a large file (new content)
    reg = work / "reg"

    def pacha_register() -> float:
        fresh(reg)
        return run(pacha_cmd(reg, "model", "register", "m", str(big), "-v", "1.0.0", "-q"))[0]

    def cp_b3sum() -> float:
        target = work / "cp.bin"
        target.unlink(missing_ok=True)
        elapsed = run(["cp", str(big), str(target)])[0]
        if peers.b3sum:
            elapsed += run([peers.b3sum, str(target)])[0]
        return elapsed

    p, c = paired(pacha_register, cp_b3sum, rounds)
    peer = "cp + b3sum" if peers.b3sum else "cp"
    rows.append(
        Row(
            f"register a {big_label} file",
            "pacha model register",
            peer,
            p,
            c,
            c / p,
            "≤ cp + b3sum",
            p <= c,
        )
    )
    if peers.dvc:
        repo = work / "dvc-repo"

        def dvc_add() -> float:
            fresh(repo).mkdir()
            run([peers.dvc, "init", "--no-scm", "-q"], cwd=repo)
            os.link(big, repo / "big.bin")
            return run([peers.dvc, "add", "-q", "big.bin"], cwd=repo)[0]

        p, d = paired(pacha_register, dvc_add, rounds)
        rows.append(
            Row(
                f"register a {big_label} file",
                "pacha model register",
                "dvc add",
                p,
                d,
                d / p,
                "≥ 10 x faster than dvc add",
                d / p >= 10,
            )
        )

    # 3. the same bytes again, as a new version
    fresh(reg)
    run(pacha_cmd(reg, "model", "register", "m", str(big), "-v", "1.0.0", "-q"))
    counter = iter(range(1, 10_000))

    def pacha_again() -> float:
        version = f"1.0.{next(counter)}"
        return run(pacha_cmd(reg, "model", "register", "m", str(big), "-v", version, "-q"))[0]

    p_again, p_hash = paired(pacha_again, hash_pacha, rounds)  # both CLI processes
    rows.append(
        Row(
            f"re-register the same {big_label}",
            "pacha model register",
            "pacha hash",
            p_again,
            p_hash,
            p_hash / p_again,
            "≤ 1.2 x hash time",
            p_again <= 1.2 * p_hash,
        )
    )
    if peers.dvc:
        dvc_add()
        names = iter(range(10_000))

        def dvc_again() -> float:
            name = f"again{next(names)}.bin"
            os.link(big, repo / name)
            return run([peers.dvc, "add", "-q", name], cwd=repo)[0]

        p, d = paired(pacha_again, dvc_again, rounds)
        rows.append(
            Row(
                f"re-register the same {big_label}",
                "pacha model register",
                "dvc add (cache hit)",
                p,
                d,
                d / p,
                "—",
                None,
            )
        )

    # 4. directories
    for label, tree, target, read_hash_target in (
        (f"{len(list(dir4k.rglob('*.bin'))):,} x 4 KiB directory", dir4k, "≤ 1 x cp -r", None),
        (
            f"{len(list(dir1k.rglob('*.bin'))):,} x 1 KiB directory",
            dir1k,
            None,
            "≤ 2 x read + hash",
        ),
    ):

        def pacha_dir(tree: Path = tree) -> float:
            fresh(reg)
            return run(pacha_cmd(reg, "data", "register", "d", str(tree), "-v", "1.0.0", "-q"))[0]

        def cp_r(tree: Path = tree) -> float:
            return run(["cp", "-r", str(tree), str(fresh(work / "cp-dir"))])[0]

        p, c = paired(pacha_dir, cp_r, rounds)
        rows.append(
            Row(
                f"register a {label}",
                "pacha data register",
                "cp -r",
                p,
                c,
                c / p,
                target or "—",
                (p <= c) if target else None,
                note="" if target else "files of ≤ 64 KiB are packed into one SQLite file",
            )
        )
        if peers.b3sum:
            find = [
                "sh",
                "-c",
                f"find '{tree}' -type f -print0 | xargs -0 {peers.b3sum} > /dev/null",
            ]
            p, f = paired(pacha_dir, lambda find=find: run(find)[0], rounds)
            rows.append(
                Row(
                    f"register a {label}",
                    "pacha data register",
                    "find \\| xargs b3sum",
                    p,
                    f,
                    f / p,
                    read_hash_target or "—",
                    (p <= 2 * f) if read_hash_target else None,
                )
            )
        if peers.dvc:

            def dvc_dir(tree: Path = tree, repo: Path = work / "dvc-dir") -> float:
                fresh(repo).mkdir()
                run([peers.dvc, "init", "--no-scm", "-q"], cwd=repo)
                run(["cp", "-al", str(tree), str(repo / "data")])
                return run([peers.dvc, "add", "-q", "data"], cwd=repo)[0]

            p, d = paired(pacha_dir, dvc_dir, rounds)
            rows.append(
                Row(
                    f"register a {label}",
                    "pacha data register",
                    "dvc add",
                    p,
                    d,
                    d / p,
                    "≥ 10 x faster than dvc add",
                    d / p >= 10,
                )
            )

    # 5. many versions
    versions = 100 if quick else 1000
    pacha_versions = (
        "import sys, time, pacha, pathlib\n"
        "reg = pacha.Registry(sys.argv[1]); f = pathlib.Path(sys.argv[1]).parent / 'tiny.bin'\n"
        "f.write_bytes(b'w'); n = int(sys.argv[2])\n"
        "t = time.perf_counter()\n"
        "for i in range(n): reg.register_model('m', f, f'1.0.{i}')\n"
        "print((time.perf_counter() - t) / n)"
    )
    vreg = work / "vreg"
    p = median_of(
        lambda: timed_script(sys.executable, pacha_versions, str(fresh(vreg)), str(versions)),
        max(1, rounds // 2),
    )
    if peers.mlflow and peers.python:
        mlflow_versions = (
            "import sys, time, mlflow, pathlib, os\n"
            "root = pathlib.Path(sys.argv[1]); root.mkdir(parents=True)\n"
            "mlflow.set_tracking_uri(f'sqlite:///{root}/mlflow.db')\n"
            "client = mlflow.MlflowClient(); client.create_registered_model('m')\n"
            "n = int(sys.argv[2]); t = time.perf_counter()\n"
            "for i in range(n):\n"
            "    client.create_model_version('m', f'file://{root}/art{i}', run_id=None)\n"
            "print((time.perf_counter() - t) / n)"
        )
        m = median_of(
            lambda: timed_script(
                peers.python, mlflow_versions, str(fresh(work / "mlflow")), str(versions)
            ),
            max(1, rounds // 2),
        )
        rows.append(
            Row(
                f"{versions:,} model versions (per op)",
                "Registry.register_model",
                "MlflowClient.create_model_version",
                p,
                m,
                m / p,
                "≥ 5 x faster than create_model_version",
                m / p >= 5,
            )
        )
    else:
        rows.append(
            Row(
                f"{versions:,} model versions (per op)",
                "Registry.register_model",
                "—",
                p,
                float("nan"),
                float("nan"),
                "≥ 5 x faster than create_model_version",
                None,
                note="MLflow not installed (--with-peers)",
            )
        )

    # 6. verify throughput against hashing
    fresh(reg)
    run(pacha_cmd(reg, "model", "register", "m", str(big), "-v", "1.0.0", "-q"))
    v, h = paired(
        lambda: timed_script(sys.executable, IN_PROCESS_VERIFY, str(reg)), hash_api, rounds
    )
    rows.append(
        Row(
            f"verify everything ({big_label})",
            "Registry.verify",
            "pacha.hash_file",
            v,
            h,
            h / v,
            "≥ 0.9 x hash throughput",
            h / v >= 0.9,
        )
    )

    # 7. start-up
    small = work / "small-reg"
    if not small.exists():
        seed = work / "dir4k" / "000" / "f000000.bin"
        run(pacha_cmd(small, "model", "register", "m", str(seed), "-v", "1.0.0", "-q"))
    base = median_of(lambda: run([sys.executable, "-c", "pass"])[0], rounds)
    startup = {}
    for label, cmd in (
        ("pacha --help", [*PACHA, "--help"]),
        ("pacha model list", pacha_cmd(small, "model", "list")),
    ):
        startup[label] = median_of(lambda cmd=cmd: run(cmd)[0], rounds)
        rows.append(
            Row(
                f"CLI start-up: {label}",
                label,
                "python -c pass",
                startup[label],
                base,
                base / startup[label],
                "≤ 0.15 s",
                startup[label] <= 0.15,
            )
        )
    if peers.dvc:
        d = median_of(lambda: run([peers.dvc, "--version"])[0], rounds)
        p = startup["pacha --help"]
        rows.append(
            Row("CLI start-up", "pacha --help", "dvc --version", p, d, d / p, "≤ 0.15 s", p <= 0.15)
        )
    if peers.mlflow and peers.python:
        m = median_of(lambda: run([peers.python, "-c", "import mlflow"])[0], rounds)
        p = startup["pacha model list"]
        rows.append(
            Row(
                "CLI start-up",
                "pacha model list",
                "python -c 'import mlflow'",
                p,
                m,
                m / p,
                "≤ 0.15 s",
                p <= 0.15,
            )
        )

    # 8. peak memory registering a huge file
    # The interpreter with what the command imports, doing nothing: the baseline.
    base_rss = run([*PACHA, "--registry", str(small), "model", "list"])[1]
    t, rss = run(pacha_cmd(fresh(reg), "model", "register", "m", str(huge), "-v", "1.0.0", "-q"))
    row = Row(
        f"peak RSS, register a {huge_label} file",
        "pacha model register",
        "interpreter + imports",
        t,
        float("nan"),
        float("nan"),
        "≤ 64 MiB above the interpreter",
        rss - base_rss <= 64,
        pacha_rss_mib=rss,
        peer_rss_mib=base_rss,
        note=f"peak {rss:.1f} MiB, baseline {base_rss:.1f} MiB: {rss - base_rss:.1f} MiB above",
    )
    rows.append(row)
    if peers.dvc:
        repo = work / "dvc-huge"
        fresh(repo).mkdir()
        run([peers.dvc, "init", "--no-scm", "-q"], cwd=repo)
        os.link(huge, repo / "huge.bin")
        dt, drss = run([peers.dvc, "add", "-q", "huge.bin"], cwd=repo)
        rows.append(
            Row(
                f"peak RSS, register a {huge_label} file",
                "pacha model register",
                "dvc add",
                t,
                dt,
                dt / t,
                "≤ 64 MiB above the interpreter",
                rss - base_rss <= 64,
                pacha_rss_mib=rss,
                peer_rss_mib=drss,
            )
        )
    fresh(reg)


def chart(results: Results, path: Path) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    rows = [r for r in results.rows if r.ratio == r.ratio and r.peer not in ("python -c pass",)]
    labels = [f"{r.work}\nvs {r.peer}".replace("\\|", "|") for r in rows]
    ratios = [r.ratio for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    colours = ["#2a9d8f" if r.met else ("#e76f51" if r.met is False else "#8d99ae") for r in rows]
    ax.barh(range(len(rows)), ratios, color=colours)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_xlabel("times faster than the peer (log scale; > 1: pacha is faster)")
    ax.set_title(
        f"pacha {pacha.__version__} vs peers, {results.machine['cpus']} cores"
        + (" (quick)" if results.quick else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, for a CI smoke run")
    parser.add_argument("--with-peers", action="store_true", help="install DVC, MLflow, blake3")
    parser.add_argument(
        "--rounds", type=int, default=None, help="counted rounds (default 5; 3 quick)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--data", type=Path, default=None, help="where to generate data (kept)")
    parser.add_argument(
        "--no-shared",
        action="store_true",
        help="skip the shared-registry rows (PostgreSQL + S3, started by the benchmark)",
    )
    parser.add_argument("--shared-only", action="store_true", help="only the shared-registry rows")
    args = parser.parse_args()
    if args.shared_only and args.no_shared:
        parser.error("--shared-only and --no-shared exclude each other")
    rounds = args.rounds or (3 if args.quick else 5)
    results = Results(
        machine={
            "cpus": str(os.cpu_count()),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pacha": pacha.__version__,
            "date": time.strftime("%Y-%m-%d"),
        },
        quick=args.quick,
        rounds=rounds,
    )
    peers = Peers(args.with_peers, results.skipped)
    started = time.perf_counter()
    if args.data:
        args.data.mkdir(parents=True, exist_ok=True)
    if args.shared_only:
        pass  # the rows below only
    elif args.data:
        bench(args.quick, rounds, peers, args.data, results)
    else:
        with tempfile.TemporaryDirectory(
            prefix="pacha-bench-", dir=os.environ.get("TMPDIR")
        ) as tmp:
            bench(args.quick, rounds, peers, Path(tmp), results)
    if not args.no_shared:
        from bench_shared import bench_shared

        if args.data:
            bench_shared(args.quick, rounds, peers, args.data, results, Row)
        else:
            with tempfile.TemporaryDirectory(
                prefix="pacha-bench-shared-", dir=os.environ.get("TMPDIR")
            ) as tmp:
                bench_shared(args.quick, rounds, peers, Path(tmp), results, Row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(
        json.dumps({**asdict(results), "seconds": time.perf_counter() - started}, indent=2) + "\n"
    )
    problem = chart(results, args.out / "latest.png")

    print(
        f"## pacha {pacha.__version__} against its peers ({'quick' if args.quick else 'full'}, "
        f"median of {rounds}, {results.machine['cpus']} cores)\n"
    )
    print("| work | pacha | peer | pacha | peer | ratio | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results.rows:
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        peer_s = "—" if r.peer_s != r.peer_s else f"{r.peer_s:.3f} s"
        ratio = "—" if r.ratio != r.ratio else f"{r.ratio:.2f}x"
        note = f" ({r.note})" if r.note else ""
        print(
            f"| {r.work} | {r.pacha} | {r.peer} | {r.pacha_s:.3f} s | {peer_s} | {ratio} "
            f"| {r.target} | {met}{note} |"
        )
    for s in results.skipped:
        print(f"\nskipped: {s}")
    if problem:
        print(f"\n{problem}")
    print(
        f"\nresults: {args.out / 'latest.json'}; chart: {args.out / 'latest.png'}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
