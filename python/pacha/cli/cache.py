"""``pacha cache``: the download cache of shared registries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pacha.cli.options import JsonOption

if TYPE_CHECKING:
    from pacha.cache import CacheInfo

app = typer.Typer(
    help=(
        "The download cache of shared registries (PostgreSQL + S3): every downloaded object, "
        "keyed by its BLAKE3 digest, so that downloading the same bytes again moves nothing "
        "over the network. It lives in $PACHA_CACHE, else $XDG_CACHE_HOME/pacha, else "
        "~/.cache/pacha, and holds only verified copies: pruning it loses nothing.\n\n"
        "Examples:\n\n"
        "  pacha cache info\n\n"
        "  pacha cache prune --max-size 50G\n\n"
        "  pacha cache clear"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _report(info: CacheInfo, json_out: bool, verb: str) -> None:
    from pacha.cli.output import human_size, print_json

    if json_out:
        print_json(info.model_dump(mode="json"))
        return
    if verb:
        done = f"would {verb}" if info.dry_run else f"{verb}d"
        typer.echo(f"{done} {info.removed} object(s) ({human_size(info.freed)})")
    typer.echo(f"{info.path}: {info.objects} object(s), {human_size(info.bytes)}")


@app.command("info")
def info(json_out: JsonOption = False) -> None:
    """Where the cache is and what it holds. Creates nothing."""
    from pacha.cache import cache_info

    _report(cache_info(), json_out, "")


@app.command("prune")
def prune(
    max_size: Annotated[
        str,
        typer.Option(
            "--max-size",
            metavar="SIZE",
            help="Keep at most this much (e.g. 500M, 20G; K, M, G, T are powers of 1024), "
            "removing the least recently used copies first.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be removed.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Remove the least recently used copies until the cache holds at most --max-size.
    Safe while other processes download: one that needs a removed copy fetches it again."""
    from pacha.cache import prune_cache

    _report(prune_cache(max_size, dry_run=dry_run), json_out, "remove")


@app.command("clear")
def clear(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be removed.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Remove every cached copy (the next download of each fetches it again)."""
    from pacha.cache import prune_cache

    _report(prune_cache(0, dry_run=dry_run), json_out, "remove")
