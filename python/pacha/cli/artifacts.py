"""``pacha model …`` and ``pacha data …``: one command set, built once per kind.

Every command is a thin wrapper over `pacha.Registry`; anything the CLI does, the API does.
References: NAME:VERSION, NAME:latest, NAME@STAGE, NAME@ALIAS, or NAME -v VERSION.
"""

# No `from __future__ import annotations` here: Typer evaluates the option annotations at
# run time, and several depend on `kind`, a variable of `make_group`.
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from pacha.cli.options import (
    JsonOption,
    QuietOption,
    TagOption,
    VersionOption,
    open_registry,
    parse_pairs,
    text,
)

if TYPE_CHECKING:
    from pacha.models import ArtifactVersion


def parse_metrics(items: Optional[list[str]]) -> dict[str, float]:
    import math

    from pacha.errors import InvalidInputError

    metrics = {}
    for key, value in parse_pairs(items, "metric").items():
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InvalidInputError(
                f"invalid metric {key}={value!r}: the value must be a finite number, "
                "e.g. accuracy=0.93"
            )
        metrics[key] = number
    return metrics


def _stage_style(stage: str) -> str:
    return {"production": "bold green", "staging": "yellow", "archived": "dim"}.get(stage, "")


def _when(timestamp: str) -> str:
    """``2026-11-26T15:49:30.705Z`` → ``2026-11-26 15:49`` for tables."""
    return timestamp[:16].replace("T", " ")


def print_names(names: list[dict[str, Any]], empty_hint: str) -> None:
    """A table of names with their version counts and latest release."""
    from pacha.cli.output import print_columns

    if not names:
        typer.echo(empty_hint)
        return
    print_columns(
        ("name", "versions", "latest"),
        [(n["name"], str(n["versions"]), n["latest"] or "—") for n in names],
    )


def print_versions(versions: list[dict[str, Any]]) -> None:
    """A table of version records (see `pacha.records`)."""
    from pacha.cli.output import human_size, print_columns

    print_columns(
        ("name", "version", "stage", "size", "aliases", "tags", "created"),
        [
            (
                v["name"],
                v["version"],
                v["stage"],
                human_size(v["size"]),
                ", ".join(v["aliases"]),
                ", ".join(f"{k}={val}" for k, val in v["tags"].items()),
                _when(v["created_at"]),
            )
            for v in versions
        ],
        right={"size"},
        styles={(i, 2): _stage_style(v["stage"]) for i, v in enumerate(versions)},
    )


def print_version_details(v: dict[str, Any]) -> None:
    """One version record with its history (see `pacha.records`)."""
    from rich.table import Table

    from pacha.cli.output import human_size, stdout_console

    console = stdout_console()
    details = Table(box=None, show_header=False, pad_edge=False)
    details.add_column(style="bold")
    details.add_column(overflow="fold")
    layout = "file" if v["layout"] == "file" else f"directory of {v['file_count']} files"
    rows: list[tuple[str, str]] = [
        ("name", v["name"]),
        ("version", v["version"]),
        ("stage", v["stage"]),
        ("digest", v["digest"]),
        ("size", f"{human_size(v['size'])} ({v['size']} bytes)"),
        ("layout", layout),
        ("created", f"{v['created_at']} by {v['created_by']}"),
    ]
    if v["description"]:
        rows.append(("description", v["description"]))
    if v["aliases"]:
        rows.append(("aliases", ", ".join(v["aliases"])))
    if v["tags"]:
        rows.append(("tags", ", ".join(f"{k}={val}" for k, val in v["tags"].items())))
    document = v["document"] or {}
    if document.get("metrics"):
        rows.append(("metrics", ", ".join(f"{k}={val}" for k, val in document["metrics"].items())))
    if document.get("purpose"):
        rows.append(("purpose", str(document["purpose"])))
    for key, value in rows:
        details.add_row(key, text(value))
    console.print(details, soft_wrap=True)
    if v["history"]:
        history = Table(title="stage history", title_justify="left", box=None, pad_edge=False)
        for column in ("from", "to", "when", "who"):
            history.add_column(column)
        for t in v["history"]:
            history.add_row(t["from_stage"] or "—", t["to_stage"], t["at"], text(t["by"]))
        console.print()
        console.print(history, soft_wrap=True)


def make_group(kind: str) -> typer.Typer:
    """The command group for `kind` ("model" or "dataset")."""
    noun = "model" if kind == "model" else "dataset"
    cmd = "model" if kind == "model" else "data"
    group = typer.Typer(
        help=(
            f"Register, find, download, stage, alias and tag {noun}s.\n\n"
            "Examples:\n\n"
            f"  pacha {cmd} register my-{noun} ./path -v 1.0.0\n\n"
            f"  pacha {cmd} list my-{noun}\n\n"
            f"  pacha {cmd} get my-{noun}:latest\n\n"
            f"  pacha {cmd} download my-{noun}@production -o ./out"
        ),
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    def registered(result: "ArtifactVersion", json_out: bool, verb: str) -> None:
        from pacha.cli.output import human_size, print_json

        if json_out:
            document = result.to_json()
            if result.skipped:
                document["skipped"] = list(result.skipped)
            print_json(document)
        else:
            typer.echo(
                f"{verb} {noun} {result.ref} ({human_size(result.size)}, {result.stage.value}, "
                f"BLAKE3 {result.digest[:16]}…)"
            )
            if result.skipped:
                from pacha.cli.output import describe_paths

                typer.echo(
                    f"left out {describe_paths(result.skipped)} (version control and caches; "
                    "--include-vcs keeps them)",
                    err=True,
                )

    @group.command("register")
    def register(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"The {noun}'s name, e.g. bert-base.")],
        path: Annotated[str, typer.Argument(metavar="PATH", help="A file or a directory.")],
        version: Annotated[
            Optional[str],
            typer.Option(
                "-v", "--version", metavar="VERSION", help="Semantic version, e.g. 1.0.0."
            ),
        ] = None,
        bump: Annotated[
            Optional[str],
            typer.Option(
                "--bump", metavar="PART", help="Pick the next version: major, minor or patch."
            ),
        ] = None,
        description: Annotated[
            Optional[str], typer.Option("-d", "--description", help="One-line description.")
        ] = None,
        card: Annotated[
            Optional[str],
            typer.Option(
                "--card" if kind == "model" else "--datasheet",
                metavar="FILE",
                help="Model card (TOML, YAML, JSON or Markdown)"
                if kind == "model"
                else "Datasheet (TOML, YAML or JSON).",
            ),
        ] = None,
        metric: Annotated[
            Optional[list[str]],
            typer.Option(
                "--metric",
                metavar="KEY=VALUE",
                help="A metric for the model card; repeatable.",
                hidden=kind != "model",
            ),
        ] = None,
        purpose: Annotated[
            Optional[str],
            typer.Option(
                "-p",
                "--purpose",
                help="Why the dataset exists (datasheet).",
                hidden=kind == "model",
            ),
        ] = None,
        tag: TagOption = None,
        run: Annotated[
            Optional[str],
            typer.Option(
                "--run", metavar="RUN_ID", help="The run that produced it.", hidden=kind != "model"
            ),
        ] = None,
        parent: Annotated[
            Optional[list[str]],
            typer.Option(
                "--parent",
                metavar="REF",
                help="A model this one was made from; repeatable (a merge has several).",
                hidden=kind != "model",
            ),
        ] = None,
        relation: Annotated[
            str,
            typer.Option(
                "--relation",
                metavar="KIND",
                help="How it was made from --parent: fine_tuned (default), distilled, merged, "
                "quantized or pruned.",
                hidden=kind != "model",
            ),
        ] = "fine_tuned",
        param: Annotated[
            Optional[list[str]],
            typer.Option(
                "--param",
                metavar="KEY=VALUE",
                help="A parameter of --relation (method=int8, temperature=2.0, sparsity=0.5); "
                "repeatable.",
                hidden=kind != "model",
            ),
        ] = None,
        weight: Annotated[
            Optional[list[float]],
            typer.Option(
                "--weight",
                metavar="W",
                help="For a merge: one weight per --parent, in the same order.",
                hidden=kind != "model",
            ),
        ] = None,
        dataset: Annotated[
            Optional[list[str]],
            typer.Option(
                "--dataset",
                metavar="REF",
                help="A dataset it was trained on; repeatable.",
                hidden=kind != "model",
            ),
        ] = None,
        eval_dataset: Annotated[
            Optional[list[str]],
            typer.Option(
                "--eval-dataset",
                metavar="REF",
                help="A dataset it was evaluated on; repeatable.",
                hidden=kind != "model",
            ),
        ] = None,
        recipe: Annotated[
            Optional[str],
            typer.Option(
                "--recipe",
                metavar="REF",
                help="The recipe it was trained with.",
                hidden=kind != "model",
            ),
        ] = None,
        derived_from: Annotated[
            Optional[list[str]],
            typer.Option(
                "--derived-from",
                metavar="REF",
                help="A dataset this one was made from; repeatable.",
                hidden=kind == "model",
            ),
        ] = None,
        transformation: Annotated[
            Optional[str],
            typer.Option(
                "--transformation",
                metavar="TEXT",
                help="How it was made from --derived-from, e.g. 'dedup + language filter'.",
                hidden=kind == "model",
            ),
        ] = None,
        include_vcs: Annotated[
            bool,
            typer.Option(
                "--include-vcs",
                help="Keep .git/ and __pycache__/ directories (left out by default).",
            ),
        ] = False,
        json_out: JsonOption = False,
        quiet: QuietOption = False,
    ) -> None:
        """Register PATH (a file or a directory) as a new version of NAME, with its lineage."""
        from pacha.cli.progress import transfer_progress

        if (version is None) == (bump is None):
            raise typer.BadParameter(
                "give a version (-v 1.0.0) or --bump major|minor|patch, not both"
            )
        registry = open_registry(ctx)
        tags = parse_pairs(tag, "tag")
        if kind == "model":
            if derived_from or transformation:
                raise typer.BadParameter(
                    "--derived-from and --transformation are for datasets; a model uses "
                    "--parent, --dataset and --recipe"
                )
            if (param or weight or relation != "fine_tuned") and not parent:
                raise typer.BadParameter("--relation, --param and --weight describe --parent")
        elif transformation and not derived_from:
            raise typer.BadParameter("--transformation describes --derived-from REF")
        with transfer_progress(f"registering {name}", quiet=quiet) as progress:
            if kind == "model":
                if purpose:
                    raise typer.BadParameter("-p/--purpose is for datasets; use -d for a model")
                result: ArtifactVersion = registry.register_model(
                    name,
                    path,
                    version,
                    bump=bump,
                    description=description,
                    card=card,
                    metrics=parse_metrics(metric),
                    tags=tags,
                    run=run,
                    parents=parent or [],
                    relation=relation,
                    relation_params=parse_pairs(param, "parameter"),
                    weights=weight,
                    datasets=dataset or [],
                    eval_datasets=eval_dataset or [],
                    recipe=recipe,
                    include_vcs=include_vcs,
                    progress=progress,
                )
            else:
                if metric or run or parent or dataset or eval_dataset or recipe:
                    raise typer.BadParameter(
                        "--metric, --run, --parent, --dataset, --eval-dataset and --recipe are "
                        "for models; a dataset uses --derived-from"
                    )
                result = registry.register_dataset(
                    name,
                    path,
                    version,
                    bump=bump,
                    description=description,
                    datasheet=card,
                    purpose=purpose,
                    tags=tags,
                    derived_from=derived_from or [],
                    transformation=transformation,
                    include_vcs=include_vcs,
                    progress=progress,
                )
        registered(result, json_out, "registered")

    @group.command("list")
    def list_command(
        ctx: typer.Context,
        name: Annotated[Optional[str], typer.Argument(help="List this name's versions.")] = None,
        stage: Annotated[
            Optional[str], typer.Option("--stage", help="Only versions in this stage.")
        ] = None,
        tag: TagOption = None,
        json_out: JsonOption = False,
    ) -> None:
        """List names, or the versions of NAME in precedence order (1.2.0 before 1.10.0)."""
        from pacha.cli.output import print_json

        registry = open_registry(ctx, read_only=True)
        tags = parse_pairs(tag, "tag")
        if name is None and stage is None and not tags:
            names = registry.name_records(kind)  # type: ignore[arg-type]
            if json_out:
                print_json(names)
            else:
                print_names(
                    names,
                    f"no {noun}s yet; register one with `pacha {cmd} register NAME PATH -v 1.0.0`",
                )
            return
        versions = registry.version_records(kind, name, stage=stage, tags=tags)  # type: ignore[arg-type]
        if json_out:
            print_json(versions)
        elif versions:
            print_versions(versions)
        else:
            typer.echo("no versions match")

    @group.command("get")
    def get(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(metavar="REF", help="NAME:VERSION, NAME@STAGE, ...")],
        version: VersionOption = None,
        json_out: JsonOption = False,
    ) -> None:
        """Show one version: digest, size, stage and its history, aliases, tags, card."""
        from pacha.cli.output import print_json

        record = open_registry(ctx, read_only=True).version_record(kind, ref, version)  # type: ignore[arg-type]
        if json_out:
            print_json(record)
        else:
            print_version_details(record)

    @group.command("download")
    def download(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(metavar="REF")],
        output: Annotated[
            str, typer.Option("-o", "--output", metavar="PATH", help="Where to write it.")
        ],
        version: VersionOption = None,
        force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")] = False,
        json_out: JsonOption = False,
        quiet: QuietOption = False,
    ) -> None:
        """Write a version to PATH, verifying every byte; directories are recreated exactly."""
        from pacha.cli.output import human_size, print_json
        from pacha.cli.progress import transfer_progress

        registry = open_registry(ctx, read_only=True)
        with transfer_progress(f"downloading {ref}", quiet=quiet) as progress:
            if kind == "model":
                result: ArtifactVersion = registry.download_model(
                    ref, output, version, force=force, progress=progress
                )
            else:
                result = registry.download_dataset(
                    ref, output, version, force=force, progress=progress
                )
        if json_out:
            print_json({**result.to_json(), "output": output, "removed": list(result.removed)})
            return
        if not quiet:
            typer.echo(
                f"wrote {noun} {result.ref} ({human_size(result.size)}) to {output}, "
                "BLAKE3 verified"
            )
        if result.removed:
            from pacha.cli.output import describe_paths

            typer.echo(
                f"replaced {output}: removed {len(result.removed)} entr"
                f"{'y' if len(result.removed) == 1 else 'ies'} that were not part of "
                f"{result.ref} ({describe_paths(result.removed)})",
                err=True,
            )

    @group.command("stage")
    def stage_command(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(metavar="REF")],
        target: Annotated[
            str,
            typer.Option(
                "-t",
                "--to",
                "--target",
                metavar="STAGE",
                help="development, staging, production or archived.",
            ),
        ],
        version: VersionOption = None,
        archive_existing: Annotated[
            bool,
            typer.Option(
                "--archive-existing", help="Archive the version now in production, atomically."
            ),
        ] = False,
        json_out: JsonOption = False,
    ) -> None:
        """Move a version to another lifecycle stage."""
        from pacha.cli.output import print_json

        registry = open_registry(ctx, create=False)
        if kind == "model":
            result: ArtifactVersion = registry.stage_model(
                ref, target, version, archive_existing=archive_existing
            )
        else:
            result = registry.stage_dataset(ref, target, version, archive_existing=archive_existing)
        if json_out:
            print_json(result.to_json())
        else:
            typer.echo(f"{noun} {result.ref} is now in {result.stage.value}")

    @group.command("alias")
    def alias_command(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"The {noun}'s name (or NAME:VERSION).")],
        version: Annotated[Optional[str], typer.Argument(help="The version to point at.")] = None,
        alias: Annotated[Optional[str], typer.Argument(help="The alias, e.g. champion.")] = None,
        delete: Annotated[
            Optional[str], typer.Option("--delete", metavar="ALIAS", help="Remove ALIAS.")
        ] = None,
        json_out: JsonOption = False,
    ) -> None:
        """Point ALIAS at a version, moving it if needed: NAME VERSION ALIAS (or NAME:VERSION
        ALIAS); remove one with NAME --delete ALIAS."""
        from pacha.cli.output import print_json

        if delete is not None:
            if version is not None or alias is not None:
                raise typer.BadParameter(
                    f"--delete takes only NAME: pacha {cmd} alias NAME --delete ALIAS"
                )
            registry = open_registry(ctx, create=False)
            if kind == "model":
                registry.delete_model_alias(name, delete)
            else:
                registry.delete_dataset_alias(name, delete)
            if json_out:
                print_json({"name": name, "deleted": delete})
            else:
                typer.echo(f"removed alias {name}@{delete}")
            return
        if ":" in name and alias is None:  # NAME:VERSION ALIAS
            ref, alias, version = name, version, None
        else:
            ref = name
        if (version is None and ":" not in ref) or alias is None:
            raise typer.BadParameter(
                "give NAME VERSION ALIAS (or NAME:VERSION ALIAS, or NAME --delete ALIAS)"
            )
        registry = open_registry(ctx, create=False)
        if kind == "model":
            result: ArtifactVersion = registry.alias_model(ref, alias, version)
        else:
            result = registry.alias_dataset(ref, alias, version)
        if json_out:
            print_json(result.to_json())
        else:
            typer.echo(f"{result.name}@{alias} → {result.ref}")

    @group.command("tag")
    def tag_command(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(metavar="REF")],
        pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...")],
        version: VersionOption = None,
        json_out: JsonOption = False,
    ) -> None:
        """Set KEY=VALUE tags on a version (a key that exists is overwritten)."""
        from pacha.cli.output import print_json

        registry = open_registry(ctx, create=False)
        tags = parse_pairs(pairs, "tag")
        if kind == "model":
            result: ArtifactVersion = registry.tag_model(ref, tags, version)
        else:
            result = registry.tag_dataset(ref, tags, version)
        if json_out:
            print_json(result.to_json())
        else:
            typer.echo(f"{result.ref}: " + ", ".join(f"{k}={v}" for k, v in result.tags.items()))

    @group.command("delete")
    def delete_command(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(metavar="REF")],
        version: VersionOption = None,
        force: Annotated[
            bool, typer.Option("--force", help="Delete even a version in production.")
        ] = False,
        json_out: JsonOption = False,
    ) -> None:
        """Delete a version. Its lineage stays as a tombstone, its version number is never
        reused, and its bytes stay until `pacha gc` finds nothing else needs them."""
        from pacha.cli.output import print_json

        registry = open_registry(ctx, create=False)
        if kind == "model":
            result: ArtifactVersion = registry.delete_model(ref, version, force=force)
        else:
            result = registry.delete_dataset(ref, version, force=force)
        if json_out:
            print_json({**result.to_json(), "deleted": True})
        else:
            typer.echo(f"deleted {noun} {result.ref} (kept in lineage as a tombstone)")

    def lineage_view(
        ctx: typer.Context,
        ref: str,
        version: Optional[str],
        direction: str,
        depth: Optional[int],
        kinds: Optional[list[str]],
        fmt: str,
        json_out: bool,
    ) -> None:
        from pacha.cli.lineage import show_lineage

        if version is not None:
            if ":" in ref or "@" in ref:
                raise typer.BadParameter("give NAME -v VERSION or NAME:VERSION, not both")
            ref = f"{ref}:{version}"
        show_lineage(ctx, f"{kind}/{ref}", direction, depth, kinds, fmt, json_out)

    from pacha.cli.lineage import direction_of
    from pacha.cli.options import (
        BothOption,
        DepthOption,
        DownOption,
        FormatOption,
        KindOption,
        UpOption,
    )

    @group.command("lineage")
    def lineage_command(
        ctx: typer.Context,
        ref: Annotated[
            str, typer.Argument(metavar="REF", help="NAME:VERSION, or NAME -v VERSION.")
        ],
        version: VersionOption = None,
        up: UpOption = False,
        down: DownOption = False,
        both: BothOption = False,
        depth: DepthOption = None,
        kind_filter: KindOption = None,
        fmt: FormatOption = "tree",
        json_out: JsonOption = False,
    ) -> None:
        """Show where a version came from (default) and/or what was made from it."""
        default = "up" if kind == "model" else "both"
        lineage_view(
            ctx,
            ref,
            version,
            direction_of(up, down, both, default),
            depth,
            kind_filter,
            fmt,
            json_out,
        )

    if kind == "dataset":

        @group.command("provenance")
        def provenance_command(
            ctx: typer.Context,
            ref: Annotated[str, typer.Argument(metavar="REF")],
            version: VersionOption = None,
            depth: DepthOption = None,
            fmt: FormatOption = "tree",
            json_out: JsonOption = False,
        ) -> None:
            """Where a dataset came from: the datasets it was derived from, transitively."""
            lineage_view(ctx, ref, version, "up", depth, None, fmt, json_out)

    if kind == "model":

        @group.command("card")
        def card_command(
            ctx: typer.Context,
            ref: Annotated[str, typer.Argument(metavar="REF")],
            version: VersionOption = None,
        ) -> None:
            """Print the model card as Markdown with YAML front matter (Hugging Face style)."""
            from pacha.cli.output import for_terminal

            card = open_registry(ctx, read_only=True).model_card(ref, version)
            typer.echo(for_terminal(card), nl=False)

    return group


model_app = make_group("model")
data_app = make_group("dataset")
