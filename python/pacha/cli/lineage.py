"""``pacha lineage …``: show, add and analyse lineage.

``pacha lineage REF`` shows a node's lineage (the ``show`` subcommand is implied);
``pacha lineage add``, ``impact`` and ``path`` are the other subcommands. The same view
backs ``pacha model lineage`` and ``pacha data provenance``.
"""

# No `from __future__ import annotations`: Typer reads the annotations at run time.
import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from pacha.cli.options import (
    BothOption,
    DepthOption,
    DownOption,
    FormatOption,
    JsonOption,
    KindOption,
    NodeArgument,
    UpOption,
    open_registry,
    parse_pairs,
    text,
)

if TYPE_CHECKING:
    from pacha.lineage import Lineage

FORMATS = ("tree", "json", "dot", "mermaid", "prov-json")
NODE_KINDS = ("model", "dataset", "data", "recipe", "run")


class _ShowByDefault(TyperGroup):
    """`pacha lineage REF ...` means `pacha lineage show REF ...`."""

    # `ctx` is a click Context; typer vendors click from 0.27, so the class differs by version.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ShowByDefault,
    help=(
        "Where artifacts came from and what was made from them.\n\n"
        "Examples:\n\n"
        "  pacha lineage model/bert-int8:1.0.0 --up\n\n"
        "  pacha lineage dataset/imdb:1.0.0 --down --format dot | dot -Tsvg > lineage.svg\n\n"
        "  pacha lineage impact dataset/imdb:1.0.0\n\n"
        "  pacha lineage add model/bert-int8:1.0.0 model/bert:1.0.0 --relation quantized "
        "--param method=int8"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def split_kinds(kinds: Optional[list[str]]) -> tuple[list[str], list[str]]:
    """``--kind`` values → (relations, node kinds)."""
    from pacha.errors import InvalidInputError
    from pacha.lineage import RELATIONS

    relations: list[str] = []
    node_kinds: list[str] = []
    for kind in kinds or []:
        value = kind.strip().lower().replace("-", "_")
        if value in RELATIONS:
            relations.append(value)
        elif value in NODE_KINDS:
            node_kinds.append(value)
        else:
            raise InvalidInputError(
                f"unknown --kind {kind!r}: give a relation ({', '.join(RELATIONS)}) or a node "
                f"kind (model, dataset, recipe, run)"
            )
    return relations, node_kinds


def direction_of(up: bool, down: bool, both: bool, default: str) -> str:
    chosen = [name for name, flag in (("up", up), ("down", down), ("both", both)) if flag]
    if len(chosen) > 1:
        raise typer.BadParameter("give one of --up, --down and --both")
    return chosen[0] if chosen else default


def render(result: "Lineage", fmt: str) -> None:
    """Print a lineage result in the chosen format."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise typer.BadParameter(f"unknown format {fmt!r}: expected {', '.join(FORMATS)}")
    if fmt == "json":
        sys.stdout.write(result.to_json())
        sys.stdout.write("\n")
    elif fmt == "dot":
        sys.stdout.write(result.to_dot())
    elif fmt == "mermaid":
        sys.stdout.write(result.to_mermaid())
    elif fmt == "prov-json":
        sys.stdout.write(result.to_prov_json() + "\n")
    else:
        from pacha.cli.output import stdout_console

        console = stdout_console()
        console.print(result.tree(), soft_wrap=True)
        if len(result) == 1:
            console.print("[dim]no lineage recorded in this direction[/]")


def show_lineage(
    ctx: typer.Context,
    node: str,
    direction: str,
    depth: Optional[int],
    kinds: Optional[list[str]],
    fmt: str,
    json_out: bool,
) -> None:
    relations, node_kinds = split_kinds(kinds)
    result = open_registry(ctx, read_only=True).lineage(
        node, direction, depth=depth, relations=relations, kinds=node_kinds
    )
    render(result, "json" if json_out else fmt)


@app.command("show")
def show(
    ctx: typer.Context,
    node: NodeArgument,
    up: UpOption = False,
    down: DownOption = False,
    both: BothOption = False,
    depth: DepthOption = None,
    kind: KindOption = None,
    fmt: FormatOption = "tree",
    json_out: JsonOption = False,
) -> None:
    """Show a node's lineage: ancestors (--up), descendants (--down) or both (default)."""
    show_lineage(ctx, node, direction_of(up, down, both, "both"), depth, kind, fmt, json_out)


@app.command("add")
def add(
    ctx: typer.Context,
    from_node: Annotated[str, typer.Argument(metavar="FROM", help="The derived node.")],
    to_node: Annotated[str, typer.Argument(metavar="TO", help="What FROM was made from.")],
    relation: Annotated[
        str,
        typer.Option(
            "--relation",
            "-r",
            metavar="KIND",
            help="fine_tuned, distilled, merged, quantized, pruned, trained_on, evaluated_on, "
            "trained_with, produced_by, used, executed or derived_from.",
        ),
    ],
    param: Annotated[
        Optional[list[str]],
        typer.Option("--param", metavar="KEY=VALUE", help="An edge parameter; repeatable."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Record that FROM was made from TO (both must exist; cycles are refused)."""
    from pacha.cli.output import print_json

    registry = open_registry(ctx, create=False)
    params = parse_pairs(param, "parameter")
    added = registry.add_edge(from_node, to_node, relation, params)
    if json_out:
        edge = {"from": from_node, "to": to_node, "relation": relation, "params": params}
        print_json({**edge, "added": added})
    elif added:
        typer.echo(f"recorded {from_node} --{relation}--> {to_node}")
    else:
        typer.echo(f"{from_node} --{relation}--> {to_node} was already recorded")


@app.command("impact")
def impact(ctx: typer.Context, node: NodeArgument, json_out: JsonOption = False) -> None:
    """Every model downstream of REF that still exists, by stage (production first)."""
    from pacha.cli.output import print_json, stdout_console

    entries = open_registry(ctx, read_only=True).impact(node)
    if json_out:
        print_json(
            [
                {
                    "model": e.model.ref,
                    "stage": e.model.stage.value,
                    "depth": e.depth,
                    "aliases": e.model.aliases,
                }
                for e in entries
            ]
        )
        return
    if not entries:
        typer.echo(f"no model was made from {node}")
        return
    from rich.table import Table

    from pacha.cli.artifacts import _stage_style

    table = Table(box=None, pad_edge=False)
    for column in ("stage", "model", "aliases", "depth"):
        table.add_column(column, no_wrap=True)
    for e in entries:
        stage = e.model.stage.value
        style = _stage_style(stage)
        table.add_row(
            f"[{style}]{stage}[/]" if style else stage,
            text(e.model.ref),
            text(", ".join(e.model.aliases)),
            str(e.depth),
        )
    stdout_console().print(table, soft_wrap=True)
    production = sum(1 for e in entries if e.model.stage.value == "production")
    typer.echo(f"{len(entries)} model version(s) downstream of {node}, {production} in production")


@app.command("path")
def path(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(metavar="A")],
    b: Annotated[str, typer.Argument(metavar="B")],
    fmt: FormatOption = "tree",
    json_out: JsonOption = False,
) -> None:
    """The chain of edges between A and B, whichever came from the other."""
    result = open_registry(ctx, read_only=True).lineage_path(a, b)
    if json_out or fmt != "tree":
        render(result, "json" if json_out else fmt)
        return
    edges = {(e.from_, e.to): e for e in result.edges}
    ids = result.ids
    parts = [ids[0]]
    for first, second in zip(ids, ids[1:]):
        edge = edges.get((first, second)) or edges.get((second, first))
        arrow = "←" if (first, second) in edges else "→"
        parts.append(f"{arrow}{edge.relation if edge else '?'}{arrow} {second}")
    typer.echo(" ".join(parts))
