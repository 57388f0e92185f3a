"""The registry through the real `pacha` command line: `pacha model|data …`, `stats`,
`verify`; exit codes, one-line errors, JSON documents."""

from __future__ import annotations

import getpass
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Callable

import huggingface_hub
import pytest

import pacha
from support import corrupt, make_hf_folder, object_files, tree_listing, write_pattern

Run = Callable[..., Any]

# ---- helpers ----


@pytest.fixture
def run(cli) -> Run:
    """`cli`, plus the rule that holds for every command: never a traceback."""

    def go(*args: str) -> Any:
        result = cli(*args)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return go


@pytest.fixture
def api(registry: Path) -> pacha.Registry:
    """The same registry through the API, for quick setup and inspection."""
    return pacha.Registry(registry)


def ok(result: Any) -> Any:
    """Exit 0; the JSON document on stdout, if there is one."""
    assert result.returncode == 0, result.stderr
    text = result.stdout.strip()
    return json.loads(text) if text[:1] in "[{" and text else text


def one_error_line(result: Any, *needles: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def blob(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def snapshot(registry: Path) -> tuple[Any, ...]:
    r = pacha.Registry(registry)
    versions = [(v.name, v.version, v.stage, v.digest, v.tags) for v in r.list_model_versions()]
    return r.stats().model_dump(), object_files(registry), versions


# ---- 1. semantic versions ----


@pytest.mark.parametrize("bad", ["1.0", "1.0.0-01"])
def test_invalid_version_exits_1_with_the_valid_form(
    run: Run, registry: Path, tmp_path: Path, bad: str
) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    line = one_error_line(run("model", "register", "m", str(f), "-v", bad), "MAJOR.MINOR.PATCH")
    assert bad in line
    assert object_files(registry) == []


def test_list_is_in_precedence_order_and_latest_skips_pre_releases(
    run: Run, api: pacha.Registry, tmp_path: Path
) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    for version in ["1.10.0", "1.0.0", "2.0.0-rc.1", "1.2.0", "1.0.0-alpha", "1.0.0-beta"]:
        api.register_model("m", f, version)
    listed = ok(run("model", "list", "m", "--json"))
    assert [v["version"] for v in listed] == [
        "1.0.0-alpha",
        "1.0.0-beta",
        "1.0.0",
        "1.2.0",
        "1.10.0",
        "2.0.0-rc.1",
    ]
    assert ok(run("model", "get", "m:latest", "--json"))["version"] == "1.10.0"
    assert ok(run("model", "list", "--json")) == [{"name": "m", "versions": 6, "latest": "1.10.0"}]


def test_bump_picks_the_next_version(run: Run, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    versions = [
        ok(run("model", "register", "m", str(f), "--bump", part, "--json"))["version"]
        for part in ("minor", "patch", "major", "patch")
    ]
    assert versions == ["0.1.0", "0.1.1", "1.0.0", "1.0.1"]
    first = ok(run("data", "register", "d", str(f), "--bump", "major", "--json"))
    assert first["version"] == "1.0.0"


# ---- 2. references ----

CONTENTS = {"1.0.0": b"one", "1.1.0": b"one point one", "2.0.0-rc.1": b"two rc"}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (["m:1.1.0"], "1.1.0"),
        (["m:latest"], "1.1.0"),
        (["m@staging"], "1.0.0"),
        (["m@champion"], "2.0.0-rc.1"),
        (["m", "-v", "2.0.0-rc.1"], "2.0.0-rc.1"),
    ],
    ids=["version", "latest", "stage", "alias", "dash-v"],
)
def test_every_reference_form_on_get_download_tag_stage(
    run: Run, api: pacha.Registry, tmp_path: Path, ref: list[str], expected: str
) -> None:
    for version, data in CONTENTS.items():
        api.register_model("m", blob(tmp_path, version, data), version)
    api.stage_model("m:1.0.0", "staging")
    api.alias_model("m:2.0.0-rc.1", "champion")

    assert ok(run("model", "get", *ref, "--json"))["version"] == expected

    out = tmp_path / "out" / "model.bin"
    downloaded = ok(run("model", "download", *ref, "-o", str(out), "--json"))
    assert downloaded["version"] == expected
    assert out.read_bytes() == CONTENTS[expected]

    tagged = ok(run("model", "tag", *ref, "checked=yes", "--json"))
    assert (tagged["version"], tagged["tags"]) == (expected, {"checked": "yes"})

    staged = ok(run("model", "stage", *ref, "-t", "archived", "--json"))
    assert (staged["version"], staged["stage"]) == (expected, "archived")

    after = {v.version: v for v in api.list_model_versions("m")}
    assert after[expected].tags == {"checked": "yes"}
    assert after[expected].stage.value == "archived"
    assert all(not v.tags for k, v in after.items() if k != expected)


# ---- 3. stages ----


def test_refused_transition_exits_1_naming_the_allowed_targets(
    run: Run, api: pacha.Registry, tmp_path: Path
) -> None:
    api.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    line = one_error_line(run("model", "stage", "m:1.0.0", "-t", "production"))
    assert "staging" in line and "archived" in line
    assert api.get_model("m:1.0.0").stage.value == "development"
    api.stage_model("m:1.0.0", "archived")
    line = one_error_line(run("model", "stage", "m:1.0.0", "--to", "staging"), "development")
    assert api.get_model("m:1.0.0").stage.value == "archived"
    assert "is now in development" in ok(run("model", "stage", "m:1.0.0", "-t", "development"))


def test_archive_existing_and_history_in_get_json(
    run: Run, api: pacha.Registry, tmp_path: Path
) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    for version in ("1.0.0", "2.0.0"):
        api.register_model("m", f, version)
        api.stage_model(f"m:{version}", "staging")
    api.stage_model("m:1.0.0", "production")
    promoted = ok(
        run("model", "stage", "m:2.0.0", "-t", "production", "--archive-existing", "--json")
    )
    assert promoted["stage"] == "production"
    old = ok(run("model", "get", "m:1.0.0", "--json"))
    assert old["stage"] == "archived"
    history = old["history"]
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [
        (None, "development"),
        ("development", "staging"),
        ("staging", "production"),
        ("production", "archived"),
    ]
    assert {h["by"] for h in history} == {getpass.getuser()}
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", h["at"]) for h in history)
    human = ok(run("model", "get", "m@production"))
    assert "2.0.0" in human and "stage history" in human


# ---- 4. aliases and tags ----


def test_alias_set_move_refuse_delete(run: Run, api: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    for version in ("1.0.0", "2.0.0"):
        api.register_model("m", f, version)
    ok(run("model", "alias", "m:1.0.0", "champion"))
    assert api.get_model("m@champion").version == "1.0.0"
    moved = ok(run("model", "alias", "m", "2.0.0", "champion", "--json"))
    assert (moved["version"], moved["aliases"]) == ("2.0.0", ["champion"])
    assert ok(run("model", "get", "m@champion", "--json"))["version"] == "2.0.0"
    assert api.get_model("m:1.0.0").aliases == []
    one_error_line(run("model", "alias", "m", "1.0.0", "production"), "production")
    assert api.get_model("m:1.0.0").aliases == []
    ok(run("model", "alias", "m", "--delete", "champion"))
    one_error_line(run("model", "get", "m@champion"), "champion")


def test_tags_on_register_tag_and_list_filters(
    run: Run, api: pacha.Registry, tmp_path: Path
) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    first = ok(
        run(
            "model",
            "register",
            "m",
            str(f),
            "-v",
            "1.0.0",
            "--tag",
            "team=nlp",
            "--tag",
            "env=dev",
            "--json",
        )
    )
    assert first["tags"] == {"team": "nlp", "env": "dev"}
    api.register_model("m", f, "2.0.0", tags={"team": "cv"})
    api.register_model("n", f, "1.0.0", tags={"team": "nlp"})
    tagged = ok(run("model", "tag", "m:2.0.0", "team=nlp", "note=a=b", "--json"))
    assert tagged["tags"] == {"team": "nlp", "note": "a=b"}
    api.stage_model("m:2.0.0", "staging")
    listed = ok(run("model", "list", "--tag", "team=nlp", "--stage", "staging", "--json"))
    assert [(v["name"], v["version"]) for v in listed] == [("m", "2.0.0")]
    listed = ok(run("model", "list", "--tag", "team=nlp", "--json"))
    assert [(v["name"], v["version"]) for v in listed] == [
        ("m", "1.0.0"),
        ("m", "2.0.0"),
        ("n", "1.0.0"),
    ]
    one_error_line(run("model", "tag", "m:1.0.0", "novalue"), "KEY=VALUE")


# ---- 5. model cards and datasheets ----

EXPECTED_DOCUMENT = {
    "description": "A tiny test model",
    "license": "mit",
    "metrics": {"accuracy": 0.91, "bleu": 31.5},
    "primary_uses": ["testing"],
    "parent_model": "base:1.0.0",
}
CARD_FILES = {
    "card.toml": 'description = "A tiny test model"\nlicense = "mit"\n'
    'primary_uses = ["testing"]\nparent_model = "base:1.0.0"\n[metrics]\naccuracy = 0.91\n',
    "card.yaml": "description: A tiny test model\nlicense: mit\nmetrics: {accuracy: 0.91}\n"
    "primary_uses: [testing]\nparent_model: 'base:1.0.0'\n",
    "card.json": json.dumps(
        {
            "description": "A tiny test model",
            "license": "mit",
            "metrics": {"accuracy": 0.91},
            "primary_uses": ["testing"],
            "parent_model": "base:1.0.0",
        }
    ),
    "README.md": "---\nlicense: mit\nmetrics:\n  accuracy: 0.91\nprimary_uses:\n  - testing\n"
    "parent_model: 'base:1.0.0'\n---\n\nA tiny test model\n",
}


@pytest.mark.parametrize("filename", sorted(CARD_FILES))
def test_card_from_file_with_metric(run: Run, tmp_path: Path, filename: str) -> None:
    card = tmp_path / filename
    card.write_text(CARD_FILES[filename])
    f = blob(tmp_path, "m.bin", b"m")
    args = ["model", "register", "m", str(f), "-v", "1.0.0", "--card", str(card)]
    registered = ok(run(*args, "--metric", "bleu=31.5", "--json"))
    assert registered["document"] == EXPECTED_DOCUMENT
    assert ok(run("model", "get", "m:1.0.0", "--json"))["document"] == EXPECTED_DOCUMENT


def test_model_card_command_loads_with_huggingface_hub(run: Run, tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(CARD_FILES["card.yaml"])
    f = blob(tmp_path, "m.bin", b"m")
    ok(run("model", "register", "bert", str(f), "-v", "1.0.0", "--card", str(card)))
    ok(run("model", "register", "bert", str(f), "-v", "1.1.0", "--metric", "f1=0.5"))
    text = ok(run("model", "card", "bert:1.0.0"))
    loaded = huggingface_hub.ModelCard(text)
    data = loaded.data.to_dict()
    assert (data["license"], data["model_name"], data["model_version"]) == (
        "mit",
        "bert",
        "1.0.0",
    )
    assert data["metrics"] == ["accuracy"]
    assert data["pacha"]["metrics"] == {"accuracy": 0.91}
    assert "A tiny test model" in loaded.text and "0.91" in loaded.text
    second = huggingface_hub.ModelCard(ok(run("model", "card", "bert", "-v", "1.1.0")))
    assert second.data.to_dict()["pacha"] == {"metrics": {"f1": 0.5}}
    assert "f1" in second.text


def test_non_finite_metric_never_breaks_get_or_card(run: Run, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    registered = run("model", "register", "m", str(f), "-v", "1.0.0", "--metric", "loss=nan")
    if registered.returncode != 0:
        one_error_line(registered, "loss")
        return
    assert run("model", "get", "m:1.0.0").returncode == 0
    assert run("model", "card", "m:1.0.0").returncode == 0


INVALID_CARDS = [
    ("unknown.yaml", "description: x\naccuracyy: 0.9\n", "accuracyy"),
    ("wrongtype.json", '{"metrics": {"accuracy": "high"}}', "metrics.accuracy"),
    ("wronglist.toml", "limitations = 3\n", "limitations"),
    ("broken.toml", "description = \n", "parse"),
    ("broken.md", "---\nlicense: [mit\n---\nbody\n", "parse"),
    ("card.ini", "[card]\ndescription = x\n", ".ini"),
]


@pytest.mark.parametrize(("filename", "text", "field"), INVALID_CARDS)
def test_invalid_card_exits_1_naming_file_and_field(
    run: Run, registry: Path, tmp_path: Path, filename: str, text: str, field: str
) -> None:
    card = tmp_path / filename
    card.write_text(text)
    f = blob(tmp_path, "m.bin", b"weights")
    before = snapshot(registry)
    result = run("model", "register", "m", str(f), "-v", "1.0.0", "--card", str(card))
    one_error_line(result, str(card), field)
    assert snapshot(registry) == before


def test_card_over_10_mib_exits_1(run: Run, registry: Path, tmp_path: Path) -> None:
    card = tmp_path / "huge.yaml"
    card.write_text("description: " + "x" * (10 << 20) + "\n")
    f = blob(tmp_path, "m.bin", b"weights")
    before = snapshot(registry)
    result = run("model", "register", "m", str(f), "-v", "1.0.0", "--card", str(card))
    one_error_line(result, str(card), "MiB")
    assert snapshot(registry) == before


def test_datasheet_and_purpose(run: Run, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.toml"
    sheet.write_text(
        'purpose = "original"\ncreators = ["ana"]\ninstance_count = 3\n'
        '[[features]]\nname = "text"\ndtype = "string"\n'
    )
    data = blob(tmp_path, "d.csv", b"text\na\nb\nc\n")
    registered = ok(
        run(
            "data",
            "register",
            "squad",
            str(data),
            "-v",
            "1.0.0",
            "--datasheet",
            str(sheet),
            "-p",
            "QA fine-tuning",
            "--json",
        )
    )
    assert registered["kind"] == "dataset"
    assert registered["document"] == {
        "purpose": "QA fine-tuning",
        "creators": ["ana"],
        "instance_count": 3,
        "features": [{"name": "text", "dtype": "string"}],
    }
    quick = ok(
        run("data", "register", "squad", str(data), "--bump", "minor", "-p", "quick", "--json")
    )
    assert (quick["version"], quick["document"]) == ("1.1.0", {"purpose": "quick"})
    assert "QA fine-tuning" in ok(run("data", "get", "squad:1.0.0"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("instance_count: many\n")
    result = run("data", "register", "squad", str(data), "-v", "2.0.0", "--datasheet", str(bad))
    one_error_line(result, str(bad), "instance_count")


def test_human_output_shows_user_text_literally(
    run: Run, api: pacha.Registry, tmp_path: Path
) -> None:
    """Descriptions and tag values are data, not rich markup."""
    api.register_model(
        "m",
        blob(tmp_path, "m.bin", b"m"),
        "1.0.0",
        description="[bold]kept[/bold] [/]",
        tags={"note": "[/]", "style": "[red]x[/red]"},
    )
    listed = run("model", "list", "m")
    assert listed.returncode == 0, listed.stderr
    assert "note=[/]" in listed.stdout and "style=[red]x[/red]" in listed.stdout
    shown = run("model", "get", "m:1.0.0")
    assert shown.returncode == 0, shown.stderr
    assert "[bold]kept[/bold] [/]" in shown.stdout


# ---- 6. directories ----


def test_directory_register_download_dedup(run: Run, tmp_path: Path) -> None:
    src = make_hf_folder(tmp_path / "bert-base")
    registered = ok(run("model", "register", "bert", str(src), "-v", "1.0.0", "--json"))
    assert registered["layout"] == "tree"
    assert registered["file_count"] == sum(1 for p in src.rglob("*") if p.is_file())
    out = tmp_path / "serving" / "models" / "bert"
    ok(run("model", "download", "bert:1.0.0", "-o", str(out)))
    assert tree_listing(out) == tree_listing(src)
    assert (out / "empty").is_dir()
    assert os.access(out / "run.sh", os.X_OK)
    stats = ok(run("stats", "--json"))
    assert stats["logical_bytes"] == registered["size"]
    assert stats["logical_bytes"] > stats["stored_bytes"]
    # The two identical 300,000-byte shards are stored once (the manifest adds a few KiB).
    assert stats["logical_bytes"] - stats["stored_bytes"] > 290_000


@pytest.mark.parametrize("hazard", ["symlink", "fifo"])
def test_directory_with_hazard_exits_1_and_changes_nothing(
    run: Run, api: pacha.Registry, registry: Path, tmp_path: Path, hazard: str
) -> None:
    api.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    src = make_hf_folder(tmp_path / "model")
    if hazard == "symlink":
        outside = tmp_path / "secret.txt"
        outside.write_text("outside the model")
        (src / "onnx" / "escape").symlink_to(outside)
        needles = ["escape", "outside"]
    else:
        os.mkfifo(src / "onnx" / "escape")
        needles = ["escape", "FIFO"]
    stats_before = ok(run("stats", "--json"))
    files_before = object_files(registry)
    one_error_line(run("model", "register", "bert", str(src), "-v", "1.0.0"), *needles)
    assert ok(run("stats", "--json")) == stats_before
    assert object_files(registry) == files_before


# ---- 7. JSON documents and verification ----

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def test_json_documents(run: Run, api: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"weights")
    ok(run("model", "register", "m", str(f), "-v", "1.2.0", "--tag", "team=nlp"))
    api.alias_model("m:1.2.0", "champion")
    api.register_model("m", f, "1.10.0")
    api.register_model("m", f, "1.2.0-rc.1")
    v = ok(run("model", "get", "m@champion", "--json"))
    assert {"name", "version", "stage", "digest", "size", "aliases", "tags", "created_at"} <= set(v)
    assert (v["name"], v["version"], v["stage"]) == ("m", "1.2.0", "development")
    assert HEX64.match(v["digest"])
    assert v["digest"] == pacha.hash_bytes(b"weights")
    assert (v["size"], v["aliases"], v["tags"]) == (7, ["champion"], {"team": "nlp"})
    listed = ok(run("model", "list", "m", "--json"))
    assert isinstance(listed, list)
    assert [x["version"] for x in listed] == ["1.2.0-rc.1", "1.2.0", "1.10.0"]
    stats = ok(run("stats", "--json"))
    keys = {"models", "datasets", "recipes", "runs", "objects", "stored_bytes", "logical_bytes"}
    assert keys <= set(stats)
    assert (stats["models"], stats["datasets"], stats["objects"]) == (1, 0, 1)
    assert (stats["stored_bytes"], stats["logical_bytes"]) == (7, 21)
    verified = ok(run("verify", "--json"))
    assert (verified["ok"], verified["checked"], verified["problems"]) == (True, 1, [])


def test_corruption_fails_verify_and_download(
    run: Run, api: pacha.Registry, registry: Path, tmp_path: Path
) -> None:
    shared = write_pattern(tmp_path / "shared.bin", 50_000, seed=4)
    api.register_model("m", shared, "1.0.0")
    api.register_model("n", shared, "2.0.0")
    api.register_dataset("d", blob(tmp_path, "d.bin", b"intact"), "1.0.0")
    digest = pacha.hash_file(shared)
    corrupt(registry / "objects" / digest[:2] / digest, offset=1234)

    result = run("verify", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["checked"] == 2
    [problem] = report["problems"]
    assert (problem["digest"], problem["kind"]) == (digest, "corrupt")

    human = run("verify")
    assert human.returncode == 1
    assert "m:1.0.0" in human.stdout and "n:2.0.0" in human.stdout

    parent = tmp_path / "out"
    parent.mkdir()
    one_error_line(run("model", "download", "m:1.0.0", "-o", str(parent / "m.bin")))
    assert list(parent.iterdir()) == []
    assert ok(run("verify", "d:1.0.0", "--json"))["ok"] is True

    assert sorted(problem["breaks"]) == ["m:1.0.0", "n:2.0.0"]


# ---- 8. download ----


def test_download_creates_parents_and_never_clobbers_without_force(
    run: Run, api: pacha.Registry, tmp_path: Path
) -> None:
    api.register_model("m", blob(tmp_path, "1", b"version one"), "1.0.0")
    api.register_model("m", blob(tmp_path, "2", b"version two"), "2.0.0")
    out = tmp_path / "a" / "b" / "c" / "model.bin"
    ok(run("model", "download", "m:1.0.0", "-o", str(out)))
    assert out.read_bytes() == b"version one"
    one_error_line(run("model", "download", "m:2.0.0", "-o", str(out)), "--force")
    assert out.read_bytes() == b"version one"
    ok(run("model", "download", "m:2.0.0", "-o", str(out), "--force"))
    assert out.read_bytes() == b"version two"
    assert [p.name for p in out.parent.iterdir()] == ["model.bin"]


# ---- 9. error paths ----


def test_duplicate_version_exits_1_and_changes_nothing(
    run: Run, api: pacha.Registry, registry: Path, tmp_path: Path
) -> None:
    api.register_model("m", blob(tmp_path, "first", b"first"), "1.0.0")
    before = snapshot(registry)
    other = blob(tmp_path, "other", b"other bytes")
    args = ["model", "register", "m", str(other), "-v", "1.0.0", "--tag", "x=y"]
    one_error_line(run(*args), "m:1.0.0")
    assert snapshot(registry) == before


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["model", "get", "ghost:1.0.0"], "ghost"),
        (["model", "get", "m:9.9.9"], "m:9.9.9"),
        (["model", "get", "m@nobody"], "nobody"),
        (["model", "download", "ghost:latest", "-o", "out.bin"], "ghost"),
        (["model", "stage", "m", "-v", "3.0.0", "-t", "staging"], "3.0.0"),
        (["data", "get", "m:1.0.0"], "m"),
    ],
)
def test_unknown_references_exit_1_naming_them(
    run: Run, api: pacha.Registry, tmp_path: Path, args: list[str], named: str
) -> None:
    api.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    one_error_line(run(*args), named)
    assert not (tmp_path / "out.bin").exists()


@pytest.mark.parametrize(
    "name",
    ["a/b", "..", "a\x07b", "a\x1b[31mb", "tab\there", "x" * 256, "é" * 128, ""],
    ids=["slash", "dotdot", "bell", "escape", "tab", "256-bytes", "256-bytes-utf8", "empty"],
)
def test_hostile_names_exit_1_and_store_nothing(
    run: Run, registry: Path, tmp_path: Path, name: str
) -> None:
    f = blob(tmp_path, "m.bin", b"hostile")
    one_error_line(run("model", "register", name, str(f), "-v", "1.0.0"), "name")
    assert object_files(registry) == []
    assert pacha.Registry(registry).stats().versions == 0


def test_dash_name_is_refused_with_and_without_double_dash(
    run: Run, registry: Path, tmp_path: Path
) -> None:
    f = blob(tmp_path, "m.bin", b"hostile")
    one_error_line(run("model", "register", "-v", "1.0.0", "--", "-rf", str(f)), "-rf")
    bare = run("model", "register", "-rf", str(f), "-v", "1.0.0")
    assert bare.returncode in (1, 2), bare.stderr
    assert bare.stderr.strip()
    assert object_files(registry) == []
    assert pacha.Registry(registry).stats().versions == 0


def test_names_are_nfc_normalised(run: Run, tmp_path: Path) -> None:
    decomposed = "Mode\u0300le"
    composed = unicodedata.normalize("NFC", decomposed)
    f = blob(tmp_path, "m.bin", b"m")
    registered = ok(run("model", "register", decomposed, str(f), "-v", "1.0.0", "--json"))
    assert registered["name"] == composed
    one_error_line(run("model", "register", composed, str(f), "-v", "1.0.0"), "1.0.0")
    assert ok(run("model", "get", f"{decomposed}:1.0.0", "--json"))["name"] == composed
    assert [n["name"] for n in ok(run("model", "list", "--json"))] == [composed]


@pytest.mark.parametrize(
    "args",
    [
        ["model", "register", "m"],
        ["model", "download", "m:1.0.0"],
        ["model", "stage", "m:1.0.0"],
        ["model", "get", "m:1.0.0", "--bogus"],
        ["model", "frobnicate"],
        ["model", "register", "m", "FILE"],
        ["model", "register", "m", "FILE", "-v", "1.0.0", "--bump", "patch"],
        ["model", "alias", "m"],
    ],
    ids=[
        "register-no-path",
        "download-no-output",
        "stage-no-target",
        "unknown-option",
        "unknown-command",
        "register-no-version-or-bump",
        "register-version-and-bump",
        "alias-missing-arguments",
    ],
)
def test_usage_errors_exit_2(run: Run, tmp_path: Path, args: list[str]) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    result = run(*[str(f) if a == "FILE" else a for a in args])
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.strip()
