"""Options and helpers shared by the command groups."""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from pathlib import Path

    from pacha.config import RegistryLocation
    from pacha.registry import Registry

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
QuietOption = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar, less output.")]
VersionOption = Annotated[
    Optional[str],
    typer.Option("-v", "--version", metavar="VERSION", help="The version, if REF is a bare name."),
]
TagOption = Annotated[
    Optional[list[str]],
    typer.Option("--tag", metavar="KEY=VALUE", help="A tag; repeat for several."),
]


def registry_location(ctx: typer.Context, *, read_config: bool = False) -> "RegistryLocation":
    """Where the registry lives, from ``--registry``/``--objects``, the environment, the
    config file and the defaults (see `pacha.config`)."""
    from pacha.config import resolve

    given = ctx.find_root().obj or {}
    return resolve(
        given.get("registry"),
        given.get("objects"),
        metadata_source="command line --registry",
        objects_source="command line --objects",
        read_config=read_config,
    )


def registry_directory(ctx: typer.Context, what: str) -> "Path":
    """The registry directory in force, for a command only a registry directory supports
    (`what` names it); one line (`InvalidInputError`) for a shared registry, before
    anything is created."""
    return registry_location(ctx).local_registry(what)


def open_registry(
    ctx: typer.Context, *, read_only: bool = False, create: bool = True
) -> "Registry":
    """The registry in force. Commands that only read pass ``read_only=True`` (they work on a
    read-only registry and never create one at a mistyped path); commands that check or
    clean an existing registry (verify, gc) pass ``create=False``."""
    from pacha.registry import Registry

    return Registry.at(registry_location(ctx), read_only=read_only, create=create)


def parse_pairs(items: Optional[list[str]], what: str) -> dict[str, str]:
    """``["k=v", ...]`` → dict, with a clear error for anything else."""
    from pacha.errors import InvalidInputError

    pairs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"invalid {what} {item!r}: write KEY=VALUE, e.g. team=nlp")
        pairs[key] = value
    return pairs


def text(value: object) -> str:
    """User text for a rich table cell, shown literally: no markup interpretation, and
    control characters (terminal escape sequences, newlines) shown escaped."""
    from rich.markup import escape

    from pacha.cli.output import one_line

    return escape(one_line(str(value)))


# ---- lineage views (`pacha lineage`, `pacha model lineage`, `pacha data provenance`) ----

NodeArgument = Annotated[
    str,
    typer.Argument(
        metavar="REF",
        help="model/NAME:VERSION, dataset/NAME@STAGE, recipe/NAME:VERSION, run/RUN_ID, "
        "or NAME:VERSION when only one kind has it.",
    ),
]
DepthOption = Annotated[
    Optional[int],
    typer.Option("--depth", min=1, metavar="N", help="Go at most N edges away."),
]
KindOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--kind",
        metavar="KIND",
        help="Follow only this relation (fine_tuned, trained_on, ...) or show only this node "
        "kind (model, dataset, recipe, run); repeatable.",
    ),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        metavar="FORMAT",
        help="tree (default), json, dot (Graphviz), mermaid or prov-json (W3C PROV).",
    ),
]


UpOption = Annotated[bool, typer.Option("--up", help="What it came from (ancestors).")]
DownOption = Annotated[bool, typer.Option("--down", help="What was made from it (descendants).")]
BothOption = Annotated[bool, typer.Option("--both", help="Both directions.")]
