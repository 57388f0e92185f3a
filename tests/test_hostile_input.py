"""Hostile input gets a clear error and changes nothing.

The single place that proves this promise of the reliability issue, through the real `pacha`
command line, for the whole matrix: hostile names, invalid versions, malformed or
pathological cards, datasheets and recipes, artifact paths that are not plain readable files,
a source that changes while it is read, `download -o` onto places it must not write, names
that try to escape, and a forged tree manifest in the store. For every case:

- exit code 1 (2 only for a command-line usage error that Typer/click itself reports),
- stderr is exactly one line (ignoring its trailing newline) that starts with ``error:``,
- no ``Traceback`` anywhere,
- the registry (the logical content of ``registry.db`` and every file under ``objects/``) is
  identical before and after, and nothing appears outside the places the test created.

Each test runs many cases against one registry prepared with real registrations (a model with
a file version and a directory version, a dataset, the example recipe), collects every broken
promise with the case's label, and fails once listing them all. Cases that expose a real bug
are separate tests marked ``xfail(strict=True)`` with the cause in the reason.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

import pacha
from support import write_pattern

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_RECIPE = REPO / "examples" / "bert-finetune.toml"
IS_ROOT = os.geteuid() == 0
MiB = 1 << 20


# ---- running the command line ----


@dataclass
class Outcome:
    """What one `pacha` process did; ``returncode`` is None if it had to be killed."""

    returncode: Optional[int]
    stdout: str
    stderr: str


def run_pacha(
    registry: Path,
    *args: str,
    cwd: Path,
    timeout: float = 60,
    memory_limit: Optional[int] = None,
    env: Optional[dict[str, str]] = None,
    prefix: Sequence[str] = (),
) -> Outcome:
    """`python -m pacha ARGS` against `registry`, as the `cli` fixture runs it, plus a short
    timeout (a hang is a failure, not a stuck suite), an optional address-space limit (a
    case that reads without bound must not take the test machine's memory) and an optional
    command prefix (see `file_permissions_apply`)."""
    environment = {**os.environ, "PACHA_HOME": str(registry), "COLUMNS": "200", **(env or {})}

    def limit_memory() -> None:
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "pacha", *args],
            capture_output=True,
            env=environment,
            cwd=cwd,
            timeout=timeout,
            preexec_fn=limit_memory if memory_limit is not None else None,
        )
    except subprocess.TimeoutExpired as exc:  # the child has been killed
        err = exc.stderr.decode("utf-8", "replace") if exc.stderr else ""
        return Outcome(None, "", err)
    return Outcome(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


@functools.cache
def file_permissions_apply() -> Optional[list[str]]:
    """A command prefix under which file permission bits stop the process: nothing for a
    normal user; for root, `setpriv` without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (root
    otherwise reads a mode-000 file and writes into a read-only directory). None if root
    cannot drop them here."""
    if not IS_ROOT:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True)
    return prefix if probe.returncode == 0 else None


# ---- what "changes nothing" means ----


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot(registry: Path) -> object:
    """Everything a refused command must leave as it was: the logical content of
    ``registry.db`` (its SQL dump: the raw bytes change with WAL checkpoints), the same for
    the pack of small objects, every other file and directory under ``objects/``
    (bookkeeping ``tmp/``, ``sizes/`` and ``damaged/`` included)
    with the sha256 of each file's bytes, and the names at the registry's top level (a stray
    output file there would show). ``cache/`` is derived data and left out, as are SQLite's
    ``-wal``/``-shm`` companions."""
    objects = sorted(
        (p.relative_to(registry).as_posix(), "dir" if p.is_dir() else _sha256(p))
        for p in (registry / "objects").rglob("*")
        if p.parent.name != "packs"
    )
    # The pack of small objects is an SQLite file too: compared by its logical content.
    packs = sorted((registry / "objects" / "packs").glob("*.sqlite"))
    return {
        "database": _sql_dump(registry / "registry.db"),
        "packs": {p.name: _sql_dump(p) for p in packs},
        "objects": objects,
        "top level": _top_level(registry),
    }


def _sql_dump(database: Path) -> list[str]:
    connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def _top_level(registry: Path) -> list[str]:
    return sorted(
        p.name
        for p in registry.iterdir()
        if p.name not in {"cache", "registry.db-wal", "registry.db-shm"}
    )


def listing(root: Path, skip: Sequence[Path] = ()) -> dict[str, str]:
    """Every entry under `root` (not following links, never opening FIFOs or devices):
    relative path -> kind, mode and content digest or link target."""
    found: dict[str, str] = {}
    skipped = {os.fspath(p) for p in skip}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if str(Path(dirpath, d)) not in skipped]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            meta = path.lstat()
            mode = oct(stat.S_IMODE(meta.st_mode))
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(meta.st_mode):
                found[rel] = f"link -> {path.readlink()}"
            elif stat.S_ISDIR(meta.st_mode):
                found[rel] = f"dir {mode}"
            elif stat.S_ISREG(meta.st_mode):
                try:
                    found[rel] = f"file {mode} {_sha256(path)}"
                except PermissionError:
                    found[rel] = f"file {mode} (unreadable)"
            else:
                found[rel] = f"special {oct(stat.S_IFMT(meta.st_mode))} {mode}"
    return found


# ---- the promise, checked case by case ----


def broken_promise(out: Outcome, usage: bool = False, needles: Sequence[str] = ()) -> Optional[str]:
    """Why `out` breaks "a clear error": None if it keeps the promise."""
    if out.returncode is None:
        return "hung (killed after the timeout)"
    if "Traceback" in out.stderr or "Traceback" in out.stdout:
        return "printed a traceback"
    if usage:
        if out.returncode != 2 or "Usage:" not in out.stderr:
            return "expected a usage error (exit 2)"
        return None
    if out.returncode != 1:
        return "expected exit code 1"
    body = out.stderr[:-1] if out.stderr.endswith("\n") else out.stderr
    if not body.strip() or "\n" in body or "\r" in body:
        return "stderr is not exactly one line"
    if not body.startswith("error: "):
        return "the line does not start with 'error: '"
    missing = [n for n in needles if n not in body]
    if missing:
        return f"the error does not mention {missing}"
    return None


class Matrix:
    """Hostile cases against one registry; every broken promise is collected with its case's
    label and reported together by `verify`."""

    def __init__(self, registry: Path, cwd: Path, watch: Optional[Path] = None) -> None:
        self.registry = registry
        self.cwd = cwd
        #: A directory in which nothing may appear or change (the registry excepted).
        self.watch = watch
        self.failures: list[str] = []

    def run(self, *args: str, **options: Any) -> Outcome:
        options.setdefault("cwd", self.cwd)
        return run_pacha(self.registry, *args, **options)

    def refused(
        self,
        label: str,
        *args: str,
        needles: Sequence[str] = (),
        usage: bool = False,
        **options: Any,
    ) -> Outcome:
        """Run one hostile case: a clear error, and the registry (and `watch`) unchanged."""
        watch = self.watch
        before = snapshot(self.registry)
        around = listing(watch, [self.registry]) if watch else None
        out = self.run(*args, **options)
        problem = broken_promise(out, usage, needles)
        if problem is None and snapshot(self.registry) != before:
            problem = "the registry changed"
        if problem is None and watch is not None and around is not None:
            after = listing(watch, [self.registry])
            if after != around:
                changed = sorted(set(after.items()) ^ set(around.items()))
                problem = f"files outside the registry changed: {changed[:5]}"
        self.fail_if(label, problem, out)
        return out

    def fail_if(self, label: str, problem: Optional[str], out: Optional[Outcome] = None) -> None:
        if problem is not None:
            seen = f" (exit {out.returncode}, stderr {out.stderr[-400:]!r})" if out else ""
            self.failures.append(f"[{label}] {problem}{seen}")

    def verify(self) -> None:
        assert not self.failures, f"{len(self.failures)} broken promise(s):\n" + "\n".join(
            self.failures
        )


# ---- fixtures ----


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The directory the commands run in; sources live beside it in ``src/``."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """Valid source files, outside the registry and the working directory."""
    path = tmp_path / "src"
    path.mkdir()
    (path / "weights.bin").write_bytes(b"valid weights for the hostile tests")
    return path


@pytest.fixture
def prepared(registry: Path, src: Path) -> Path:
    """A registry with real content, so that "changes nothing" means something: model
    ``bert`` 1.0.0 (a file with a metric, aliased ``champion``) and 2.0.0 (a directory,
    tagged), dataset ``demo-data`` 1.0.0, and the example recipe (whose ``[data]`` names
    ``demo-data``)."""
    api = pacha.Registry(registry)
    api.register_model("bert", src / "weights.bin", "1.0.0", metrics={"accuracy": 0.9})
    tree = src / "bert-dir"
    (tree / "nested").mkdir(parents=True)
    (tree / "config.json").write_text('{"hidden_size": 32}')
    write_pattern(tree / "nested" / "model.safetensors", 40_000, seed=7)
    api.register_model("bert", tree, "2.0.0", tags={"team": "nlp"})
    api.alias_model("bert:1.0.0", "champion")
    data = src / "demo.csv"
    data.write_text("text,label\nhello,1\n")
    api.register_dataset("demo-data", data, "1.0.0", purpose="hostile-input tests")
    api.register_recipe(EXAMPLE_RECIPE)
    return registry


# ---- 1. names ----

HOSTILE_NAMES = {
    "slash": "a/b",
    "dotdot-inside": "a..b",
    "dotdot": "..",
    "bell": "a\x07b",
    "newline": "a\nb",
    "escape-sequence": "a\x1b[31mb",
    "256-ascii-bytes": "x" * 256,
    "200-two-byte-letters": "é" * 200,
    "empty": "",
    "right-to-left-override": "x\u202e",
}
DATASET_SAMPLE = {"slash", "dotdot", "newline", "256-ascii-bytes"}


def test_hostile_names_are_refused_and_change_nothing(
    prepared: Path, work: Path, src: Path
) -> None:
    """Names with `/`, `..`, control characters, more than 255 bytes (ASCII or 2-byte UTF-8
    letters) or nothing at all: exit 1, one line naming the rule, registry unchanged. Every
    case as a model name; datasets share the core's validation, so a sample suffices."""
    assert set(HOSTILE_NAMES) >= DATASET_SAMPLE
    matrix = Matrix(prepared, work)
    weights = str(src / "weights.bin")
    for label, name in HOSTILE_NAMES.items():
        groups = ["model", "data"] if label in DATASET_SAMPLE else ["model"]
        for group in groups:
            args = [group, "register", name, weights, "-v", "9.0.0"]
            matrix.refused(f"{group} {label}", *args, needles=["invalid name"])
    matrix.verify()


def test_a_leading_dash_is_an_option_or_a_refused_name(
    prepared: Path, work: Path, src: Path
) -> None:
    """`-x` as a name: click reads it as an option (usage error, exit 2); after `--` it is a
    name and refused (exit 1, one line). Per POSIX, `--` ends the options, so
    `register -- -x FILE -v 1.0.0` makes `-v 1.0.0` extra arguments: a usage error too."""
    weights = str(src / "weights.bin")
    matrix = Matrix(prepared, work)
    matrix.refused("bare -x", "model", "register", "-x", weights, "-v", "9.0.0", usage=True)
    matrix.refused(
        "options, then -- -x",
        *["model", "register", "-v", "9.0.0", "--", "-x", weights],
        needles=['"-x"', "start with a letter or digit"],
    )
    matrix.refused(
        "-- -x, then options",
        *["model", "register", "--", "-x", weights, "-v", "9.0.0"],
        usage=True,
    )
    matrix.refused(
        "data: options, then -- --x",
        *["data", "register", "-v", "9.0.0", "--", "--x", weights],
        needles=["invalid name"],
    )
    matrix.verify()


def test_nul_bytes_are_refused_by_the_api(prepared: Path, src: Path) -> None:
    """A NUL cannot travel in a process argument, so the API proves it: a NUL in a name,
    version or tag raises `InvalidInputError`, in a path an `OSError`/`ValueError`; nothing
    changes."""
    api = pacha.Registry(prepared)
    weights = src / "weights.bin"
    before = snapshot(prepared)
    with pytest.raises(pacha.InvalidInputError, match="control character"):
        api.register_model("a\x00b", weights, "1.0.0")
    with pytest.raises(pacha.InvalidInputError, match="control character"):
        api.register_dataset("a\x00b", weights, "1.0.0")
    with pytest.raises(pacha.InvalidInputError, match="invalid version"):
        api.register_model("nul", weights, "1.0.0\x00")
    with pytest.raises(pacha.InvalidInputError, match="control character"):
        api.register_model("nul", weights, "1.0.0", tags={"k": "v\x00"})
    with pytest.raises(pacha.InvalidInputError, match="control character"):
        api.get_model("bert\x00:1.0.0")
    with pytest.raises((OSError, ValueError)):
        api.register_model("nul", f"{weights}\x00.evil", "1.0.0")
    assert snapshot(prepared) == before


def test_names_differing_only_by_normalisation_are_one_name(
    prepared: Path, work: Path, src: Path
) -> None:
    """`café` (NFC) registered first; the same version under `cafe\\u0301` (NFD) is refused as
    already existing, changing nothing, and `get` with the NFD spelling finds the NFC one."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    assert unicodedata.normalize("NFC", nfd) == nfc and nfd != nfc
    weights = str(src / "weights.bin")
    matrix = Matrix(prepared, work)
    registered = matrix.run("model", "register", nfc, weights, "-v", "1.0.0", "--json")
    assert registered.returncode == 0, registered.stderr
    digest = json.loads(registered.stdout)["digest"]
    other = src / "other.bin"
    other.write_bytes(b"other bytes, same version")
    matrix.refused(
        "NFD duplicate", "model", "register", nfd, str(other), "-v", "1.0.0",
        needles=["already registered", f"{nfc}:1.0.0"],
    )  # fmt: skip
    matrix.verify()
    found = matrix.run("model", "get", f"{nfd}:1.0.0", "--json")
    assert found.returncode == 0, found.stderr
    record = json.loads(found.stdout)
    assert (record["name"], record["version"], record["digest"]) == (nfc, "1.0.0", digest)


def test_recipe_with_a_hostile_name_is_refused_and_changes_nothing(
    prepared: Path, work: Path, tmp_path: Path
) -> None:
    """A recipe's name comes from its TOML: a hostile one is refused (exit 1, no traceback,
    nothing stored). `recipe register` lists *every* problem, one per line, and a verdict
    line (the README's "every problem reported at once"), so this case is held to that form
    rather than to a single line."""
    recipe = tmp_path / "escape.toml"
    recipe.write_text('name = "../../etc/x"\nversion = "1.0.0"\n')
    before = snapshot(prepared)
    out = run_pacha(prepared, "recipe", "register", str(recipe), cwd=work)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.splitlines()
    assert lines[-1].startswith(f"{recipe}: invalid (1 error(s), "), lines
    assert any(line.startswith("error: name: invalid name") for line in lines), lines
    assert snapshot(prepared) == before


# ---- 2. versions ----

INVALID_VERSIONS = {
    "two-parts": "1.0",
    "leading-zero": "01.0.0",
    "empty-prerelease": "1.0.0-",
    "v-prefix": "v1.0.0",
    "four-parts": "1.0.0.0",
    "leading-space": " 1.0.0",
    "latest": "latest",
    "empty": "",
    "leading-zero-prerelease": "1.0.0-01",
    "300-digit-major": "1" * 300,
}


def test_invalid_versions_are_refused_and_change_nothing(
    prepared: Path, work: Path, src: Path
) -> None:
    """Versions that are not SemVer 2.0.0 exactly (and `latest`, a selector, not a version):
    exit 1, one line showing the valid form; an unknown `--bump` part likewise."""
    weights = str(src / "weights.bin")
    matrix = Matrix(prepared, work)
    for label, version in INVALID_VERSIONS.items():
        args = ["model", "register", "bert", weights, "-v", version]
        # A grammar error shows the valid form; an over-long one may say "too long" instead.
        shows_form = ["MAJOR.MINOR.PATCH"] if len(version) < 256 else []
        matrix.refused(label, *args, needles=["invalid version", *shows_form])
    matrix.refused(
        "bump sideways", "model", "register", "bert", weights, "--bump", "sideways",
        needles=["invalid bump"],
    )  # fmt: skip
    matrix.verify()


def test_an_overlong_version_is_refused(prepared: Path, work: Path, src: Path) -> None:
    """A 300-character version (valid grammar: `1.0.0-aaa…`) is refused like a 256-byte
    name, and changes nothing."""
    version = "1.0.0-" + "a" * 294
    assert len(version) == 300
    matrix = Matrix(prepared, work)
    matrix.refused(
        "300 characters", "model", "register", "bert", str(src / "weights.bin"), "-v", version
    )
    matrix.verify()


# ---- 3. cards, datasheets and recipes ----


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def _documents() -> Iterator[tuple[str, str, bytes]]:
    """(label, file name, content) of malformed and pathological documents."""
    yield "toml syntax", "bad.toml", b"description = \n"
    yield "yaml syntax", "bad.yaml", b"description: [unclosed\n"
    yield "json syntax", "bad.json", b'{"description": '
    yield "unknown extension", "card.ini", b"[card]\ndescription = x\n"
    yield "not a mapping", "list.json", b"[1, 2, 3]"
    yield "not UTF-8", "latin1.json", b'{"description": "caf\xe9"}'
    yield "unknown field", "unknown.json", b'{"bogus_field": 1}'
    yield "yaml alias bomb", "bomb.yaml", b"a: &a [x, x]\nb: &b [*a, *a]\nextra: {c: *b}\n"
    yield (
        "10000-deep json arrays",
        "deep.json",
        f'{{"extra": {{"x": {nested_json(10_000)}}}}}'.encode(),
    )
    yield (
        "10000-deep json objects",
        "deep-objects.json",
        ('{"extra": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}").encode(),
    )
    # YAML nesting costs quadratic time in the alias pre-scan (10,000 levels: ~30 s before
    # the refusal), so a depth just past what the parser survives keeps the suite quick.
    yield "1000-deep yaml flow", "deep.yaml", f"extra:\n  x: {nested_json(1_000)}\n".encode()
    block = "".join("  " * (i + 1) + f"k{i}:\n" for i in range(600))
    yield "600-deep yaml block", "deep-block.yaml", f"extra:\n{block}".encode()
    yield "10000-deep toml arrays", "deep.toml", f"extra = {nested_json(10_000)}\n".encode()
    yield (
        "10000-deep toml inline tables",
        "deep-tables.toml",
        ("extra = " + "{a = " * 10_000 + "1" + "}" * 10_000 + "\n").encode(),
    )


DATASHEET_SAMPLE = {
    "toml syntax",
    "yaml syntax",
    "json syntax",
    "unknown field",
    "10000-deep json arrays",
    "600-deep yaml block",
    "10000-deep toml inline tables",
}


@pytest.mark.parametrize("group", ["model", "data"])
def test_malformed_cards_and_datasheets_are_refused(
    prepared: Path, work: Path, src: Path, tmp_path: Path, group: str
) -> None:
    """`--card` / `--datasheet` files that are malformed TOML, YAML or JSON, of an
    unknown format, not UTF-8, with an unknown field, a NaN metric, 10,000 levels of nesting,
    over 10 MiB, missing or a directory: exit 1, one line naming the file, nothing stored.
    Datasheets are read by the same loader as cards, so they get a sample of the cases."""
    option = "--card" if group == "model" else "--datasheet"
    docs = tmp_path / f"{group}-docs"
    docs.mkdir()
    assert {label for label, _, _ in _documents()} >= DATASHEET_SAMPLE
    cases = [c for c in _documents() if group == "model" or c[0] in DATASHEET_SAMPLE]
    if group == "model":
        cases += [
            ("NaN metric json", "nan.json", b'{"metrics": {"acc": NaN}}'),
            ("NaN metric toml", "nan.toml", b"metrics = { acc = nan }\n"),
            ("NaN metric yaml", "nan.yaml", b"metrics:\n  acc: .nan\n"),
        ]
    else:
        cases += [("NaN count", "nan.toml", b"instance_count = nan\n")]
    huge = docs / "huge.yaml"
    with open(huge, "w") as f:
        f.write("description: " + "x" * (10 * MiB) + "\n")
    as_directory = docs / "directory.json"
    as_directory.mkdir()
    paths = []
    for label, filename, content in cases:
        (docs / filename).write_bytes(content)
        paths.append((label, docs / filename))
    paths += [("over 10 MiB", huge), ("a directory", as_directory)]
    if group == "model":
        paths.append(("missing", docs / "missing.toml"))
    matrix = Matrix(prepared, work)
    weights = str(src / "weights.bin")
    for label, path in paths:
        args = [group, "register", "hostile-docs", weights, "-v", "1.0.0", option, str(path)]
        matrix.refused(f"{group} {label}", *args, needles=[str(path)])
    matrix.verify()


@pytest.mark.parametrize(
    ("group", "filename", "text"),
    [
        ("model", "deep300.json", '{"extra": {"x": ' + nested_json(300) + "}}"),
        ("data", "deep300.yaml", "extra:\n  x: " + nested_json(300) + "\n"),
    ],
    ids=["card-json-300-deep", "datasheet-yaml-300-deep"],
)
def test_moderately_nested_documents_are_refused_cleanly(
    prepared: Path, work: Path, src: Path, tmp_path: Path, group: str, filename: str, text: str
) -> None:
    """300 levels of nesting, under the parsers' recursion limit: either refused (exit 1,
    one line, registry unchanged) or registered cleanly and readable back, never a
    traceback."""
    doc = tmp_path / filename
    doc.write_text(text)
    option = "--card" if group == "model" else "--datasheet"
    args = [group, "register", "deep", str(src / "weights.bin"), "-v", "1.0.0", option, str(doc)]
    matrix = Matrix(prepared, work)
    before = snapshot(prepared)
    out = matrix.run(*args)
    if out.returncode == 0:
        shown = matrix.run(group, "get", "deep:1.0.0", "--json")
        matrix.fail_if(f"{filename} get", None if shown.returncode == 0 else "unreadable", shown)
    else:
        matrix.fail_if(filename, broken_promise(out), out)
        matrix.fail_if(filename, None if snapshot(prepared) == before else "the registry changed")
    matrix.verify()


@pytest.mark.parametrize(
    ("group", "special"),
    [("model", "fifo"), ("data", "device")],
    ids=["card-fifo", "datasheet-dev-zero"],
)
def test_cards_that_are_not_regular_files_are_refused(
    prepared: Path, work: Path, src: Path, tmp_path: Path, group: str, special: str
) -> None:
    """A FIFO or /dev/zero given as `--card`/`--datasheet` is refused at once, like an
    artifact or a recipe that is not a regular file: exit 1, one line naming the file and
    giving a reason, within 2.5 s and 1 GiB of address space (no hang, no unbounded read).
    Cards and datasheets share one loader, so each hazard is tried on one of them."""
    if special == "fifo":
        doc = tmp_path / "card.json"
        os.mkfifo(doc)
    else:
        doc = tmp_path / "zero.json"
        doc.symlink_to("/dev/zero")
    option = "--card" if group == "model" else "--datasheet"
    matrix = Matrix(prepared, work)
    out = matrix.refused(
        special, group, "register", "special", str(src / "weights.bin"), "-v", "1.0.0",
        option, str(doc), needles=[str(doc)], timeout=2.5, memory_limit=1 << 30,
    )  # fmt: skip
    # A MemoryError's message is empty: "cannot be parsed:" and nothing after it.
    reasonless = out.stderr.rstrip().endswith(":")
    matrix.fail_if(special, "the error gives no reason" if reasonless else None, out)
    matrix.verify()


RECIPE_HEAD = 'name = "hostile"\nversion = "1.0.0"\ndescription = "x"\nrandom_seed = 1\n'


def _recipes(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "recipes"
    folder.mkdir()

    def write(filename: str, content: bytes) -> Path:
        path = folder / filename
        path.write_bytes(content)
        return path

    yield "unclosed table", write("table.toml", RECIPE_HEAD.encode() + b"[hyperparameters\n")
    yield "unterminated string", write("string.toml", RECIPE_HEAD.encode() + b'x = "open\n')
    yield "binary garbage", write("garbage.toml", bytes(range(256)) * 4)
    yield "not UTF-8", write("latin1.toml", RECIPE_HEAD.encode() + b'architecture = "caf\xe9"\n')
    over_1 = RECIPE_HEAD + '[hyperparameters]\nnote = "' + "x" * MiB + '"\n'
    yield "just over 1 MiB", write("over1.toml", over_1.encode())
    over_10 = RECIPE_HEAD + 'architecture = "' + "x" * (10 * MiB) + '"\n'
    yield "over 10 MiB", write("over10.toml", over_10.encode())
    arrays = f"{RECIPE_HEAD}[hyperparameters]\nx = {nested_json(10_000)}\n"
    yield "10000-deep arrays", write("deep-arrays.toml", arrays.encode())
    tables = RECIPE_HEAD + "[hyperparameters]\nx = " + "{a = " * 10_000 + "1" + "}" * 10_000
    yield "10000-deep inline tables", write("deep-tables.toml", tables.encode() + b"\n")
    fifo = folder / "fifo.toml"
    os.mkfifo(fifo)
    yield "a FIFO", fifo
    yield "/dev/zero", Path("/dev/zero")
    yield "missing", folder / "missing.toml"


def test_malformed_recipes_are_refused(prepared: Path, work: Path, tmp_path: Path) -> None:
    """`pacha recipe register FILE` with malformed TOML, non-UTF-8 or binary bytes, over
    1 MiB (MAX_RECIPE_BYTES) or 10 MiB, nested thousands of levels deep, a FIFO, a device or a
    missing file: exit 1, one line naming the file, nothing stored, no hang."""
    matrix = Matrix(prepared, work)
    for label, path in _recipes(tmp_path):
        matrix.refused(label, "recipe", "register", str(path), needles=[str(path)], timeout=20)
    matrix.verify()


def test_a_recipe_path_that_is_a_directory_is_named(
    prepared: Path, work: Path, tmp_path: Path
) -> None:
    """`pacha recipe register DIR`: exit 1, one line that names DIR."""
    folder = tmp_path / "recipe-dir.toml"
    folder.mkdir()
    matrix = Matrix(prepared, work)
    matrix.refused("directory", "recipe", "register", str(folder), needles=[str(folder)])
    matrix.verify()


# ---- 4. artifact paths ----


def test_artifact_paths_that_are_not_regular_files_are_refused(
    prepared: Path, work: Path, tmp_path: Path
) -> None:
    """A missing path, an empty path, a FIFO, /dev/null, /dev/zero (and a link to it), a
    self-looping symlink, and directories holding a link to /etc/passwd, a self-looping
    link, a FIFO or a link to a device: exit 1, one line, nothing stored, nothing hangs."""
    hazards = tmp_path / "hazards"
    hazards.mkdir()
    fifo = hazards / "fifo.bin"
    os.mkfifo(fifo)
    loop = hazards / "loop"
    loop.symlink_to("loop")
    zero_link = hazards / "zero.bin"
    zero_link.symlink_to("/dev/zero")

    def folder(name: str, hazard: str, target: str) -> Path:
        path = hazards / name
        (path / "inner").mkdir(parents=True)
        (path / "ok.txt").write_text("fine")
        if hazard == "fifo":
            os.mkfifo(path / "inner" / target)
        else:
            (path / "inner" / "hazard").symlink_to(target)
        return path

    cases: list[tuple[str, str, Sequence[str]]] = [
        ("missing file", str(hazards / "missing.bin"), [str(hazards / "missing.bin")]),
        ("empty path", "", []),
        ("FIFO", str(fifo), ["FIFO", str(fifo)]),
        ("/dev/null", "/dev/null", ["character device", "/dev/null"]),
        ("/dev/zero", "/dev/zero", ["character device", "/dev/zero"]),
        ("link to /dev/zero", str(zero_link), ["character device"]),
        ("self-looping symlink", str(loop), [str(loop)]),
        (
            "directory with a link to /etc/passwd",
            str(folder("passwd-dir", "link", "/etc/passwd")),
            ["outside the directory"],
        ),
        (
            "directory with a link to ../../..",
            str(folder("up-dir", "link", "../../..")),
            ["outside the directory"],
        ),
        (
            "directory with a self-looping link",
            str(folder("loop-dir", "link", "hazard")),
            ["cannot be followed"],
        ),
        ("directory with a FIFO", str(folder("fifo-dir", "fifo", "pipe")), ["FIFO"]),
    ]
    # Datasets go through the same ingest as models: a sample of the cases suffices.
    dataset_sample = {"FIFO", "/dev/zero", "directory with a link to /etc/passwd"}
    assert dataset_sample <= {label for label, _, _ in cases}
    matrix = Matrix(prepared, work, watch=tmp_path)
    for label, path, needles in cases:
        for group in ("model", "data") if label in dataset_sample else ("model",):
            matrix.refused(
                f"{group} {label}", group, "register", "hazard", path, "-v", "1.0.0",
                needles=needles, timeout=20,
            )  # fmt: skip
    matrix.verify()


@pytest.mark.parametrize("what", ["file-mode-000", "directory-with-unlistable-subdirectory"])
def test_unreadable_sources_are_refused(
    prepared: Path, work: Path, tmp_path: Path, what: str
) -> None:
    """A file with mode 000, or a directory with a mode-000 subdirectory: exit 1 with one
    line ("Permission denied"), nothing stored. Root reads and lists such files regardless of
    their mode, so as root the refusal is proven with root's file powers dropped (`setpriv`;
    skipped if that is impossible), and plain root is shown to register them cleanly."""
    if what == "file-mode-000":
        source = tmp_path / "locked.bin"
        source.write_bytes(b"secret weights")
        source.chmod(0)
        locked = source
    else:
        source = tmp_path / "locked-dir"
        locked = source / "inner"
        locked.mkdir(parents=True)
        (locked / "data.bin").write_bytes(b"secret data")
        (source / "ok.txt").write_text("fine")
        locked.chmod(0)
    args = ["model", "register", "locked", str(source), "-v", "1.0.0"]
    try:
        prefix = file_permissions_apply()
        if prefix is None:
            pytest.skip("root without setpriv: mode 000 cannot stop this process")
        matrix = Matrix(prepared, work)
        matrix.refused(what, *args, needles=["Permission denied"], prefix=prefix)
        matrix.verify()
        if IS_ROOT:  # documented behaviour: plain root ignores the mode bits
            out = run_pacha(prepared, *args, cwd=work)
            assert out.returncode == 0, out
    finally:
        locked.chmod(0o700)


def test_a_directory_path_with_a_trailing_slash_registers(
    prepared: Path, work: Path, src: Path
) -> None:
    """Positive control for the path cases: `DIR/` is an ordinary directory artifact (the
    same digest as `DIR`), so the refusals above are about the hazards, not the spelling."""
    tree = src / "bert-dir"
    out = run_pacha(prepared, "model", "register", "slash", f"{tree}/", "-v", "1.0.0", "--json",
                    cwd=work)  # fmt: skip
    assert out.returncode == 0, out
    registered = json.loads(out.stdout)
    assert registered["digest"] == pacha.Registry(prepared).get_model("bert:2.0.0").digest
    assert (registered["layout"], registered["file_count"]) == ("tree", 2)


# ---- 5. a source that changes while it is read ----


def test_a_file_growing_during_registration_is_refused(
    prepared: Path, work: Path, tmp_path: Path
) -> None:
    """A 200 MiB file appended to (1 MiB chunks) by another thread from before the process
    starts until it ends: exit 1, one line saying it changed, nothing stored (no object, no
    temp file, no size marker)."""
    big = write_pattern(tmp_path / "growing.bin", 200 * MiB, seed=11)
    stop = threading.Event()
    appended = []

    def grow() -> None:
        # About 50 MiB/s, at most 1 GiB in all: slower than pacha reads, so its read loop
        # reaches the end of the file, and bounded whatever happens.
        chunk = os.urandom(MiB)
        with open(big, "ab") as f:
            while not stop.is_set() and len(appended) < 1024:
                f.write(chunk)
                f.flush()
                appended.append(1)
                stop.wait(0.02)

    grower = threading.Thread(target=grow)
    grower.start()
    try:
        while not appended:
            stop.wait(0.001)
        matrix = Matrix(prepared, work)
        matrix.refused(
            "growing", "model", "register", "growing", str(big), "-v", "1.0.0", "-q",
            needles=["changed while it was being read", "nothing was stored"],
        )  # fmt: skip
    finally:
        stop.set()
        grower.join()
    matrix.verify()


# ---- 6. download -o onto places it must not write ----


def test_download_refuses_outputs_it_must_not_touch(
    prepared: Path, work: Path, tmp_path: Path
) -> None:
    """`download -o` onto an existing directory, file or FIFO (without --force), an
    unwritable place (/proc, writable by nobody, root included; a read-only directory), the
    registry or anything inside or above it (with --force), the current directory and its
    parent, and the home directory and its parents (with --force): exit 1, one line, the
    target untouched,
    nothing else written anywhere."""
    outputs = tmp_path / "outputs"
    existing_dir = outputs / "existing-dir"
    existing_dir.mkdir(parents=True)
    (existing_dir / "keep.txt").write_text("keep me")
    existing_file = outputs / "existing.bin"
    existing_file.write_bytes(b"keep me too")
    home = tmp_path / "homes" / "user"
    (home / ".config").mkdir(parents=True)
    fifo = outputs / "pipe"
    os.mkfifo(fifo)
    registry = str(prepared)
    cases: list[tuple[str, list[str], Sequence[str]]] = [
        ("existing directory", [str(existing_dir)], []),
        ("existing file", [str(existing_file)], ["--force"]),
        ("existing FIFO", [str(fifo)], ["FIFO"]),
        ("/proc (new file)", ["/proc/pacha-new-file"], []),
        ("/proc/version, --force", ["/proc/version", "--force"], []),
        ("the registry, --force", [registry, "--force"], ["registry"]),
        ("registry.db, --force", [f"{registry}/registry.db", "--force"], ["registry"]),
        ("objects/, --force", [f"{registry}/objects", "--force"], ["registry"]),
        ("a new file in the registry", [f"{registry}/new.bin"], ["registry"]),
        ("above the registry, --force", [str(tmp_path), "--force"], ["registry"]),
        ("the current directory, --force", [".", "--force"], ["current directory"]),
        ("the current directory's parent", ["..", "--force"], []),
        ("the home directory, --force", [str(home), "--force"], ["home directory"]),
        ("a parent of home, --force", [str(home.parent), "--force"], ["home directory"]),
    ]
    read_only = outputs / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    as_user = file_permissions_apply()
    # The registry, current-directory and home rules are checked before the layout matters:
    # a directory version gets the layout-specific cases and a sample of the others.
    tree_sample = {
        "existing directory",
        "existing file",
        "/proc (new file)",
        "/proc/version, --force",
        "the registry, --force",
    }
    assert {label for label, _, _ in cases} >= tree_sample
    matrix = Matrix(prepared, work, watch=tmp_path)
    for ref, layout in (("bert:1.0.0", "file"), ("bert:2.0.0", "directory")):
        for label, options, needles in cases:
            if layout == "directory" and label not in tree_sample:
                continue
            matrix.refused(
                f"{layout} onto {label}", "model", "download", ref, "-o", *options,
                needles=needles, env={"HOME": str(home)}, timeout=20,
            )  # fmt: skip
    # The directory layout never replaces something that is not a directory, even with
    # --force (the file layout: see the xfail test below).
    matrix.refused(
        "directory onto a FIFO, --force", "model", "download", "bert:2.0.0", "-o", str(fifo),
        "--force", needles=["not a directory"],
    )  # fmt: skip
    # A read-only directory stops whoever file permissions apply to (as root: see
    # `file_permissions_apply`).
    if as_user is not None:
        for ref, layout in (("bert:1.0.0", "file"), ("bert:2.0.0", "directory")):
            matrix.refused(
                f"{layout} into a read-only directory", "model", "download", ref, "-o",
                str(read_only / "x"), needles=["Permission denied"], prefix=as_user,
            )  # fmt: skip
    matrix.verify()
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.parametrize("special", ["fifo", "character-device"])
def test_download_force_never_replaces_a_special_file(
    prepared: Path, work: Path, tmp_path: Path, special: str
) -> None:
    """`download REF -o NODE --force` where NODE is a FIFO or a device (a private copy of
    /dev/null's node, never the real one) leaves NODE what it was: refused with one clean
    line (like the directory layout), or written through as `cp` would, but never replaced."""
    node = tmp_path / "node"
    if special == "fifo":
        os.mkfifo(node)
        is_kind = stat.S_ISFIFO
    else:
        if not IS_ROOT:
            pytest.skip("creating a device node needs root")
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        is_kind = stat.S_ISCHR
    matrix = Matrix(prepared, work)
    before = snapshot(prepared)
    out = matrix.run("model", "download", "bert:1.0.0", "-o", str(node), "--force", timeout=20)
    matrix.fail_if(special, None if out.returncode == 0 else broken_promise(out), out)
    matrix.fail_if(special, None if snapshot(prepared) == before else "the registry changed")
    kept = is_kind(node.lstat().st_mode)
    matrix.fail_if(special, None if kept else f"the {special} was replaced by a regular file")
    matrix.verify()


@pytest.mark.parametrize("command", ["register", "download", "recipe"])
def test_os_errors_on_paths_with_control_characters_stay_one_line(
    prepared: Path, work: Path, tmp_path: Path, command: str
) -> None:
    """A missing path containing a newline (an artifact, a download's parent, a recipe):
    exit 1 with exactly one line."""
    missing = str(tmp_path / "no\nsuch")
    args = {
        "register": ["model", "register", "m", f"{missing}.bin", "-v", "1.0.0"],
        "download": ["model", "download", "bert:1.0.0", "-o", "/proc/no\nsuch/x.bin"],
        "recipe": ["recipe", "register", f"{missing}.toml"],
    }[command]
    matrix = Matrix(prepared, work)
    matrix.refused(command, *args)
    matrix.verify()


# ---- 7. names that try to escape ----


def test_names_that_try_to_escape_create_nothing_anywhere(
    prepared: Path, tmp_path: Path, src: Path
) -> None:
    """`../../etc/x`, `x/../../y` and friends as names to register, get or download: exit 1,
    one line, and no file appears anywhere under the test's directory (the commands run two
    levels deep in it, so `../../` stays inside) except what the test made."""
    deep = tmp_path / "work" / "a" / "b"
    deep.mkdir(parents=True)
    weights = str(src / "weights.bin")
    names = ["../../etc/x", "x/../../y", "..", "a/../../../b", "/etc/x"]
    matrix = Matrix(prepared, deep, watch=tmp_path)
    for name in names:
        matrix.refused(
            f"register {name!r}", "model", "register", name, weights, "-v", "1.0.0",
            needles=["invalid name"],
        )  # fmt: skip
    for group, name in (("data", "../../etc/x"), ("data", "x/../../y")):
        matrix.refused(
            f"{group} register {name!r}", group, "register", name, weights, "-v", "1.0.0",
            needles=["invalid name"],
        )  # fmt: skip
    for name in ("../../etc/x", "/etc/x"):
        matrix.refused(
            f"download {name!r}", "model", "download", f"{name}:1.0.0", "-o", "out.bin",
            needles=["invalid name"],
        )  # fmt: skip
    matrix.refused(
        "version that escapes", "model", "download", "bert:../../1.0.0", "-o", "out.bin",
        needles=["invalid version"],
    )  # fmt: skip
    matrix.refused(
        "alias that escapes", "model", "alias", "bert", "1.0.0", "../../x",
        needles=["invalid alias"],
    )  # fmt: skip
    matrix.verify()


# ---- the security promises ----


def test_the_registry_is_private_and_objects_are_read_only(
    registry: Path, work: Path, src: Path
) -> None:
    """`pacha init` creates the registry with mode 0700 (whatever the umask allows), every
    loose object, of a file version and of a directory version, is read-only (0444), and the
    pack of a directory's small files is private to its owner (0600)."""
    out = run_pacha(registry, "init", cwd=work)
    assert out.returncode == 0, out
    assert stat.S_IMODE(registry.stat().st_mode) == 0o700
    assert stat.S_IMODE((registry / "objects").stat().st_mode) == 0o700
    tree = src / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (tree / "sub" / "run.sh").chmod(0o755)
    (tree / "a.txt").write_text("a")
    for name, path in (("file", src / "weights.bin"), ("tree", tree)):
        out = run_pacha(registry, "model", "register", name, str(path), "-v", "1.0.0", cwd=work)
        assert out.returncode == 0, out
    objects = [
        p for p in (registry / "objects").glob("*/*") if re.fullmatch(r"[0-9a-f]{2}", p.parent.name)
    ]
    assert len(objects) == 2  # weights and the tree manifest; a.txt and run.sh are packed
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in objects}
    assert set(modes.values()) == {"0o444"}, modes
    pack = registry / "objects" / "packs" / "small.sqlite"
    assert stat.S_IMODE(pack.stat().st_mode) == 0o600
    with sqlite3.connect(f"{pack.as_uri()}?mode=ro", uri=True) as connection:
        assert connection.execute("SELECT count(*) FROM objects").fetchone() == (2,)


def _forge_dataset(registry: Path, name: str, manifest: bytes) -> None:
    """Point dataset NAME:1.0.0 at `manifest` (stored as an object), with the rows a real
    registration writes (rust/pacha-core/src/meta/sqlite.rs insert_version)."""
    stored = pacha.Registry(registry).store.put_bytes(manifest)
    connection = sqlite3.connect(registry / "registry.db")
    try:
        with connection:
            artifact = connection.execute(
                "INSERT INTO artifacts (kind, name) VALUES ('dataset', ?)", (name,)
            ).lastrowid
            version = connection.execute(
                "INSERT INTO versions (artifact_id, version, version_key, prerelease, digest, "
                "layout, size, file_count, created_by) "
                "VALUES (?, '1.0.0', '1.0.0', 0, ?, 'tree', 7, 1, 'forger')",
                (artifact, stored.digest),
            ).lastrowid
            connection.execute(
                "INSERT INTO stage_history (version_id, from_stage, to_stage, by) "
                "VALUES (?, NULL, 'development', 'forger')",
                (version,),
            )
            connection.execute(
                "INSERT OR IGNORE INTO objects (digest, size) VALUES (?, ?)",
                (stored.digest, stored.size),
            )
            connection.execute(
                "INSERT INTO version_objects (version_id, digest) VALUES (?, ?)",
                (version, stored.digest),
            )
            connection.execute(
                "INSERT INTO lineage_nodes (kind, name, version, version_key, version_id) "
                "VALUES ('dataset', ?, '1.0.0', '1.0.0', ?)",
                (name, version),
            )
    finally:
        connection.close()


def test_a_forged_tree_manifest_is_hostile_input(
    prepared: Path, work: Path, tmp_path: Path
) -> None:
    """A tree manifest read from the store is validated before anything is written: forged
    manifests (paths with `..`, absolute paths, `.`/empty components, NUL, duplicates,
    escaping empty directories, bad digests, another format, unknown fields, set-id modes, not
    JSON, a missing object, a file/directory clash, an over-long name) make
    `data download NAME:1.0.0 -o OUT` exit 1 with one line; OUT is not created (or, with
    --force over an existing OUT, left intact), no `.part` leftovers, nothing outside OUT.

    The absolute paths point into the test's own directory, not at /etc/passwd: as root, a
    regression would otherwise overwrite the real file."""
    payload = pacha.Registry(prepared).store.put_bytes(b"payload").digest
    escape_abs = str(tmp_path / "escape-absolute.txt")

    def entry(path: str, digest: str = payload) -> dict[str, Any]:
        return {"path": path, "digest": digest, "size": 7, "executable": False}

    def manifest(
        entries: list[dict[str, Any]],
        empty: Sequence[str] = (),
        format: str = "pacha.tree/1",
        **fields: Any,
    ) -> bytes:
        document = {"format": format, "entries": entries, "empty_directories": list(empty)}
        return json.dumps({**document, **fields}).encode()

    forged: dict[str, bytes] = {
        "dotdot": manifest([entry("ok.txt"), entry("../../escape.txt")]),
        "absolute": manifest([entry(escape_abs)]),
        "inner dotdot": manifest([entry("a/../../escape.txt")]),
        "dot component": manifest([entry("./a.txt")]),
        "empty component": manifest([entry("a//b.txt")]),
        "NUL": manifest([entry("a\x00b")]),
        "empty path": manifest([entry("")]),
        "duplicate": manifest([entry("a.txt"), entry("a.txt")]),
        "empty directory with dotdot": manifest([], empty=["../../escape-dir"]),
        "absolute empty directory": manifest([], empty=[str(tmp_path / "escape-dir")]),
        "bad digest": manifest([entry("a.txt", digest="../../etc/passwd")]),
        "format 3": manifest([entry("a.txt")], format="pacha.tree/3"),
        "v1 fields in a v2 manifest": manifest([entry("a.txt")], format="pacha.tree/2"),
        "setuid mode": manifest(
            [{"path": "a.txt", "digest": payload, "size": 7, "mode": 0o4755}],
            format="pacha.tree/2",
        ),
        "unknown field": manifest([entry("a.txt")], symlinks=[["a", "/etc/passwd"]]),
        "not JSON": b"\x00\x01 not a manifest",
        "missing object": manifest([entry("a.txt"), entry("b.txt", digest="0" * 64)]),
        "file/directory clash": manifest([entry("sub"), entry("sub/x")]),
        "300-byte name": manifest([entry("x" * 300)]),
    }
    forced = {"dotdot", "missing object", "file/directory clash"}
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    matrix = Matrix(prepared, work, watch=tmp_path)
    for i, (label, content) in enumerate(forged.items()):
        name = f"forged-{i}"
        _forge_dataset(prepared, name, content)
        out_dir = outputs / f"case-{i}"
        out_dir.mkdir()
        target = out_dir / "OUT"
        matrix.refused(label, "data", "download", f"{name}:1.0.0", "-o", str(target))
        matrix.fail_if(label, "OUT was created" if target.exists() else None)
        if label in forced:
            target.mkdir()
            (target / "kept.txt").write_text("kept")
            matrix.refused(
                f"{label} (--force over an existing OUT)",
                *["data", "download", f"{name}:1.0.0", "-o", str(target), "--force"],
            )
            intact = sorted(p.name for p in target.iterdir()) == ["kept.txt"]
            matrix.fail_if(label, None if intact else "the existing OUT was changed")
        leftovers = [p.name for p in out_dir.iterdir() if p.name != "OUT"]
        matrix.fail_if(label, f"left {leftovers} beside OUT" if leftovers else None)
    matrix.verify()


# ---- no user input reaches a shell ----

SHELL_PATTERNS = [
    re.compile(r"shell\s*=\s*True"),
    re.compile(r"\bos\.system\s*\("),
    re.compile(r"\bos\.popen\s*\("),
    re.compile(r"\bos\.exec[lv]p?e?\s*\("),
    re.compile(r"\bos\.spawn[lv]p?e?\s*\("),
    re.compile(r"\bsubprocess\.getoutput\s*\("),
    re.compile(r"\bsubprocess\.getstatusoutput\s*\("),
    re.compile(r"\bpty\.spawn\s*\("),
    re.compile(r"Command::new\(\s*\"(?:/bin/|/usr/bin/)?(?:sh|bash|dash|zsh)\""),
    re.compile(r"\blibc::(?:system|popen|exec\w*)\s*\("),
]


def _sources() -> list[Path]:
    python = sorted((REPO / "python").rglob("*.py"))
    rust = sorted(p for p in (REPO / "rust").rglob("*.rs") if "target" not in p.parts)
    assert python and rust
    return python + rust


def test_no_user_input_reaches_a_shell() -> None:
    """No `shell=True`, `os.system`, `os.popen`, exec/spawn families, `subprocess.getoutput`,
    `Command::new("sh"|"bash")` or `libc::system` anywhere in python/ or rust/; and every
    `subprocess` call passes its command as a list (never a string a shell would parse)."""
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for pattern in SHELL_PATTERNS:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(REPO)}:{line}: {match.group(0)}")
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id == "subprocess"):
                continue
            command = node.args[0] if node.args else None
            if isinstance(command, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: a command string")
    assert not found, "\n".join(found)


# ---- parsers of user input: size, depth and time caps ----


def _nested_flow(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml", ".md"])
def test_documents_at_the_nesting_cap_parse_and_beyond_it_are_refused_at_once(
    tmp_path: Path, suffix: str
) -> None:
    import time

    from pacha._limits import MAX_NESTING
    from pacha.cards import load_document
    from pacha.errors import InvalidInputError
    from pacha.models import ModelCard

    def card(depth: int) -> Path:
        # `extra` (1) → `x` (2) → the list levels.
        value = _nested_flow(depth - 2)
        text = {
            ".yaml": f"extra:\n  x: {value}\n",
            ".json": json.dumps({"extra": {"x": json.loads(value)}}),
            ".toml": f"[extra]\nx = {value}\n",
            ".md": f"---\nextra:\n  x: {value}\n---\nA card.\n",
        }[suffix]
        path = tmp_path / f"card-{depth}{suffix}"
        path.write_text(text)
        return path

    assert load_document(card(MAX_NESTING), ModelCard).extra is not None
    with pytest.raises(InvalidInputError, match="nested more than 64 levels"):
        load_document(card(MAX_NESTING + 1), ModelCard)
    # 80 KB of nested flow sequences (84 s before the cap) is refused at once.
    huge = tmp_path / f"huge{suffix}"
    huge.write_text(
        "x: " + _nested_flow(40_000) if suffix != ".md" else "---\nx: " + _nested_flow(40_000)
    )
    started = time.monotonic()
    with pytest.raises(InvalidInputError):
        load_document(huge, ModelCard)
    assert time.monotonic() - started < 5


def test_a_recipe_of_thousands_of_nested_tables_is_refused_in_one_line(cli, tmp_path: Path) -> None:
    header = ".".join(["t"] * 3000)
    recipe = tmp_path / "deep.toml"
    recipe.write_text(f'name = "deep"\nversion = "1.0.0"\n[{header}]\nx = 1\n')
    dotted = tmp_path / "dotted.toml"
    dotted.write_text(f'name = "deep"\nversion = "1.0.0"\n{header} = 1\n')
    assert cli("init").returncode == 0
    for path in (recipe, dotted):
        for command in ("validate", "register"):
            result = cli("recipe", command, str(path))
            assert result.returncode == 1, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "nested more than 64 levels" in lines[0], result.stderr


def test_a_deeply_nested_set_value_is_refused(cli) -> None:
    result = cli("run", "start", "--set", "x=" + _nested_flow(5000))
    assert result.returncode == 1
    assert "nested more than 64 levels" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---- what the registry holds, printed to a terminal ----

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred"


class _Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _printed(registry: Path, args: list[str], tty: bool) -> str:
    from pacha.cli import main

    out = _Terminal(tty)
    saved = sys.argv
    sys.argv = ["pacha", "--registry", str(registry), *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            main()
    except SystemExit as exc:
        assert exc.code in (None, 0), args
    finally:
        sys.argv = saved
    return out.getvalue()


def test_escape_sequences_stored_in_cards_and_runs_reach_a_terminal_escaped(
    tmp_path: Path,
) -> None:
    registry = tmp_path / "registry"
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    reg = pacha.Registry(registry)
    reg.register_model("m", weights, "1.0.0", description=f"card {ESCAPES}")
    run = reg.start_run(params={"note": ESCAPES})
    run.finish("failed", f"boom {ESCAPES}")
    for command in (
        ["model", "card", "m:1.0.0"],
        ["model", "get", "m:1.0.0"],
        ["run", "get", run.id],
        ["run", "list"],
    ):
        shown = _printed(registry, command, tty=True)
        # pacha's own colours may be there; the stored sequences must not be.
        assert "\x1b]0;pwned" not in shown and "\x1b[2J" not in shown, (command, shown)
        assert "\x07" not in shown and "\x1b[31mred" not in shown, (command, shown)
    # Piped, the card is the stored text exactly (a file written from it is faithful).
    assert "\x1b]0;pwned" in _printed(registry, ["model", "card", "m:1.0.0"], tty=False)


def test_bumping_past_the_largest_version_is_refused_in_one_line(cli, tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    top = str(2**64 - 1)
    assert cli("model", "register", "m", str(weights), "-v", f"{top}.0.0").returncode == 0
    result = cli("model", "register", "m", str(weights), "--bump", "major")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "largest it can be" in lines[0], result.stderr
    assert cli("model", "register", "m", str(weights), "--bump", "minor").returncode == 0
