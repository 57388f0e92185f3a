"""Reading model cards and datasheets from files, and writing cards as Markdown.

Accepted inputs: TOML, YAML, JSON, or (for model cards) a Markdown file with YAML front
matter in the Hugging Face style, whose body becomes the description. Output: a Markdown
model card with YAML front matter that ``huggingface_hub.ModelCard`` loads.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from pacha._files import read_regular_file
from pacha.errors import InvalidInputError
from pacha.models import ModelCard

__all__ = ["MAX_DOCUMENT_BYTES", "load_document", "render_model_card"]

#: Card and datasheet files larger than this are refused (they are documents, not data).
MAX_DOCUMENT_BYTES = 10 << 20

T = TypeVar("T", bound=BaseModel)


def _parse_text(path: Path, text: str, what: str) -> Any:
    """Parse a document by its extension, within the caps of `pacha._limits`."""
    from pacha._limits import parse_capped

    return parse_capped(
        lambda t: _parse_by_suffix(path, t), text, f"{what} {path}", MAX_DOCUMENT_BYTES
    )


def _parse_by_suffix(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised on Python < 3.11 only
            import tomli as tomllib
        return tomllib.loads(text)
    if suffix in (".yaml", ".yml"):
        return _safe_yaml(text)
    if suffix == ".json":
        return json.loads(text)
    if suffix in (".md", ".markdown"):
        return _parse_front_matter(text)
    raise InvalidInputError(
        f"{path}: unknown document format {suffix or '(no extension)'!r}; "
        "use .toml, .yaml, .json or .md (Markdown with YAML front matter)"
    )


def _safe_yaml(text: str) -> Any:
    """YAML without anchors and aliases: a few hundred bytes of nested aliases expand to
    gigabytes (the "billion laughs"), and cards have no need for them."""
    import yaml

    # libyaml's loader when the wheel has it: the same rules, many times faster.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            raise ValueError("YAML aliases (*name) are not accepted in cards; write values out")
    return yaml.load(text, Loader=loader)


#: Keys of Hugging Face model-card metadata and where they go in a pacha model card.
_HF_KEYS = {"license": "license", "base_model": "parent_model"}


def _card_from_front_matter(header: dict[str, Any]) -> dict[str, Any]:
    """Hugging Face front matter → model card fields; unknown keys go to `extra`."""
    if isinstance(header.get("pacha"), dict):
        # A card printed by `pacha model card`: its own fields are under `pacha`.
        return dict(header["pacha"])
    card: dict[str, Any] = {}
    extra: dict[str, Any] = dict(header.get("extra") or {})
    for key, value in header.items():
        if key == "extra":
            continue
        target = _HF_KEYS.get(key, key)
        if target in ModelCard.model_fields and not (key == "metrics" and isinstance(value, list)):
            card[target] = value
        else:
            extra[key] = value
    if extra:
        card["extra"] = extra
    return card


def _parse_front_matter(text: str) -> dict[str, Any]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {"description": text.strip()} if text.strip() else {}
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            header = _safe_yaml("".join(lines[1:end])) or {}
            if not isinstance(header, dict):
                raise ValueError("the front matter is not a mapping")
            card = _card_from_front_matter(header)
            body = "".join(lines[end + 1 :]).strip()
            if body and "description" not in card:
                card["description"] = body
            return card
    raise ValueError("the front matter has no closing '---' line")


def load_document(path: Union[str, os.PathLike[str]], model: type[T]) -> T:
    """Read and validate a card or datasheet file; errors name the file and the field."""
    path = Path(path)
    what = "model card" if model is ModelCard else "datasheet"
    try:
        raw = read_regular_file(path, MAX_DOCUMENT_BYTES, what)
    except InvalidInputError:
        raise
    except OSError as exc:
        raise InvalidInputError(f"{what} {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InvalidInputError(
            f"{what} {path} is larger than {MAX_DOCUMENT_BYTES >> 20} MiB; a {what} must be "
            "under that — link large material from it instead"
        )
    try:
        text = raw.decode("utf-8")
        data = _parse_text(path, text, what)
    except InvalidInputError:
        raise
    except RecursionError:
        raise InvalidInputError(f"{what} {path}: nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} {path}: not UTF-8 text") from None
    except Exception as exc:  # parsers raise their own types; all mean "malformed"
        message = " ".join(str(exc).split())
        raise InvalidInputError(f"{what} {path}: cannot be parsed: {message}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what} {path}: expected a table/mapping at the top level")
    try:
        document = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"{what} {path}: {describe_validation_error(exc)}") from None
    except RecursionError:
        raise InvalidInputError(f"{what} {path}: nested too deeply") from None
    try:
        encoded = document.model_dump_json()
    except (RecursionError, PydanticSerializationError):
        # pydantic's serializer stops at a fixed depth (about 255 levels).
        raise InvalidInputError(f"{what} {path}: nested too deeply") from None
    if len(encoded) > MAX_DOCUMENT_BYTES:
        raise InvalidInputError(
            f"{what} {path} expands to more than {MAX_DOCUMENT_BYTES >> 20} MiB; "
            "link large material from it instead"
        )
    return document


def describe_validation_error(exc: ValidationError) -> str:
    """One line listing each invalid field and what was expected."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field (put free-form data under 'extra')"
        parts.append(f"field '{field}': {message}")
    return "; ".join(parts)


def render_model_card(card: ModelCard, name: str, version: str) -> str:
    """A Markdown model card with YAML front matter (Hugging Face style)."""
    import yaml

    front: dict[str, Any] = {}
    if card.license:
        front["license"] = card.license
    front["model_name"] = name
    front["model_version"] = version
    if card.parent_model:
        front["base_model"] = card.parent_model
    if card.metrics:
        front["metrics"] = sorted(card.metrics)
    data = card.model_dump(mode="json", exclude_defaults=True)
    front["pacha"] = data
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {name} {version}", ""]
    if card.description:
        lines += [card.description, ""]

    def section(title: str, body: Union[str, list[str], None]) -> None:
        if not body:
            return
        lines.extend([f"## {title}", ""])
        if isinstance(body, list):
            lines.extend(f"- {item}" for item in body)
        else:
            lines.append(body)
        lines.append("")

    section("Intended uses", card.primary_uses)
    section("Out-of-scope uses", card.out_of_scope_uses)
    section("Training data", card.training_data)
    section("Training recipe", card.training_recipe)
    if card.training_date or card.training_duration:
        when = ", ".join(
            p
            for p in (
                f"date: {card.training_date}" if card.training_date else "",
                f"duration: {card.training_duration}" if card.training_duration else "",
            )
            if p
        )
        section("Training", when)
    section("Evaluation data", card.evaluation_data)
    if card.metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:g} |" for k, v in sorted(card.metrics.items())]
        lines.append("")
    section("Limitations", card.limitations)
    section("Ethical considerations", card.ethical_considerations)
    if card.parent_model or card.derived_from:
        section(
            "Lineage",
            [
                *([f"parent: {card.parent_model}"] if card.parent_model else []),
                *(f"derived from: {d}" for d in card.derived_from),
            ],
        )
    return "\n".join(lines).rstrip() + "\n"
