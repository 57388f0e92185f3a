#!/usr/bin/env python3
"""Lineage benchmark: pacha's traversal against a SQLite recursive CTE on the same edges.

Builds a registry whose lineage graph has E edges (default 1,000,000; 100,000 with
--quick), written straight into its database in bulk (registering a million versions one
by one would measure registration, not lineage). The graph holds:

- a node with D descendants (D = E / 10): a random DAG below one root, each node made from
  one or two earlier ones (fine_tuned, or merged with weights);
- a chain 1,000 levels deep (ancestors of its last node);
- the rest: more random DAGs of the same shape, up to E edges.

It then measures, warm, median of 7 after a warm-up:

1. descendants of the big root: pacha's Python API (`Registry.descendants`) against
   `WITH RECURSIVE` over the same `lineage_edges` table and index, both returning ids;
2. ancestors of the chain's end, the same two ways;
3. a whole `pacha lineage REF --down --format json` CLI process (cold process, cached
   graph snapshot), median of 5; and the one-time snapshot rebuild after a change;
4. registering a model with one lineage edge, on this graph against a near-empty registry
   (O(1) in the graph's size means a ratio near 1).

A benchmark, not a test: it prints figures and never fails on a missed target.

Usage: python benches/bench_lineage.py [--quick] [--edges E]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pacha

CHAIN = 1_000
DIGEST = "0" * 64


def median_ms(fn: Callable[[], object], runs: int = 7) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def build_graph(db: Path, edges: int, big: int, seed: int = 7) -> tuple[str, str]:
    """Fill the registry database; returns (big root's ref, chain end's ref)."""
    rng = random.Random(seed)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous = OFF")
    node_rows: list[tuple[int, str, str, str]] = []
    edge_rows: list[tuple[int, int, str, str]] = []

    def add_node(n: int) -> None:
        node_rows.append((n, f"m{n // 1000}", f"1.0.{n % 1000}", f"1.0.{n % 1000}"))

    def dag(first: int, count: int) -> Iterator[tuple[int, int, str, str]]:
        """Nodes first..first+count-1; each (but the first) made from 1-2 earlier ones."""
        for n in range(first + 1, first + count):
            parents = {rng.randrange(first, n)}
            if rng.random() < 0.5:
                parents.add(rng.randrange(first, n))
            if len(parents) == 1:
                yield n, parents.pop(), "fine_tuned", "{}"
            else:
                for p in parents:
                    yield n, p, "merged", '{"weight":0.5}'

    next_id = 1
    for n in range(next_id, next_id + big + 1):
        add_node(n)
    edge_rows.extend(dag(next_id, big + 1))
    big_root = next_id
    next_id += big + 1
    for n in range(next_id, next_id + CHAIN + 1):
        add_node(n)
        if n > next_id:
            edge_rows.append((n, n - 1, "fine_tuned", "{}"))
    chain_end = next_id + CHAIN
    next_id += CHAIN + 1
    while len(edge_rows) < edges:
        size = min(10_000, max(2, int((edges - len(edge_rows)) / 1.5) + 1))
        for n in range(next_id, next_id + size):
            add_node(n)
        for row in dag(next_id, size):
            if len(edge_rows) >= edges:
                break
            edge_rows.append(row)
        next_id += size

    with conn:
        names = sorted({name for _, name, _, _ in node_rows})
        conn.executemany(
            "INSERT INTO artifacts (id, kind, name) VALUES (?, 'model', ?)",
            ((i + 1, name) for i, name in enumerate(names)),
        )
        artifact = {name: i + 1 for i, name in enumerate(names)}
        conn.executemany(
            "INSERT INTO versions (id, artifact_id, version, version_key, prerelease, digest, "
            "layout, size, file_count, created_by) VALUES (?, ?, ?, ?, 0, ?, 'file', 1, 1, 'b')",
            ((n, artifact[name], v, k, DIGEST) for n, name, v, k in node_rows),
        )
        conn.executemany(
            "INSERT INTO lineage_nodes (id, kind, name, version, version_key, version_id) "
            "VALUES (?, 'model', ?, ?, ?, ?)",
            ((n, name, v, k, n) for n, name, v, k in node_rows),
        )
        conn.executemany(
            "INSERT INTO lineage_edges (src, dst, relation, params, created_by) "
            "VALUES (?, ?, ?, ?, 'bench')",
            edge_rows,
        )
    conn.close()
    ref = {
        n: f"model/{name}:{v}"
        for n, name, v, _ in (node_rows[big_root - 1], node_rows[chain_end - 1])
    }
    return ref[big_root], ref[chain_end]


def node_id(conn: sqlite3.Connection, ref: str) -> int:
    name, _, version = ref.removeprefix("model/").partition(":")
    row = conn.execute(
        "SELECT id FROM lineage_nodes WHERE kind = 'model' AND name = ? AND version = ?",
        (name, version),
    ).fetchone()
    return int(row[0])


def cte_descendants(conn: sqlite3.Connection, node: int) -> list[int]:
    sql = (
        "WITH RECURSIVE d(id) AS (SELECT ? UNION "
        "SELECT e.src FROM lineage_edges e JOIN d ON e.dst = d.id) SELECT id FROM d"
    )
    return [r[0] for r in conn.execute(sql, (node,))]


def cte_ancestors(conn: sqlite3.Connection, node: int) -> list[int]:
    sql = (
        "WITH RECURSIVE a(id) AS (SELECT ? UNION "
        "SELECT e.dst FROM lineage_edges e JOIN a ON e.src = a.id) SELECT id FROM a"
    )
    return [r[0] for r in conn.execute(sql, (node,))]


def register_with_edge(registry: pacha.Registry, parent: str, payload: Path, runs: int) -> float:
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        registry.register_model("probe", payload, f"9.0.{i}", parents=[parent])
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:]) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 edges")
    parser.add_argument("--edges", type=int, default=None)
    args = parser.parse_args()
    edges = args.edges or (100_000 if args.quick else 1_000_000)
    big = edges // 10

    with tempfile.TemporaryDirectory(prefix="pacha-bench-lineage-") as tmp:
        root = Path(tmp) / "registry"
        registry = pacha.Registry(root)  # creates and migrates the database
        start = time.perf_counter()
        big_ref, chain_ref = build_graph(root / "registry.db", edges, big)
        build_s = time.perf_counter() - start

        # The first query after a change rebuilds the snapshot from the database.
        start = time.perf_counter()
        found = registry.descendants(big_ref)
        rebuild_s = time.perf_counter() - start
        descendants = len(found) - 1

        conn = sqlite3.connect(root / "registry.db")
        big_id, chain_id = node_id(conn, big_ref), node_id(conn, chain_ref)
        assert len(cte_descendants(conn, big_id)) == len(found), "CTE and pacha disagree"
        ancestors = len(registry.ancestors(chain_ref)) - 1
        assert len(cte_ancestors(conn, chain_id)) == ancestors + 1

        down_api = median_ms(lambda: len(registry.descendants(big_ref)))
        down_ids = median_ms(lambda: registry.descendants(big_ref).ids)
        down_cte = median_ms(lambda: cte_descendants(conn, big_id))
        up_api = median_ms(lambda: len(registry.ancestors(chain_ref)))
        up_cte = median_ms(lambda: cte_ancestors(conn, chain_id))

        env = {**os.environ, "PACHA_HOME": str(root)}
        command = [sys.executable, "-m", "pacha", "lineage", big_ref, "--down", "--format", "json"]
        cli_samples = []
        for _ in range(6):
            start = time.perf_counter()
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
            cli_samples.append(time.perf_counter() - start)
        cli_s = statistics.median(cli_samples[1:])
        baseline = []
        for _ in range(6):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            baseline.append(time.perf_counter() - start)
        python_s = statistics.median(baseline[1:])

        payload = Path(tmp) / "payload.bin"
        payload.write_bytes(b"pacha lineage benchmark")
        big_register = register_with_edge(registry, chain_ref, payload, 11)
        small = pacha.Registry(Path(tmp) / "small")
        small.register_model("parent", payload, "1.0.0")
        small_register = register_with_edge(small, "model/parent:1.0.0", payload, 11)
        conn.close()

    print(f"## pacha {pacha.__version__} lineage benchmark\n")
    print(
        f"Graph: {edges:,} edges; the big root has {descendants:,} descendants; the chain is "
        f"{ancestors:,} levels deep. Built in {build_s:.1f} s (bulk SQL).\n"
    )
    print("| query (warm, median) | pacha API | SQLite recursive CTE | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| descendants ({descendants:,}) | {down_api:.2f} ms | {down_cte:.1f} ms "
        f"| {down_cte / down_api:.0f}x faster | ≥ 10x |"
    )
    print(
        f"| descendants, with their {descendants:,} ids as Python strings | {down_ids:.1f} ms "
        f"| {down_cte:.1f} ms | {down_cte / down_ids:.1f}x faster | — |"
    )
    print(
        f"| ancestors ({ancestors:,} levels) | {up_api:.3f} ms | {up_cte:.2f} ms "
        f"| {up_cte / up_api:.1f}x faster | — |"
    )
    print()
    print("| work | pacha | target |")
    print("|---|---|---|")
    print(
        f"| `pacha lineage REF --down --format json` process ({descendants:,} nodes) "
        f"| {cli_s:.2f} s (bare `python -c pass`: {python_s:.2f} s) | ≤ 0.5 s |"
    )
    print(
        "| first query after a change (snapshot rebuilt from the database) "
        f"| {rebuild_s:.2f} s | — |"
    )
    print(
        f"| register a model with one lineage edge | {big_register:.2f} ms on this graph, "
        f"{small_register:.2f} ms on an empty one ({big_register / small_register:.2f}x) "
        f"| O(1): ratio ≈ 1 |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
