"""Training recipes: human-written TOML, validated with every problem reported at once.

A recipe needs no id and no timestamp from its author: ``name`` and ``version = "1.0.0"``
identify it. The text is stored byte for byte (``pacha recipe get REF --toml`` gives it back
unchanged); the parsed form keeps every value's exact type (``768`` stays an int, ``1e-5`` a
float; dates become ISO 8601 text when stored), because it is the TOML parser's output, not
a model's re-serialisation. The pydantic
schema below is used only to check the recipe.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pacha.errors import InvalidInputError

__all__ = [
    "MAX_RECIPE_BYTES",
    "RecipeProblem",
    "RecipeValidationError",
    "parse_recipe_text",
    "read_recipe_file",
    "recipe_diff",
    "recipe_json",
    "validate_recipe_data",
]

#: Recipe files larger than this are refused (a recipe is a document, not data).
MAX_RECIPE_BYTES = 1 << 20

_STRICT = ConfigDict(strict=True, extra="forbid")
# Sections whose component type is fixed but whose parameters are free-form.
_OPEN = ConfigDict(strict=True, extra="allow")


class Hyperparameters(BaseModel):
    """Known hyperparameters are checked; any other key is kept with its exact type."""

    model_config = _OPEN
    learning_rate: Optional[float] = Field(None, gt=0)
    batch_size: Optional[int] = Field(None, ge=1)
    epochs: Optional[int] = Field(None, ge=1)
    weight_decay: Optional[float] = Field(None, ge=0)
    max_grad_norm: Optional[float] = Field(None, gt=0)
    warmup_steps: Optional[int] = Field(None, ge=0)


class Component(BaseModel):
    """An optimizer, scheduler or loss: a ``type`` plus its parameters."""

    model_config = _OPEN
    type: str = Field(min_length=1)


class Data(BaseModel):
    """Dataset references (``name:version``) that must exist in the registry."""

    model_config = _STRICT
    train: Optional[str] = None
    validation: Optional[str] = None
    test: Optional[str] = None


class Environment(BaseModel):
    model_config = _STRICT
    python: Optional[str] = None
    packages: list[str] = Field(default_factory=list)
    lock_file_digest: Optional[str] = Field(None, pattern=r"^[0-9a-f]{64}$")
    variables: dict[str, str] = Field(default_factory=dict)


class Hardware(BaseModel):
    model_config = _STRICT
    cpu_cores: Optional[int] = Field(None, ge=1)
    ram_gb: Optional[float] = Field(None, gt=0)
    gpu_count: Optional[int] = Field(None, ge=0)
    gpu_memory_gb: Optional[float] = Field(None, gt=0)
    gpu_compute_capability: Optional[str] = None
    estimated_duration: Optional[str] = None


class RecipeSchema(BaseModel):
    model_config = _STRICT
    name: str
    version: str
    description: Optional[str] = None
    architecture: Optional[str] = None
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    optimizer: Optional[Component] = None
    scheduler: Optional[Component] = None
    loss: Optional[Component] = None
    data: Data = Field(default_factory=Data)
    # Items are checked by `_check_steps` (one problem per bad item, at `preprocessing.N`).
    preprocessing: list[Any] = Field(default_factory=list)
    augmentation: list[Any] = Field(default_factory=list)
    environment: Environment = Field(default_factory=Environment)
    hardware: Hardware = Field(default_factory=Hardware)
    random_seed: Optional[int] = Field(None, ge=0)
    deterministic: bool = False


_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): RecipeSchema,
    ("data",): Data,
    ("environment",): Environment,
    ("hardware",): Hardware,
}


class RecipeProblem(BaseModel):
    """One problem, at a TOML key path such as ``hyperparameters.learning_rate``."""

    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path or '(top level)'}: {self.message}"


class RecipeValidationError(InvalidInputError):
    """A recipe with errors; ``problems`` lists every one of them."""

    def __init__(self, source: str, problems: list[RecipeProblem]) -> None:
        errors = [p for p in problems if p.severity == "error"]
        summary = "; ".join(f"{p.path or '(top level)'}: {p.message}" for p in errors)
        super().__init__(f"recipe {source} has {len(errors)} error(s): {summary}")
        self.problems = problems


def _jsonable(value: Any) -> Any:
    """TOML's dates and times as ISO text; everything else unchanged (ints stay ints)."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def parse_recipe_text(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error names the source, line and column."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    from pacha._limits import parse_capped

    try:
        parsed: dict[str, Any] = parse_capped(
            tomllib.loads, text, f"recipe {source}", MAX_RECIPE_BYTES
        )
        return parsed
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"recipe {source} is not valid TOML: {exc}") from None


def read_recipe_file(path: Union[str, os.PathLike[str]]) -> tuple[str, dict[str, Any]]:
    """The text of a recipe file and its parsed form (TOML types, dates included)."""
    from pacha._files import read_regular_file

    path = Path(path)
    # Without blocking (a FIFO), only a regular file, and a bounded amount: /dev/zero or a
    # file that grows after a size check must not exhaust memory.
    data = read_regular_file(path, MAX_RECIPE_BYTES, "recipe")
    if len(data) > MAX_RECIPE_BYTES:
        raise InvalidInputError(
            f"recipe {path} is larger than {MAX_RECIPE_BYTES >> 10} KiB; "
            "a recipe must be under that"
        )
    try:
        # Decoded without newline translation: the stored text must be byte-exact.
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"recipe {path} is not UTF-8 text") from None
    return text, parse_recipe_text(text, str(path))


def recipe_json(data: Mapping[str, Any]) -> str:
    """The stored (JSON) form of a parsed recipe: TOML dates and times become ISO 8601
    text; integers, floats, booleans, strings, arrays and tables keep their types."""
    return json.dumps(_jsonable(dict(data)), allow_nan=False)


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    model = _SECTIONS.get(loc)
    return list(model.model_fields) if model else []


def _problem_from_error(error: Any) -> RecipeProblem:
    loc = tuple(str(part) for part in error["loc"])
    path = ".".join(loc)
    if error["type"] == "extra_forbidden":
        guess = difflib.get_close_matches(loc[-1], _allowed_keys(loc[:-1]), n=1)
        if not guess and not loc[:-1]:
            # A hyperparameter written at the top level: point at its section.
            near = difflib.get_close_matches(loc[-1], list(Hyperparameters.model_fields), n=1)
            guess = [f"hyperparameters.{near[0]}"] if near else []
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        return RecipeProblem(path=path, message=f"unknown key{hint}")
    if error["type"] == "missing":
        return RecipeProblem(path=path, message="required key is missing")
    message = str(error["msg"])
    if "input" in error and error["type"].endswith("_type"):
        message += f" (got {type(error['input']).__name__} {error['input']!r})"
    return RecipeProblem(path=path, message=message)


def validate_recipe_data(
    data: Mapping[str, Any],
    dataset_exists: Optional[Callable[[str], Optional[str]]] = None,
) -> list[RecipeProblem]:
    """Every problem of a parsed recipe: schema, value ranges, names, versions, dataset
    references (``dataset_exists(ref)`` returns None if it exists, else why not) and
    reproducibility. Errors first, then warnings."""
    from pacha import _core

    problems: list[RecipeProblem] = []
    try:
        RecipeSchema.model_validate(dict(data))
    except ValidationError as exc:
        problems.extend(_problem_from_error(e) for e in exc.errors())
    except RecursionError:
        return [RecipeProblem(path="", message="nested too deeply")]
    for key in ("preprocessing", "augmentation"):
        steps = data.get(key)
        if isinstance(steps, list):
            for index, step in enumerate(steps):
                if not isinstance(step, (str, dict)):
                    problems.append(
                        RecipeProblem(
                            path=f"{key}.{index}",
                            message=f"a step is a string or a table, not {type(step).__name__}",
                        )
                    )
    problems.extend(_non_finite(data))
    problems.extend(_near_misses(data))
    for key, check in (("name", _core.validate_name), ("version", _core.parse_version)):
        value = data.get(key)
        if isinstance(value, str):
            try:
                check(value)
            except InvalidInputError as exc:
                problems.append(RecipeProblem(path=key, message=str(exc)))
    if data.get("deterministic") is True and data.get("random_seed") is None:
        problems.append(
            RecipeProblem(path="random_seed", message="deterministic = true needs a random_seed")
        )
    section = data.get("data")
    if dataset_exists is not None and isinstance(section, Mapping):
        for split in ("train", "validation", "test"):
            ref = section.get(split)
            if isinstance(ref, str):
                why = dataset_exists(ref)
                if why:
                    problems.append(RecipeProblem(path=f"data.{split}", message=why))
    if not data.get("description"):
        problems.append(
            RecipeProblem(path="description", message="no description", severity="warning")
        )
    if data.get("random_seed") is None and data.get("deterministic") is not True:
        problems.append(
            RecipeProblem(
                path="random_seed",
                message="no random_seed: runs of this recipe cannot be reproduced exactly",
                severity="warning",
            )
        )
    problems.sort(key=lambda p: (p.severity != "error", p.path))
    return problems


def _non_finite(value: Any, path: str = "") -> list[RecipeProblem]:
    """inf and nan anywhere: they cannot be compared, ranked or stored as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return [RecipeProblem(path=path, message=f"{value} is not a finite number")]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _non_finite(v, _join(path, str(k)))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, _join(path, str(i)))]
    return []


def _near_misses(data: Mapping[str, Any]) -> list[RecipeProblem]:
    """Warnings for free-form keys one typo away from a known one (`learnig_rate`), whose
    range check would otherwise be skipped silently."""
    problems = []
    known: dict[str, type[BaseModel]] = {
        "hyperparameters": Hyperparameters,
        "optimizer": Component,
        "scheduler": Component,
        "loss": Component,
    }
    for section, model in known.items():
        table = data.get(section)
        if not isinstance(table, Mapping):
            continue
        fields = list(model.model_fields)
        for key in table:
            if key in fields:
                continue
            guess = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.8)
            if guess:
                problems.append(
                    RecipeProblem(
                        path=f"{section}.{key}",
                        message=f"not a known key (kept as written); did you mean '{guess[0]}'?",
                        severity="warning",
                    )
                )
    return problems


def _join(prefix: str, key: str) -> str:
    # Keys with dots are quoted, as TOML writes them, so that paths never collide.
    part = json.dumps(key) if "." in key or not key else key
    return f"{prefix}.{part}" if prefix else part


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        if not value and prefix:
            return {prefix: {}}  # an empty table is a setting too
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, _join(prefix, str(key))))
        return out
    return {prefix: value}


def _typed(value: Any) -> str:
    """A comparison key that keeps TOML types apart (768 vs 768.0, a date vs its text)."""
    if isinstance(value, (datetime, date, time)):
        return f"{type(value).__name__}:{value.isoformat()}"
    return f"{type(value).__name__}:{json.dumps(_jsonable(value), sort_keys=True)}"


def recipe_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key path, value in a, value in b)`` for every setting that differs; a missing key
    is None. ``name`` and ``version`` are left out: they always differ."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    keys = sorted((set(flat_a) | set(flat_b)) - {"name", "version"})
    return [
        (key, _jsonable(flat_a.get(key)), _jsonable(flat_b.get(key)))
        for key in keys
        if key not in flat_a or key not in flat_b or _typed(flat_a[key]) != _typed(flat_b[key])
    ]
