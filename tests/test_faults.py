"""Fault injection: registrations killed at any instant, and many processes writing at once.

The promises under test (README): a registration stores its bytes first and records the
version in one transaction, so a crash leaves "nothing half-written" — at worst unreferenced
objects or temp files, which `verify` does not count and `gc` removes; and every metadata write
is one `BEGIN IMMEDIATE` transaction that waits for the lock, so concurrent writers never see
"database is locked", duplicates are refused with `AlreadyExistsError`, and nothing is lost.

`PACHA_FAULT_KILLS` (default 50) sets how many processes are killed; `PACHA_FAULT_SEED`
replays the choices of a run (kinds, delays, content; the seed is in its failure messages).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import pytest

import pacha
from support import write_pattern

KILLS = int(os.environ.get("PACHA_FAULT_KILLS", "50"))
SEED = int(os.environ.get("PACHA_FAULT_SEED", str(random.randrange(1 << 32))))

BIG = (100 << 20) + 1  # one byte over 100 MiB: a large object, streamed and fsynced
DATA_FILES = 1000
MODEL = "fault-model"
DATASET = "fault-data"

Expected = Union[str, dict[str, str]]  # a file's digest, or a tree's path -> digest


def integrity_check(registry: Path) -> None:
    """`PRAGMA integrity_check` says `ok`, through Python's sqlite3 and the sqlite3 tool."""
    db = registry / "registry.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    assert rows == ["ok"], f"integrity_check of {db}: {rows}"
    if shutil.which("sqlite3"):
        tool = subprocess.run(
            ["sqlite3", str(db), "PRAGMA integrity_check"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert tool.stdout.split() == ["ok"], f"sqlite3 tool: {tool.stdout} {tool.stderr}"


def tree_digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): pacha.hash_bytes(p.read_bytes())
        for p in root.rglob("*")
        if p.is_file()
    }


# ---- 1. a registration killed with SIGKILL at a random instant ----


@pytest.fixture
def downloads(tmp_path: Path) -> Iterator[Path]:
    """Where versions are downloaded to be compared: a tmpfs when there is room (every
    downloaded file is fsynced, a second per 1,000-file tree on disk, and where the copy lands
    proves nothing about the registry), else the test's temporary directory."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30:
        root = Path(tempfile.mkdtemp(prefix="pacha-faults-", dir=shm))
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)
    else:
        root = tmp_path / "downloads"
        root.mkdir()
        yield root


@dataclass
class Attempt:
    kind: str  # "model" or "dataset"
    version: str
    expected: Expected
    delay: float | None  # seconds before SIGKILL; None: left to finish (calibration)
    returncode: int | None = None
    seconds: float = 0.0

    @property
    def reported(self) -> bool:
        """The command said it registered the version (exit status 0)."""
        return self.returncode == 0

    @property
    def killed(self) -> bool:
        return self.returncode == -9

    @property
    def ref(self) -> str:
        return f"{MODEL if self.kind == 'model' else DATASET}:{self.version}"


class Sources:
    """One file of 100 MiB + 1 byte and one directory of 1,000 small files, made once and
    changed a little before most attempts (new content); the rest register again the content
    of the attempt before (existing content, or an orphan object of a killed attempt)."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.rng = rng
        root.mkdir()
        self.file = write_pattern(root / "weights.bin", BIG, seed=SEED & 0xFFFF)
        self.file_digest = pacha.hash_file(self.file)
        self.dir = root / "shards"
        self.tree: dict[str, str] = {}
        for i in range(DATA_FILES):
            rel = f"part-{i // 100:02d}/row-{i:04d}.bin"
            self._write(rel)
        self.paths = sorted(self.tree)

    def _write(self, rel: str) -> None:
        data = self.rng.randbytes(self.rng.randint(1, 300))
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.tree[rel] = pacha.hash_bytes(data)

    def next_file(self, force: bool = False) -> str:
        if force or self.rng.random() < 0.75:
            with open(self.file, "r+b") as f:
                f.seek(self.rng.randrange(BIG - 8))
                f.write(self.rng.randbytes(8))
            self.file_digest = pacha.hash_file(self.file)
        return self.file_digest

    def next_tree(self, force: bool = False) -> dict[str, str]:
        if force or self.rng.random() < 0.75:
            self._write(self.rng.choice(self.paths))
        return dict(self.tree)


class KillHarness:
    """Starts `pacha model|data register` processes, kills most of them, and checks the
    registry after every kill."""

    def __init__(self, registry: Path, work: Path, downloads: Path) -> None:
        self.registry = registry
        self.rng = random.Random(SEED)
        self.sources = Sources(work, self.rng)
        self.downloads = downloads
        self.env = {**os.environ, "PACHA_HOME": str(registry)}
        self.attempts: dict[str, Attempt] = {}  # version -> attempt (versions never repeat)
        self.counter = 0
        self.kills = 0
        self.calibration: dict[str, float] = {}
        self.listed: dict[str, set[str]] = {"model": set(), "dataset": set()}
        self.digests: dict[str, str] = {}  # version -> digest when first listed
        self.downloaded: set[str] = set()  # versions already downloaded and compared once
        self.download_count: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()  # where the time goes, for the summary
        self.phases: Counter[str] = Counter()  # what the killed processes had done
        self.temps: set[str] = set()
        self.objects = 0

    def context(self) -> str:
        return f"seed {SEED}, after {len(self.attempts)} attempts and {self.kills} kills"

    def attempt(self, kind: str, delay: float | None, force_new: bool = False) -> Attempt:
        self.counter += 1
        version = f"1.0.{self.counter}"
        if kind == "model":
            expected: Expected = self.sources.next_file(force_new)
            args = ["model", "register", MODEL, str(self.sources.file)]
        else:
            expected = self.sources.next_tree(force_new)
            args = ["data", "register", DATASET, str(self.sources.dir)]
        attempt = Attempt(kind, version, expected, delay)
        self.attempts[version] = attempt
        started = time.monotonic()
        with subprocess.Popen(
            [sys.executable, "-m", "pacha", *args, "-v", version, "-q"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ) as proc:
            try:
                _, stderr = proc.communicate(timeout=120 if delay is None else delay)
            except subprocess.TimeoutExpired:
                proc.kill()  # SIGKILL
                _, stderr = proc.communicate()
                assert delay is not None, f"{attempt.ref} took over 120 s ({self.context()})"
        attempt.seconds = time.monotonic() - started
        self.seconds["processes"] += attempt.seconds
        attempt.returncode = proc.returncode
        assert proc.returncode in (0, -9), (
            f"{attempt.ref} ({kind}) exited {proc.returncode} ({self.context()}): "
            f"{stderr.decode(errors='replace')}"
        )
        if attempt.killed:
            self.kills += 1
        return attempt

    def calibrate(self) -> None:
        """Time unkilled registrations of each kind like the ones to be killed: new content
        in a registry that has the version before. (The very first registration is not
        typical: it creates the registry and, for the tree, stores all its files; for the big
        file, it copies without hashing first, as no object of its size exists yet.) The
        median of three runs: one run on a busy machine can take twice as long as the next."""
        for kind in ("model", "dataset"):
            self.attempt(kind, None)
            runs = [self.attempt(kind, None, force_new=True).seconds for _ in range(3)]
            self.calibration[kind] = statistics.median(runs)
        self.check("listed")
        self.temps, self.objects = self.leftovers()

    def check(self, scope: str) -> None:
        """The registry is consistent. Downloads: versions listed for the first time; plus
        every reported version (scope "reported") or every listed version ("listed")."""
        clock = time.monotonic()
        reg = pacha.Registry(self.registry)
        result = reg.verify()
        assert result.ok, f"verify after a kill ({self.context()}): {result.problems}"
        self.seconds["verify"] += time.monotonic() - clock
        clock = time.monotonic()
        integrity_check(self.registry)
        self.seconds["integrity"] += time.monotonic() - clock
        listings = {
            "model": [v for v in reg.list_model_versions() if v.name == MODEL],
            "dataset": [v for v in reg.list_dataset_versions() if v.name == DATASET],
        }
        for kind, versions in listings.items():
            listed = {v.version: v for v in versions}
            assert len(listed) == len(versions), f"a version listed twice: {versions}"
            ours = {a.version for a in self.attempts.values() if a.kind == kind}
            reported = {v for v in ours if self.attempts[v].reported}
            assert reported <= listed.keys(), (
                f"reported registered but not listed: {sorted(reported - listed.keys())} "
                f"({self.context()})"
            )
            assert listed.keys() <= ours, (
                f"listed but never attempted: {sorted(listed.keys() - ours)} ({self.context()})"
            )
            assert self.listed[kind] <= listed.keys(), (
                f"listed before, gone now: {sorted(self.listed[kind] - listed.keys())} "
                f"({self.context()})"
            )
            for version, v in listed.items():
                attempt = self.attempts[version]
                first = self.digests.setdefault(version, v.digest)
                assert v.digest == first, f"{attempt.ref} changed content ({self.context()})"
                if kind == "model":
                    assert (v.digest, v.size, v.layout) == (attempt.expected, BIG, "file"), (
                        f"{attempt.ref} is listed with the wrong content ({self.context()})"
                    )
                else:
                    assert (v.file_count, v.layout) == (DATA_FILES, "tree"), (
                        f"{attempt.ref}: {v.file_count} files, layout {v.layout}"
                    )
            wanted = listed.keys() - self.downloaded
            if scope == "reported":
                wanted |= reported
            elif scope == "listed":
                wanted |= listed.keys()
            clock = time.monotonic()
            for version in sorted(wanted):
                self.download_matches(reg, self.attempts[version])
            self.seconds[f"{kind} downloads"] += time.monotonic() - clock
            self.listed[kind] = set(listed)

    def leftovers(self) -> tuple[set[str], int]:
        """The temp files in the store, and the number of objects."""
        temps = {p.name for p in (self.registry / "objects" / "tmp").iterdir()}
        return temps, len(pacha.ObjectStore(str(self.registry / "objects")).list())

    def record_phase(self, attempt: Attempt) -> None:
        """Classify a kill by what it left behind (for the summary; every phase is fine)."""
        temps, objects = self.leftovers()
        if attempt.version in self.listed[attempt.kind]:
            phase = "after commit"
        elif temps - self.temps:
            phase = "mid-copy (temp file left)"
        elif objects > self.objects:
            phase = "after storing, before commit (orphan objects)"
        else:
            phase = "nothing new stored yet"
        self.phases[f"{attempt.kind} {phase}"] += 1
        self.temps, self.objects = temps, objects

    def download_matches(self, reg: pacha.Registry, attempt: Attempt) -> None:
        out = self.downloads / f"{attempt.kind}-{attempt.version}"
        if attempt.kind == "model":
            reg.download_model(attempt.ref, out)
            assert pacha.hash_file(out) == attempt.expected, (
                f"{attempt.ref} downloads different bytes ({self.context()})"
            )
            out.unlink()
        else:
            reg.download_dataset(attempt.ref, out)
            got, want = tree_digests(out), attempt.expected
            assert isinstance(want, dict)
            differ = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
            assert not differ, (
                f"{attempt.ref} downloads a different tree ({self.context()}): {differ[:5]}"
            )
            shutil.rmtree(out)
        self.downloaded.add(attempt.version)
        self.download_count[attempt.kind] += 1


@pytest.mark.fault
def test_a_registration_killed_at_any_instant_leaves_a_consistent_registry(
    registry: Path, tmp_path: Path, downloads: Path, cli: Callable[..., Any]
) -> None:
    """SIGKILL before start-up, mid-copy, mid-transaction or after completion: `verify` stays
    clean (orphans and temp files are no problems), every reported version downloads
    bit-exact, no half-registered version is ever listed, the database passes its integrity
    check, and `gc --grace 0` then removes every temp file without touching a version."""
    started = time.monotonic()
    harness = KillHarness(registry, tmp_path / "work", downloads)
    harness.calibrate()
    limit = 20 * KILLS + 20
    while harness.kills < KILLS:
        assert len(harness.attempts) < limit, f"only {harness.kills} kills ({harness.context()})"
        # A third are trees: each costs a second to download and compare, a file a fifth.
        kind = harness.rng.choice(("model", "model", "dataset"))
        delay = harness.rng.uniform(0.0, 1.2 * harness.calibration[kind])
        attempt = harness.attempt(kind, delay)
        if attempt.killed:
            # Every reported version is downloaded every 10th kill (and after gc, below).
            full = harness.kills % 10 == 0 and harness.kills < KILLS
            harness.check("reported" if full else "new")
            harness.record_phase(attempt)

    gc = cli("gc", "--grace", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    swept = json.loads(gc.stdout)
    leftovers = sorted(p.name for p in (registry / "objects" / "tmp").iterdir())
    assert leftovers == [], f"temp files left after gc --grace 0: {leftovers}"
    harness.check("listed")
    objects = pacha.Registry(registry).store.list()
    assert len(objects) == swept["objects_kept"], "gc --grace 0 left unreferenced objects"
    verify = cli("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    spent = {k: round(v) for k, v in harness.seconds.items()}
    print(
        f"\n{harness.kills} kills in {len(harness.attempts)} attempts (seed {SEED}); "
        f"calibration { {k: round(v, 2) for k, v in harness.calibration.items()} } s; "
        f"kills {dict(harness.phases)}; downloads compared {dict(harness.download_count)}; "
        f"gc {swept}; {time.monotonic() - started:.1f} s ({spent})"
    )


# ---- 2. many processes writing to one registry at once ----

WORKERS = 8
OPS = 400  # per worker, plus open/start_run/finish and a second stage transition per promotion
# The first "own" version of each round stays in development, the second is promoted.
SCHEDULE = ("own", "shared", "dedup", "own", "lineage", "stage", "alias", "metric")

WORKER = textwrap.dedent(
    """
    import json, random, sys, time
    from pathlib import Path

    import pacha
    import pacha.lineage, pacha.models, pacha.registry, pacha.runs  # loaded before the start

    home, worker, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    go, work, schedule = Path(sys.argv[4]), Path(sys.argv[5]), sys.argv[6].split(",")
    work.mkdir(parents=True)
    (work / "ready").touch()
    while not go.exists():
        time.sleep(0.002)

    log = []

    def attempt(op, fn, **fields):
        entry = {"op": op, **fields, "start": time.monotonic()}
        result = None
        try:
            result = fn()
            entry["outcome"] = "ok"
        except pacha.AlreadyExistsError as exc:
            entry["outcome"] = "exists"
            entry["error"] = str(exc)
        except BaseException as exc:
            entry["outcome"] = "error"
            entry["error"] = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
        entry["end"] = time.monotonic()
        log.append(entry)
        return result

    def blob(label):
        # A few KiB, unique to the label: the same label gives the same bytes in every worker.
        data = label.encode() + random.Random(label).randbytes(4096)
        path = work / f"blob-{len(log)}"
        path.write_bytes(data)
        return path, pacha.hash_bytes(data)

    def register(name, version, label, **kwargs):
        path, digest = blob(label)
        done = attempt(
            "register",
            lambda: registry.register_model(name, path, version, **kwargs),
            name=name, version=version, digest=digest,
            parents=kwargs.get("parents", []),
        )
        return done is not None

    registry = attempt("open", lambda: pacha.Registry(home))
    run = registry and attempt("start_run", lambda: registry.start_run(params={"worker": worker}))
    own = f"w{worker}"
    last_own = last_shared = None
    shared_versions, rng = [], random.Random(worker)
    for i in range(ops if run else 0):
        kind, version = schedule[i % len(schedule)], f"1.0.{i}"
        if kind == "own":
            if register(own, version, f"own {worker} {i}"):
                last_own = version
        elif kind == "shared":
            # Every worker tries the same version: one wins, the others must be refused.
            register("shared", version, f"shared {worker} {i}")
            last_shared = version  # exists now, whoever won
            shared_versions.append(version)
        elif kind == "dedup":
            # The same bytes in every worker, each under its own name.
            register(f"dup-{own}", version, f"dedup {i}")
        elif kind == "lineage":
            parents = [f"{own}:{last_own}", f"shared:{last_shared}"]
            if register(f"{own}-child", version, f"child {worker} {i}", parents=parents,
                        relation="merged", weights=[0.5, 0.5]):
                # Read back at once, while the others change the graph (and its cache file).
                node = f"model/{own}-child:{version}"

                def ancestors():
                    found = sorted(registry.ancestors(node, depth=1).ids[1:])
                    assert found == sorted(f"model/{p}" for p in parents), found

                attempt("lineage_query", ancestors, node=node)
        elif kind == "stage":
            ref = f"{own}:{last_own}"
            for stage in ("staging", "production"):
                attempt("stage", lambda: registry.stage_model(
                            ref, stage, archive_existing=stage == "production"),
                        name=own, version=last_own, stage=stage)
        elif kind == "alias":
            # Workers move the alias at the same moments, to different versions.
            target = rng.choice(shared_versions)
            attempt("alias", lambda: registry.alias_model(f"shared:{target}", "champion"),
                    name="shared", version=target)
        elif kind == "metric":
            value = worker * 1000 + i + 0.5

            def log_point():
                run.log_metric("loss", value, step=i)
                run.flush()  # written now, so that a failure belongs to this operation

            attempt("metric", log_point, name="loss", step=i, value=value)
    if run:
        attempt("finish_run", run.finish)
    print(json.dumps({"worker": worker, "run": run.id if run else None, "log": log}))
    """
)


def run_workers(registry: Path, work: Path) -> list[dict[str, Any]]:
    """Start every worker, release them together, and collect their logs."""
    go = work / "go"
    work.mkdir()
    outputs = [work / f"worker-{w}.json" for w in range(WORKERS)]
    procs = []
    for w, out in enumerate(outputs):
        args = [str(registry), str(w), str(OPS), str(go), str(work / f"w{w}"), ",".join(SCHEDULE)]
        with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, *args], stdout=stdout, stderr=stderr
                )
            )
    try:
        deadline = time.monotonic() + 60
        while not all((work / f"w{w}" / "ready").exists() for w in range(WORKERS)):
            assert time.monotonic() < deadline, "workers did not start"
            for w, p in enumerate(procs):
                assert p.poll() is None, outputs[w].with_suffix(".err").read_text()
            time.sleep(0.01)
        go.touch()
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = []
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out.with_suffix(".err").read_text()
        logs.append(json.loads(out.read_text()))
    return logs


@pytest.mark.fault
def test_concurrent_writers_never_see_a_locked_database_and_lose_nothing(
    registry: Path, tmp_path: Path
) -> None:
    """8 processes x 400 operations on one fresh registry at once (open, register under an
    own and a shared name, identical bytes under different names, stage, alias, metrics,
    lineage edges read back at once): every operation succeeds, except that exactly one
    writer of each shared version wins and the others get `AlreadyExistsError`; the final
    state is exactly what the logs imply; `verify` and the SQLite integrity check pass."""
    started = time.monotonic()
    logs = run_workers(registry, tmp_path / "work")
    elapsed = time.monotonic() - started

    entries = [(out["worker"], e) for out in logs for e in out["log"]]
    refused = [
        (w, e)
        for w, e in entries
        if e["outcome"] == "error" or (e["outcome"] == "exists" and e.get("name") != "shared")
    ]
    assert refused == [], f"{len(refused)} operation(s) failed: {refused[:10]}"
    for out in logs:
        assert len(out["log"]) >= 100, f"worker {out['worker']}: {len(out['log'])} operations"

    reg = pacha.Registry(registry)
    listed = {(v.name, v.version): v for v in reg.list_model_versions()}

    # Registrations: exactly the successful ones are listed, with their bytes.
    registered = [e for _, e in entries if e["op"] == "register" and e["outcome"] == "ok"]
    assert {(e["name"], e["version"]) for e in registered} == listed.keys()
    for e in registered:
        assert listed[e["name"], e["version"]].digest == e["digest"], e
    shared: dict[str, list[str]] = defaultdict(list)
    for _, e in entries:
        if e["op"] == "register" and e["name"] == "shared":
            shared[e["version"]].append(e["outcome"])
    for version, outcomes in shared.items():
        assert sorted(outcomes) == ["exists"] * (WORKERS - 1) + ["ok"], (version, outcomes)
    dedup = defaultdict(set)
    for e in registered:
        if e["name"].startswith("dup-"):
            dedup[e["version"]].add(listed[e["name"], e["version"]].digest)
    assert dedup and all(len(digests) == 1 for digests in dedup.values())

    # Stages: per own name, the last version promoted is in production, the ones before it
    # were archived by `archive_existing`, the others never left development.
    for worker in range(WORKERS):
        own = f"w{worker}"
        promoted = [
            e["version"]
            for w, e in entries
            if w == worker and e["op"] == "stage" and e["stage"] == "production"
        ]
        for (name, version), v in listed.items():
            if name != own:
                continue
            want = (
                "production"
                if promoted and version == promoted[-1]
                else ("archived" if version in promoted else "development")
            )
            assert v.stage.value == want, (name, version, v.stage)
            if version in promoted:  # and each transition is in the history, in order
                history = [t.to_stage.value for t in reg.get_model(name, version).history]
                path = ["development", "staging", "production"]
                assert history == path + (["archived"] if want == "archived" else []), history

    # The alias: on exactly one version, set by an operation that may have committed last.
    alias_ops = [e for _, e in entries if e["op"] == "alias"]
    champions = [v.version for (n, _), v in listed.items() if n == "shared" and v.aliases]
    assert len(champions) == 1, champions
    assert listed["shared", champions[0]].aliases == ["champion"]
    starts = sorted(e["start"] for e in alias_ops)
    possible_last = {
        e["version"]
        for e in alias_ops
        if e["end"] > (starts[-2] if e["start"] == starts[-1] else starts[-1])
    }
    assert champions[0] in possible_last, (champions, possible_last)

    # Runs: exactly the logged points, and completed.
    for out in logs:
        logged = [("loss", e["step"], e["value"]) for e in out["log"] if e["op"] == "metric"]
        stored = [(n, s, v) for n, s, v, _ in reg.run_metrics(out["run"])]
        assert stored == logged, f"worker {out['worker']}"
        assert reg.get_run(out["run"]).status == "completed"

    # Lineage: each child was made from exactly the parents it named.
    for e in registered:
        if e["parents"]:
            up = reg.ancestors(f"model/{e['name']}:{e['version']}", depth=1)
            assert {(edge.to, edge.relation) for edge in up.edges} == {
                (f"model/{p}", "merged") for p in e["parents"]
            }, e

    result = reg.verify()
    assert result.ok, result.problems
    integrity_check(registry)
    counts = Counter(e["op"] for _, e in entries)
    print(f"\n{len(entries)} operations {dict(counts)} in {elapsed:.1f} s")


# ---- 3. a process forked after using pacha ----


def _in_forked_child(work: Callable[[], object], timeout: float = 60) -> None:
    """Run `work` in a child made by `os.fork()`; fail if it raises or hangs."""
    import warnings

    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns that forking a process with threads may deadlock: that
        # deadlock is exactly what this test is about.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            work()
            os.write(write, b"ok")
        except BaseException as exc:
            os.write(write, repr(exc).encode()[:4000])
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung in {work.__name__}")
        time.sleep(0.02)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    assert report == "ok", report


@pytest.fixture
def warmed(tmp_path: Path) -> tuple[pacha.Registry, Path, Path]:
    """A registry on which every parallel entry point has run in this process."""
    big = write_pattern(tmp_path / "big.bin", 8 << 20, seed=1)
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(300):
        (tree / f"{i}.txt").write_text(f"file {i}\n")
    write_pattern(tree / "large.bin", 3 << 20, seed=2)
    reg = pacha.Registry(tmp_path / "registry")
    pacha.hash_file(big)
    pacha.hash_bytes(bytearray(4 << 20))
    reg.register_model("m", big, "1.0.0")
    reg.register_dataset("d", tree, "1.0.0")
    assert reg.verify().ok
    return reg, big, tree


def test_a_forked_child_can_hash_register_and_verify(
    warmed: tuple[pacha.Registry, Path, Path], tmp_path: Path
) -> None:
    reg, big, tree = warmed
    (tree / "new.txt").write_text("new in the child\n")

    def hash_file() -> None:
        assert pacha.hash_file(big) == reg.get_model("m:1.0.0").digest

    def hash_bytes() -> None:
        pacha.hash_bytes(bytearray(4 << 20))

    def register_directory() -> None:
        # The parent's registry object, inherited: its database connection is reopened.
        reg.register_dataset("d", tree, "1.0.1")

    def verify() -> None:
        assert reg.verify().ok

    def download() -> None:
        reg.download_dataset("d:1.0.0", tmp_path / f"out-{os.getpid()}")

    for work in (hash_file, hash_bytes, register_directory, verify, download):
        _in_forked_child(work)
    assert [v.version for v in reg.list_dataset_versions("d")] == ["1.0.0", "1.0.1"]
    assert reg.verify().ok


MULTIPROCESSING_AFTER_PACHA = textwrap.dedent(
    """
    import multiprocessing, sys
    import pacha

    def work(path):
        return pacha.hash_file(path)

    if __name__ == "__main__":
        path = sys.argv[1]
        expected = pacha.hash_file(path)  # the pool threads now exist in this process
        with multiprocessing.get_context("fork").Pool(2) as pool:
            digests = pool.map_async(work, [path] * 4).get(timeout=60)
        print("ok" if digests == [expected] * 4 else digests)
    """
)


def test_multiprocessing_fork_workers_hash_in_parallel(tmp_path: Path) -> None:
    """What a training script does: use pacha, then fork `multiprocessing` workers (the
    Linux default before Python 3.14) that use it too. Run in a fresh interpreter: forking
    pytest itself, with whatever threads earlier tests left, tests multiprocessing more than
    pacha."""
    big = write_pattern(tmp_path / "big.bin", 8 << 20, seed=1)
    script = tmp_path / "workers.py"
    script.write_text(MULTIPROCESSING_AFTER_PACHA)
    done = subprocess.run(
        [sys.executable, str(script), str(big)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "ok", done.stdout + done.stderr


# ---- 4. the database lost while the objects remain ----


def _cli(registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pacha", "--registry", str(registry), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def populated(tmp_path: Path) -> tuple[Path, Path, Path]:
    registry = tmp_path / "registry"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    data = tmp_path / "data"
    data.mkdir()
    for i in range(20):
        (data / f"part-{i}.csv").write_text(f"id,value\n{i},{i * i}\n")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('name = "finetune"\nversion = "1.2.0"\n\n[hyperparameters]\nepochs = 3\n')
    reg = pacha.Registry(registry)
    reg.register_model("bert", weights, "1.0.0")
    reg.register_dataset("squad", data, "2.0.0")
    reg.register_recipe(recipe)
    return registry, weights, data


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_lost_database_is_refused_and_nothing_is_collected(
    populated: tuple[Path, Path, Path], damage: str
) -> None:
    registry, _, _ = populated
    before = sorted(str(p.relative_to(registry)) for p in (registry / "objects").rglob("*"))
    for suffix in ("-wal", "-shm"):
        (registry / f"registry.db{suffix}").unlink(missing_ok=True)
    if damage == "deleted":
        (registry / "registry.db").unlink()
    else:
        (registry / "registry.db").write_bytes(b"")
    for args in (("model", "list"), ("verify",), ("gc", "--grace", "0"), ("stats",)):
        result = _cli(registry, *args)
        assert result.returncode == 1, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "pacha recover" in lines[0], (args, result.stderr)
    with pytest.raises(pacha.DatabaseError, match="pacha recover"):
        pacha.Registry(registry)
    after = sorted(str(p.relative_to(registry)) for p in (registry / "objects").rglob("*"))
    assert after == before
    if damage == "deleted":
        assert not (registry / "registry.db").exists()


def test_recover_gives_every_object_a_version_and_keeps_the_old_file(
    populated: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    registry, weights, data = populated
    (registry / "registry.db").write_bytes(b"")
    done = _cli(registry, "recover", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    kept = [Path(p).name for p in report["kept_database_files"]]
    assert kept and all(k.startswith("registry.db.lost-") for k in kept)
    assert {k.rsplit("-", 1)[-1] for k in kept[1:]} <= {"wal", "shm"}
    assert "stages" in report["not_recoverable"]
    found = {(r["kind"], r["was"]): r for r in report["recovered"]}
    assert set(found) == {("model", "file"), ("dataset", "directory"), ("recipe", "recipe")}
    assert found["recipe", "recipe"]["name"] == "finetune"
    assert found["recipe", "recipe"]["version"] == "1.2.0"
    assert found["dataset", "directory"]["files"] == 20
    reg = pacha.Registry(registry)
    assert reg.verify().ok
    tree = found["dataset", "directory"]
    reg.download_dataset(f"{tree['name']}:0.0.0", tmp_path / "back")
    assert tree_digests(tmp_path / "back") == tree_digests(data)
    model = found["model", "file"]
    reg.download_model(f"{model['name']}:0.0.0", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == weights.read_bytes()
    assert reg.gc(grace=0).objects_removed == 0
    again = _cli(registry, "recover")
    assert again.returncode == 1 and "nothing to recover" in again.stderr
