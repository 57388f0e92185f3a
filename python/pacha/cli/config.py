"""``pacha config``: where the registry lives, and why."""

from __future__ import annotations

import typer

from pacha.cli.options import JsonOption

app = typer.Typer(
    help=(
        "Where the registry lives: each setting, its value and where it came from.\n\n"
        "Settings come from the command line (--registry, --objects), else the environment "
        "(PACHA_REGISTRY, else PACHA_HOME; PACHA_OBJECTS), else the config file "
        "($PACHA_CONFIG, else $XDG_CONFIG_HOME/pacha/config.toml, else "
        "~/.config/pacha/config.toml: a [registry] table with metadata and objects), else "
        "the default (~/.pacha and its own store).\n\n"
        "Examples:\n\n"
        "  pacha config show\n\n"
        "  pacha --registry ./reg config show --json"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.callback()
def _group() -> None:
    # A callback keeps `config` a group while `show` is its only command.
    pass


@app.command("show")
def show(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Each setting (metadata, objects), its value (secrets shown as ***) and its source,
    and the config file that was looked at. Opens nothing and creates nothing."""
    from pacha.cli.options import registry_location
    from pacha.cli.output import print_columns, print_json

    location = registry_location(ctx, read_config=True)
    if json_out:
        print_json(location.to_json())
        return
    rows = [
        [setting.name, setting.shown if setting.kind != "none" else "-", setting.source]
        for setting in (location.metadata, location.objects)
    ]
    print_columns(["setting", "value", "source"], rows)
    config = location.config
    state = "found" if config.exists else "not found"
    chosen = "" if config.source == "default" else f", chosen by {config.source}"
    typer.echo(f"config file: {config.path} ({state}{chosen})")
    problem = location.problem()
    if problem is not None:
        typer.echo(f"note: {problem}")
