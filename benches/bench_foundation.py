#!/usr/bin/env python3
"""Foundation benchmark: pacha's hash / ingest / export against the reference tools.

Compares, on one random file held in the page cache, with contenders run alternately
(A B A B ...) after one untimed warm-up run each:

1. hash:            pacha.hash_file           vs  b3sum FILE (or the blake3 PyPI package)
2. ingest new:      ObjectStore.put_file      vs  cp + b3sum, cp, cp && sync
3. ingest existing: put_file of stored bytes  vs  pacha.hash_file
4. export:          ObjectStore.export        vs  cp, cp && sync
5. peak RSS of put_file and export, each in its own child interpreter

It is a benchmark, not a test: it builds nothing and only exits non-zero when a result is
wrong (digests disagree, an object is not written, ...), never when a target is missed.

Usage:
    python benches/bench_foundation.py [--quick] [--size-gib N] [--runs N] [--dir PATH]
                                       [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pacha

MIB = 1 << 20
GIB = 1 << 30
CHUNK = 16 * MIB
QUICK_SIZE = 64 * MIB
QUICK_RUNS = 3
RSS_SIZE = 4 * GIB
RSS_TARGET_MIB = 64.0
EXISTING_TARGET_RATIO = 1.2

# Runs in a fresh interpreter so that the parent's memory does not count. ru_maxrss is in
# KiB on Linux. argv: op ("put" | "export"), source file, store root, destination, digest.
#
# Linux carries a process's peak RSS across exec (and subprocess vforks from this parent),
# so a plain child would start with our own peak as its ru_maxrss. The child therefore
# forks once after `import pacha`: a forked process starts with a fresh peak equal to its
# current RSS, and measures there. VmHWM (same quantity, from /proc) is kept as a cross-check.
RSS_CHILD = """
import json, os, re, resource, sys, traceback
import pacha

def vm_hwm_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

def measure():
    op, src, root, dest, digest = sys.argv[1:6]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = pacha.ObjectStore(root)
    if op == "put":
        outcome = store.put_file(src)
        result = {"digest": outcome.digest, "written": outcome.written}
    else:
        result = {"bytes": store.export(digest, dest, overwrite=True)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"baseline_kib": baseline, "peak_kib": peak, "vm_hwm_kib": vm_hwm_kib(), **result}

pid = os.fork()
if pid == 0:
    try:
        print(json.dumps(measure()), flush=True)
        os._exit(0)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


class BenchError(Exception):
    """A result was wrong (not merely slow)."""


@dataclass
class Contender:
    """One side of a comparison: a timed action and an untimed setup run before it."""

    name: str
    run: Callable[[], Any]
    setup: Optional[Callable[[], None]] = None
    times: list[float] = field(default_factory=list)
    warmup: float = 0.0
    results: list[Any] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)


@dataclass
class Row:
    """One line of the summary table."""

    work: str
    pacha: str
    reference: str
    ratio: str
    target: str
    met: str


# ----------------------------------------------------------------------------- helpers


def sh(*argv: str) -> str:
    """Run a command, fail loudly, return its stdout."""
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def clean_slate(*paths: Path) -> Callable[[], None]:
    """Setup step: delete previous outputs and flush dirty pages (outside the timed region).

    Without the sync, a non-durable cp would leave its writeback to whoever runs next.
    """

    def setup() -> None:
        for path in paths:
            remove(path)
        os.sync()

    return setup


def write_random_file(path: Path, size: int) -> None:
    """Stream `size` random bytes to `path` in CHUNK pieces."""
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n


def warm_cache(path: Path) -> None:
    """Read the file once so that every contender finds it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(CHUNK):
            pass


def alternate(contenders: list[Contender], runs: int) -> None:
    """One warm-up run each, then `runs` rounds in which every contender runs once, in turn."""
    for round_no in range(runs + 1):
        for c in contenders:
            if c.setup is not None:
                c.setup()
            gc.collect()
            start = time.perf_counter()
            result = c.run()
            elapsed = time.perf_counter() - start
            c.results.append(result)
            if round_no == 0:
                c.warmup = elapsed
            else:
                c.times.append(elapsed)


def ratio_row(work: str, mine: Contender, ref: Contender, target: Optional[float] = None) -> Row:
    ratio = mine.median / ref.median
    if target is None:
        target_s, met = "-", "-"
    else:
        target_s, met = f"<= {target:.2f}", "yes" if ratio <= target else "NO"
    return Row(work, f"{mine.median:.3f}", f"{ref.median:.3f}", f"{ratio:.2f}", target_s, met)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def human_size(size: int) -> str:
    return f"{size / GIB:g} GiB" if size >= GIB else f"{size / MIB:g} MiB"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tool_version(*argv: str) -> str:
    try:
        return sh(*argv).splitlines()[0].strip()
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unavailable"


# ----------------------------------------------------------------------------- sections


def hash_reference(path: Path) -> Optional[Contender]:
    """b3sum as a subprocess, else the blake3 package in process, else None."""
    if shutil.which("b3sum"):
        return Contender("b3sum FILE (subprocess)", lambda: sh("b3sum", str(path)).split()[0])
    try:
        blake3 = importlib.import_module("blake3")
    except ImportError:
        return None

    def run() -> str:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(str(path))
        return str(hasher.hexdigest())

    return Contender("blake3.update_mmap (in process)", run)


def bench_hash(path: Path, runs: int, notes: list[str]) -> tuple[list[Contender], Optional[Row]]:
    mine = Contender("pacha.hash_file", lambda: pacha.hash_file(path))
    ref = hash_reference(path)
    if ref is None:
        notes.append("hash: neither b3sum nor the blake3 package is available; skipped.")
        return [mine], None
    alternate([mine, ref], runs)
    if set(mine.results) != set(ref.results) or len(set(mine.results)) != 1:
        raise BenchError(f"hash digests disagree: {set(mine.results)} vs {set(ref.results)}")
    return [mine, ref], ratio_row(f"hash ({mine.name} vs {ref.name})", mine, ref)


def bench_ingest_new(
    path: Path, scratch: Path, digest: str, runs: int
) -> tuple[list[Contender], list[Row]]:
    root = scratch / "store-new"
    dest = scratch / "copy"
    src = str(path)

    def cp_b3sum() -> str:
        sh("cp", src, str(dest))
        return sh("b3sum", str(dest)).split()[0]

    def cp_sync() -> None:
        sh("cp", src, str(dest))
        sh("sync", str(dest))

    mine = Contender("ObjectStore(fresh).put_file", lambda: pacha.ObjectStore(root).put_file(path))
    mine.setup = clean_slate(root)
    refs = [
        Contender("cp + b3sum", cp_b3sum, clean_slate(dest)),
        Contender("cp", lambda: sh("cp", src, str(dest)), clean_slate(dest)),
        Contender("cp && sync DEST", cp_sync, clean_slate(dest)),
    ]
    alternate([mine, *refs], runs)
    remove(root)
    remove(dest)
    for outcome in mine.results:
        if not outcome.written or outcome.digest != digest or outcome.size != path.stat().st_size:
            raise BenchError(f"put_file into a fresh store: unexpected outcome {outcome!r}")
    if any(d != digest for d in refs[0].results):
        raise BenchError("cp + b3sum produced a different digest")
    rows = [ratio_row(f"ingest new (put_file vs {r.name})", mine, r) for r in refs]
    return [mine, *refs], rows


def bench_ingest_existing(
    path: Path, store: pacha.ObjectStore, digest: str, runs: int
) -> tuple[list[Contender], Row]:
    mine = Contender("put_file (already stored)", lambda: store.put_file(path))
    ref = Contender("pacha.hash_file", lambda: pacha.hash_file(path))
    alternate([mine, ref], runs)
    for outcome in mine.results:
        if outcome.written or outcome.digest != digest:
            raise BenchError(f"put_file of stored bytes: unexpected outcome {outcome!r}")
    row = ratio_row("ingest existing (put_file vs hash_file)", mine, ref, EXISTING_TARGET_RATIO)
    return [mine, ref], row


def bench_export(
    path: Path, store: pacha.ObjectStore, digest: str, scratch: Path, runs: int
) -> tuple[list[Contender], list[Row]]:
    dest = scratch / "exported"
    src = str(path)
    size = path.stat().st_size

    def cp_sync() -> None:
        sh("cp", src, str(dest))
        sh("sync", str(dest))

    mine = Contender(
        "store.export", lambda: store.export(digest, dest, overwrite=True), clean_slate(dest)
    )
    refs = [
        Contender("cp", lambda: sh("cp", src, str(dest)), clean_slate(dest)),
        Contender("cp && sync DEST", cp_sync, clean_slate(dest)),
    ]
    alternate([mine, *refs], runs)
    remove(dest)
    if any(n != size for n in mine.results):
        raise BenchError(f"export wrote {set(mine.results)} bytes, expected {size}")
    rows = [ratio_row(f"export (export vs {r.name})", mine, r) for r in refs]
    return [mine, *refs], rows


def rss_child(op: str, src: Path, root: Path, dest: Path, digest: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, op, str(src), str(root), str(dest), digest],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    report: dict[str, Any] = json.loads(out)
    report["above_baseline_mib"] = (report["peak_kib"] - report["baseline_kib"]) / 1024
    return report


def bench_rss(path: Path, scratch: Path) -> tuple[dict[str, Any], list[Row]]:
    root = scratch / "store-rss"
    dest = scratch / "rss-exported"
    size = path.stat().st_size
    clean_slate(root, dest)()
    put = rss_child("put", path, root, dest, "-")
    if not put["written"]:
        raise BenchError("RSS child: put_file into a fresh store did not write the object")
    os.sync()
    export = rss_child("export", path, root, dest, put["digest"])
    if export["bytes"] != size:
        raise BenchError(f"RSS child: export wrote {export['bytes']} bytes, expected {size}")
    remove(root)
    remove(dest)
    rows = []
    for op, report in (("put_file", put), ("export", export)):
        above = report["above_baseline_mib"]
        rows.append(
            Row(
                f"peak RSS above interpreter, {op} ({human_size(size)})",
                f"{above:.1f} MiB",
                "-",
                "-",
                f"<= {RSS_TARGET_MIB:g} MiB",
                "yes" if above <= RSS_TARGET_MIB else "NO",
            )
        )
    return {"size": size, "put_file": put, "export": export}, rows


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="64 MiB file, 3 runs (well under 1 min)")
    p.add_argument("--size-gib", type=float, default=None, help="file size in GiB (default 1)")
    p.add_argument("--runs", type=int, default=None, help="counted runs per contender (def. 5)")
    p.add_argument("--dir", type=Path, default=None, help="scratch parent (default: /tmp)")
    p.add_argument("--json", type=Path, default=None, help="also write raw results here")
    args = p.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        p.error("--runs must be at least 1")
    if args.size_gib is not None and args.size_gib <= 0:
        p.error("--size-gib must be positive")
    return args


def machine_facts(scratch: Path) -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),  # what `nproc` prints: CPUs we may run on
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "pacha": pacha.__version__,
        "kernel": platform.release(),
        "b3sum": tool_version("b3sum", "--version") if shutil.which("b3sum") else "not on PATH",
        "cp": tool_version("cp", "--version"),
        "scratch": str(scratch),
    }


def contender_table(groups: dict[str, list[Contender]], size: int) -> str:
    rows = [
        [
            section,
            c.name,
            f"{c.median:.3f}",
            f"{c.min:.3f}",
            f"{size / GIB / c.median:.2f}",
            f"{c.warmup:.3f}",
        ]
        for section, contenders in groups.items()
        for c in contenders
        if c.times
    ]
    header = ["section", "contender", "median s", "min s", "GiB/s (median)", "warm-up s"]
    return markdown_table(header, rows)


def run(args: argparse.Namespace) -> int:
    size = QUICK_SIZE if args.quick else int((args.size_gib or 1.0) * GIB)
    runs = args.runs or (QUICK_RUNS if args.quick else 5)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="pacha-bench-", dir=args.dir))
    notes: list[str] = []
    try:
        facts = machine_facts(scratch)
        print(f"scratch {scratch}; file {human_size(size)}; {runs} counted runs + 1 warm-up")

        subprocess.run(["true"], check=True)  # untimed: load `true` into the page cache
        start = time.perf_counter()
        subprocess.run(["true"], check=True)
        true_s = time.perf_counter() - start
        notes.append(
            f"Fixed cost of one subprocess launch (`true`, timed once): {true_s * 1000:.2f} ms; "
            "reference tools pay it per command, pacha runs in process."
        )

        data = scratch / "data.bin"
        print("generating and warming the data file ...", flush=True)
        write_random_file(data, size)
        os.sync()
        warm_cache(data)
        digest = pacha.hash_file(data)

        groups: dict[str, list[Contender]] = {}
        rows: list[Row] = []

        print("1/5 hash ...", flush=True)
        groups["hash"], hash_row = bench_hash(data, runs, notes)
        if hash_row is not None:
            rows.append(hash_row)

        print("2/5 ingest new ...", flush=True)
        groups["ingest new"], new_rows = bench_ingest_new(data, scratch, digest, runs)
        rows += new_rows
        notes.append(
            "pacha fsyncs the object (and its directory) before put_file returns, and export "
            "fsyncs the destination; plain cp does not, so compare with `cp && sync DEST` "
            "for durable-vs-durable."
        )

        store = pacha.ObjectStore(scratch / "store-existing")
        seeded = store.put_file(data)
        if seeded.digest != digest:
            raise BenchError("put_file digest differs from hash_file digest")
        os.sync()

        print("3/5 ingest existing ...", flush=True)
        groups["ingest existing"], existing_row = bench_ingest_existing(data, store, digest, runs)
        rows.append(existing_row)

        print("4/5 export ...", flush=True)
        groups["export"], export_rows = bench_export(data, store, digest, scratch, runs)
        rows += export_rows
        remove(scratch / "store-existing")

        print("5/5 peak RSS ...", flush=True)
        if args.quick:
            rss_file = data
        else:
            remove(data)
            rss_file = scratch / "rss-data.bin"
            print(f"generating the {human_size(RSS_SIZE)} RSS file ...", flush=True)
            write_random_file(rss_file, RSS_SIZE)
            os.sync()
        rss, rss_rows = bench_rss(rss_file, scratch)
        rows += rss_rows
        notes.append(
            "Peak RSS is ru_maxrss minus its value right after `import pacha`, measured in a "
            "fork of a fresh child interpreter (one per operation): Linux carries the peak "
            "RSS across exec, so an unforked child would report this parent's peak. It counts "
            "resident file-backed pages of any mmap as well as heap."
        )
        notes.append(
            "Outside every timed region, each run's previous output is deleted and os.sync() "
            "is called, so no contender pays for another's writeback."
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    header = ["work", "pacha (median s)", "reference (median s)", "ratio", "target", "met?"]
    table = markdown_table(
        header, [[r.work, r.pacha, r.reference, r.ratio, r.target, r.met] for r in rows]
    )
    details = contender_table(groups, size)

    print()
    print(f"## pacha foundation benchmark ({human_size(size)}, {runs} runs, median)")
    print()
    print(table)
    print()
    print("### All contenders")
    print()
    print(details)
    print()
    print("### Machine")
    print()
    for key, value in facts.items():
        print(f"- {key}: {value}")
    print()
    print("### Notes")
    print()
    for note in notes:
        print(f"- {note}")

    if args.json is not None:
        report = {
            "config": {"size": size, "runs": runs, "quick": args.quick},
            "machine": facts,
            "subprocess_true_s": true_s,
            "timings": {
                section: {
                    c.name: {
                        "times_s": c.times,
                        "warmup_s": c.warmup,
                        "median_s": c.median if c.times else None,
                        "min_s": c.min if c.times else None,
                    }
                    for c in contenders
                }
                for section, contenders in groups.items()
            },
            "rss": rss,
            "table": [r.__dict__ for r in rows],
            "table_markdown": table,
            "contenders_markdown": details,
            "notes": notes,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def main() -> int:
    try:
        return run(parse_args())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
