"""Every argument of the command line driven with random bytes: whatever arrives, `pacha`
answers with a result (exit 0), one line naming the problem (exit 1) or a usage message
(exit 2); never a traceback, a Rust panic, or another exit code.

The commands run in this process (through the same `main()` the console script calls) so
that hypothesis can try many inputs; the arguments are random bytes decoded the way Python
decodes a real command line (undecodable bytes become lone surrogates, PEP 383)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pacha
from pacha.cli import main

ARG = "<ARG>"

#: Every command, with its arguments: ARG is replaced by random bytes; FILE, TREE, RECIPE,
#: RUN and OUT by fixtures of the prepared registry.
TEMPLATES: list[list[str]] = [
    [ARG],
    ["model", ARG],
    ["model", "get", ARG],
    ["model", "get", ARG, "-v", ARG],
    ["model", "list", ARG],
    ["model", "list", "--stage", ARG],
    ["model", "list", "--tag", ARG],
    ["model", "register", ARG, "FILE", "-v", ARG],
    ["model", "register", "m", "FILE", "--bump", ARG],
    ["model", "register", "m", "FILE", "-v", "9.9.9", "--metric", ARG],
    ["model", "register", "m", "FILE", "-v", "9.9.8", "--tag", ARG],
    ["model", "register", "m", "FILE", "-v", "9.9.7", "--parent", ARG],
    ["model", "register", "m", "FILE", "-v", "9.9.6", "--parent", "m:1.0.0", "--param", ARG],
    ["model", "register", "m", "FILE", "-v", "9.9.5", "--relation", ARG, "--parent", "m:1.0.0"],
    ["model", "register", "m", "FILE", "-v", "9.9.4", "-d", ARG],
    ["model", "register", "m", "FILE", "-v", "9.9.3", "--card", ARG],
    ["model", "register", "m", ARG, "-v", "9.9.2"],
    ["model", "stage", ARG, "-t", "staging"],
    ["model", "stage", "m:1.0.0", "-t", ARG],
    ["model", "alias", "m", "1.0.0", ARG],
    ["model", "alias", ARG, "1.0.0", "champion"],
    ["model", "alias", "m", ARG, "champion"],
    ["model", "alias", "m", "--delete", ARG],
    ["model", "tag", "m:1.0.0", ARG],
    ["model", "tag", ARG, "k=v"],
    ["model", "card", ARG],
    ["model", "download", ARG, "-o", "OUT"],
    ["model", "delete", ARG],
    ["model", "lineage", ARG],
    ["data", "get", ARG],
    ["data", "register", ARG, "TREE", "-v", "1.0.1"],
    ["data", "register", "d", "TREE", "-v", "2.0.0", "-p", ARG],
    ["data", "register", "d", "TREE", "-v", "2.0.1", "--derived-from", ARG],
    ["data", "provenance", ARG],
    ["data", "download", ARG, "-o", "OUT"],
    ["data", "list", ARG],
    ["data", "stage", ARG, "-t", "staging"],
    ["data", "alias", "d", "1.0.0", ARG],
    ["data", "tag", "d:1.0.0", ARG],
    ["data", "delete", ARG],
    ["data", "lineage", ARG],
    ["recipe", "get", ARG],
    ["recipe", "list", ARG],
    ["recipe", "register", ARG],
    ["run", "plot", ARG, "-o", "OUT"],
    ["store", "add", ARG],
    ["store", "list", ARG],
    ["init", ARG],
    ["recover", ARG],
    ["repair", ARG, "--from", "FILE"],
    ["repair", "m:1.0.0", "--from", ARG],
    ["recipe", "validate", ARG],
    ["recipe", "diff", ARG, "RECIPE"],
    ["run", "get", ARG],
    ["run", "list", ARG],
    ["run", "start", "--set", ARG],
    ["run", "log", "RUN", ARG],
    ["run", "finish", ARG],
    ["run", "best", "r:1.0.0", "-m", ARG],
    ["run", "compare", ARG, "RUN"],
    ["lineage", ARG],
    ["lineage", "show", "model/m:1.0.0", "--depth", ARG],
    ["lineage", "show", "model/m:1.0.0", "--format", ARG],
    ["lineage", "add", ARG, "dataset/d:1.0.0", "--relation", "trained_on"],
    ["lineage", "impact", ARG],
    ["lineage", "path", ARG, "model/m:1.0.0"],
    ["store", "get", ARG, "-o", "OUT"],
    ["store", "verify", ARG],
    ["verify", ARG],
    ["gc", "--grace", ARG, "--dry-run"],
    ["hash", ARG],
    ["stats", ARG],
    ["--registry", ARG, "model", "list"],
    ["--objects", ARG, "stats"],
    ["config", "show", ARG],
    ["cache", "info", ARG],
    ["cache", "prune", "--max-size", ARG, "--dry-run"],
    ["cache", "clear", "--dry-run", ARG],
]


def run_cli(args: list[str]) -> tuple[object, str]:
    """(exit code, stderr) of `pacha ARGS` run in this process; an exception that escapes
    `main()` is returned as the code."""
    err = io.StringIO()
    saved = sys.argv
    sys.argv = ["pacha", *args]
    code: object = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    except BaseException as exc:
        code = exc
    finally:
        sys.argv = saved
    return code, err.getvalue()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("fuzz")
    registry = base / "registry"
    weights = base / "weights.bin"
    weights.write_bytes(b"w" * 4096)
    tree = base / "tree"
    tree.mkdir()
    (tree / "a.csv").write_text("a,b\n1,2\n")
    recipe = base / "recipe.toml"
    recipe.write_text('name = "r"\nversion = "1.0.0"\n\n[hyperparameters]\nepochs = 2\n')
    reg = pacha.Registry(registry)
    reg.register_model("m", weights, "1.0.0")
    reg.register_dataset("d", tree, "1.0.0")
    reg.register_recipe(recipe)
    run = reg.start_run("r:1.0.0")
    (base / "out").mkdir()
    return {
        "registry": str(registry),
        "FILE": str(weights),
        "TREE": str(tree),
        "RECIPE": str(recipe),
        "RUN": run.id,
        "OUT": str(base / "out"),
    }


def _fill(template: list[str], values: list[bytes], prepared: dict[str, str]) -> list[str]:
    args, taken = [], iter(values)
    for part in template:
        if part == ARG:
            # A real command line cannot carry a NUL byte (arguments are C strings).
            args.append(os.fsdecode(next(taken).replace(b"\0", b"")))
        elif part == "OUT":
            args.append(str(Path(prepared["OUT"]) / (next(taken).hex()[:32] or "x")))
        else:
            args.append(prepared.get(part, part))
    return args


NASTY = st.sampled_from(
    [b"", b"-", b"--", b"\xff\xfe", b"../..", b"/", b"1.0.0", b"m:1.0.0", b"m@prod",
     b"a" * 300, b"\x1b[31m", b"\n", b"9" * 30, b"=", b"k=", b"=v", b"{", b"nan", b"-1"]
)  # fmt: skip
ARG_BYTES = st.one_of(st.binary(max_size=40), NASTY)


@settings(
    max_examples=int(os.environ.get("PACHA_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_bytes_in_any_argument_never_crash_the_cli(
    prepared: dict[str, str], data: st.DataObject
) -> None:
    template = data.draw(st.sampled_from(TEMPLATES), label="command")
    slots = template.count(ARG) + template.count("OUT")
    values = data.draw(st.lists(ARG_BYTES, min_size=slots, max_size=slots), label="arguments")
    args = ["--registry", prepared["registry"], *_fill(template, values, prepared)]
    code, stderr = run_cli(args)
    assert code in (0, 1, 2), f"pacha {args!r}: {code!r}\n{stderr}"
    if code == 1:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, f"pacha {args!r}: not one line:\n{stderr}"
        assert "internal error" not in lines[0], f"pacha {args!r}: {lines[0]}"


def test_every_command_is_covered_by_a_template() -> None:
    import typer

    from pacha.cli.app import LAZY_GROUPS, app

    root = typer.main.get_command(app)
    covered = {tuple(t[:2]) for t in TEMPLATES} | {(t[0],) for t in TEMPLATES}
    missing = []
    for name in root.list_commands(None):  # type: ignore[arg-type]
        command = root.get_command(None, name)  # type: ignore[arg-type]
        subcommands = getattr(command, "commands", None)
        if name in LAZY_GROUPS and subcommands:
            missing += [f"{name} {sub}" for sub in subcommands if (name, sub) not in covered]
        elif (name,) not in covered:
            missing.append(name)
    assert missing == [], missing
