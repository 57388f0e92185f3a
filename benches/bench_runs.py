#!/usr/bin/env python3
"""Run-tracking benchmark: metric logging throughput and `best run` over many runs.

1. 100,000 `log_metric` calls in a loop (steps 0..99,999) including the final flush.
2. `best_run` over R runs of S steps each (default 1,000 x 1,000 = 1,000,000 points),
   the whole API call, warm, median of 5.

A benchmark, not a test: it prints figures and never fails on a missed target.

Usage: python benches/bench_runs.py [--quick] [--runs R] [--steps S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pacha

RECIPE = 'name = "bench"\nversion = "1.0.0"\nrandom_seed = 0\ndescription = "benchmark"\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 runs x 100 steps")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (100 if args.quick else 1000)
    steps = args.steps or (100 if args.quick else 1000)

    with tempfile.TemporaryDirectory(prefix="pacha-bench-runs-") as tmp:
        registry = pacha.Registry(Path(tmp) / "registry")
        recipe = Path(tmp) / "bench.toml"
        recipe.write_text(RECIPE)
        registry.register_recipe(recipe)

        points = 100_000
        with registry.start_run("bench:1.0.0") as run:
            start = time.perf_counter()
            for step in range(points):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.flush()
            logging_s = time.perf_counter() - start

        build = time.perf_counter()
        for r in range(runs):
            with registry.start_run("bench:1.0.0") as run:
                run._buffer.extend(  # bulk-load through the same path log_metric flushes
                    ("accuracy", s, (r * 7919 % 1000) / 1000 + s / 1e9, 0.0) for s in range(steps)
                )
        build_s = time.perf_counter() - build

        samples = []
        for _ in range(6):
            start = time.perf_counter()
            best = registry.best_run("bench:1.0.0", "accuracy")
            samples.append(time.perf_counter() - start)
        assert best is not None
        best_ms = statistics.median(samples[1:]) * 1e3

    print(f"## pacha {pacha.__version__} run-tracking benchmark\n")
    print("| work | pacha | target |")
    print("|---|---|---|")
    print(
        f"| log {points:,} metric points (incl. flush) "
        f"| {points / logging_s:,.0f} points/s | ≥ 100,000/s |"
    )
    print(f"| best run over {runs:,} runs x {steps:,} steps | {best_ms:.1f} ms | ≤ 100 ms |")
    print(f"\n(building the {runs * steps:,} points took {build_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
