"""``pacha store``: the content-addressed object store itself (plumbing under the registry)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from pacha._core import ObjectStore, VerifyReport

app = typer.Typer(
    help=(
        "Add, list, export and verify objects in the content-addressed store.\n\n"
        "Examples:\n\n"
        "  pacha store add weights.safetensors\n\n"
        "  pacha store get 7def51af... -o restored.safetensors\n\n"
        "  pacha store verify --json"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
QuietOption = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar, less output.")]


def _store(ctx: typer.Context, *, read_only: bool = False, create: bool = True) -> ObjectStore:
    from pacha.cli.options import open_registry

    return open_registry(ctx, read_only=read_only, create=create).store


@app.command("add")
def add(
    ctx: typer.Context,
    files: Annotated[list[str], typer.Argument(metavar="FILE...", help="Files to store.")],
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Store each FILE (read once, hashed while copied, fsync'd); print its digest.

    Content already in the store is not written again. Stops at the first failure; what was
    stored before it stays stored.
    """
    from pacha.cli.output import human_size, print_json, stdout_console
    from pacha.cli.progress import transfer_progress

    store = _store(ctx)
    rows: list[dict[str, Any]] = []
    for name in files:
        with transfer_progress(f"storing {name}", quiet=quiet) as progress:
            outcome = store.put_file(name, progress)
        rows.append(
            {
                "path": name,
                "digest": outcome.digest,
                "size": outcome.size,
                "written": outcome.written,
            }
        )
    if json_out:
        print_json(rows)
        return
    if quiet:
        for row in rows:
            typer.echo(f"{row['digest']}  {row['path']}")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("digest", no_wrap=True, min_width=64)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("path", overflow="fold")
    for row in rows:
        status = "stored" if row["written"] else "already present"
        table.add_row(row["digest"], human_size(int(row["size"])), status, escape(str(row["path"])))
    stdout_console().print(table, soft_wrap=True)


@app.command("list")
def list_objects(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List every object in the store with its size."""
    from pacha.cli.output import human_size, print_json, stdout_console

    objects = _store(ctx, read_only=True).list()
    if json_out:
        print_json([{"digest": o.digest, "size": o.size} for o in objects])
        return
    from rich.table import Table

    total = sum(o.size for o in objects)
    table = Table(box=None, pad_edge=False, show_footer=True)
    table.add_column("digest", footer=f"{len(objects)} objects", no_wrap=True, min_width=64)
    table.add_column("size", justify="right", footer=human_size(total))
    for o in objects:
        table.add_row(o.digest, human_size(o.size))
    stdout_console().print(table, soft_wrap=True)


@app.command("get")
def get(
    ctx: typer.Context,
    digest: Annotated[str, typer.Argument(help="The object's 64-hex BLAKE3 digest.")],
    output: Annotated[
        str, typer.Option("-o", "--output", metavar="PATH", help="Where to write the bytes.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Write an object to PATH, verifying every byte on the way.

    Corrupt bytes are refused and no partial file is left; PATH's parent directories are
    created; an existing PATH is kept unless --force is given.
    """
    from pacha.cli.output import human_size

    store = _store(ctx, read_only=True)
    from pacha.cli.progress import transfer_progress

    with transfer_progress(f"writing {output}", quiet=quiet) as progress:
        written = store.export(digest, output, force, progress)
    if not quiet:
        typer.echo(f"wrote {human_size(written)} to {output} (BLAKE3 verified)", err=True)


@app.command("verify")
def verify(
    ctx: typer.Context,
    digests: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="[DIGEST...]", help="Objects to check (default: all)."),
    ] = None,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Re-hash objects and report every corrupt, missing or stray one; exit 1 if any."""
    from pacha.cli.output import print_json
    from pacha.cli.progress import transfer_progress

    store = _store(ctx, create=False)
    with transfer_progress("verifying", quiet=quiet) as progress:
        if digests:
            report = store.verify([(d, None) for d in digests], progress)
        else:
            report = store.verify_all(progress)
    if json_out:
        print_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "bytes": report.bytes,
                "problems": [
                    {"digest": p.digest, "kind": p.kind, "path": p.path, "detail": p.detail}
                    for p in report.problems
                ],
            }
        )
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: VerifyReport) -> None:
    from pacha.cli.output import human_size, stderr_console, stdout_console

    summary = f"checked {report.checked} objects ({human_size(report.bytes)})"
    if report.ok:
        typer.echo(f"{summary}: all intact")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("problem", no_wrap=True)
    table.add_column("object", no_wrap=True, min_width=64)
    table.add_column("detail", overflow="fold")
    for p in report.problems:
        table.add_row(p.kind, escape(p.digest or p.path), escape(p.detail))
    stdout_console().print(table, soft_wrap=True)
    stderr_console().print(f"{summary}: {len(report.problems)} problem(s) found", highlight=False)
    sys.stdout.flush()
