"""``pacha run …``: create runs, log metrics, finish, list, compare, pick the best, plot."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from pacha.cli.options import JsonOption, VersionOption, open_registry, text

if TYPE_CHECKING:
    from pacha.models import RunRecord

app = typer.Typer(
    help=(
        "Experiment runs: parameters, metrics per step, artifacts, and the best run.\n\n"
        "Examples:\n\n"
        "  RUN=$(pacha run start bert-finetune:1.0.0 --set learning_rate=1e-5)\n\n"
        "  pacha run log $RUN loss=0.31 accuracy=0.87 --step 100\n\n"
        "  pacha run finish $RUN\n\n"
        "  pacha run best bert-finetune -v 1.0.0 -m accuracy"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)

RunId = Annotated[str, typer.Argument(metavar="RUN_ID", help="A run id or a unique prefix (6+).")]


def _value(raw: str) -> Any:
    """A `--set` value: JSON when it parses (numbers, booleans, lists), else the text."""
    from pacha._limits import parse_capped
    from pacha.errors import InvalidInputError

    try:
        return parse_capped(json.loads, raw, f"--set value {raw[:40]!r}", 1 << 16)
    except InvalidInputError:
        raise
    except ValueError:
        return raw


def _run_json(run: RunRecord) -> dict[str, Any]:
    return {**run.model_dump(mode="json"), "abandoned": run.abandoned}


def _status(run: RunRecord) -> str:
    """The status, with a running run that stopped showing signs of life called so."""
    if not run.abandoned:
        return run.status
    seen = (run.last_seen or run.started_at).strftime("%Y-%m-%d %H:%M")
    return f"running? (abandoned: no sign of life since {seen} UTC)"


@app.command("start")
def start(
    ctx: typer.Context,
    recipe: Annotated[
        Optional[str], typer.Argument(metavar="[RECIPE]", help="NAME:VERSION, or NAME with -v.")
    ] = None,
    version: VersionOption = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", help="Override a hyperparameter; repeatable."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Start a run (of a recipe, or of nothing) and print its id."""
    from pacha.cli.options import parse_pairs
    from pacha.cli.output import print_json

    params = {k: _value(v) for k, v in parse_pairs(set_, "--set").items()}
    run = open_registry(ctx).start_run(recipe, version, params)
    if json_out:
        print_json({"id": run.id, "recipe": run.recipe, "params": run.params})
    else:
        typer.echo(run.id)


@app.command("log")
def log(
    ctx: typer.Context,
    run_id: RunId,
    pairs: Annotated[list[str], typer.Argument(metavar="NAME=VALUE...")],
    step: Annotated[
        Optional[int],
        typer.Option(
            "--step",
            min=0,
            max=2**63 - 1,
            help="The step (default: the one after the run's highest step).",
        ),
    ] = None,
) -> None:
    """Log metric values to a running run."""
    from pacha.cli.artifacts import parse_metrics

    open_registry(ctx, create=False).log_run_metrics(run_id, parse_metrics(pairs), step)


@app.command("finish")
def finish(
    ctx: typer.Context,
    run_id: RunId,
    status: Annotated[
        str, typer.Option("--status", help="completed, failed or cancelled.")
    ] = "completed",
    error: Annotated[Optional[str], typer.Option("--error", help="Why it failed.")] = None,
    json_out: JsonOption = False,
) -> None:
    """End a running run."""
    from pacha.cli.output import print_json

    run = open_registry(ctx, create=False).finish_run(run_id, status, error)
    if json_out:
        print_json(_run_json(run))
    else:
        typer.echo(f"run {run.id} {run.status}")


def _print_runs(runs: list[RunRecord]) -> None:
    from rich.table import Table

    from pacha.cli.output import stdout_console

    table = Table(box=None, pad_edge=False)
    for column in ("id", "recipe", "status", "started", "metrics"):
        table.add_column(column, no_wrap=column != "metrics", overflow="fold")
    for run in runs:
        table.add_row(
            run.id[:12],
            text(run.recipe or "—"),
            "abandoned?" if run.abandoned else run.status,
            run.started_at.strftime("%Y-%m-%d %H:%M"),
            text(", ".join(f"{k}={v:g}" for k, v in run.metrics.items())),
        )
    stdout_console().print(table, soft_wrap=True)


@app.command("list")
def list_command(
    ctx: typer.Context,
    recipe: Annotated[Optional[str], typer.Argument(metavar="[RECIPE]")] = None,
    version: VersionOption = None,
    status: Annotated[
        Optional[str], typer.Option("--status", help="Only runs in this status.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """List runs, oldest first (of a recipe version, of a status)."""
    from pacha.cli.output import print_json

    runs = open_registry(ctx, read_only=True).list_runs(recipe, version, status=status)
    if json_out:
        print_json([_run_json(r) for r in runs])
    elif runs:
        _print_runs(runs)
    else:
        typer.echo("no runs; start one with `pacha run start [RECIPE]`")


@app.command("get")
def get(ctx: typer.Context, run_id: RunId, json_out: JsonOption = False) -> None:
    """Show a run: recipe, status, parameters, environment, final metrics, artifacts."""
    from pacha.cli.output import print_json

    run = open_registry(ctx, read_only=True).get_run(run_id)
    if json_out:
        print_json(_run_json(run))
        return
    lines = [
        f"id        {run.id}",
        f"recipe    {run.recipe or '—'}",
        f"status    {_status(run)}" + (f" ({run.error})" if run.error else ""),
        f"started   {run.started_at.isoformat()} by {run.created_by}",
        f"finished  {run.finished_at.isoformat() if run.finished_at else '—'}",
        "params    " + ", ".join(f"{k}={v!r}" for k, v in run.params.items()),
        "metrics   "
        + ", ".join(f"{k}={v:g} (step {run.metric_steps[k]})" for k, v in run.metrics.items()),
    ]
    git = run.environment.get("git")
    if git:
        lines.append(f"git       {git['commit']}{' (dirty)' if git['dirty'] else ''}")
    lines.append(
        f"host      {run.environment.get('hostname')}, Python {run.environment.get('python')}, "
        f"{run.environment.get('cpu_cores')} CPUs, GPUs {run.environment.get('gpu_count')}"
    )
    for name, digest in run.artifacts.items():
        lines.append(f"artifact  {name} {digest}")
    from pacha.cli.output import for_terminal

    typer.echo(for_terminal("\n".join(lines)))


@app.command("compare")
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID RUN_ID...")],
    json_out: JsonOption = False,
) -> None:
    """The parameters that differ and each metric's final value; the best is marked
    (highest, or lowest for names containing 'loss' or 'error')."""
    from pacha.cli.output import print_json, stdout_console

    if len(run_ids) < 2:
        raise typer.BadParameter("compare needs at least two run ids")
    registry = open_registry(ctx, read_only=True)
    runs = [registry.get_run(r) for r in run_ids]
    keys = sorted({k for r in runs for k in r.params})
    differing = [
        k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True) for r in runs}) > 1
    ]
    metrics = sorted({m for r in runs for m in r.metrics})
    best: dict[str, str] = {}
    for m in metrics:
        having = [r for r in runs if m in r.metrics]
        lower = "loss" in m or "error" in m
        pick = min if lower else max
        best[m] = pick(having, key=lambda r: r.metrics[m]).id
    if json_out:
        print_json(
            {
                "runs": [r.id for r in runs],
                "params": {k: [r.params.get(k) for r in runs] for k in differing},
                "metrics": {m: [r.metrics.get(m) for r in runs] for m in metrics},
                "best": best,
            }
        )
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("")
    for r in runs:
        table.add_column(r.id[:12], overflow="fold")
    for k in differing:
        table.add_row(text(k), *(text(repr(r.params.get(k))) for r in runs))
    for m in metrics:
        cells = []
        for r in runs:
            value = r.metrics.get(m)
            cell = "—" if value is None else f"{value:g}"
            cells.append(f"{cell} *" if best.get(m) == r.id else cell)
        table.add_row(text(m), *cells)
    stdout_console().print(table, soft_wrap=True)


@app.command("best")
def best(
    ctx: typer.Context,
    recipe: Annotated[str, typer.Argument(metavar="RECIPE", help="NAME:VERSION, or NAME with -v.")],
    metric: Annotated[str, typer.Option("-m", "--metric", help="The metric to rank by.")],
    version: VersionOption = None,
    minimize: Annotated[bool, typer.Option("--minimize", help="Lower is better.")] = False,
    json_out: JsonOption = False,
) -> None:
    """The completed run with the best value of METRIC at its highest step."""
    from pacha.cli.output import print_json
    from pacha.errors import NotFoundError

    run = open_registry(ctx, read_only=True).best_run(recipe, metric, version, minimize=minimize)
    if run is None:
        raise NotFoundError(f"no completed run of {recipe} logged {metric!r}")
    if json_out:
        print_json(_run_json(run))
    else:
        typer.echo(f"{run.id}  {metric}={run.metrics[metric]:g} (step {run.metric_steps[metric]})")


@app.command("plot")
def plot(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID...")],
    metric: Annotated[str, typer.Option("-m", "--metric", help="The metric to plot.")],
    output: Annotated[str, typer.Option("-o", "--output", metavar="FILE.png|FILE.svg")],
) -> None:
    """Plot METRIC against step, one line per run (needs the `pacha[plot]` extra)."""
    from pacha.errors import InvalidInputError

    if not output.endswith((".png", ".svg")):
        raise typer.BadParameter("the output must end in .png or .svg")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInputError(
            "plotting needs matplotlib: pip install 'pacha[plot]' (or pip install matplotlib)"
        ) from None
    registry = open_registry(ctx, read_only=True)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    plotted = 0
    for run_id in run_ids:
        run = registry.get_run(run_id)
        points = [(s, v) for name, s, v, _ in registry.run_metrics(run.id) if name == metric]
        if points:
            steps, values = zip(*points)
            axes.plot(steps, values, label=run.id[:12])
            plotted += 1
    if not plotted:
        raise InvalidInputError(f"none of these runs logged {metric!r}")
    axes.set_xlabel("step")
    axes.set_ylabel(metric)
    axes.legend()
    figure.tight_layout()
    figure.savefig(output)
    typer.echo(f"wrote {output}")
