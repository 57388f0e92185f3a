"""Experiment runs: the context manager's endings, metrics, best, compare, CLI, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pacha
from conftest import Backend

RECIPE = """\
name = "train"
version = "1.0.0"
random_seed = 1

[hyperparameters]
learning_rate = 0.001
batch_size = 16
"""


@pytest.fixture
def reg(backend: Backend, tmp_path: Path) -> pacha.Registry:
    registry = backend.open()
    recipe = tmp_path / "train.toml"
    recipe.write_text(RECIPE)
    registry.register_recipe(recipe)
    return registry


def test_completed_run_records_params_metrics_environment(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    with reg.start_run("train:1.0.0", params={"learning_rate": 0.01}) as run:
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
        run.log_params({"notes": "baseline"})
        artifact = tmp_path / "weights.bin"
        artifact.write_bytes(b"w" * 100)
        digest, size = run.log_artifact(artifact)
    record = reg.get_run(run.id)
    assert record.status == "completed" and record.finished_at is not None
    assert record.params == {"learning_rate": 0.01, "batch_size": 16, "notes": "baseline"}
    assert type(record.params["batch_size"]) is int
    assert record.metrics == {"loss": 0.2, "acc": 0.4}
    assert record.metric_steps == {"loss": 4, "acc": 4}
    assert record.artifacts == {"weights.bin": digest} and size == 100
    assert record.environment["python"] and record.environment["cpu_cores"]
    assert record.recipe == "train:1.0.0"


def test_an_exception_fails_the_run_with_its_message(reg: pacha.Registry) -> None:
    with pytest.raises(RuntimeError), reg.start_run() as run:
        run.log_metric("loss", 1.0)
        raise RuntimeError("diverged")
    record = reg.get_run(run.id)
    assert record.status == "failed"
    assert record.error == "RuntimeError: diverged"
    assert record.metrics == {"loss": 1.0}  # flushed before finishing


def test_ctrl_c_cancels_the_run(tmp_path: Path, reg: pacha.Registry) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys, pacha
        reg = pacha.Registry(sys.argv[1] or None)  # a shared registry: from the environment
        with reg.start_run("train:1.0.0") as run:
            print(run.id, flush=True)
            run.log_metric("loss", 0.5)
            os.kill(os.getpid(), signal.SIGINT)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(reg.path or "")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGINT or proc.returncode != 0
    run_id = proc.stdout.split()[0]
    record = reg.get_run(run_id)
    assert record.status == "cancelled"
    assert record.metrics == {"loss": 0.5}


def test_best_uses_the_value_at_the_highest_step(reg: pacha.Registry) -> None:
    ids = []
    for final, early in ((0.9, 0.99), (0.8, 0.1), (0.95, 0.2)):
        with reg.start_run("train:1.0.0") as run:
            run.log_metric("acc", early, step=0)
            run.log_metric("acc", final, step=10)
        ids.append(run.id)
    with reg.start_run("train:1.0.0") as unfinished:
        unfinished.log_metric("acc", 1.0, step=10)
        unfinished.finish("failed", "crashed")
    best = reg.best_run("train:1.0.0", "acc")
    assert best is not None and best.id == ids[2]
    worst = reg.best_run("train", "acc", version="1.0.0", minimize=True)
    assert worst is not None and worst.id == ids[1]
    assert reg.best_run("train:1.0.0", "never-logged") is None


def test_runs_without_a_recipe_and_listing(reg: pacha.Registry) -> None:
    with reg.start_run(params={"x": 1}) as run:
        run.log_metric("loss", 3.0)
    assert reg.get_run(run.id).recipe is None
    assert [r.id for r in reg.list_runs(status="completed")] == [run.id]
    assert reg.list_runs("train:1.0.0") == []


def test_abbreviated_ids_and_bad_input(reg: pacha.Registry) -> None:
    run = reg.start_run("train:1.0.0")
    assert reg.get_run(run.id[:6]).id == run.id
    with pytest.raises(pacha.InvalidInputError, match="at least 6"):
        reg.get_run(run.id[:5])
    with pytest.raises(pacha.NotFoundError):
        reg.get_run("ffffffffffff")
    with pytest.raises(pacha.InvalidInputError, match="finite"):
        run.log_metric("loss", float("nan"))
    with pytest.raises(pacha.InvalidInputError, match="metric name"):
        run.log_metric("bad name", 1.0)
    with pytest.raises(ValueError):
        run.log_metric("loss", "not a number")  # type: ignore[arg-type]
    run.finish()
    with pytest.raises(pacha.InvalidInputError, match="has finished"):
        reg.log_run_metrics(run.id, {"loss": 1.0})
    with pytest.raises(pacha.NotFoundError):
        reg.start_run("missing:1.0.0")


def test_a_model_registered_from_a_run_records_it(reg: pacha.Registry, tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"model")
    with reg.start_run("train:1.0.0") as run:
        model = run.register_model("m", weights, "1.0.0")
    assert model.run == run.id
    assert reg.get_model("m:1.0.0").run == run.id
    assert reg.version_record("model", "m:1.0.0")["run"] == run.id


def test_cli_run_lifecycle(cli, tmp_path: Path) -> None:
    (tmp_path / "train.toml").write_text(RECIPE)
    assert cli("recipe", "register", str(tmp_path / "train.toml")).returncode == 0
    ids = []
    for final in (0.5, 0.7):
        started = cli("run", "start", "train:1.0.0", "--set", "learning_rate=0.1", "--set", "tag=x")
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()
        assert len(run_id) == 32
        for step, value in ((0, 0.1), (5, final)):
            logged = cli("run", "log", run_id[:8], f"acc={value}", "loss=1", "--step", str(step))
            assert logged.returncode == 0, logged.stderr
        assert cli("run", "finish", run_id[:8]).returncode == 0
        ids.append(run_id)
    doc = json.loads(cli("run", "get", ids[0][:8], "--json").stdout)
    assert doc["params"]["learning_rate"] == 0.1 and doc["params"]["batch_size"] == 16
    assert doc["metrics"] == {"acc": 0.5, "loss": 1.0}
    best = cli("run", "best", "train", "-v", "1.0.0", "-m", "acc")
    assert best.returncode == 0 and best.stdout.startswith(ids[1])
    compared = json.loads(cli("run", "compare", ids[0], ids[1], "--json").stdout)
    assert compared["best"]["acc"] == ids[1]
    assert compared["metrics"]["acc"] == [0.5, 0.7]
    listed = json.loads(cli("run", "list", "train:1.0.0", "--json").stdout)
    assert [r["id"] for r in listed] == ids

    for args, message in [
        (("run", "log", ids[0], "acc=1"), "has finished"),
        (("run", "log", "abcdef12", "acc=1"), "no run"),
        (("run", "log", ids[0], "acc=high"), "finite number"),
        (("run", "get", "xyz"), "invalid run id"),
        (("run", "best", "train:1.0.0", "-m", "nothing"), "no completed run"),
    ]:
        result = cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    assert cli("run", "compare", ids[0]).returncode == 2


def test_cli_plot_writes_an_image(cli, tmp_path: Path) -> None:
    started = cli("run", "start")
    run_id = started.stdout.strip()
    for step in range(3):
        assert (
            cli("run", "log", run_id, f"loss={1 / (step + 1)}", "--step", str(step)).returncode == 0
        )
    out = tmp_path / "loss.png"
    result = cli("run", "plot", run_id, "-m", "loss", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli("run", "plot", run_id, "-m", "loss", "-o", str(tmp_path / "x.jpg")).returncode == 2
    missing = cli("run", "plot", run_id, "-m", "acc", "-o", str(out))
    assert missing.returncode == 1 and "logged 'acc'" in missing.stderr


def test_a_rarely_logging_loop_is_flushed_within_about_a_second(reg: pacha.Registry) -> None:
    import time

    with reg.start_run() as run:
        run.log_metric("epoch_loss", 0.5, step=1)
        deadline = time.monotonic() + 10
        while not reg.run_metrics(run.id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reg.run_metrics(run.id)[0][:3] == ("epoch_loss", 1, 0.5)


def test_logging_without_a_step_uses_one_fresh_step_per_call(reg: pacha.Registry) -> None:
    run = reg.start_run()
    assert reg.log_run_metrics(run.id, {"loss": 1.0, "acc": 0.5}) == 0
    assert reg.log_run_metrics(run.id, {"loss": 0.5}, step=7) == 7
    assert reg.log_run_metrics(run.id, {"loss": 0.4, "acc": 0.6}) == 8
    assert sorted((n, s) for n, s, _, _ in reg.run_metrics(run.id)) == [
        ("acc", 0), ("acc", 8), ("loss", 0), ("loss", 7), ("loss", 8)
    ]  # fmt: skip


def test_a_failed_write_keeps_the_points_and_still_ends_the_run(reg: pacha.Registry) -> None:
    run = reg.start_run()
    run.log_metric("loss", 1.0, step=0)
    reg.finish_run(run.id, "cancelled")  # ended elsewhere (another process)
    with pytest.raises(pacha.InvalidInputError, match="has finished"):
        run.flush()
    assert run._buffer == [("loss", 0, 1.0, run._buffer[0][3])]


def test_sys_exit_zero_completes_and_bad_parameters_are_refused(reg: pacha.Registry) -> None:
    with pytest.raises(SystemExit), reg.start_run() as run:
        raise SystemExit(0)
    assert reg.get_run(run.id).status == "completed"
    with pytest.raises(pacha.InvalidInputError, match="finite"):
        reg.start_run(params={"lr": float("nan")})
    with pytest.raises(TypeError):
        reg.start_run().log_metric("loss", 1.0, step=1.5)  # type: ignore[arg-type]


def test_cli_rejects_non_finite_parameters_in_one_line(cli) -> None:
    result = cli("run", "start", "--set", "lr=NaN")
    assert result.returncode == 1
    assert "finite" in result.stderr and "Traceback" not in result.stderr


def test_verify_covers_run_artifacts(reg: pacha.Registry, backend: Backend, tmp_path: Path) -> None:
    artifact = tmp_path / "checkpoint.pt"
    artifact.write_bytes(b"checkpoint bytes" * 100)
    with reg.start_run() as run:
        digest, _ = run.log_artifact(artifact)
    assert reg.verify().ok
    backend.forge(digest)
    result = reg.verify()
    assert not result.ok
    [problem] = result.problems
    assert problem.digest == digest and problem.breaks == [f"run:{run.id}"]


def _git_repo(root: Path, **config: str) -> Path:
    root.mkdir()
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (root / "train.py").write_text("print('train')\n")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    for key, value in config.items():
        subprocess.run(["git", "-C", str(root), "config", key, value], check=True)
    return root


def _start_in(reg: pacha.Registry, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(cwd)
    with reg.start_run() as run:
        pass
    return reg.get_run(run.id).environment


def test_starting_a_run_in_a_hostile_repository_runs_nothing_from_it(
    reg: pacha.Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A downloaded artifact may carry a `.git/config` naming programs that git runs on its
    own (`core.fsmonitor` on `git status`, a clean filter on changed files). Capturing the
    run's environment inside it must run none of them."""
    marker = tmp_path / "pwned"
    payload = tmp_path / "payload.sh"
    payload.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    payload.chmod(0o755)
    fsmonitor = _git_repo(tmp_path / "fsmonitor", **{"core.fsmonitor": str(payload)})
    env = _start_in(reg, fsmonitor, monkeypatch)
    assert not marker.exists()
    assert len(env["git"]["commit"]) == 40 and env["git"]["dirty"] is None
    assert "core.fsmonitor" in env["git"]["dirty_unchecked"]

    filtered = _git_repo(tmp_path / "filtered", **{"filter.evil.clean": str(payload)})
    (filtered / ".gitattributes").write_text("* filter=evil\n")
    (filtered / "train.py").write_text("print('changed')\n")
    env = _start_in(reg, filtered, monkeypatch)
    assert not marker.exists()
    assert env["git"]["dirty"] is None

    included = _git_repo(tmp_path / "included", **{"include.path": str(tmp_path / "x.cfg")})
    (tmp_path / "x.cfg").write_text(f"[core]\n\tfsmonitor = {payload}\n")
    _start_in(reg, included, monkeypatch)
    assert not marker.exists()


def test_a_plain_repository_records_commit_and_dirty_flag(
    reg: pacha.Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _git_repo(tmp_path / "plain", **{"remote.origin.url": "https://example.org/x.git"})
    clean = _start_in(reg, repo, monkeypatch)
    assert clean["git"]["dirty"] is False
    (repo / "train.py").write_text("print('edited')\n")
    assert _start_in(reg, repo, monkeypatch)["git"]["dirty"] is True


@pytest.mark.local_only("ages a run by editing its SQLite row")
def test_a_run_whose_process_was_killed_is_shown_as_abandoned(
    reg: pacha.Registry, tmp_path: Path, cli
) -> None:
    """A training process killed mid-run (SIGKILL, a lost node) leaves its run `running`
    forever; once it has shown no sign of life for ABANDONED_AFTER it is shown as
    abandoned, while a live one (writes and the heartbeat keep it fresh) is not."""
    import sqlite3

    from pacha.models import ABANDONED_AFTER

    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, pacha, signal
            reg = pacha.Registry({str(reg.path)!r})
            run = reg.start_run()
            run.log_metric("loss", 1.0, step=0)
            run.flush()
            print(run.id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
            """
        )
    )
    killed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    run_id = killed.stdout.strip()
    assert killed.returncode == -signal.SIGKILL and run_id
    alive = reg.start_run()
    alive.log_metric("loss", 1.0)
    alive.flush()
    assert not reg.get_run(run_id).abandoned and not reg.get_run(alive.id).abandoned
    # Age the killed run's last sign of life past the threshold.
    with sqlite3.connect(reg.path / "registry.db") as conn:
        conn.execute(
            "UPDATE runs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?), "
            "started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) WHERE id = ?",
            (f"-{int(ABANDONED_AFTER) + 60} seconds", "-1 hours", run_id),
        )
    record = reg.get_run(run_id)
    assert record.status == "running" and record.abandoned
    assert not reg.get_run(alive.id).abandoned
    registry = ("--registry", str(reg.path))
    shown = cli(*registry, "run", "get", run_id)
    assert "abandoned: no sign of life since" in shown.stdout
    listed = cli(*registry, "run", "list")
    assert "abandoned?" in listed.stdout
    assert json.loads(cli(*registry, "run", "get", run_id, "--json").stdout)["abandoned"]
    alive.finish()
