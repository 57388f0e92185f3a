"""The Typer application: global options and the command groups.

Imports of anything heavy (rich, the native core) happen inside commands, and each command
group (`model`, `data`, `lineage`, ...) is imported and built only when it is invoked: Typer
inspects every parameter of every command it builds, which costs about a millisecond per
command, so building the whole tree for each run would make every command slower as the CLI
grows.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from pacha.cli import hashing

#: Command groups built on demand: name → (module, attribute, one-line help for the listing).
LAZY_GROUPS: dict[str, tuple[str, str, str]] = {
    "cache": (
        "pacha.cli.cache",
        "app",
        "The download cache of shared registries: what it holds, and pruning it.",
    ),
    "config": (
        "pacha.cli.config",
        "app",
        "Where the registry lives: each setting, its value and where it came from.",
    ),
    "data": (
        "pacha.cli.artifacts",
        "data_app",
        "Register, find, download, stage, alias and tag datasets.",
    ),
    "lineage": (
        "pacha.cli.lineage",
        "app",
        "Where artifacts came from and what was made from them.",
    ),
    "model": (
        "pacha.cli.artifacts",
        "model_app",
        "Register, find, download, stage, alias and tag models.",
    ),
    "recipe": (
        "pacha.cli.recipes",
        "app",
        "Training recipes: TOML files with hyperparameters, optimizer, data and environment.",
    ),
    "run": (
        "pacha.cli.runs",
        "app",
        "Experiment runs: parameters, metrics per step, artifacts, and the best run.",
    ),
    "store": (
        "pacha.cli.store",
        "app",
        "Add, list, export and verify objects in the content-addressed store.",
    ),
}


class _LazyGroups(TyperGroup):
    """The root command: its own commands plus `LAZY_GROUPS`, each built when invoked."""

    # `ctx` is a click Context; typer vendors click from 0.27, so the class differs by version.
    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_GROUPS})

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in LAZY_GROUPS:
            return super().get_command(ctx, name)
        module, attribute, _ = LAZY_GROUPS[name]
        group = typer.main.get_command(getattr(importlib.import_module(module), attribute))
        group.name = name
        return group

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # The listing in `pacha --help` uses the one-line help above instead of building
        # every group to ask it.
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_GROUPS:
                rows.append((name, LAZY_GROUPS[name][2]))
                continue
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=formatter.width - 20)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_LazyGroups,
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
            metavar="PATH|URL",
            help="The registry: its directory (or file:///PATH), or a team's shared registry's "
            "database, postgresql://USER:PASSWORD@HOST:PORT/DB (with --objects s3://...). "
            "Default: $PACHA_REGISTRY, "
            "else $PACHA_HOME, else registry.metadata in the config file ($PACHA_CONFIG, else "
            "$XDG_CONFIG_HOME/pacha/config.toml, else ~/.config/pacha/config.toml), else "
            "~/.pacha. `pacha config show` shows what is in force.",
        ),
    ] = None,
    objects: Annotated[
        Optional[str],
        typer.Option(
            "--objects",
            metavar="PATH|URL",
            help="Where the registry's bytes live: by default the registry directory's own "
            "store; for a PostgreSQL registry, a bucket, s3://BUCKET/PREFIX (credentials and "
            "endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, "
            "AWS_REGION). "
            "Default: $PACHA_OBJECTS, else registry.objects in the config file, each used only "
            "when the registry comes from the same place or a lower one (a registry given by "
            "--registry brings its own store).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = {"registry": registry, "objects": objects}


@app.command("init")
def init(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create (or open) the registry and print its path.

    Example: pacha --registry ./reg init
    """
    from pacha.cli.options import open_registry
    from pacha.cli.output import print_json

    registry = open_registry(ctx)
    path = registry.location if registry.path is None else registry.path.resolve()
    read_only = registry.read_only_reason
    if json_out:
        print_json({"registry": str(path), "read_only": read_only})
    elif read_only:
        typer.echo(f"registry at {path} (read-only here: {read_only})")
    else:
        typer.echo(f"registry ready at {path}")


@app.command("stats")
def stats(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts of models, datasets, recipes and versions; logical bytes against stored bytes."""
    from pacha.cli.options import open_registry
    from pacha.cli.output import human_size, print_json

    s = open_registry(ctx, read_only=True).stats()
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
    from pacha.cli.options import open_registry
    from pacha.cli.output import human_size, print_json, stdout_console
    from pacha.cli.progress import transfer_progress

    registry = open_registry(ctx, create=False)
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
        kinds = {p.kind for p in result.problems}
        advice = []
        if kinds & {"corrupt", "truncated", "missing", "unreadable"}:
            advice.append(
                "repair damaged or missing bytes with `pacha repair REF --from PATH` (a copy "
                "of what was registered)"
            )
        if "inconsistent" in kinds:
            advice.append("restore registry.db from a backup")
        if "stray" in kinds:
            advice.append("remove the strays named above (pacha never follows or uses them)")
        typer.echo(
            f"checked {result.checked} objects: {len(result.problems)} problem(s); "
            + "; ".join(advice),
            err=True,
        )
    if not result.ok:
        raise typer.Exit(1)


def _duration(text: str) -> float:
    """``30s``, ``15m``, ``2h``, ``1d`` or plain seconds → seconds."""
    from pacha.errors import InvalidInputError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:])
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise InvalidInputError(
            f"invalid duration {text!r}: give seconds or a number with s, m, h or d (e.g. 1d)"
        )
    return seconds


@app.command("gc")
def gc(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be removed.")
    ] = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            metavar="DURATION",
            help="Spare unreferenced objects and temp files younger than this (default 1d; "
            "e.g. 0, 30m, 2h).",
        ),
    ] = "1d",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove objects no version, run artifact or tree references (deleted versions' bytes),
    and temp files of interrupted writes. Safe while other processes register. A shared
    registry (PostgreSQL + S3) collects in two phases: a run marks, a later run removes."""
    from pacha.cli.options import open_registry
    from pacha.cli.output import human_size, print_json

    result = open_registry(ctx, create=False).gc(grace=_duration(grace), dry_run=dry_run)
    if json_out:
        print_json(result.model_dump())
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(
        f"{verb} {result.objects_removed} object(s) ({human_size(result.bytes_freed)}) and "
        f"{result.temp_files_removed} temp file(s) ({human_size(result.temp_bytes_freed)}); "
        f"kept {result.objects_kept} referenced object(s)"
        + (
            f" and {result.young_objects_kept} unreferenced one(s) younger than {grace}"
            if result.young_objects_kept
            else ""
        )
    )
    if result.objects_marked:
        typer.echo(
            f"{'would mark' if dry_run else 'marked'} {result.objects_marked} unreferenced "
            "object(s): a shared registry collects in two phases, so a later `pacha gc` "
            "removes those still unreferenced then"
        )


@app.command("repair")
def repair(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", help="The damaged model or dataset.")],
    source: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="PATH",
            help="A copy of the file or directory that was registered.",
        ),
    ],
    include_vcs: Annotated[
        bool, typer.Option("--include-vcs", help="The version was registered with it.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Repair the stored bytes of a version that `pacha verify` found damaged or missing,
    from a copy of what was registered (its digest must match; metadata is never changed).

    Example: pacha repair bert:1.0.0 --from ./bert-base
    """
    from pacha.cli.options import open_registry
    from pacha.cli.output import print_json
    from pacha.cli.progress import transfer_progress

    registry = open_registry(ctx, create=False)
    with transfer_progress(f"repairing {ref}", quiet=quiet) as progress:
        result = registry.repair(ref, source, include_vcs=include_vcs, progress=progress)
    if json_out:
        print_json({**result.model_dump(), "ok": result.ok})
    elif result.ok:
        fixed = f"repaired {result.damaged} problem(s)" if result.damaged else "nothing to repair"
        typer.echo(f"{result.version}: {fixed}; every byte verified")
    else:
        typer.echo(
            f"{result.version}: {len(result.remaining)} problem(s) remain after the repair: "
            + "; ".join(f"{p.kind} {p.digest or p.path}" for p in result.remaining),
            err=True,
        )
    if not result.ok:
        raise typer.Exit(1)


@app.command("recover")
def recover(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rebuild what the objects still tell in a registry whose database was lost: each
    directory and file becomes a version you can download, recipes get their names back.

    Names, versions, stages, aliases, tags, cards, runs and lineage lived in the database and
    cannot be recovered. Nothing is deleted: the old database file is kept aside.
    """
    from pacha.cli.options import registry_directory
    from pacha.cli.output import human_size, print_json
    from pacha.recover import recover as run_recovery

    report = run_recovery(registry_directory(ctx, "`pacha recover`"))
    if json_out:
        print_json(report.to_json())
        return
    for kept in report.kept_database_files:
        typer.echo(f"kept the old database file as {kept}")
    for entry in report.recovered:
        what = f"{entry['files']} files" if entry["was"] == "directory" else entry["was"]
        typer.echo(
            f"recovered {entry['kind']} {entry['name']}:{entry['version']} "
            f"({what}, {human_size(entry['size'])})"
        )
    typer.echo(
        f"recovered {len(report.recovered)} version(s); not recoverable from objects: "
        f"{report.not_recoverable}",
        err=True,
    )


app.command("hash")(hashing.hash_command)
