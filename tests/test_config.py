"""Where the registry lives: `--registry`/`--objects`, `PACHA_REGISTRY`/`PACHA_HOME`/
`PACHA_OBJECTS`, the config file, the defaults; `pacha config show`; hostile config files;
PostgreSQL and S3 locations refused honestly until their backends land.

The commands run in this process (through the same `main()` the console script calls) with a
private HOME, so that no real config file or registry is ever read."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

import pacha
from pacha.cli import main
from pacha.config import mask_secrets, resolve
from pacha.errors import InvalidInputError

ENV_VARS = ("PACHA_HOME", "PACHA_REGISTRY", "PACHA_OBJECTS", "PACHA_CONFIG", "XDG_CONFIG_HOME")
SECRET = "hunter2-s3cr3t"
PG_URL = f"postgresql://pacha:{SECRET}@db.example:5432/registry"


class Result(NamedTuple):
    code: object
    stdout: str
    stderr: str


class Place(NamedTuple):
    root: Path
    home: Path
    work: Path

    @property
    def default_config(self) -> Path:
        return self.home / ".config" / "pacha" / "config.toml"

    def write_config(self, text: str, path: Path | None = None) -> Path:
        path = path or self.default_config
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Place:
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    return Place(tmp_path, home, work)


def pacha_cli(*args: str) -> Result:
    """`pacha ARGS` run in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["pacha", *args]
    code: object = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    finally:
        sys.argv = saved
    return Result(code, out.getvalue(), err.getvalue())


def show(*global_args: str) -> dict:
    result = pacha_cli(*global_args, "config", "show", "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def one_error_line(result: Result, *needles: str) -> str:
    assert result.code == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---- precedence ----

#: The sources of the metadata setting, highest precedence first.
METADATA_SOURCES = ["command line", "PACHA_REGISTRY", "PACHA_HOME", "config file", "default"]


def _set_metadata(
    source: str, place: Place, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> Path:
    """Set the registry at `source` to a directory named after it; return that directory."""
    target = place.root / source.replace(" ", "-")
    if source == "command line":
        args += ["--registry", str(target)]
    elif source in ("PACHA_REGISTRY", "PACHA_HOME"):
        monkeypatch.setenv(source, str(target))
    elif source == "config file":
        place.write_config(f'[registry]\nmetadata = "{target}"\n')
    else:
        target = place.home / ".pacha"
    return target


@pytest.mark.parametrize(("higher", "lower"), list(itertools.combinations(METADATA_SOURCES, 2)))
def test_metadata_precedence_for_each_pair_of_sources(
    place: Place, monkeypatch: pytest.MonkeyPatch, higher: str, lower: str
) -> None:
    args: list[str] = []
    _set_metadata(lower, place, monkeypatch, args)
    winner = _set_metadata(higher, place, monkeypatch, args)
    shown = show(*args)
    assert shown["metadata"]["value"] == str(winner)
    assert shown["metadata"]["kind"] == "directory"
    expected = {
        "command line": "command line --registry",
        "PACHA_REGISTRY": "environment PACHA_REGISTRY",
        "PACHA_HOME": "environment PACHA_HOME",
        "config file": f"config file {place.default_config} (registry.metadata)",
        "default": "default",
    }[higher]
    assert shown["metadata"]["source"].startswith(expected), shown
    # Commands open the same directory (created by init).
    result = pacha_cli(*args, "init")
    assert result.code == 0, result.stderr
    assert (winner / "objects").is_dir()


OBJECT_SOURCES = ["command line", "PACHA_OBJECTS", "config file"]


@pytest.mark.parametrize(("higher", "lower"), list(itertools.combinations(OBJECT_SOURCES, 2)))
def test_objects_precedence_for_each_pair_of_sources(
    place: Place, monkeypatch: pytest.MonkeyPatch, higher: str, lower: str
) -> None:
    args: list[str] = []
    config_objects = ""
    for source in (lower, higher):
        url = f"s3://{source.replace(' ', '-').lower()}/prefix"
        if source == "command line":
            args += ["--objects", url]
        elif source == "PACHA_OBJECTS":
            monkeypatch.setenv("PACHA_OBJECTS", url)
        else:
            config_objects = f'objects = "{url}"\n'
    # The registry comes from the lowest source (the config file) so no objects are ignored.
    place.write_config(f'[registry]\nmetadata = "{place.root / "reg"}"\n{config_objects}')
    shown = show(*args)
    assert shown["objects"]["value"] == f"s3://{higher.replace(' ', '-').lower()}/prefix"
    assert shown["objects"]["kind"] == "s3"
    expected = {
        "command line": "command line --objects",
        "PACHA_OBJECTS": "environment PACHA_OBJECTS",
        "config file": f"config file {place.default_config} (registry.objects)",
    }[higher]
    assert shown["objects"]["source"] == expected


def test_objects_default_to_the_registry_directorys_own_store(place: Place) -> None:
    shown = show()
    assert shown["objects"] == {
        "value": str(place.home / ".pacha" / "objects"),
        "kind": "directory",
        "source": "default (the registry directory's own store)",
    }
    assert shown["supported"] is True and shown["problem"] is None


def test_a_registry_from_a_higher_source_brings_its_own_objects(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A team config file's objects never pair with a registry named elsewhere: a `gc` in a
    scratch registry must not sweep the team's objects."""
    place.write_config('[registry]\nmetadata = "/srv/team"\nobjects = "s3://team/objects"\n')
    scratch = place.root / "scratch"
    shown = show("--registry", str(scratch))
    assert shown["objects"]["value"] == str(scratch / "objects")
    assert "registry.objects in the config file is ignored" in shown["objects"]["source"]
    assert shown["supported"] is True
    result = pacha_cli("--registry", str(scratch), "init")
    assert result.code == 0, result.stderr
    # The same for a registry from the environment, and for PACHA_OBJECTS below --registry.
    monkeypatch.setenv("PACHA_HOME", str(scratch))
    assert show()["objects"]["value"] == str(scratch / "objects")
    monkeypatch.setenv("PACHA_OBJECTS", "s3://team/objects")
    assert show()["objects"]["kind"] == "s3"  # same rank as the registry: taken
    shown = show("--registry", str(scratch))
    assert "PACHA_OBJECTS is ignored" in shown["objects"]["source"]
    assert pacha_cli("--registry", str(scratch), "stats").code == 0


def test_pacha_registry_overrides_pacha_home(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHA_HOME", str(place.root / "old"))
    monkeypatch.setenv("PACHA_REGISTRY", str(place.root / "new"))
    shown = show()
    assert shown["metadata"]["value"] == str(place.root / "new")
    assert shown["metadata"]["source"] == "environment PACHA_REGISTRY, overriding PACHA_HOME"
    assert pacha.Registry().path == place.root / "new"
    assert pacha.registry_path() == place.root / "new"


def test_empty_values_count_as_unset(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHA_REGISTRY", "")
    monkeypatch.setenv("PACHA_OBJECTS", "")
    monkeypatch.setenv("PACHA_HOME", str(place.root / "home-reg"))
    shown = show("--registry", "")
    assert shown["metadata"]["source"] == "environment PACHA_HOME"
    assert shown["objects"]["source"].startswith("default")


# ---- the config file ----


def test_config_file_relative_paths_are_relative_to_the_file(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = place.write_config(
        '[registry]\nmetadata = "team-registry"\n', place.root / "etc" / "pacha.toml"
    )
    monkeypatch.setenv("PACHA_CONFIG", str(config))
    shown = show()
    assert shown["metadata"]["value"] == str(place.root / "etc" / "team-registry")
    assert shown["config_file"] == {
        "path": str(config),
        "source": "environment PACHA_CONFIG",
        "exists": True,
    }


def test_config_file_tilde_is_the_home_directory(place: Place) -> None:
    place.write_config('[registry]\nmetadata = "~/team"\n')
    assert show()["metadata"]["value"] == str(place.home / "team")


def test_xdg_config_home_is_respected(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = place.root / "xdg"
    config = place.write_config(
        f'[registry]\nmetadata = "{place.root / "xdg-reg"}"\n', xdg / "pacha" / "config.toml"
    )
    place.write_config(f'[registry]\nmetadata = "{place.root / "home-reg"}"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    shown = show()
    assert shown["metadata"]["value"] == str(place.root / "xdg-reg")
    assert shown["config_file"]["path"] == str(config)
    assert shown["config_file"]["source"] == "environment XDG_CONFIG_HOME"
    # PACHA_CONFIG wins over XDG_CONFIG_HOME.
    named = place.write_config(
        f'[registry]\nmetadata = "{place.root / "named"}"\n', place.root / "named.toml"
    )
    monkeypatch.setenv("PACHA_CONFIG", str(named))
    assert show()["metadata"]["value"] == str(place.root / "named")
    # A relative XDG_CONFIG_HOME is invalid (XDG Base Directory specification): ignored.
    monkeypatch.delenv("PACHA_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/xdg")
    shown = show()
    assert shown["config_file"]["path"] == str(place.default_config)
    assert shown["metadata"]["value"] == str(place.root / "home-reg")


def test_a_missing_config_file_at_the_default_place_is_fine(place: Place) -> None:
    shown = show()
    assert shown["config_file"] == {
        "path": str(place.default_config),
        "source": "default",
        "exists": False,
    }
    assert pacha_cli("init").code == 0
    assert (place.home / ".pacha" / "objects").is_dir()


def test_a_missing_config_file_named_by_pacha_config_is_an_error(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = place.root / "nope" / "config.toml"
    monkeypatch.setenv("PACHA_CONFIG", str(missing))
    for args in (["config", "show"], ["model", "list"], ["init"]):
        one_error_line(pacha_cli(*args), str(missing), "PACHA_CONFIG")
    assert not (place.home / ".pacha").exists()
    with pytest.raises(FileNotFoundError):
        pacha.Registry()


HOSTILE_CONFIGS = {
    "not TOML": (b"[registry\nmetadata = 1", "is not valid TOML"),
    "unknown key": (b'[registry]\nmetdata = "/x"\n', "unknown key registry.'metdata'"),
    "unknown table": (b'[registy]\nmetadata = "/x"\n', "unknown table 'registy'"),
    "integer": (b"[registry]\nmetadata = 42\n", "registry.metadata must be a string"),
    "boolean": (b"[registry]\nobjects = true\n", "registry.objects must be a string"),
    "array": (b'[registry]\nmetadata = ["/a"]\n', "must be a string, not an array"),
    "table": (b"[registry.metadata]\npath = '/a'\n", "must be a string, not a table"),
    "registry not a table": (b'registry = "/x"\n', "registry must be a table"),
    "empty value": (b'[registry]\nmetadata = ""\n', "registry.metadata is empty"),
    "NUL in value": (b'[registry]\nmetadata = "/a\\u0000b"\n', "NUL character"),
    "not UTF-8": (b'[registry]\nmetadata = "\xff\xfe"\n', "is not UTF-8"),
    "huge": (b"# " + b"x" * (1 << 20) + b"\n", "larger than 1 MiB"),
    "deep": (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested"),
    "bad scheme": (b'[registry]\nmetadata = "ftp://h/x"\n', "unknown scheme 'ftp'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_hostile_config_files_give_one_line_naming_the_file(place: Place, case: str) -> None:
    content, needle = HOSTILE_CONFIGS[case]
    config = place.default_config
    config.parent.mkdir(parents=True)
    config.write_bytes(content)
    for args in (["config", "show"], ["model", "list"], ["init"]):
        line = one_error_line(pacha_cli(*args), str(config), needle)
        assert len(line) < 1000, line
    assert not (place.home / ".pacha").exists()
    with pytest.raises((InvalidInputError, OSError)):
        pacha.Registry()


def test_a_config_file_that_is_a_directory(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    place.default_config.mkdir(parents=True)
    one_error_line(pacha_cli("model", "list"), str(place.default_config), "is a directory")
    monkeypatch.setenv("PACHA_CONFIG", str(place.root))
    one_error_line(pacha_cli("config", "show"), str(place.root), "is a directory")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_config_file_that_is_a_fifo_is_never_read(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = place.root / "config.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("PACHA_CONFIG", str(fifo))
    one_error_line(pacha_cli("config", "show"), str(fifo), "FIFO")


def test_an_unreadable_config_file(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    import pacha._files

    config = place.write_config('[registry]\nmetadata = "/x"\n')

    def refuse(path: Path, limit: int, what: str) -> bytes:
        raise PermissionError(13, "Permission denied", str(path))

    # (Simulated: the tests may run as root, who reads any file.)
    monkeypatch.setattr(pacha._files, "read_regular_file", refuse)
    one_error_line(pacha_cli("config", "show"), str(config), "cannot be read", "Permission")


def test_a_broken_config_file_is_not_read_when_the_registry_comes_from_elsewhere(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    place.write_config("not toml at all [")
    assert pacha_cli("--registry", str(place.root / "r"), "init").code == 0
    monkeypatch.setenv("PACHA_HOME", str(place.root / "r"))
    assert pacha_cli("model", "list").code == 0
    # `config show` always reads it, and says what is wrong.
    one_error_line(pacha_cli("config", "show"), "is not valid TOML")


# ---- config show ----


def test_config_show_text(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    place.write_config(f'[registry]\nmetadata = "{place.root / "team"}"\n')
    result = pacha_cli("config", "show")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["setting", "value", "source"]
    assert lines[1].split()[:2] == ["metadata", str(place.root / "team")]
    assert lines[1].endswith(f"config file {place.default_config} (registry.metadata)")
    assert lines[2].split()[:2] == ["objects", str(place.root / "team" / "objects")]
    assert lines[2].endswith("default (the registry directory's own store)")
    assert lines[3] == f"config file: {place.default_config} (found)"
    assert len(lines) == 4
    assert result.stderr == ""
    # Nothing was opened or created.
    assert not (place.root / "team").exists()

    monkeypatch.setenv("PACHA_CONFIG", str(place.default_config))
    lines = pacha_cli("config", "show").stdout.splitlines()
    assert lines[3] == (
        f"config file: {place.default_config} (found, chosen by environment PACHA_CONFIG)"
    )


def test_config_show_json(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHA_REGISTRY", str(place.root / "r"))
    assert show("--objects", str(place.root / "r" / "objects")) == {
        "metadata": {
            "value": str(place.root / "r"),
            "kind": "directory",
            "source": "environment PACHA_REGISTRY",
        },
        "objects": {
            "value": str(place.root / "r" / "objects"),
            "kind": "directory",
            "source": "command line --objects",
        },
        "config_file": {"path": str(place.default_config), "source": "default", "exists": False},
        "supported": True,
        "problem": None,
    }


def test_config_show_names_a_pair_no_registry_can_have(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACHA_REGISTRY", PG_URL)
    result = pacha_cli("config", "show")
    assert result.code == 0, result.stderr
    assert "postgresql://pacha:***@db.example:5432/registry" in result.stdout
    assert "note: PostgreSQL metadata needs its objects in a bucket" in result.stdout
    shown = show()
    assert shown["metadata"]["kind"] == "postgresql"
    assert shown["objects"]["kind"] == "none" and shown["objects"]["value"] is None
    assert shown["supported"] is False
    assert "give --objects s3://BUCKET/PREFIX" in shown["problem"]
    # With a bucket the pair is whole: shown as supported, without connecting to anything.
    monkeypatch.setenv("PACHA_OBJECTS", "s3://bucket/prefix")
    shown = show()
    assert shown["supported"] is True and shown["problem"] is None
    assert SECRET not in result.stdout + result.stderr + json.dumps(shown)


# ---- secrets ----


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (PG_URL, "postgresql://pacha:***@db.example:5432/registry"),
        (f"postgres://u:{SECRET}@h/db", "postgres://u:***@h/db"),
        (f"postgresql://u@h/db?password={SECRET}&sslmode=require",
         "postgresql://u@h/db?password=***&sslmode=require"),
        (f"s3://bucket/p?aws_secret_access_key={SECRET}#x", "s3://bucket/p?aws_secret_access_key=***#x"),
        (f"s3://AKIA:{SECRET}@bucket/p", "s3://AKIA:***@bucket/p"),
        (f"postgresql://u:{SECRET}/with/slash@h/db", "postgresql://u:***@h/db"),
        (f"ftp://u:{SECRET}@h/?token={SECRET}", "ftp://u:***@h/?token=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("/plain/path:with@odd", "/plain/path:with@odd"),
        (f"postgresql://u:{SECRET}?x@h/db", "postgresql://u:***@h/db"),
        (f"postgresql://u:{SECRET}#x@h/db", "postgresql://u:***@h/db"),
        (f"host=h user=u password={SECRET} dbname=d", "host=h user=u password=*** dbname=d"),
    ],
)  # fmt: skip
def test_mask_secrets(value: str, masked: str) -> None:
    assert mask_secrets(value) == masked
    assert SECRET not in mask_secrets(value)


@pytest.mark.parametrize(
    "args",
    [
        ["--registry", PG_URL, "init"],
        ["--registry", PG_URL, "model", "list"],
        ["--registry", f"postgresql://u@h/db?password={SECRET}", "stats"],
        ["--registry", f"ftp://u:{SECRET}@h/x", "init"],
        ["--registry", f"s3://u:{SECRET}@bucket/x", "init"],
        ["--objects", f"s3://AKIA:{SECRET}@bucket/x", "init"],
        ["--objects", f"s3://bucket/x?secret={SECRET}", "init"],
        ["--objects", f"postgresql://u:{SECRET}@h/db", "init"],
        ["--objects", f"gopher://u:{SECRET}@h/db", "config", "show"],
        ["--registry", f"file://u:{SECRET}@h/db", "init"],
    ],
)
def test_secrets_are_masked_in_every_error(place: Place, args: list[str]) -> None:
    result = pacha_cli(*args)
    line = one_error_line(result)
    assert SECRET not in result.stdout + result.stderr
    assert "***" in line
    assert listing(place.root) == ["home", "work"]


def test_secrets_in_the_environment_and_config_file_are_masked(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    place.write_config(f'[registry]\nobjects = "s3://b/p?password={SECRET}"\n')
    # Port 1 on the loopback: nothing listens, nothing beyond this machine is asked.
    monkeypatch.setenv("PACHA_REGISTRY", f"postgresql://pacha:{SECRET}@127.0.0.1:1/registry")
    monkeypatch.setenv("PACHA_OBJECTS", f"s3://bucket/p?secret={SECRET}")
    outputs = [pacha_cli("config", "show"), pacha_cli("config", "show", "--json")]
    outputs += [pacha_cli("init"), pacha_cli("model", "list")]
    for result in outputs:
        assert SECRET not in result.stdout + result.stderr
    assert outputs[0].code == outputs[1].code == 0
    # A whole pair is opened: the server (a closed port here) is named, its password masked.
    one_error_line(outputs[2], "PostgreSQL at postgresql://pacha:***@127.0.0.1:1/registry")
    monkeypatch.setenv("PACHA_OBJECTS", f"s3://AKIA:{SECRET}@bucket/p")
    result = pacha_cli("config", "show")
    one_error_line(result, "with no user, password or port", "s3://AKIA:***@bucket/p")
    assert SECRET not in result.stdout + result.stderr
    with pytest.raises(InvalidInputError) as caught:
        pacha.Registry()
    assert SECRET not in str(caught.value)


# ---- pairs no registry can have: refused honestly, nothing created, nothing reached ----


@pytest.mark.parametrize(
    ("global_args", "needle"),
    [
        (["--registry", PG_URL], "PostgreSQL metadata needs its objects in a bucket"),
        (["--registry", "postgres://h/db"], "PostgreSQL metadata needs its objects in a bucket"),
        (["--objects", "s3://bucket/prefix"], "S3 objects need PostgreSQL metadata"),
        (["--registry", "r", "--objects", "s3://bucket"], "S3 objects need PostgreSQL metadata"),
        (["--registry", "r", "--objects", "elsewhere"], "registry objects: give s3://BUCKET"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [["init"], ["model", "list"], ["stats"], ["verify"], ["gc"], ["recover"],
     ["store", "list"], ["store", "add", "f"], ["run", "list"], ["lineage", "impact", "m:1.0.0"]],
)  # fmt: skip
def test_a_half_pair_gives_one_honest_line_and_creates_nothing(
    place: Place, global_args: list[str], needle: str, command: list[str]
) -> None:
    (place.work / "f").write_bytes(b"bytes")
    before = listing(place.root)
    one_error_line(pacha_cli(*global_args, *command), needle)
    assert listing(place.root) == before


def test_the_python_api_refuses_them_the_same_way(place: Place) -> None:
    before = listing(place.root)
    for kwargs, needle in (
        ({"path": PG_URL}, "PostgreSQL metadata needs"),
        ({"metadata": PG_URL}, "PostgreSQL metadata needs"),
        ({"objects": "s3://bucket/prefix"}, "S3 objects need PostgreSQL"),
        ({"path": place.root / "r", "objects": "s3://bucket/prefix"}, "S3 objects need"),
        ({"path": place.root / "r", "objects": place.root / "elsewhere"}, "give s3://BUCKET"),
    ):
        with pytest.raises(InvalidInputError, match=needle) as caught:
            pacha.Registry(**kwargs)  # type: ignore[arg-type]
        assert SECRET not in str(caught.value)
    with pytest.raises(InvalidInputError, match="PostgreSQL metadata needs"):
        pacha.open_store(PG_URL)
    assert listing(place.root) == before


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("objects", "s3://", "name a bucket"),
        ("objects", "s3:///prefix", "name a bucket"),
        ("metadata", "s3://bucket/p", "an S3 bucket holds objects, not metadata"),
        ("objects", "postgresql://h/db", "a PostgreSQL database holds metadata, not objects"),
        ("metadata", "http://h/x", "unknown scheme 'http'"),
        ("metadata", "file://elsewhere/x", "absolute local path"),
        ("metadata", "file://", "absolute local path"),
    ],
)
def test_invalid_values_list_the_accepted_forms(
    place: Place, name: str, value: str, needle: str
) -> None:
    option = "--registry" if name == "metadata" else "--objects"
    line = one_error_line(pacha_cli(option, value, "model", "list"), needle)
    assert f"command line {option}" in line
    if "unknown scheme" in needle or "holds" in needle:
        assert "file:///ABSOLUTE/PATH" in line
        assert (
            "postgresql://USER@HOST:PORT/DB" if name == "metadata" else "s3://BUCKET/PREFIX"
        ) in line


# ---- local paths ----


def test_file_urls_are_paths(place: Place) -> None:
    target = place.root / "with space"
    result = pacha_cli("--registry", f"file://{str(target).replace(' ', '%20')}", "init")
    assert result.code == 0, result.stderr
    assert (target / "objects").is_dir()
    assert pacha_cli("--registry", f"file://localhost{target}", "stats").code == 0
    registry = pacha.Registry(f"file://{place.root / 'api'}")
    assert registry.path == place.root / "api"
    assert (place.root / "api" / "objects").is_dir()
    place.write_config(f'[registry]\nmetadata = "file://{place.root / "from-config"}"\n')
    assert pacha_cli("init").code == 0
    assert (place.root / "from-config" / "objects").is_dir()


def test_the_registrys_own_store_may_be_named(place: Place) -> None:
    reg = place.root / "r"
    result = pacha_cli("--registry", str(reg), "--objects", str(reg / "objects"), "init")
    assert result.code == 0, result.stderr
    result = pacha_cli("--registry", str(reg), "--objects", f"file://{reg}/objects", "stats")
    assert result.code == 0, result.stderr
    assert pacha.Registry(reg, objects=reg / "objects").path == reg


def test_local_paths_work_as_before(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = Path("odd:name")  # a colon, but no "://": a relative path
    assert pacha_cli("--registry", str(odd), "init").code == 0
    assert (place.work / odd / "objects").is_dir()
    assert pacha.Registry(place.work / "p").path == place.work / "p"
    assert pacha.registry_path("~/x") == place.home / "x"
    assert pacha.registry_path() == place.home / ".pacha"
    monkeypatch.setenv("PACHA_HOME", "~/h")
    assert pacha.registry_path() == place.home / "h"


def test_metadata_is_another_name_for_path(place: Place) -> None:
    registry = pacha.Registry(metadata=place.root / "m")
    assert registry.path == place.root / "m"
    with pytest.raises(InvalidInputError, match="not both"):
        pacha.Registry(place.root / "a", metadata=place.root / "b")
    assert not (place.root / "a").exists() and not (place.root / "b").exists()


def test_resolve_records_each_source(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHA_OBJECTS", "s3://b/p")
    location = resolve("postgresql://u@h/db")
    assert location.metadata.source == "argument metadata"
    assert location.objects.kind == "none"  # PACHA_OBJECTS is below the argument
    assert "PACHA_OBJECTS is ignored" in location.objects.source
    location = resolve(None, "s3://b/q")
    assert (location.metadata.source, location.objects.source) == ("default", "argument objects")
    assert location.config.exists is False


def test_values_that_are_not_used_are_not_checked(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACHA_HOME", "ftp://not/used")
    monkeypatch.setenv("PACHA_REGISTRY", str(place.root / "r"))
    monkeypatch.setenv("PACHA_OBJECTS", "gopher://not/used")
    place.write_config('[registry]\nobjects = "ftp://not/used"\n')
    result = pacha_cli("--registry", str(place.root / "r"), "init")
    assert result.code == 0, result.stderr
    # Without --registry, PACHA_OBJECTS ranks with PACHA_REGISTRY: used, and refused.
    one_error_line(pacha_cli("stats"), "unknown scheme 'gopher'", "environment PACHA_OBJECTS")


def test_no_home_directory_is_one_line(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    one_error_line(pacha_cli("model", "list"), "no home directory", "PACHA_REGISTRY")
    # A registry given explicitly needs no home directory.
    assert pacha_cli("--registry", str(place.root / "r"), "init").code == 0
