"""The Typer application: global options and the command groups.

Imports of anything heavy (rich, the native core) happen inside commands, so that
``pacha --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pacha.cli import artifacts, hashing, lineage, recipes, runs, store

app = typer.Typer(
    name="pacha",
    help=(
        "A registry for machine-learning artifacts, with BLAKE3 integrity.\n\n"
        "Examples:\n\n"
        "  pacha model register bert ./bert-base -v 1.0.0 --metric accuracy=0.91\n\n"
        "  pacha model stage bert:1.0.0 -t staging\n\n"
        "  pacha data register squad ./squad --bump minor -p 'QA fine-tuning'\n\n"
        "  pacha model download bert@production -o ./serving/bert\n\n"
        "  pacha verify"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from pacha import __version__

        typer.echo(f"pacha {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    registry: Annotated[
        Optional[str],
        typer.Option(
            "--registry",
            metavar="PATH",
            help="Registry directory (default: $PACHA_HOME, else ~/.pacha).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = {"registry": registry}


@app.command("init")
def init(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create (or open) the registry and print its path.

    Example: pacha --registry ./reg init
    """
    from pacha.cli.output import print_json
    from pacha.home import open_store, registry_path

    path = registry_path(ctx.obj["registry"])
    open_store(path)
    if json_out:
        print_json({"registry": str(path.resolve())})
    else:
        typer.echo(f"registry ready at {path.resolve()}")


@app.command("stats")
def stats(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts of models, datasets, recipes and versions; logical bytes against stored bytes."""
    from pacha.cli.artifacts import open_registry
    from pacha.cli.output import human_size, print_json

    s = open_registry(ctx).stats()
    if json_out:
        print_json(s.model_dump())
        return
    ratio = f"{s.dedup_ratio:.2f}x" if s.dedup_ratio else "—"
    typer.echo(
        f"models {s.models}, datasets {s.datasets}, recipes {s.recipes}, runs {s.runs}, "
        f"versions {s.versions}\n"
        f"objects {s.objects}: {human_size(s.logical_bytes)} logical, "
        f"{human_size(s.stored_bytes)} stored (dedup {ratio})"
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    refs: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="[REF...]", help="Versions to check (default: every version)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Re-hash every object the registry's versions need; report each problem with the
    versions it breaks. Exit 1 if anything is wrong."""
    from pacha.cli.artifacts import open_registry
    from pacha.cli.output import human_size, print_json, stdout_console
    from pacha.cli.progress import transfer_progress

    registry = open_registry(ctx)
    with transfer_progress("verifying", quiet=quiet) as progress:
        result = registry.verify(refs or None, progress=progress)
    if json_out:
        print_json(result.model_dump())
    elif result.ok:
        typer.echo(f"checked {result.checked} objects ({human_size(result.bytes)}): all intact")
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        table.add_column("problem", no_wrap=True)
        table.add_column("object", no_wrap=True, min_width=64)
        table.add_column("breaks", overflow="fold")
        table.add_column("detail", overflow="fold")
        from rich.markup import escape

        for p in result.problems:
            table.add_row(
                p.kind, escape(p.digest or p.path), escape(", ".join(p.breaks)), escape(p.detail)
            )
        stdout_console().print(table, soft_wrap=True)
        typer.echo(
            f"checked {result.checked} objects: {len(result.problems)} problem(s); re-register "
            "the original files to repair them",
            err=True,
        )
    if not result.ok:
        raise typer.Exit(1)


app.add_typer(artifacts.make_group("model"), name="model")
app.add_typer(artifacts.make_group("dataset"), name="data")
app.add_typer(recipes.app, name="recipe")
app.add_typer(runs.app, name="run")
app.add_typer(lineage.app, name="lineage")
app.command("hash")(hashing.hash_command)
app.add_typer(store.app, name="store")
