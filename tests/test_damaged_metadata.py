"""Damage to the metadata database, cell by cell: whatever a cell holds, read commands
answer or fail in one line naming the damage (never a traceback), a failing download writes
nothing, and `verify` notices a version whose recorded digest is not what its objects say.
And the repair of damaged bytes from a copy of what was registered."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

import pacha
from support import corrupt, write_pattern
from test_cli_fuzz import run_cli

BAD_VALUES = ["{not json", None, b"\xff\x00\xfe", -1]

COMMANDS = [
    ("model", "list", "m"),
    ("model", "get", "m:1.0.0"),
    ("model", "card", "m:1.0.0"),
    ("data", "get", "d:1.0.0"),
    ("recipe", "get", "r:1.0.0"),
    ("run", "list"),
    ("run", "get", "RUN"),
    ("stats",),
    ("verify",),
    ("lineage", "model/m:1.0.0", "--both", "--format", "json"),
    ("model", "download", "m:1.0.0", "-o", "OUT"),
    ("data", "download", "d:1.0.0", "-o", "OUT"),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("damaged")
    src = root / "src"
    (src / "data").mkdir(parents=True)
    (src / "w.bin").write_bytes(b"w" * 5000)
    for i in range(3):
        (src / "data" / f"{i}.csv").write_text(f"a,b\n{i},{i}\n")
    recipe = src / "recipe.toml"
    recipe.write_text(
        'name = "r"\nversion = "1.0.0"\n\n[hyperparameters]\nepochs = 3\n'
        '[data]\ntrain = "d:1.0.0"\n'
    )
    reg = pacha.Registry(root / "reg")
    reg.register_dataset("d", src / "data", "1.0.0", purpose="qa")
    reg.register_recipe(recipe)
    with reg.start_run("r:1.0.0", params={"lr": 0.1}) as run:
        run.log_metric("loss", 0.5, step=1)
        run.log_artifact(src / "w.bin", "w")
        run.register_model("m", src / "w.bin", "1.0.0", metrics={"acc": 0.9}, tags={"t": "v"})
    reg.stage_model("m:1.0.0", "staging")
    reg.alias_model("m:1.0.0", "champ")
    return root / "reg", run.id


def _columns(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [
            (t, r[1])
            for t in tables
            if t != "schema_version"
            for r in conn.execute(f'PRAGMA table_info("{t}")')
        ]


def test_any_damaged_cell_gives_one_line_never_a_traceback(
    base: tuple[Path, str], tmp_path: Path
) -> None:
    registry, run_id = base
    failures = []
    for table, column in _columns(registry / "registry.db"):
        for value in BAD_VALUES:
            work = tmp_path / "work"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(registry, work)
            with sqlite3.connect(work / "registry.db") as conn:
                conn.execute("PRAGMA ignore_check_constraints = ON")
                conn.execute("PRAGMA foreign_keys = OFF")
                try:
                    conn.execute(f'UPDATE "{table}" SET "{column}" = ?', (value,))
                except sqlite3.Error:
                    continue  # NOT NULL and the like: SQLite itself keeps the cell sane
            for command in COMMANDS:
                out = tmp_path / "out"
                if out.is_dir():
                    shutil.rmtree(out)
                out.unlink(missing_ok=True)
                args = [str(out) if a == "OUT" else run_id if a == "RUN" else a for a in command]
                code, stderr = run_cli(["--registry", str(work), *args])
                label = f"{table}.{column}={value!r}: pacha {' '.join(command)}"
                if code not in (0, 1):
                    failures.append(f"{label}: exit {code!r} {stderr[-300:]}")
                elif code == 1 and len(stderr.strip().splitlines()) != 1:
                    failures.append(f"{label}: {stderr[-300:]}")
                elif code == 1 and "internal error" in stderr:
                    failures.append(f"{label}: {stderr.strip()}")
                elif code == 1 and "download" in command and out.exists():
                    failures.append(f"{label}: wrote its output, then failed: {stderr}")
    assert not failures, "\n".join(failures[:20])


def test_verify_notices_a_version_digest_that_disagrees_with_its_objects(
    tmp_path: Path,
) -> None:
    reg = pacha.Registry(tmp_path / "reg")
    a = reg.register_model("a", write_pattern(tmp_path / "a.bin", 3000, seed=1), "1.0.0")
    b = reg.register_model("b", write_pattern(tmp_path / "b.bin", 3000, seed=2), "1.0.0")
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("x")
    (data / "y.txt").write_text("y")
    d = reg.register_dataset("d", data, "1.0.0")
    assert reg.verify().ok
    with sqlite3.connect(tmp_path / "reg" / "registry.db") as conn:
        # a now claims b's bytes; d claims a file of its own tree as its manifest.
        conn.execute("UPDATE versions SET digest = ? WHERE digest = ?", (b.digest, a.digest))
        x = next(r[0] for r in conn.execute("SELECT digest FROM objects WHERE size = 1"))
        conn.execute("UPDATE versions SET digest = ? WHERE digest = ?", (x, d.digest))
    result = reg.verify()
    found = {(p.kind, tuple(p.breaks)) for p in result.problems}
    assert found == {("inconsistent", ("a:1.0.0",)), ("inconsistent", ("d:1.0.0",))}
    assert all("restore it from a backup" in p.detail for p in result.problems)


def test_repair_restores_damaged_bytes_from_a_copy(cli, registry: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(20):
        (data / f"{i}.txt").write_text(f"row {i}\n")
    write_pattern(data / "big.bin", 3 << 20, seed=3)
    reg = pacha.Registry(registry)
    v = reg.register_dataset("d", data, "1.0.0")
    big = pacha.hash_file(data / "big.bin")
    corrupt(registry / "objects" / big[:2] / big, offset=1000)
    with sqlite3.connect(registry / "objects" / "packs" / "small.sqlite") as conn:
        conn.execute(
            "UPDATE objects SET data = X'00' WHERE rowid = (SELECT min(rowid) FROM objects)"
        )
    checked = cli("verify")
    assert checked.returncode == 1 and "pacha repair REF --from PATH" in checked.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x").write_text("not it")
    wrong = cli("repair", "d:1.0.0", "--from", str(elsewhere))
    assert wrong.returncode == 1 and v.digest in wrong.stderr
    done = cli("repair", "d:1.0.0", "--from", str(data), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["damaged"] == 2 and report["version"] == "dataset/d:1.0.0"
    assert reg.verify().ok
    assert (
        cli("repair", "d:1.0.0", "--from", str(data))
        .stdout.strip()
        .endswith("nothing to repair; every byte verified")
    )
