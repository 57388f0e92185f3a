"""One `Registry` or `Run` shared by threads: every mutating call is atomic (nothing a thread
did is lost to another's), and a check running beside deletions reports only real damage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pacha

THREADS = 8


def in_threads(work: Callable[[int], None]) -> None:
    """Run `work(i)` on 8 threads released together; re-raise the first failure."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture
def reg(tmp_path: Path) -> pacha.Registry:
    return pacha.Registry(tmp_path / "registry")


def test_run_parameters_from_many_threads_are_all_kept(reg: pacha.Registry) -> None:
    run = reg.start_run()
    in_threads(lambda i: [run.log_params({f"p{i}_{j}": j}) for j in range(25)])
    expected = {f"p{i}_{j}": j for i in range(THREADS) for j in range(25)}
    assert run.params == expected
    run.finish()
    assert reg.get_run(run.id).params == expected


def test_metrics_without_steps_from_many_threads_get_one_step_each(reg: pacha.Registry) -> None:
    run = reg.start_run()
    in_threads(lambda i: [run.log_metric("loss", float(i)) for _ in range(500)])
    run.finish()
    steps = [p[1] for p in reg._core.run_metrics(run.id)]
    assert sorted(steps) == list(range(THREADS * 500))


def test_finishing_from_many_threads_ends_the_run_once(reg: pacha.Registry) -> None:
    run = reg.start_run()
    run.log_metric("loss", 1.0)
    in_threads(lambda i: run.finish())
    assert reg.get_run(run.id).status == "completed"


def test_registry_writes_from_many_threads_are_all_kept(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"weights")
    reg.register_model("m", src, "0.0.1")

    def register(i: int) -> None:
        for j in range(5):
            blob = tmp_path / f"m-{i}-{j}.bin"
            blob.write_bytes(f"weights {i} {j}".encode())
            reg.register_model("m", blob, bump="patch")

    in_threads(register)
    versions = [v.version for v in reg.list_model_versions("m")]
    assert len(versions) == 1 + THREADS * 5 == len(set(versions))

    in_threads(lambda i: reg.tag_model("m:0.0.1", {f"k{i}": str(i)}))
    assert reg.get_model("m:0.0.1").tags == {f"k{i}": str(i) for i in range(THREADS)}

    in_threads(lambda i: reg.alias_model(f"m:0.0.{i + 2}", f"alias{i}"))
    aliases = {a for v in reg.list_model_versions("m") for a in v.aliases}
    assert aliases == {f"alias{i}" for i in range(THREADS)}

    in_threads(lambda i: reg.stage_model(f"m:0.0.{i + 2}", "staging"))
    staged = [v.version for v in reg.list_model_versions("m", stage="staging")]
    assert len(staged) == THREADS

    ids: list[str] = []
    in_threads(lambda i: ids.append(reg.start_run(params={"i": i}).id))
    assert len(set(ids)) == THREADS

    run = reg.start_run()
    in_threads(lambda i: run.log_artifact(src, f"artifact-{i}"))
    run.finish()
    assert set(reg.get_run(run.id).artifacts) == {f"artifact-{i}" for i in range(THREADS)}


def test_verify_beside_delete_and_gc_reports_only_real_damage(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    """Versions deleted (and their objects collected) while `verify` runs are not damage."""
    for i in range(20):
        (tmp_path / f"keep{i}.bin").write_bytes(f"kept {i}".encode() * 1000)
        reg.register_model("keep", tmp_path / f"keep{i}.bin", f"1.0.{i}")
    stop = threading.Event()
    churned = 0

    def churn() -> None:
        nonlocal churned
        while not stop.is_set():
            src = tmp_path / f"churn{churned}.bin"
            src.write_bytes(f"churn {churned}".encode() * 5000)
            reg.register_model("churn", src, f"1.0.{churned}")
            reg.delete_model(f"churn:1.0.{churned}")
            reg.gc(grace=0)
            churned += 1

    worker = threading.Thread(target=churn)
    worker.start()
    checks = 0
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            result = reg.verify()
            assert result.ok, [(p.kind, p.breaks, p.detail) for p in result.problems]
            checks += 1
    finally:
        stop.set()
        worker.join()
    assert checks > 5 and churned > 5
