"""``pacha recipe …``: register, validate, show, list and compare training recipes."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from pacha.cli.artifacts import print_names, print_versions
from pacha.cli.options import JsonOption, VersionOption, open_registry, text

app = typer.Typer(
    help=(
        "Training recipes: TOML files with hyperparameters, optimizer, data and environment.\n\n"
        "Examples:\n\n"
        "  pacha recipe validate bert-finetune.toml\n\n"
        "  pacha recipe register bert-finetune.toml\n\n"
        "  pacha recipe get bert-finetune:1.0.0 --toml\n\n"
        "  pacha recipe diff bert-finetune:1.0.0 bert-finetune:1.1.0"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _print_problems(problems: list[Any], source: str) -> None:
    errors = sum(p.severity == "error" for p in problems)
    for p in problems:
        print(str(p), file=sys.stderr)
    warnings = len(problems) - errors
    verdict = "invalid" if errors else "valid"
    print(f"{source}: {verdict} ({errors} error(s), {warnings} warning(s))", file=sys.stderr)


@app.command("register")
def register(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="The recipe's TOML file.")],
    json_out: JsonOption = False,
) -> None:
    """Register a recipe (name and version come from the file); refused if it has errors."""
    from pacha.cli.output import print_json
    from pacha.recipes import RecipeValidationError

    registry = open_registry(ctx)
    try:
        result = registry.register_recipe(path)
    except RecipeValidationError as exc:
        _print_problems(exc.problems, path)
        raise typer.Exit(1) from None
    if json_out:
        print_json(result.to_json())
    else:
        typer.echo(f"registered recipe {result.ref}")


@app.command("validate")
def validate(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(metavar="REF|FILE", help="A file or a registered recipe.")
    ],
    version: VersionOption = None,
    json_out: JsonOption = False,
) -> None:
    """List every problem with its TOML key path; exit 1 if any is an error (warnings alone
    exit 0)."""
    from pacha.cli.output import print_json

    problems = open_registry(ctx, read_only=True).validate_recipe(source, version)
    errors = [p for p in problems if p.severity == "error"]
    if json_out:
        print_json({"ok": not errors, "problems": [p.model_dump() for p in problems]})
    else:
        _print_problems(problems, source)
    if errors:
        raise typer.Exit(1)


@app.command("get")
def get(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", help="NAME:VERSION, NAME:latest, ...")],
    version: VersionOption = None,
    toml: Annotated[bool, typer.Option("--toml", help="The original TOML, byte for byte.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Show a registered recipe (or its original text with --toml)."""
    from pacha.cli.artifacts import print_version_details
    from pacha.cli.output import print_json

    registry = open_registry(ctx, read_only=True)
    if toml and json_out:
        raise typer.BadParameter("--toml and --json are alternatives; give one")
    if toml:
        # Bytes, so that the text comes back exactly as registered on any platform.
        sys.stdout.flush()
        sys.stdout.buffer.write(registry.recipe_text(ref, version).encode("utf-8"))
        return
    record = registry.version_record("recipe", ref, version)
    if json_out:
        print_json(record)
        return
    print_version_details(record)
    recipe = record["document"] or {}
    hyper = recipe.get("hyperparameters") or {}
    if hyper:
        typer.echo("\nhyperparameters: " + ", ".join(f"{k}={v!r}" for k, v in hyper.items()))
    data = recipe.get("data") or {}
    if data:
        typer.echo("data: " + ", ".join(f"{k}={v}" for k, v in data.items()))


@app.command("list")
def list_command(
    ctx: typer.Context,
    name: Annotated[
        Optional[str], typer.Argument(metavar="[NAME]", help="List this recipe's versions.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """List recipe names, or the versions of NAME in precedence order."""
    from pacha.cli.output import print_json

    registry = open_registry(ctx, read_only=True)
    if name is None:
        names = registry.name_records("recipe")
        if json_out:
            print_json(names)
        else:
            print_names(
                names, "no recipes yet; register one with `pacha recipe register FILE.toml`"
            )
        return
    versions = registry.version_records("recipe", name)
    if json_out:
        print_json(versions)
    else:
        print_versions(versions)


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(metavar="REF|FILE", help="The recipe to compare from.")],
    b: Annotated[str, typer.Argument(metavar="REF|FILE", help="The recipe to compare to.")],
    json_out: JsonOption = False,
) -> None:
    """The hyperparameters and settings that differ between two recipes."""
    from pacha.cli.output import print_json, stdout_console

    changes = open_registry(ctx, read_only=True).diff_recipes(a, b)
    if json_out:
        print_json([{"key": k, "a": va, "b": vb} for k, va, vb in changes])
        return
    if not changes:
        typer.echo("no differences (besides name and version)")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("key", no_wrap=True)
    table.add_column(text(a), overflow="fold")
    table.add_column(text(b), overflow="fold")
    for key, va, vb in changes:
        table.add_row(
            text(key), text("—" if va is None else repr(va)), text("—" if vb is None else repr(vb))
        )
    stdout_console().print(table, soft_wrap=True)
