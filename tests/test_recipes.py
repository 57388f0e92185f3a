"""Training recipes: TOML round trips, exact types, every validation rule, diff, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pacha

RECIPE = """\
# A hand-written recipe: no id, no timestamp.
name = "bert-finetune"
version = "1.0.0"
description = "Fine-tune BERT on SQuAD"
architecture = "bert-base"
random_seed = 42
deterministic = true
preprocessing = ["lowercase", { name = "truncate", max_length = 384 }]

[hyperparameters]
learning_rate = 3e-5
batch_size = 32
epochs = 3
weight_decay = 0.01
max_grad_norm = 1.0
warmup_steps = 500
hidden_size = 768
use_amp = true
layers = [12, 12]

[hyperparameters.schedule]
decay = "cosine"

[optimizer]
type = "adamw"
betas = [0.9, 0.999]

[scheduler]
type = "linear"

[loss]
type = "cross_entropy"
label_smoothing = 0.1

[data]
train = "squad:1.0.0"
validation = "squad:1.0.0"

[environment]
python = "3.11"
packages = ["torch==2.4.0"]
variables = { CUBLAS_WORKSPACE_CONFIG = ":4096:8" }

[hardware]
cpu_cores = 8
ram_gb = 64.0
gpu_count = 1
gpu_memory_gb = 80.0
gpu_compute_capability = "8.0"
estimated_duration = "3h"
"""


@pytest.fixture
def reg(tmp_path: Path) -> pacha.Registry:
    registry = pacha.Registry(tmp_path / "registry")
    data = tmp_path / "squad.json"
    data.write_text("{}")
    registry.register_dataset("squad", data, "1.0.0")
    return registry


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_round_trip_is_byte_exact_and_types_are_kept(reg: pacha.Registry, tmp_path: Path) -> None:
    text = RECIPE.replace("\n", "\r\n", 3)  # odd line endings must survive too
    recipe = reg.register_recipe(write(tmp_path, "r.toml", text))
    assert recipe.ref == "bert-finetune:1.0.0"
    assert reg.recipe_text("bert-finetune:1.0.0") == text
    hyper = reg.get_recipe("bert-finetune:latest").recipe["hyperparameters"]
    assert hyper["hidden_size"] == 768 and type(hyper["hidden_size"]) is int
    assert type(hyper["learning_rate"]) is float
    assert hyper["use_amp"] is True
    assert hyper["layers"] == [12, 12]
    assert hyper["schedule"] == {"decay": "cosine"}


def test_a_valid_recipe_has_no_errors(reg: pacha.Registry, tmp_path: Path) -> None:
    assert reg.validate_recipe(write(tmp_path, "r.toml", RECIPE)) == []


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            ("learning_rate = 3e-5", "learning_rate = 0"),
            "hyperparameters.learning_rate",
            "greater than 0",
        ),
        (
            ("batch_size = 32", "batch_size = 0"),
            "hyperparameters.batch_size",
            "greater than or equal to 1",
        ),
        (("epochs = 3", "epochs = 0"), "hyperparameters.epochs", "greater than or equal to 1"),
        (("batch_size = 32", 'batch_size = "32"'), "hyperparameters.batch_size", "valid integer"),
        (("epochs = 3", "epochs = 3.0"), "hyperparameters.epochs", "valid integer"),
        (("random_seed = 42\n", ""), "random_seed", "deterministic = true needs a random_seed"),
        (('train = "squad:1.0.0"', 'train = "nope:1.0.0"'), "data.train", "does not exist"),
        (('train = "squad:1.0.0"', 'train = "squad:9.9.9"'), "data.train", "does not exist"),
        (('version = "1.0.0"', 'version = "1.0"'), "version", "MAJOR.MINOR.PATCH"),
        (('name = "bert-finetune"', 'name = "a/b"'), "name", "path separator"),
        (("[optimizer]\ntype", "[optimizer]\nkind"), "optimizer.type", "required key is missing"),
        (("cpu_cores = 8", "cpu_corse = 8"), "hardware.cpu_corse", "did you mean 'cpu_cores'"),
        (
            ('architecture = "bert-base"', 'architectur = "bert-base"'),
            "architectur",
            "did you mean 'architecture'",
        ),
        (
            ("deterministic = true", "deterministic = true\nlearnin_rate = 1"),
            "learnin_rate",
            "hyperparameters.learning_rate",
        ),
        (("gpu_count = 1", "gpu_count = -1"), "hardware.gpu_count", "greater than or equal to 0"),
    ],
)
def test_every_rule_reports_its_key_path(
    reg: pacha.Registry, tmp_path: Path, change: tuple[str, str], path: str, message: str
) -> None:
    assert change[0] in RECIPE
    problems = reg.validate_recipe(
        write(tmp_path, "r.toml", RECIPE.replace(change[0], change[1], 1))
    )
    errors = [p for p in problems if p.severity == "error"]
    assert any(p.path == path and message in p.message for p in errors), problems
    with pytest.raises(pacha.RecipeValidationError) as info:
        reg.register_recipe(tmp_path / "r.toml")
    assert info.value.problems == problems
    assert reg.list_recipes() == []


def test_all_problems_are_reported_at_once(reg: pacha.Registry, tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        "bad.toml",
        'name = "x"\nversion = "1"\n[hyperparameters]\nepochs = 0\nbatch_size = 0\n',
    )
    paths = {p.path for p in reg.validate_recipe(bad) if p.severity == "error"}
    assert paths == {"version", "hyperparameters.epochs", "hyperparameters.batch_size"}


def test_warnings_alone_do_not_block(reg: pacha.Registry, tmp_path: Path) -> None:
    lean = write(tmp_path, "lean.toml", 'name = "lean"\nversion = "0.1.0"\n')
    problems = reg.validate_recipe(lean)
    assert problems and all(p.severity == "warning" for p in problems)
    assert reg.register_recipe(lean).ref == "lean:0.1.0"


def test_malformed_and_huge_files_are_refused(reg: pacha.Registry, tmp_path: Path) -> None:
    with pytest.raises(pacha.InvalidInputError, match="not valid TOML"):
        reg.validate_recipe(write(tmp_path, "broken.toml", "name = \n"))
    huge = write(tmp_path, "huge.toml", 'name = "x"\nversion = "1.0.0"\n' + "# pad\n" * 300_000)
    with pytest.raises(pacha.InvalidInputError, match="under"):
        reg.register_recipe(huge)


def test_duplicate_version_is_refused(reg: pacha.Registry, tmp_path: Path) -> None:
    path = write(tmp_path, "r.toml", RECIPE)
    reg.register_recipe(path)
    with pytest.raises(pacha.AlreadyExistsError):
        reg.register_recipe(path)


def test_diff_shows_changed_settings_and_exact_types(reg: pacha.Registry, tmp_path: Path) -> None:
    reg.register_recipe(write(tmp_path, "a.toml", RECIPE))
    changed = (
        RECIPE.replace('version = "1.0.0"', 'version = "1.1.0"')
        .replace("batch_size = 32", "batch_size = 64")
        .replace("hidden_size = 768", "hidden_size = 768.0")
        .replace('type = "adamw"', 'type = "sgd"')
    )
    reg.register_recipe(write(tmp_path, "b.toml", changed))
    diff = reg.diff_recipes("bert-finetune:1.0.0", "bert-finetune:1.1.0")
    assert [key for key, _, _ in diff] == [
        "hyperparameters.batch_size",
        "hyperparameters.hidden_size",
        "optimizer.type",
    ]
    assert reg.diff_recipes(tmp_path / "a.toml", "bert-finetune:1.0.0") == []


def test_cli_register_validate_get_diff(cli, registry: Path, tmp_path: Path) -> None:
    data = tmp_path / "squad.json"
    data.write_text("{}")
    assert cli("data", "register", "squad", str(data), "-v", "1.0.0").returncode == 0
    path = write(tmp_path, "r.toml", RECIPE)
    assert cli("recipe", "validate", str(path)).returncode == 0
    registered = cli("recipe", "register", str(path), "--json")
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["version"] == "1.0.0"
    assert cli("recipe", "get", "bert-finetune:1.0.0", "--toml").stdout == RECIPE
    assert cli("recipe", "get", "bert-finetune", "-v", "1.0.0", "--toml").stdout == RECIPE
    doc = json.loads(cli("recipe", "get", "bert-finetune:latest", "--json").stdout)
    assert doc["document"]["hyperparameters"]["hidden_size"] == 768
    assert "bert-finetune" in cli("recipe", "list").stdout

    bad = write(tmp_path, "bad.toml", RECIPE.replace("epochs = 3", "epochs = 0"))
    result = cli("recipe", "validate", str(bad))
    assert result.returncode == 1
    assert "hyperparameters.epochs" in result.stderr and "Traceback" not in result.stderr
    assert cli("recipe", "register", str(bad)).returncode == 1
    report = json.loads(cli("recipe", "validate", str(bad), "--json").stdout)
    assert report["ok"] is False

    diff = cli("recipe", "diff", str(path), str(bad), "--json")
    assert json.loads(diff.stdout) == [{"key": "hyperparameters.epochs", "a": 3, "b": 0}]


def test_the_example_recipe_in_the_readme_quick_start_is_valid(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "bert-finetune.toml"
    data = tmp_path / "demo.txt"
    data.write_text("demo")
    reg.register_dataset("demo-data", data, bump="patch")
    assert [p for p in reg.validate_recipe(example) if p.severity == "error"] == []


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('name = 2024-01-01\nversion = "1.0.0"\n', "name"),
        ('name = "d"\nversion = "1.0.0"\ndescription = 1979-05-27T07:32:00Z\n', "description"),
        (
            'name = "d"\nversion = "1.0.0"\n[hyperparameters]\nmax_grad_norm = inf\n',
            "hyperparameters.max_grad_norm",
        ),
        (
            'name = "d"\nversion = "1.0.0"\n[hyperparameters]\ncustom = nan\n',
            "hyperparameters.custom",
        ),
        ('name = "d"\nversion = "1.0.0"\npreprocessing = [5]\n', "preprocessing.0"),
    ],
)
def test_dates_non_finite_numbers_and_bad_steps_are_errors(
    reg: pacha.Registry, tmp_path: Path, text: str, path: str
) -> None:
    problems = [
        p for p in reg.validate_recipe(write(tmp_path, "r.toml", text)) if p.severity == "error"
    ]
    assert [p.path for p in problems] == [path], problems


def test_a_typo_in_a_known_hyperparameter_is_flagged(reg: pacha.Registry, tmp_path: Path) -> None:
    text = 'name = "d"\nversion = "1.0.0"\n[hyperparameters]\nlearnig_rate = -1\n'
    [warning] = [
        p for p in reg.validate_recipe(write(tmp_path, "r.toml", text)) if "learnig" in p.path
    ]
    assert warning.severity == "warning" and "learning_rate" in warning.message


def test_special_and_missing_files_are_refused_clearly(reg: pacha.Registry, tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(pacha.InvalidInputError, match="not a regular file"):
        reg.register_recipe(fifo)
    with pytest.raises(pacha.InvalidInputError, match="not a regular file"):
        reg.register_recipe("/dev/zero")
    with pytest.raises(FileNotFoundError):
        reg.validate_recipe(str(tmp_path / "missing.toml"))
    with pytest.raises(IsADirectoryError):
        reg.validate_recipe(tmp_path)


def test_a_file_never_shadows_a_registered_reference(
    reg: pacha.Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg.register_recipe(write(tmp_path, "r.toml", RECIPE))
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "bert-finetune:1.0.0", RECIPE.replace("epochs = 3", "epochs = 0"))
    assert [p for p in reg.validate_recipe("bert-finetune:1.0.0") if p.severity == "error"] == []


def test_diff_keeps_dotted_keys_empty_tables_and_dates_apart(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    head = 'name = "d"\nversion = "1.0.0"\n'
    a = write(tmp_path, "a.toml", head + '[hyperparameters]\n"x.y" = 1\nwhen = 2024-01-01\n')
    b = write(
        tmp_path,
        "b.toml",
        head
        + '[hyperparameters]\nwhen = "2024-01-01"\n[hyperparameters.x]\ny = 1\n'
        + '[optimizer]\ntype = "sgd"\n[optimizer.extra]\n',
    )
    keys = [key for key, _, _ in reg.diff_recipes(a, b)]
    assert keys == [
        'hyperparameters."x.y"',
        "hyperparameters.when",
        "hyperparameters.x.y",
        "optimizer.extra",
        "optimizer.type",
    ]
