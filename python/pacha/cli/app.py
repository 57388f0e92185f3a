"""The Typer application: global options and the command groups.

Imports of anything heavy (rich, the native core) happen inside commands, so that
``pacha --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pacha.cli import hashing, store

app = typer.Typer(
    name="pacha",
    help=(
        "A registry for machine-learning artifacts, with BLAKE3 integrity.\n\n"
        "Examples:\n\n"
        "  pacha hash model.safetensors\n\n"
        "  pacha store add model.safetensors\n\n"
        "  pacha store verify"
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


app.command("hash")(hashing.hash_command)
app.add_typer(store.app, name="store")
