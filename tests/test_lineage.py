"""The lineage graph: edges recorded at registration, the twelve relations and their
parameters, validation, cycles, queries and filters, impact, tombstones, the snapshot
cache, and the JSON, DOT, Mermaid, PROV-JSON and tree views, through the API and the CLI."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

import pacha
from conftest import Backend
from pacha.errors import (
    AlreadyExistsError,
    InvalidInputError,
    LineageCycleError,
    NotFoundError,
    PachaError,
)
from pacha.lineage import RELATIONS
from pacha.models import LineageEdge, LineageNode
from support import corrupt, reopen

Run = Callable[..., Any]
Edge = tuple[str, str, str, str]

# ---- helpers ----


@pytest.fixture
def reg(backend: Backend) -> pacha.Registry:
    return backend.open()


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """A tiny file to register (the content does not matter to lineage)."""
    path = tmp_path / "weights.bin"
    path.write_bytes(b"w")
    return path


@pytest.fixture
def run(cli: Run) -> Run:
    """`cli`, plus the rule that holds for every command: never a traceback."""

    def go(*args: str) -> Any:
        result = cli(*args)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return go


def ok(result: Any) -> Any:
    """Exit 0; the JSON document on stdout, if there is one."""
    assert result.returncode == 0, (result.stdout, result.stderr)
    text = result.stdout.strip()
    return json.loads(text) if text[:1] in "[{" else text


def one_error_line(result: Any, *needles: str) -> str:
    """Exit 1 with exactly one line on stderr, starting with "error:"."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def recipe_file(tmp_path: Path, name: str = "train", version: str = "1.0.0", **data: str) -> Path:
    """A minimal recipe TOML; `data` become its [data] split = "dataset ref" entries."""
    lines = [f'name = "{name}"', f'version = "{version}"']
    if data:
        lines.append("[data]")
        lines += [f'{split} = "{ref}"' for split, ref in data.items()]
    path = tmp_path / f"{name}-{version}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def edge(source: str, target: str, relation: str, **params: Any) -> Edge:
    return (source, target, relation, json.dumps(params, sort_keys=True))


def edges_of(lineage: pacha.Lineage) -> set[Edge]:
    return {edge(e.from_, e.to, e.relation, **e.params) for e in lineage.edges}


def all_edges(reg: pacha.Registry) -> set[Edge]:
    """Every edge in the registry (each has both ends among the ordered nodes)."""
    found: set[Edge] = set()
    for node in reg.lineage_order().ids:
        found |= edges_of(reg.lineage(node, "up", depth=1))
    return found


def state(reg: pacha.Registry) -> tuple[Any, ...]:
    """Everything a refused operation must leave as it was."""
    return (
        [(n.name, n.versions) for n in reg.list_models()],
        [(n.name, n.versions) for n in reg.list_datasets()],
        reg.lineage_order().ids,
        sorted(all_edges(reg)),
    )


def need_dot() -> str:
    dot = shutil.which("dot")
    if dot is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz `dot` is not installed; CI must have it")
        pytest.skip("Graphviz `dot` is not installed")
    return dot


def render_svg(dot_text: str) -> str:
    proc = subprocess.run(
        [need_dot(), "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "<svg" in proc.stdout
    return proc.stdout


def prov_counts(text: str) -> dict[str, int]:
    from prov.model import (
        ProvActivity,
        ProvDerivation,
        ProvDocument,
        ProvEntity,
        ProvGeneration,
        ProvInfluence,
        ProvUsage,
    )

    doc = ProvDocument.deserialize(content=text, format="json")
    kinds = {
        "entity": ProvEntity,
        "activity": ProvActivity,
        "wasDerivedFrom": ProvDerivation,
        "wasGeneratedBy": ProvGeneration,
        "used": ProvUsage,
        "wasInfluencedBy": ProvInfluence,
    }
    # get_records(ProvInfluence) would also match its subclasses; count exact types.
    return {
        name: sum(1 for r in doc.get_records() if type(r) is cls) for name, cls in kinds.items()
    }


def tree_text(lineage: pacha.Lineage) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=300, record=True)
    console.print(lineage.tree())
    return console.export_text()


# ---- a small pipeline used by many tests ----


@dataclass
class Pipeline:
    reg: pacha.Registry
    run_id: str


@pytest.fixture
def pipeline(reg: pacha.Registry, weights: Path, tmp_path: Path) -> Pipeline:
    """raw ← clean (derived_from); recipe train reads clean (train) and evalset
    (validation); one run of it; model base; model ft fine-tuned from base by the run."""
    reg.register_dataset("raw", weights, "1.0.0")
    reg.register_dataset(
        "clean", weights, "1.0.0", derived_from=["raw:1.0.0"], transformation="dedup"
    )
    reg.register_dataset("evalset", weights, "1.0.0")
    reg.register_recipe(recipe_file(tmp_path, train="clean:1.0.0", validation="evalset:1.0.0"))
    with reg.start_run("train:1.0.0") as r:
        pass
    reg.register_model("base", weights, "1.0.0")
    reg.register_model("ft", weights, "1.0.0", parents=["base:1.0.0"], run=r.id)
    return Pipeline(reg, r.id)


def pipeline_edges(run_id: str) -> set[Edge]:
    run = f"run/{run_id}"
    return {
        edge("dataset/clean:1.0.0", "dataset/raw:1.0.0", "derived_from", transformation="dedup"),
        edge(run, "recipe/train:1.0.0", "executed"),
        edge(run, "dataset/clean:1.0.0", "used", split="train"),
        edge(run, "dataset/evalset:1.0.0", "used", split="validation"),
        edge("model/ft:1.0.0", "model/base:1.0.0", "fine_tuned"),
        edge("model/ft:1.0.0", run, "produced_by"),
        edge("model/ft:1.0.0", "recipe/train:1.0.0", "trained_with"),
        edge("model/ft:1.0.0", "dataset/clean:1.0.0", "trained_on", split="train"),
        edge("model/ft:1.0.0", "dataset/evalset:1.0.0", "trained_on", split="validation"),
    }


# ---- 1. edges recorded at registration (API) ----


def test_pipeline_records_every_implied_edge(pipeline: Pipeline) -> None:
    """start_run records executed + used (with split); a model from the run gets
    produced_by, trained_with and trained_on (with the run's splits); derived_from keeps
    its transformation."""
    reg = pipeline.reg
    assert all_edges(reg) == pipeline_edges(pipeline.run_id)
    assert edges_of(reg.lineage("model/ft:1.0.0", "up")) == pipeline_edges(pipeline.run_id)


def test_register_model_records_parents_datasets_eval_datasets_and_recipe(
    reg: pacha.Registry, weights: Path, tmp_path: Path
) -> None:
    """Each of register_model's lineage arguments becomes its edge, with parameters."""
    reg.register_model("base", weights, "1.0.0")
    reg.register_dataset("train-set", weights, "1.0.0")
    reg.register_dataset("test-set", weights, "1.0.0")
    reg.register_recipe(recipe_file(tmp_path, name="r"))
    reg.register_model(
        "ft",
        weights,
        "1.0.0",
        parents=["base:1.0.0"],
        relation_params={"recipe": "lora r=8"},
        datasets=["train-set:1.0.0"],
        eval_datasets=["dataset/test-set:1.0.0"],
        recipe="r:1.0.0",
    )
    assert edges_of(reg.lineage("model/ft:1.0.0", "up")) == {
        edge("model/ft:1.0.0", "model/base:1.0.0", "fine_tuned", recipe="lora r=8"),
        edge("model/ft:1.0.0", "dataset/train-set:1.0.0", "trained_on"),
        edge("model/ft:1.0.0", "dataset/test-set:1.0.0", "evaluated_on"),
        edge("model/ft:1.0.0", "recipe/r:1.0.0", "trained_with"),
    }


@pytest.mark.parametrize(
    ("relation", "params", "stored"),
    [
        ("distilled", {"temperature": 2.0}, {"temperature": 2.0}),
        ("quantized", {"method": "Q4_K_M"}, {"method": "Q4_K_M"}),
        ("pruned", {"sparsity": 0.5}, {"sparsity": 0.5}),
        ("fine_tuned", None, {}),
    ],
)
def test_register_model_relation_and_params(
    reg: pacha.Registry,
    weights: Path,
    relation: str,
    params: dict[str, Any] | None,
    stored: dict[str, Any],
) -> None:
    """The parent relation given at registration is stored with its parameters."""
    reg.register_model("base", weights, "1.0.0")
    reg.register_model(
        "child", weights, "1.0.0", parents=["base:1.0.0"], relation=relation, relation_params=params
    )
    (e,) = reg.lineage("model/child:1.0.0", "up").edges
    assert (e.from_, e.to, e.relation, e.params) == (
        "model/child:1.0.0",
        "model/base:1.0.0",
        relation,
        stored,
    )


def test_merge_records_one_weight_per_parent(reg: pacha.Registry, weights: Path) -> None:
    """weights[i] goes on the edge to parents[i]."""
    for name in ("a", "b", "c"):
        reg.register_model(name, weights, "1.0.0")
    reg.register_model(
        "soup",
        weights,
        "1.0.0",
        parents=["a:1.0.0", "b:1.0.0", "model/c:1.0.0"],
        relation="merged",
        weights=[0.5, 0.3, 0.2],
    )
    got = {e.to: e.params for e in reg.lineage("model/soup:1.0.0", "up").edges}
    assert got == {
        "model/a:1.0.0": {"weight": 0.5},
        "model/b:1.0.0": {"weight": 0.3},
        "model/c:1.0.0": {"weight": 0.2},
    }
    assert {e.relation for e in reg.lineage("model/soup:1.0.0", "up").edges} == {"merged"}


def test_register_dataset_derived_from_several_with_and_without_transformation(
    reg: pacha.Registry, weights: Path
) -> None:
    """derived_from lists every source; the transformation is optional."""
    reg.register_dataset("a", weights, "1.0.0")
    reg.register_dataset("b", weights, "1.0.0")
    reg.register_dataset(
        "ab", weights, "1.0.0", derived_from=["a:1.0.0", "b:1.0.0"], transformation="concat"
    )
    reg.register_dataset("a2", weights, "1.0.0", derived_from=["dataset/a:1.0.0"])
    assert all_edges(reg) == {
        edge("dataset/ab:1.0.0", "dataset/a:1.0.0", "derived_from", transformation="concat"),
        edge("dataset/ab:1.0.0", "dataset/b:1.0.0", "derived_from", transformation="concat"),
        edge("dataset/a2:1.0.0", "dataset/a:1.0.0", "derived_from"),
    }


def test_run_without_recipe_and_model_from_it(reg: pacha.Registry, weights: Path) -> None:
    """A run with no recipe has no inputs; a model from it gets produced_by only. The run
    can be named by a unique prefix, in `run=` and as a node."""
    with reg.start_run() as r:
        pass
    assert reg.lineage(f"run/{r.id}").ids == [f"run/{r.id}"]
    reg.register_model("m", weights, "1.0.0", run=r.id[:8])
    assert all_edges(reg) == {edge("model/m:1.0.0", f"run/{r.id}", "produced_by")}
    assert reg.lineage(f"run/{r.id[:6]}", "down").ids == [f"run/{r.id}", "model/m:1.0.0"]
    assert reg.get_model("m:1.0.0").run == r.id


def test_two_runs_of_one_recipe_stay_separate(pipeline: Pipeline, weights: Path) -> None:
    """A second run of the recipe gets its own executed/used edges; a model from it is
    not linked to the first run."""
    reg = pipeline.reg
    with reg.start_run("train:1.0.0") as r2:
        pass
    reg.register_model("ft2", weights, "1.0.0", run=r2.id)
    up = reg.lineage("model/ft2:1.0.0", "up")
    assert f"run/{r2.id}" in up.ids
    assert f"run/{pipeline.run_id}" not in up.ids
    assert set(reg.lineage(f"run/{r2.id}", "up").ids[1:]) == {
        "recipe/train:1.0.0",
        "dataset/clean:1.0.0",
        "dataset/evalset:1.0.0",
        "dataset/raw:1.0.0",
    }


# ---- 2. the twelve relations, their parameters, endpoints ----

ENDPOINTS = {
    "fine_tuned": ("model/b:1.0.0", "model/a:1.0.0"),
    "distilled": ("model/b:1.0.0", "model/a:1.0.0"),
    "merged": ("model/b:1.0.0", "model/a:1.0.0"),
    "quantized": ("model/b:1.0.0", "model/a:1.0.0"),
    "pruned": ("model/b:1.0.0", "model/a:1.0.0"),
    "trained_on": ("model/a:1.0.0", "dataset/d:1.0.0"),
    "evaluated_on": ("model/a:1.0.0", "dataset/d:1.0.0"),
    "trained_with": ("model/a:1.0.0", "recipe/r:1.0.0"),
    "produced_by": ("model/a:1.0.0", "run/RUN"),
    "used": ("run/RUN", "dataset/d:1.0.0"),
    "executed": ("run/RUN", "recipe/r:1.0.0"),
    "derived_from": ("dataset/e:1.0.0", "dataset/d:1.0.0"),
}


@dataclass
class Nodes:
    reg: pacha.Registry
    run_id: str

    def name(self, text: str) -> str:
        return text.replace("RUN", self.run_id)

    def ends(self, relation: str) -> tuple[str, str]:
        source, target = ENDPOINTS[relation]
        return self.name(source), self.name(target)


@pytest.fixture
def nodes(reg: pacha.Registry, weights: Path, tmp_path: Path) -> Nodes:
    """Unconnected nodes of every kind: models a, b; datasets d, e; recipe r; a run."""
    reg.register_model("a", weights, "1.0.0")
    reg.register_model("b", weights, "1.0.0")
    reg.register_dataset("d", weights, "1.0.0")
    reg.register_dataset("e", weights, "1.0.0")
    reg.register_recipe(recipe_file(tmp_path, name="r"))
    with reg.start_run() as r:
        pass
    return Nodes(reg, r.id)


RELATION_CASES = [
    ("fine_tuned", {"recipe": "lora r=8"}, {"recipe": "lora r=8"}),
    ("distilled", {"temperature": "2.5"}, {"temperature": 2.5}),
    ("merged", {"weight": -0.25}, {"weight": -0.25}),
    ("quantized", {"method": "q4_k_m"}, {"method": "Q4_K_M"}),
    ("pruned", {"sparsity": 0.5}, {"sparsity": 0.5}),
    ("trained_on", {"split": "train"}, {"split": "train"}),
    ("evaluated_on", {"split": "test"}, {"split": "test"}),
    ("trained_with", {}, {}),
    ("produced_by", {}, {}),
    ("used", {"split": "validation"}, {"split": "validation"}),
    ("executed", {}, {}),
    (
        "derived_from",
        {"transformation": "dedup + language filter"},
        {"transformation": "dedup + language filter"},
    ),
]


def test_the_cases_cover_every_relation() -> None:
    """The relation list has the twelve documented kinds and every one is tested below."""
    assert len(RELATIONS) == 12
    assert [case[0] for case in RELATION_CASES] == list(RELATIONS)
    assert set(ENDPOINTS) == set(RELATIONS)


@pytest.mark.parametrize(("relation", "params", "stored"), RELATION_CASES)
def test_every_relation_is_stored_with_its_parameters(
    nodes: Nodes, relation: str, params: dict[str, Any], stored: dict[str, Any]
) -> None:
    """add_edge stores the relation and its canonical parameters; `.edges`, `to_json` and
    the whole-graph view agree."""
    reg = nodes.reg
    source, target = nodes.ends(relation)
    assert reg.add_edge(source, target, relation, params) is True
    up = reg.lineage(source, "up")
    assert up.ids == [source, target]
    (e,) = up.edges
    assert isinstance(e, LineageEdge)
    assert (e.from_, e.to, e.relation, e.params) == (source, target, relation, stored)
    assert [type(v) for v in e.params.values()] == [type(v) for v in stored.values()]
    assert up.to_dict()["edges"] == [
        {"from": source, "to": target, "relation": relation, "params": stored}
    ]
    assert e.model_dump(by_alias=True) == up.to_dict()["edges"][0]
    down = reg.lineage(target, "down")
    assert down.ids == [target, source]
    assert edges_of(down) == edges_of(up)


@pytest.mark.parametrize(
    ("relation", "params", "stored"),
    [
        ("quantized", {"method": m}, {"method": m})
        for m in ("int8", "int4", "fp16", "bf16", "fp8", "dynamic")
    ]
    + [
        ("quantized", {"method": "INT8"}, {"method": "int8"}),
        ("quantized", {"method": "Q8_0"}, {"method": "Q8_0"}),
        ("quantized", {"method": " iq2_xxs "}, {"method": "IQ2_XXS"}),
        ("quantized", {"method": "f16"}, {"method": "F16"}),
        ("pruned", {"sparsity": 0}, {"sparsity": 0.0}),
        ("pruned", {"sparsity": 1}, {"sparsity": 1.0}),
        ("pruned", {"sparsity": "0.9"}, {"sparsity": 0.9}),
        ("distilled", {"temperature": 1e-6}, {"temperature": 1e-6}),
        ("distilled", {}, {}),
        ("merged", {"weight": 0}, {"weight": 0.0}),
        ("merged", {"weight": "3"}, {"weight": 3.0}),
        ("fine_tuned", {}, {}),
        ("derived_from", {"transformation": "x" * 4096}, {"transformation": "x" * 4096}),
        ("trained_on", {"split": "ünïcode ✓"}, {"split": "ünïcode ✓"}),
    ],
)
def test_accepted_parameter_values_are_stored_canonically(
    nodes: Nodes, relation: str, params: dict[str, Any], stored: dict[str, Any]
) -> None:
    """Quantization methods (GGUF names upper-case, the others lower-case), boundaries,
    numbers given as text, optional parameters left out."""
    source, target = nodes.ends(relation)
    assert nodes.reg.add_edge(source, target, relation, params)
    (e,) = nodes.reg.lineage(source, "up").edges
    assert e.params == stored


BAD_PARAMS = [
    ("quantized", {}, "needs --param method"),
    ("quantized", {"method": "int3"}, "expected"),
    ("quantized", {"method": 8}, "expected"),
    ("quantized", {"method": ""}, "expected"),
    ("quantized", {"method": "int8", "bits": 8}, "has no parameter"),
    ("distilled", {"temperature": 0}, "above 0"),
    ("distilled", {"temperature": -1.5}, "above 0"),
    ("distilled", {"temperature": "hot"}, "above 0"),
    ("pruned", {"sparsity": 1.5}, "from 0 to 1"),
    ("pruned", {"sparsity": -0.1}, "from 0 to 1"),
    ("merged", {"weight": "NaN"}, "a number"),
    ("merged", {"weight": "inf"}, "a number"),
    ("merged", {"weight": True}, "a number"),
    ("merged", {"weigth": 0.5}, "has no parameter"),
    ("fine_tuned", {"recipe": ""}, "text"),
    ("fine_tuned", {"recipe": 5}, "text"),
    ("fine_tuned", {"temperature": 2}, "has no parameter"),
    ("derived_from", {"transformation": "x" * 4097}, "text"),
    ("trained_on", {"split": ["train"]}, "text"),
    ("evaluated_on", {"weight": 1}, "has no parameter"),
    ("used", {"split": None}, "text"),
    ("trained_with", {"split": "train"}, "takes no parameters"),
    ("produced_by", {"step": 3}, "takes no parameters"),
    ("executed", {"x": "y"}, "takes no parameters"),
]


@pytest.mark.parametrize(("relation", "params", "needle"), BAD_PARAMS)
def test_invalid_parameters_are_refused_and_change_nothing(
    nodes: Nodes, relation: str, params: dict[str, Any], needle: str
) -> None:
    """Unknown keys, missing required ones and out-of-range or mistyped values raise
    InvalidInputError naming the problem; no edge is recorded."""
    reg = nodes.reg
    before = state(reg)
    source, target = nodes.ends(relation)
    with pytest.raises(InvalidInputError) as info:
        reg.add_edge(source, target, relation, params)
    assert relation in str(info.value)
    assert needle in str(info.value)
    assert state(reg) == before
    assert reg.lineage(source).edges == []


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_parameter_in_add_edge_is_invalid_input(nodes: Nodes, value: float) -> None:
    """A NaN or infinite number is refused as InvalidInputError, as in register_model."""
    source, target = nodes.ends("merged")
    with pytest.raises(InvalidInputError):
        nodes.reg.add_edge(source, target, "merged", {"weight": value})


WRONG_ENDPOINTS = [
    ("trained_on", "dataset/d:1.0.0", "model/a:1.0.0"),
    ("fine_tuned", "model/a:1.0.0", "dataset/d:1.0.0"),
    ("quantized", "dataset/e:1.0.0", "dataset/d:1.0.0"),
    ("derived_from", "model/b:1.0.0", "model/a:1.0.0"),
    ("used", "model/a:1.0.0", "dataset/d:1.0.0"),
    ("executed", "run/RUN", "dataset/d:1.0.0"),
    ("produced_by", "run/RUN", "model/a:1.0.0"),
    ("produced_by", "dataset/d:1.0.0", "run/RUN"),
    ("trained_with", "model/a:1.0.0", "dataset/d:1.0.0"),
    ("evaluated_on", "model/a:1.0.0", "recipe/r:1.0.0"),
    ("derived_from", "recipe/r:1.0.0", "dataset/d:1.0.0"),
]


@pytest.mark.parametrize(("relation", "source", "target"), WRONG_ENDPOINTS)
def test_wrong_endpoint_kinds_are_refused(
    nodes: Nodes, relation: str, source: str, target: str
) -> None:
    """Each relation joins only its two node kinds."""
    before = state(nodes.reg)
    with pytest.raises(InvalidInputError, match=f"a {relation} edge goes from a"):
        nodes.reg.add_edge(nodes.name(source), nodes.name(target), relation)
    assert state(nodes.reg) == before


@pytest.mark.parametrize("relation", ["parent_of", "", "fine tuned"])
def test_unknown_relation_is_refused(nodes: Nodes, relation: str) -> None:
    """A relation outside the twelve is refused, listing them."""
    with pytest.raises(InvalidInputError, match="fine_tuned, distilled"):
        nodes.reg.add_edge("model/b:1.0.0", "model/a:1.0.0", relation)


def test_relation_names_are_forgiving(nodes: Nodes) -> None:
    """'Fine-Tuned' means fine_tuned."""
    assert nodes.reg.add_edge("model/b:1.0.0", "model/a:1.0.0", "Fine-Tuned")
    assert [e.relation for e in nodes.reg.lineage("model/b:1.0.0").edges] == ["fine_tuned"]


def test_edges_need_existing_nodes(nodes: Nodes) -> None:
    """An edge to or from something never registered is NotFoundError."""
    with pytest.raises(NotFoundError):
        nodes.reg.add_edge("model/b:1.0.0", "model/a:9.9.9", "fine_tuned")
    with pytest.raises(NotFoundError):
        nodes.reg.add_edge("model/zzz:1.0.0", "model/a:1.0.0", "fine_tuned")
    with pytest.raises(NotFoundError):
        nodes.reg.add_edge("model/a:1.0.0", "run/abcdef", "produced_by")


def test_duplicate_edge_returns_false(nodes: Nodes) -> None:
    """Recording the same edge again returns False and keeps one edge."""
    reg = nodes.reg
    assert reg.add_edge("model/b:1.0.0", "model/a:1.0.0", "quantized", {"method": "int8"})
    assert not reg.add_edge("model/b:1.0.0", "model/a:1.0.0", "quantized", {"method": "int8"})
    assert not reg.add_edge("b:1.0.0", "a:1.0.0", "quantized", {"method": "INT8"})
    assert len(reg.lineage("model/b:1.0.0").edges) == 1
    # Another relation between the same nodes is another edge.
    assert reg.add_edge("model/b:1.0.0", "model/a:1.0.0", "pruned", {"sparsity": 0.1})
    assert {e.relation for e in reg.lineage("model/b:1.0.0").edges} == {"quantized", "pruned"}


def test_duplicate_parent_at_registration_is_one_edge(reg: pacha.Registry, weights: Path) -> None:
    """The same parent twice is recorded once."""
    reg.register_model("a", weights, "1.0.0")
    reg.register_model("b", weights, "1.0.0", parents=["a:1.0.0", "model/a:1.0.0"])
    assert len(reg.lineage("model/b:1.0.0").edges) == 1


# ---- 3. refused registrations change nothing ----


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"datasets": ["model/base:1.0.0"]}, InvalidInputError),
        ({"eval_datasets": ["recipe/train:1.0.0"]}, InvalidInputError),
        ({"recipe": "dataset/raw:1.0.0"}, InvalidInputError),
        ({"parents": ["dataset/raw:1.0.0"]}, InvalidInputError),
        ({"parents": ["base:1.0.0"], "relation": "quantized"}, InvalidInputError),
        (
            {
                "parents": ["base:1.0.0"],
                "relation": "quantized",
                "relation_params": {"method": "int3"},
            },
            InvalidInputError,
        ),
        (
            {
                "parents": ["base:1.0.0"],
                "relation": "distilled",
                "relation_params": {"temperature": float("nan")},
            },
            InvalidInputError,
        ),
        ({"parents": ["base:1.0.0"], "relation": "trained_on"}, InvalidInputError),
        ({"parents": ["base:1.0.0"], "relation": "parent_of"}, InvalidInputError),
        ({"parents": ["base:1.0.0"], "relation_params": {"temperature": 2}}, InvalidInputError),
        (
            {"parents": ["base:1.0.0", "ft:1.0.0"], "relation": "merged", "weights": [1.0]},
            InvalidInputError,
        ),
        ({"parents": "base:1.0.0"}, InvalidInputError),
        ({"datasets": ["raw:1.0.0"], "parents": ["base:9.9.9"]}, NotFoundError),
        ({"datasets": ["clean:1.0.0", "nothing:1.0.0"]}, NotFoundError),
        ({"recipe": "train:2.0.0"}, NotFoundError),
        ({"run": "abcdef12"}, NotFoundError),
        (
            {
                "datasets": ["raw:1.0.0"],
                "parents": ["base:1.0.0"],
                "relation": "pruned",
                "relation_params": {"sparsity": 2},
            },
            InvalidInputError,
        ),
    ],
)
def test_refused_model_registration_registers_nothing(
    pipeline: Pipeline, weights: Path, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """A registration whose lineage is invalid is refused as a whole: no version, no node,
    no edge, and the version number stays free."""
    reg = pipeline.reg
    before = state(reg)
    models = len(reg.list_models())
    with pytest.raises(error):
        reg.register_model("new", weights, "1.0.0", **kwargs)
    assert len(reg.list_models()) == models
    assert state(reg) == before
    with pytest.raises(NotFoundError):
        reg.get_model("new:1.0.0")
    with pytest.raises(NotFoundError):
        reg.lineage("model/new:1.0.0")
    assert reg.register_model("new", weights, "1.0.0").version == "1.0.0"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"derived_from": ["model/base:1.0.0"]}, InvalidInputError),
        ({"derived_from": ["recipe/train:1.0.0"]}, InvalidInputError),
        ({"derived_from": ["raw:1.0.0"], "transformation": ""}, InvalidInputError),
        ({"derived_from": ["raw:1.0.0"], "transformation": "x" * 5000}, InvalidInputError),
        ({"derived_from": ["raw:1.0.0", "raw:7.0.0"]}, NotFoundError),
    ],
)
def test_refused_dataset_registration_registers_nothing(
    pipeline: Pipeline, weights: Path, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """The same for datasets."""
    reg = pipeline.reg
    before = state(reg)
    with pytest.raises(error):
        reg.register_dataset("new", weights, "1.0.0", **kwargs)
    assert state(reg) == before
    with pytest.raises(NotFoundError):
        reg.get_dataset("new:1.0.0")


# ---- 4. cycles ----


@pytest.fixture
def chain(reg: pacha.Registry, weights: Path) -> pacha.Registry:
    """Models a ← b ← c (b fine-tuned from a, c quantized from b), datasets d1 ← d2."""
    reg.register_model("a", weights, "1.0.0")
    reg.register_model("b", weights, "1.0.0", parents=["a:1.0.0"])
    reg.register_model(
        "c",
        weights,
        "1.0.0",
        parents=["b:1.0.0"],
        relation="quantized",
        relation_params={"method": "int8"},
    )
    reg.register_dataset("d1", weights, "1.0.0")
    reg.register_dataset("d2", weights, "1.0.0", derived_from=["d1:1.0.0"])
    return reg


@pytest.mark.parametrize(
    ("source", "target", "relation", "params", "cycle"),
    [
        (
            "model/a:1.0.0",
            "model/c:1.0.0",
            "distilled",
            {"temperature": 2},
            "model/a:1.0.0 → model/c:1.0.0 → model/b:1.0.0 → model/a:1.0.0",
        ),
        (
            "model/a:1.0.0",
            "model/b:1.0.0",
            "fine_tuned",
            {},
            "model/a:1.0.0 → model/b:1.0.0 → model/a:1.0.0",
        ),
        ("model/b:1.0.0", "model/b:1.0.0", "merged", {}, "model/b:1.0.0 → model/b:1.0.0"),
        (
            "dataset/d1:1.0.0",
            "dataset/d2:1.0.0",
            "derived_from",
            {},
            "dataset/d1:1.0.0 → dataset/d2:1.0.0 → dataset/d1:1.0.0",
        ),
        ("d2:1.0.0", "d2:1.0.0", "derived_from", {}, "dataset/d2:1.0.0 → dataset/d2:1.0.0"),
    ],
)
def test_an_edge_closing_a_cycle_is_refused_naming_it(
    chain: pacha.Registry,
    source: str,
    target: str,
    relation: str,
    params: dict[str, Any],
    cycle: str,
) -> None:
    """LineageCycleError (an InvalidInputError) names the cycle; nothing changes."""
    before = state(chain)
    with pytest.raises(LineageCycleError) as info:
        chain.add_edge(source, target, relation, params)
    assert isinstance(info.value, InvalidInputError)
    assert cycle in str(info.value)
    assert state(chain) == before


def test_edges_that_close_no_cycle_are_accepted(chain: pacha.Registry) -> None:
    """A shortcut along the existing direction (c came from a) is no cycle."""
    assert chain.add_edge("model/c:1.0.0", "model/a:1.0.0", "distilled", {"temperature": 1})
    assert chain.lineage_path("model/c:1.0.0", "model/a:1.0.0").ids == [
        "model/c:1.0.0",
        "model/a:1.0.0",
    ]


def test_cli_cycle_is_one_error_line(chain: pacha.Registry, run: Run) -> None:
    """`pacha lineage add` closing a cycle: exit 1, one 'error:' line naming it."""
    before = state(chain)
    result = run("lineage", "add", "model/a:1.0.0", "model/c:1.0.0", "--relation", "fine_tuned")
    one_error_line(result, "cycle", "model/a:1.0.0 → model/c:1.0.0 → model/b:1.0.0 → model/a:1.0.0")
    assert result.stdout == ""
    assert state(pacha.Registry(chain.path)) == before


# ---- 5. node references ----


def test_node_reference_forms(pipeline: Pipeline, weights: Path) -> None:
    """kind/name:version, data/, bare name:version, :latest, @stage, @alias, run/prefix,
    a bare run prefix and version or run objects all name the same node."""
    reg = pipeline.reg
    reg.stage_dataset("clean:1.0.0", "staging")
    reg.alias_dataset("clean:1.0.0", "gold")
    for ref in (
        "dataset/clean:1.0.0",
        "data/clean:1.0.0",
        "clean:1.0.0",
        "dataset/clean:latest",
        "dataset/clean@staging",
        "dataset/clean@gold",
        "clean@gold",
        " dataset/clean:1.0.0 ",
        reg.get_dataset("clean:1.0.0"),
    ):
        assert reg.lineage(ref).start == "dataset/clean:1.0.0", ref
    run_node = f"run/{pipeline.run_id}"
    for ref in (run_node, f"run/{pipeline.run_id[:6]}", pipeline.run_id[:10]):
        assert reg.lineage(ref).start == run_node
    assert reg.lineage(reg.get_run(pipeline.run_id)).start == run_node
    assert reg.lineage(reg.get_recipe("train:1.0.0")).start == "recipe/train:1.0.0"
    assert reg.lineage(reg.get_model("ft:1.0.0")).start == "model/ft:1.0.0"
    lineage = reg.lineage("model/ft:1.0.0")
    assert "dataset/clean:1.0.0" in lineage
    assert reg.get_model("base:1.0.0") in lineage
    assert "model/nothing:1.0.0" not in lineage


def test_a_name_version_in_two_kinds_is_ambiguous(pipeline: Pipeline, weights: Path) -> None:
    """name:version registered as a model and a dataset must be typed; the error names
    both typed forms."""
    reg = pipeline.reg
    reg.register_model("raw", weights, "1.0.0")
    with pytest.raises(InvalidInputError) as info:
        reg.lineage("raw:1.0.0")
    assert "model/raw:1.0.0" in str(info.value)
    assert "dataset/raw:1.0.0" in str(info.value)
    with pytest.raises(InvalidInputError, match="ambiguous"):
        reg.add_edge("raw:1.0.0", "base:1.0.0", "fine_tuned")
    assert reg.lineage("model/raw:1.0.0").start == "model/raw:1.0.0"
    assert reg.lineage("dataset/raw:1.0.0").start == "dataset/raw:1.0.0"


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("model/../x:1.0.0", InvalidInputError),
        ("nonsense", InvalidInputError),
        ("run/zz", InvalidInputError),
        ("run/not-hex-at-all", InvalidInputError),
        ("widget/x:1.0.0", InvalidInputError),
        ("model/ft:1.0", InvalidInputError),
        ("", InvalidInputError),
        ("model/ft:2.0.0", NotFoundError),
        ("model/nothing:1.0.0", NotFoundError),
        ("nothing:1.0.0", NotFoundError),
        ("run/abcdef", NotFoundError),
        ("dataset/raw@production", NotFoundError),
    ],
)
def test_bad_node_references(pipeline: Pipeline, ref: str, error: type[Exception]) -> None:
    """Malformed references are InvalidInputError, unknown ones NotFoundError."""
    with pytest.raises(error):
        pipeline.reg.lineage(ref)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"direction": "sideways"},
        {"kinds": ["widget"]},
        {"relations": ["parent_of"]},
        pytest.param({"depth": -1}),
    ],
)
def test_bad_query_arguments_are_invalid_input(pipeline: Pipeline, kwargs: dict[str, Any]) -> None:
    """Bad direction, kind, relation or depth: InvalidInputError."""
    with pytest.raises(InvalidInputError):
        pipeline.reg.lineage("model/ft:1.0.0", **kwargs)


# ---- 6. queries: direction, depth, filters ----


def test_directions_and_depths(pipeline: Pipeline) -> None:
    """up/down/both report each node once with its distance and direction; `depth` cuts
    the walk; ancestors/descendants/provenance are the up/down shortcuts."""
    reg = pipeline.reg
    run_node = f"run/{pipeline.run_id}"
    both = reg.lineage("dataset/clean:1.0.0")
    got = {n.id: (n.depth, n.direction) for n in both}
    assert got == {
        "dataset/clean:1.0.0": (0, None),
        "dataset/raw:1.0.0": (1, "up"),
        run_node: (1, "down"),
        "model/ft:1.0.0": (1, "down"),
    }
    assert both.ids[0] == both.start == "dataset/clean:1.0.0"
    assert len(both) == len(both.ids) == 4
    assert all(isinstance(n, LineageNode) for n in both)
    assert [n.id for n in both] == both.ids
    assert both.nodes[-1].id == both.ids[-1]
    assert [n.id for n in both.nodes[1:3]] == both.ids[1:3]
    assert not any(n.deleted for n in both)

    down = reg.lineage("dataset/raw:1.0.0", "down")
    assert {n.id: n.depth for n in down} == {
        "dataset/raw:1.0.0": 0,
        "dataset/clean:1.0.0": 1,
        run_node: 2,
        "model/ft:1.0.0": 2,
    }
    one = reg.lineage("dataset/raw:1.0.0", "down", depth=1)
    assert one.ids == ["dataset/raw:1.0.0", "dataset/clean:1.0.0"]
    assert edges_of(one) == {
        edge("dataset/clean:1.0.0", "dataset/raw:1.0.0", "derived_from", transformation="dedup")
    }
    assert reg.lineage("dataset/raw:1.0.0", "down", depth=0).ids == ["dataset/raw:1.0.0"]

    up = reg.lineage("model/ft:1.0.0", "up")
    assert {n.id: n.depth for n in up} == {
        "model/ft:1.0.0": 0,
        "model/base:1.0.0": 1,
        run_node: 1,
        "recipe/train:1.0.0": 1,
        "dataset/clean:1.0.0": 1,
        "dataset/evalset:1.0.0": 1,
        "dataset/raw:1.0.0": 2,
    }
    assert all(n.direction == "up" for n in list(up)[1:])
    assert "dataset/raw:1.0.0" not in reg.lineage("model/ft:1.0.0", "up", depth=1).ids
    assert reg.lineage("model/ft:1.0.0", "down").ids == ["model/ft:1.0.0"]
    assert reg.lineage("model/base:1.0.0", "up").ids == ["model/base:1.0.0"]

    assert reg.ancestors("model/ft:1.0.0").to_json() == up.to_json()
    assert reg.descendants("dataset/raw:1.0.0").to_json() == down.to_json()
    assert reg.provenance("clean:1.0.0").ids == ["dataset/clean:1.0.0", "dataset/raw:1.0.0"]
    assert reg.ancestors("model/ft:1.0.0", depth=1).to_json() == (
        reg.lineage("model/ft:1.0.0", "up", depth=1).to_json()
    )


def test_every_reported_edge_joins_reported_nodes(pipeline: Pipeline) -> None:
    """Edges in a result never name a node outside it."""
    reg = pipeline.reg
    for node in reg.lineage_order().ids:
        for direction in ("up", "down", "both"):
            for kinds in ((), ("model",), ("dataset", "run")):
                result = reg.lineage(node, direction, kinds=kinds)
                ids = set(result.ids)
                assert len(ids) == len(result.ids)
                assert all(e.from_ in ids and e.to in ids for e in result.edges)


def test_kinds_filter_reports_only_those_kinds_but_walks_through_others(
    pipeline: Pipeline,
) -> None:
    """kinds=["model"] from a raw dataset finds the model two edges away, through the
    dataset derived from it; the start is always reported."""
    reg = pipeline.reg
    models = reg.lineage("dataset/raw:1.0.0", "down", kinds=["model"])
    assert [(n.id, n.depth) for n in models] == [("dataset/raw:1.0.0", 0), ("model/ft:1.0.0", 2)]
    assert models.edges == []
    # Through the run only: used then produced_by.
    via_run = reg.lineage(
        "dataset/evalset:1.0.0", "down", relations=["used", "produced_by"], kinds=["model"]
    )
    assert [(n.id, n.depth) for n in via_run] == [
        ("dataset/evalset:1.0.0", 0),
        ("model/ft:1.0.0", 2),
    ]
    mixed = reg.lineage("model/ft:1.0.0", "up", kinds=["dataset", "recipe"])
    assert set(mixed.ids) == {
        "model/ft:1.0.0",
        "recipe/train:1.0.0",
        "dataset/clean:1.0.0",
        "dataset/evalset:1.0.0",
        "dataset/raw:1.0.0",
    }
    assert {e.relation for e in mixed.edges} == {"trained_with", "trained_on", "derived_from"}
    assert reg.lineage("model/ft:1.0.0", "up", kinds=["data"]).ids == (
        reg.lineage("model/ft:1.0.0", "up", kinds=["dataset"]).ids
    )


def test_relations_filter_follows_only_those_edges(pipeline: Pipeline) -> None:
    """relations limits the edges walked (and so the nodes reached)."""
    reg = pipeline.reg
    run_node = f"run/{pipeline.run_id}"
    via_run = reg.lineage("dataset/evalset:1.0.0", "down", relations=["used", "produced_by"])
    assert [(n.id, n.depth) for n in via_run] == [
        ("dataset/evalset:1.0.0", 0),
        (run_node, 1),
        ("model/ft:1.0.0", 2),
    ]
    assert {e.relation for e in via_run.edges} == {"used", "produced_by"}
    direct = reg.lineage("dataset/evalset:1.0.0", "down", relations=["trained_on"])
    assert [(n.id, n.depth) for n in direct] == [
        ("dataset/evalset:1.0.0", 0),
        ("model/ft:1.0.0", 1),
    ]
    assert reg.lineage("model/ft:1.0.0", "up", relations=["derived_from"]).ids == ["model/ft:1.0.0"]
    assert reg.lineage("dataset/clean:1.0.0", "up", relations=["derived_from"]).ids == [
        "dataset/clean:1.0.0",
        "dataset/raw:1.0.0",
    ]
    both = reg.lineage("model/ft:1.0.0", "up", relations=["fine_tuned", "trained_with"])
    assert set(both.ids) == {"model/ft:1.0.0", "model/base:1.0.0", "recipe/train:1.0.0"}


# ---- 7. path, roots, leaves, order ----


def check_path(path: pacha.Lineage, a: str, b: str, length: int) -> None:
    """`path` runs from a to b, each step one of its edges."""
    assert path.ids[0] == path.start == a
    assert path.ids[-1] == b
    assert len(path) == length
    assert len(path.edges) == length - 1
    pairs = {frozenset((e.from_, e.to)) for e in path.edges}
    for step in zip(path.ids, path.ids[1:]):
        assert frozenset(step) in pairs, (step, path.ids)
    assert [n.depth for n in path] == list(range(length))


def test_path_from_a_derived_node_to_its_source(pipeline: Pipeline) -> None:
    """The shortest chain from a node to an ancestor, each step an edge, going up."""
    reg = pipeline.reg
    path = reg.lineage_path("model/ft:1.0.0", "dataset/raw:1.0.0")
    check_path(path, "model/ft:1.0.0", "dataset/raw:1.0.0", 3)  # ft ← clean ← raw
    assert [n.direction for n in path] == [None, "up", "up"]
    assert reg.lineage_path("model/ft:1.0.0", "ft:1.0.0").ids == ["model/ft:1.0.0"]
    # One edge, either way round.
    for a, b in (
        (f"run/{pipeline.run_id}", "dataset/evalset:1.0.0"),
        ("dataset/evalset:1.0.0", f"run/{pipeline.run_id}"),
        ("dataset/raw:1.0.0", "dataset/clean:1.0.0"),
    ):
        check_path(reg.lineage_path(a, b), a, b, 2)


def test_path_from_a_source_to_something_derived_from_it(pipeline: Pipeline, run: Run) -> None:
    """The chain from an ancestor down to a descendant, in order, API and CLI."""
    reg = pipeline.reg
    path = reg.lineage_path("dataset/raw:1.0.0", "model/ft:1.0.0")
    assert path.ids == ["dataset/raw:1.0.0", "dataset/clean:1.0.0", "model/ft:1.0.0"]
    check_path(path, "dataset/raw:1.0.0", "model/ft:1.0.0", 3)
    assert [n.direction for n in path] == [None, "down", "down"]
    text = ok(run("lineage", "path", "dataset/raw:1.0.0", "model/ft:1.0.0"))
    assert "?" not in text
    assert text == (
        "dataset/raw:1.0.0 →derived_from→ dataset/clean:1.0.0 →trained_on→ model/ft:1.0.0"
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("model/base:1.0.0", "dataset/evalset:1.0.0"),
        ("dataset/raw:1.0.0", "dataset/evalset:1.0.0"),
        ("model/base:1.0.0", "recipe/train:1.0.0"),
    ],
)
def test_path_between_unrelated_nodes_is_not_found(pipeline: Pipeline, a: str, b: str) -> None:
    """Siblings and strangers have no path (edges are not walked against direction)."""
    with pytest.raises(NotFoundError, match="no lineage path"):
        pipeline.reg.lineage_path(a, b)


def test_roots_leaves_and_topological_order(pipeline: Pipeline, weights: Path) -> None:
    """Roots came from nothing, leaves made nothing; the order puts every node after what
    it came from; unconnected versions are left out of whole-graph lists."""
    reg = pipeline.reg
    reg.register_model("loner", weights, "1.0.0")
    sources = {
        "dataset/raw:1.0.0",
        "dataset/evalset:1.0.0",
        "recipe/train:1.0.0",
        "model/base:1.0.0",
    }
    assert set(reg.lineage_roots().ids) == sources
    assert set(reg.lineage_roots("model/ft:1.0.0").ids) == sources
    assert reg.lineage_roots("dataset/clean:1.0.0").ids == ["dataset/raw:1.0.0"]
    assert reg.lineage_roots("model/base:1.0.0").ids == ["model/base:1.0.0"]
    assert reg.lineage_leaves().ids == ["model/ft:1.0.0"]
    assert reg.lineage_leaves("dataset/raw:1.0.0").ids == ["model/ft:1.0.0"]
    assert reg.lineage_leaves("model/ft:1.0.0").ids == ["model/ft:1.0.0"]

    order = reg.lineage_order().ids
    everything = {n for e in pipeline_edges(pipeline.run_id) for n in e[:2]}
    assert sorted(order) == sorted(everything)
    position = {node: i for i, node in enumerate(order)}
    for source, target, _, _ in pipeline_edges(pipeline.run_id):
        assert position[target] < position[source], (source, target)
    assert order[-1] == "model/ft:1.0.0"
    assert "model/loner:1.0.0" not in order
    part = reg.lineage_order("dataset/clean:1.0.0").ids
    assert part == ["dataset/raw:1.0.0", "dataset/clean:1.0.0"]
    for result in (reg.lineage_roots(), reg.lineage_leaves(), reg.lineage_order()):
        assert result.start is None
        assert result.edges == []
        assert all(n.direction is None and n.depth == 0 for n in result)
        assert result.to_dict()["start"] is None


# ---- 8. impact ----


def test_impact_lists_downstream_models_production_first(
    reg: pacha.Registry, weights: Path
) -> None:
    """Existing models downstream, ordered production, staging, development, archived,
    nearest first within a stage; deleted ones and the node itself are left out."""
    reg.register_dataset("d", weights, "1.0.0")
    for name in ("arch", "dev", "stg", "prod", "gone"):
        reg.register_model(name, weights, "1.0.0", datasets=["d:1.0.0"])
    reg.register_model("child", weights, "1.0.0", parents=["dev:1.0.0"])
    reg.register_model("unrelated", weights, "1.0.0")
    reg.stage_model("stg:1.0.0", "staging")
    for name in ("prod", "gone"):
        reg.stage_model(f"{name}:1.0.0", "staging")
        reg.stage_model(f"{name}:1.0.0", "production")
    reg.stage_model("arch:1.0.0", "archived")
    reg.delete_model("gone:1.0.0", force=True)
    impact = reg.impact("dataset/d:1.0.0")
    assert [(e.model.ref, e.model.stage.value, e.depth) for e in impact] == [
        ("prod:1.0.0", "production", 1),
        ("stg:1.0.0", "staging", 1),
        ("dev:1.0.0", "development", 1),
        ("child:1.0.0", "development", 2),
        ("arch:1.0.0", "archived", 1),
    ]
    assert [e.model.ref for e in reg.impact("model/dev:1.0.0")] == ["child:1.0.0"]
    assert reg.impact("model/child:1.0.0") == []
    # Stages are read when asked, not from the cached graph.
    reg.stage_model("child:1.0.0", "staging")
    assert [e.model.ref for e in reg.impact("d:1.0.0")][:3] == [
        "prod:1.0.0",
        "stg:1.0.0",
        "child:1.0.0",
    ]


def test_impact_reaches_models_through_runs_and_recipes(pipeline: Pipeline) -> None:
    """A recipe, a run or a dataset used by a run all impact the model it produced."""
    reg = pipeline.reg
    for node in (
        "recipe/train:1.0.0",
        f"run/{pipeline.run_id}",
        "dataset/evalset:1.0.0",
        "dataset/raw:1.0.0",
        "model/base:1.0.0",
    ):
        assert [e.model.ref for e in reg.impact(node)] == ["ft:1.0.0"], node
    (entry,) = reg.impact("dataset/raw:1.0.0")
    assert entry.depth == 2
    assert entry.model.kind == "model"


# ---- 9. tombstones ----


def test_deleted_model_stays_as_a_tombstone(pipeline: Pipeline, weights: Path) -> None:
    """After delete: the node is still in lineage, marked deleted, reachable by its exact
    reference; the version is gone; nothing new can point at it or come from it."""
    reg = pipeline.reg
    reg.register_model(
        "q",
        weights,
        "1.0.0",
        parents=["ft:1.0.0"],
        relation="quantized",
        relation_params={"method": "int8"},
    )
    deleted = reg.delete_model("ft:1.0.0")
    assert deleted.ref == "ft:1.0.0"
    with pytest.raises(NotFoundError):
        reg.get_model("ft:1.0.0")
    tomb = reg.lineage("model/ft:1.0.0")
    assert tomb.start == "model/ft:1.0.0"
    assert tomb.nodes[0].deleted is True
    assert tomb.to_dict()["nodes"][0]["deleted"] is True
    assert {n.id for n in tomb if n.deleted} == {"model/ft:1.0.0"}
    # Its edges remain, both ways.
    assert "model/q:1.0.0" in tomb.ids
    assert "dataset/clean:1.0.0" in tomb.ids
    from_data = {n.id: n.deleted for n in reg.lineage("dataset/clean:1.0.0", "down")}
    assert from_data["model/ft:1.0.0"] is True
    assert reg.lineage_path("model/q:1.0.0", "dataset/raw:1.0.0").ids[1] == "model/ft:1.0.0"
    # Only an exact version names a tombstone.
    with pytest.raises(NotFoundError):
        reg.lineage("model/ft:latest")
    # No new edges to or from it.
    with pytest.raises(InvalidInputError, match="was deleted"):
        reg.add_edge("model/q:1.0.0", "model/ft:1.0.0", "pruned", {"sparsity": 0.2})
    with pytest.raises(InvalidInputError, match="was deleted"):
        reg.add_edge("model/ft:1.0.0", "dataset/raw:1.0.0", "trained_on")
    before = state(reg)
    with pytest.raises(InvalidInputError, match="was deleted"):
        reg.register_model("new", weights, "1.0.0", parents=["ft:1.0.0"])
    assert state(reg) == before
    assert [e.model.ref for e in reg.impact("dataset/raw:1.0.0")] == ["q:1.0.0"]


def test_deleted_version_number_is_never_reused(reg: pacha.Registry, weights: Path) -> None:
    """The exact number is refused; --bump counts deleted numbers."""
    reg.register_model("m", weights, "1.0.0")
    reg.register_model("m", weights, "1.1.0")
    reg.delete_model("m:1.1.0")
    with pytest.raises(AlreadyExistsError, match="never reused"):
        reg.register_model("m", weights, "1.1.0")
    assert reg.register_model("m", weights, bump="minor").version == "1.2.0"
    reg.delete_model("m:1.2.0")
    assert reg.register_model("m", weights, bump="patch").version == "1.2.1"
    # Every version deleted: the name leaves listings but its numbers stay taken.
    reg.delete_model("m:1.0.0")
    reg.delete_model("m:1.2.1")
    assert reg.list_models() == []
    with pytest.raises(AlreadyExistsError):
        reg.register_model("m", weights, "1.0.0")
    assert reg.register_model("m", weights, bump="patch").version == "1.2.2"
    assert reg.lineage("model/m:1.0.0").nodes[0].deleted


def test_production_delete_needs_force(reg: pacha.Registry, weights: Path) -> None:
    """A production version is refused without force and stays; with force it goes."""
    reg.register_dataset("d", weights, "1.0.0")
    reg.register_model("p", weights, "1.0.0", datasets=["d:1.0.0"])
    reg.stage_model("p:1.0.0", "staging")
    reg.stage_model("p:1.0.0", "production")
    with pytest.raises(InvalidInputError, match="production"):
        reg.delete_model("p:1.0.0")
    assert reg.get_model("p@production").version == "1.0.0"
    assert not reg.lineage("model/p:1.0.0").nodes[0].deleted
    reg.delete_model("p@production", force=True)
    assert reg.lineage("model/p:1.0.0").nodes[0].deleted
    assert reg.impact("dataset/d:1.0.0") == []


def test_deleted_dataset_gets_no_new_edges_from_a_run(
    reg: pacha.Registry, weights: Path, tmp_path: Path
) -> None:
    """A run that used a dataset since deleted still shows it, but a model registered
    from the run gets no trained_on edge to the tombstone."""
    reg.register_dataset("d", weights, "1.0.0")
    reg.register_dataset("kept", weights, "1.0.0")
    reg.register_recipe(recipe_file(tmp_path, train="d:1.0.0", test="kept:1.0.0"))
    with reg.start_run("train:1.0.0") as r:
        pass
    reg.delete_dataset("d:1.0.0")
    reg.register_model("m", weights, "1.0.0", run=r.id)
    assert edges_of(reg.lineage("model/m:1.0.0", "up", depth=1)) == {
        edge("model/m:1.0.0", f"run/{r.id}", "produced_by"),
        edge("model/m:1.0.0", "recipe/train:1.0.0", "trained_with"),
        edge("model/m:1.0.0", "dataset/kept:1.0.0", "trained_on", split="test"),
    }
    up = {n.id: n.deleted for n in reg.lineage("model/m:1.0.0", "up")}
    assert up["dataset/d:1.0.0"] is True
    with pytest.raises(InvalidInputError, match="was deleted"):
        reg.register_model("m2", weights, "1.0.0", datasets=["d:1.0.0"])
    with pytest.raises(InvalidInputError, match="was deleted"):
        reg.register_dataset("d2", weights, "1.0.0", derived_from=["d:1.0.0"])


# ---- 10. the snapshot cache ----


def cache_file(registry: Path) -> Path:
    return registry / "cache" / "lineage.graph"


def test_a_second_registry_object_sees_changes_made_through_the_first(
    registry: Path, weights: Path
) -> None:
    """Each query checks the graph's token: edges, nodes and tombstones written through
    one Registry are seen by another that already holds a snapshot."""
    a = pacha.Registry(registry)
    b = pacha.Registry(registry)
    a.register_model("base", weights, "1.0.0")
    a.register_model("child", weights, "1.0.0")
    assert b.lineage("model/base:1.0.0").ids == ["model/base:1.0.0"]
    assert a.lineage("model/base:1.0.0").ids == ["model/base:1.0.0"]
    assert cache_file(registry).is_file()
    assert a.add_edge("model/child:1.0.0", "model/base:1.0.0", "distilled", {"temperature": 2})
    assert b.lineage("model/base:1.0.0", "down").ids == ["model/base:1.0.0", "model/child:1.0.0"]
    assert not b.add_edge("child:1.0.0", "base:1.0.0", "distilled")
    b.register_model("grand", weights, "1.0.0", parents=["base:1.0.0"])
    assert set(a.lineage("model/base:1.0.0", "down").ids) == {
        "model/base:1.0.0",
        "model/child:1.0.0",
        "model/grand:1.0.0",
    }
    b.delete_model("child:1.0.0")
    deleted = {n.id: n.deleted for n in a.lineage("model/base:1.0.0", "down")}
    assert deleted == {
        "model/base:1.0.0": False,
        "model/child:1.0.0": True,
        "model/grand:1.0.0": False,
    }
    with pytest.raises(LineageCycleError):
        b.add_edge("model/base:1.0.0", "model/grand:1.0.0", "fine_tuned")


def test_a_query_from_another_process_sees_api_changes(
    pipeline: Pipeline, weights: Path, run: Run
) -> None:
    """The CLI (another process) sees an edge added right after it cached the graph."""
    reg = pipeline.reg
    first = ok(run("lineage", "model/base:1.0.0", "--down", "--json"))
    assert [n["id"] for n in first["nodes"]] == ["model/base:1.0.0", "model/ft:1.0.0"]
    reg.register_model(
        "q",
        weights,
        "1.0.0",
        parents=["ft:1.0.0"],
        relation="quantized",
        relation_params={"method": "fp8"},
    )
    second = ok(run("lineage", "model/base:1.0.0", "--down", "--json"))
    assert [n["id"] for n in second["nodes"]] == [
        "model/base:1.0.0",
        "model/ft:1.0.0",
        "model/q:1.0.0",
    ]
    assert second == json.loads(reopen(reg).lineage("base:1.0.0", "down").to_json())


def _flip(offset: int) -> Callable[[Path, bytes], None]:
    def damage(path: Path, old: bytes) -> None:
        corrupt(path, offset if offset >= 0 else path.stat().st_size + offset)

    return damage


def _replace(data: bytes | None) -> Callable[[Path, bytes], None]:
    def damage(path: Path, old: bytes) -> None:
        path.write_bytes(old if data is None else data)

    return damage


def _truncate(path: Path, old: bytes) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _remove(path: Path, old: bytes) -> None:
    path.unlink()


def _directory(path: Path, old: bytes) -> None:
    path.unlink()
    path.mkdir()
    (path / "junk").write_bytes(b"x")


@pytest.mark.local_only("the lineage cache file of a registry directory")
@pytest.mark.parametrize(
    "damage",
    [
        _remove,
        _flip(0),
        _flip(12),
        _flip(-1),
        _flip(-40),
        _truncate,
        _replace(b""),
        _replace(b"PACHALG\x01" + b"\xff" * 8),
        _replace(b"not a lineage graph at all\n" * 10),
        _replace(None),  # a stale snapshot from before the last change
        _directory,
    ],
    ids=[
        "deleted",
        "magic",
        "token",
        "last-byte",
        "body",
        "truncated",
        "empty",
        "huge-length",
        "garbage",
        "stale",
        "directory",
    ],
)
def test_a_damaged_or_stale_cache_never_gives_a_wrong_answer(
    pipeline: Pipeline, weights: Path, damage: Callable[[Path, bytes], None]
) -> None:
    """Whatever happens to cache/lineage.graph, a new Registry answers from the database."""
    reg = pipeline.reg
    path = cache_file(reg.path)
    reg.lineage("model/ft:1.0.0")
    old = path.read_bytes()
    reg.register_model(
        "q",
        weights,
        "1.0.0",
        parents=["ft:1.0.0"],
        relation="quantized",
        relation_params={"method": "int4"},
    )
    reg.delete_model("base:1.0.0")
    fresh = reopen(reg)
    expected = fresh.lineage("dataset/raw:1.0.0").to_json()
    expected_order = fresh.lineage_order().ids
    expected_edges = all_edges(fresh)
    assert path.read_bytes() != old
    damage(path, old)
    again = reopen(reg)
    assert again.lineage("dataset/raw:1.0.0").to_json() == expected
    assert again.lineage_order().ids == expected_order
    assert all_edges(again) == expected_edges
    assert "model/q:1.0.0" in again.lineage("model/base:1.0.0", "down").ids
    assert again.lineage("model/base:1.0.0").nodes[0].deleted
    # The registry object that held the old snapshot in memory agrees.
    assert reg.lineage("dataset/raw:1.0.0").to_json() == expected
    if damage is not _directory:
        assert path.is_file()  # rebuilt for the next process
        assert reopen(reg).lineage("dataset/raw:1.0.0").to_json() == expected


# ---- 11. views: JSON, DOT, Mermaid, PROV-JSON, tree ----

TRICKY = 'strip "quotes", a \\ backslash,\nnew line | pipe <b>[bold]</b> ü → {x}; #42'


@pytest.fixture
def views(pipeline: Pipeline, weights: Path) -> pacha.Lineage:
    """The lineage of `clean` both ways, with a run, a tombstone and a parameter full of
    characters that need quoting in every format."""
    reg = pipeline.reg
    reg.register_dataset(
        "odd", weights, "1.0.0", derived_from=["clean:1.0.0"], transformation=TRICKY
    )
    reg.register_model(
        "old", weights, "1.0.0", datasets=["clean:1.0.0"], eval_datasets=["raw:1.0.0"]
    )
    reg.delete_model("old:1.0.0")
    result = reg.lineage("dataset/clean:1.0.0")
    assert len(result) == 6
    return result


NODE_KEYS = {"id", "kind", "name", "version", "depth", "direction", "deleted"}


def check_json_schema(document: dict[str, Any]) -> None:
    assert set(document) == {"start", "nodes", "edges"}
    nodes = document["nodes"]
    ids = [n["id"] for n in nodes]
    assert len(set(ids)) == len(ids)
    if document["start"] is not None:
        assert document["start"] == ids[0]
    for i, node in enumerate(nodes):
        assert set(node) == NODE_KEYS, node
        assert node["kind"] in ("model", "dataset", "recipe", "run")
        assert isinstance(node["name"], str) and node["name"]
        assert isinstance(node["depth"], int) and node["depth"] >= 0
        assert isinstance(node["deleted"], bool)
        if node["kind"] == "run":
            assert node["version"] is None
            assert node["id"] == f"run/{node['name']}"
        else:
            assert node["id"] == f"{node['kind']}/{node['name']}:{node['version']}"
        if document["start"] is None or i == 0:
            assert node["direction"] is None
            assert node["depth"] == 0 or document["start"] is None
        else:
            assert node["direction"] in ("up", "down")
            assert node["depth"] >= 1
        LineageNode.model_validate(node)
    for e in document["edges"]:
        assert set(e) == {"from", "to", "relation", "params"}
        assert e["relation"] in RELATIONS
        assert isinstance(e["params"], dict)
        assert e["from"] in ids and e["to"] in ids
        LineageEdge.model_validate(e)


def test_json_view_schema(views: pacha.Lineage, pipeline: Pipeline) -> None:
    """{"start", "nodes": [{id, kind, name, version, depth, direction, deleted}], "edges":
    [{from, to, relation, params}]}, matching the node objects and `.edges`."""
    document = json.loads(views.to_json())
    assert document == views.to_dict()
    check_json_schema(document)
    assert document["start"] == "dataset/clean:1.0.0"
    assert [n.model_dump() for n in views] == document["nodes"]
    assert [e.model_dump(by_alias=True) for e in views.edges] == document["edges"]
    assert views.edge_count == len(document["edges"]) == 6
    odd = next(e for e in document["edges"] if e["from"] == "dataset/odd:1.0.0")
    assert odd["params"] == {"transformation": TRICKY}
    check_json_schema(pipeline.reg.lineage_order().to_dict())
    check_json_schema(pipeline.reg.lineage_path("model/ft:1.0.0", "raw:1.0.0").to_dict())
    check_json_schema(pipeline.reg.lineage("model/ft:1.0.0", "up").to_dict())


def test_dot_view_renders_with_graphviz(views: pacha.Lineage) -> None:
    """The DOT text is accepted by Graphviz and has every node and edge."""
    dot = views.to_dot()
    assert dot.startswith("digraph lineage {")
    assert dot.count(" -> ") == len(views.edges)
    assert "(deleted)" in dot and "style=dashed" in dot
    svg = render_svg(dot)
    for node in views.ids:
        assert node.split("/")[1].split(":")[0] in svg


def test_dot_of_whole_graph_lists_and_paths_render(pipeline: Pipeline) -> None:
    """Results without a start (roots, order) and paths also render."""
    reg = pipeline.reg
    for result in (
        reg.lineage_order(),
        reg.lineage_roots(),
        reg.lineage_path("dataset/raw:1.0.0", "model/ft:1.0.0"),
        reg.lineage("model/base:1.0.0", "up"),
    ):
        render_svg(result.to_dot())


def test_mermaid_view_has_one_line_per_node_and_edge(views: pacha.Lineage) -> None:
    """'graph LR', then one line per node and one per edge, labels quoted safely (a
    newline in a parameter does not break the line)."""
    text = views.to_mermaid()
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "graph LR"
    edge_lines = [line for line in lines if "-->" in line]
    assert len(edge_lines) == len(views.edges) == 6
    for line in edge_lines:
        assert re.fullmatch(r'  n\d+ -->\|"[^"|\n]*"\| n\d+', line), line
    node_lines = [line for line in lines[1:] if re.match(r"  n\d+[\[(>]", line)]
    assert len(node_lines) == len(views)
    assert any("(deleted)" in line for line in node_lines)
    assert "classDef deleted" in text
    assert len(lines) == 1 + len(views) + len(views.edges) + 2


def test_prov_json_loads_in_the_prov_library(views: pacha.Lineage) -> None:
    """Versions are entities, runs activities; every edge is a PROV relation record."""
    counts = prov_counts(views.to_prov_json())
    relations = [e.relation for e in views.edges]
    assert counts == {
        "entity": sum(1 for n in views if n.kind != "run"),
        "activity": sum(1 for n in views if n.kind == "run"),
        "wasDerivedFrom": sum(
            r
            in (
                "fine_tuned",
                "distilled",
                "merged",
                "quantized",
                "pruned",
                "trained_on",
                "derived_from",
            )
            for r in relations
        ),
        "wasGeneratedBy": relations.count("produced_by"),
        "used": relations.count("used") + relations.count("executed"),
        "wasInfluencedBy": relations.count("evaluated_on") + relations.count("trained_with"),
    }
    assert counts["entity"] == 5 and counts["activity"] == 1
    assert counts["wasDerivedFrom"] >= 1 and counts["wasGeneratedBy"] == 1
    assert counts["used"] >= 1
    prov = views.to_prov()
    deleted = [v for v in prov["entity"].values() if v.get("pacha:deleted")]
    assert [v["prov:label"] for v in deleted] == ["model/old:1.0.0"]


def test_prov_json_of_a_full_model_lineage(pipeline: Pipeline) -> None:
    """A model's whole ancestry, with each of the four PROV relations it maps onto."""
    reg = pipeline.reg
    reg.add_edge("model/ft:1.0.0", "dataset/raw:1.0.0", "evaluated_on", {"split": "test"})
    up = reg.lineage("model/ft:1.0.0", "up")
    counts = prov_counts(up.to_prov_json())
    assert counts == {
        "entity": 6,
        "activity": 1,
        "wasDerivedFrom": 4,  # fine_tuned, trained_on x2, derived_from
        "wasGeneratedBy": 1,  # produced_by
        "used": 3,  # executed, used x2
        "wasInfluencedBy": 2,  # trained_with, evaluated_on
    }


def test_prov_ids_are_distinct_for_distinct_nodes(reg: pacha.Registry, weights: Path) -> None:
    """Every node of a result is its own PROV entity."""
    reg.register_dataset("d", weights, "1.0.0")
    reg.register_model("a-v1.0.0", weights, "2.0.0", datasets=["d:1.0.0"])
    reg.register_model("a", weights, "1.0.0-v2.0.0", datasets=["d:1.0.0"])
    result = reg.lineage("dataset/d:1.0.0")
    assert len(result) == 3
    assert len(result.to_prov()["entity"]) == 3


def test_tree_view_shows_every_node(views: pacha.Lineage, pipeline: Pipeline) -> None:
    """The rich tree names the start and every node (a node reached twice once, then
    referred to)."""
    text = tree_text(views)
    for node in views.ids:
        assert node in text, node
    assert "came from" in text and "made from it" in text
    assert "(deleted)" in text
    up = pipeline.reg.lineage("model/ft:1.0.0", "up")
    text = tree_text(up)
    assert text.splitlines()[0] == "model/ft:1.0.0"
    for node in up.ids:
        assert node in text
    assert "see above" in text
    roots = tree_text(pipeline.reg.lineage_roots())
    for node in pipeline.reg.lineage_roots().ids:
        assert node in roots


def test_tree_view_shows_nodes_found_through_filtered_kinds(pipeline: Pipeline) -> None:
    """`--kind model` from a raw dataset: the model two edges away appears in the tree."""
    result = pipeline.reg.lineage("dataset/raw:1.0.0", "down", kinds=["model"])
    assert result.ids == ["dataset/raw:1.0.0", "model/ft:1.0.0"]
    assert "model/ft:1.0.0" in tree_text(result)


# ---- 12. the command line ----


def test_cli_registration_flags_record_lineage(
    reg: pacha.Registry, weights: Path, tmp_path: Path, run: Run
) -> None:
    """--derived-from/--transformation, --parent/--relation/--param/--weight, --dataset,
    --eval-dataset, --recipe and --run each record their edges."""
    w = str(weights)
    ok(run("data", "register", "raw", w, "-v", "1.0.0"))
    ok(
        run(
            "data",
            "register",
            "clean",
            w,
            "-v",
            "1.0.0",
            "--derived-from",
            "raw:1.0.0",
            "--transformation",
            "dedup + filter",
        )
    )
    ok(run("data", "register", "evalset", w, "-v", "1.0.0"))
    ok(run("recipe", "register", str(recipe_file(tmp_path, train="clean:1.0.0"))))
    with reg.start_run("train:1.0.0") as r:
        pass
    ok(run("model", "register", "base", w, "-v", "1.0.0"))
    ok(
        run(
            "model",
            "register",
            "q",
            w,
            "-v",
            "1.0.0",
            "--parent",
            "base:1.0.0",
            "--relation",
            "quantized",
            "--param",
            "method=q4_k_m",
        )
    )
    ok(
        run(
            "model",
            "register",
            "soup",
            w,
            "-v",
            "1.0.0",
            "--parent",
            "base:1.0.0",
            "--parent",
            "q:1.0.0",
            "--relation",
            "merged",
            "--weight",
            "0.25",
            "--weight",
            "0.75",
        )
    )
    ok(
        run(
            "model",
            "register",
            "ft",
            w,
            "-v",
            "1.0.0",
            "--parent",
            "base:1.0.0",
            "--param",
            "recipe=lora",
            "--dataset",
            "raw:1.0.0",
            "--eval-dataset",
            "evalset:1.0.0",
            "--recipe",
            "train:1.0.0",
            "--run",
            r.id[:8],
        )
    )
    ok(
        run(
            "model",
            "register",
            "small",
            w,
            "-v",
            "1.0.0",
            "--parent",
            "ft:1.0.0",
            "--relation",
            "distilled",
            "--param",
            "temperature=2",
        )
    )
    ok(
        run(
            "model",
            "register",
            "sparse",
            w,
            "-v",
            "1.0.0",
            "--parent",
            "ft:1.0.0",
            "--relation",
            "pruned",
            "--param",
            "sparsity=0.5",
        )
    )
    runn = f"run/{r.id}"
    assert all_edges(reopen(reg)) == {
        edge(
            "dataset/clean:1.0.0",
            "dataset/raw:1.0.0",
            "derived_from",
            transformation="dedup + filter",
        ),
        edge(runn, "recipe/train:1.0.0", "executed"),
        edge(runn, "dataset/clean:1.0.0", "used", split="train"),
        edge("model/q:1.0.0", "model/base:1.0.0", "quantized", method="Q4_K_M"),
        edge("model/soup:1.0.0", "model/base:1.0.0", "merged", weight=0.25),
        edge("model/soup:1.0.0", "model/q:1.0.0", "merged", weight=0.75),
        edge("model/ft:1.0.0", "model/base:1.0.0", "fine_tuned", recipe="lora"),
        edge("model/ft:1.0.0", "dataset/raw:1.0.0", "trained_on"),
        edge("model/ft:1.0.0", "dataset/evalset:1.0.0", "evaluated_on"),
        edge("model/ft:1.0.0", "recipe/train:1.0.0", "trained_with"),
        edge("model/ft:1.0.0", runn, "produced_by"),
        edge("model/ft:1.0.0", "dataset/clean:1.0.0", "trained_on", split="train"),
        edge("model/small:1.0.0", "model/ft:1.0.0", "distilled", temperature=2.0),
        edge("model/sparse:1.0.0", "model/ft:1.0.0", "pruned", sparsity=0.5),
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--parent", "base:1.0.0", "--relation", "quantized", "--param", "method=int3"],
            "expected",
        ),
        (["--parent", "base:1.0.0", "--relation", "quantized"], "method"),
        (
            ["--parent", "base:1.0.0", "--relation", "distilled", "--param", "temperature=0"],
            "above 0",
        ),
        (["--parent", "base:1.0.0", "--relation", "merged", "--param", "weight=nan"], "a number"),
        (["--parent", "base:1.0.0", "--param", "novalue"], "KEY=VALUE"),
        (
            [
                "--parent",
                "base:1.0.0",
                "--parent",
                "ft:1.0.0",
                "--relation",
                "merged",
                "--weight",
                "1",
            ],
            "weight",
        ),
        (["--parent", "base:1.0.0", "--relation", "trained_on"], "goes from a model to a dataset"),
        (["--parent", "base:1.0.0", "--relation", "grafted"], "unknown lineage relation"),
        (["--dataset", "model/base:1.0.0"], "goes from a model to a dataset"),
        (["--recipe", "raw:1.0.0"], 'recipe "raw" does not exist'),
        (["--parent", "base:9.0.0"], "base:9.0.0"),
        (["--run", "abcdef12"], "abcdef12"),
    ],
)
def test_cli_refused_registration_is_one_error_line(
    pipeline: Pipeline, weights: Path, run: Run, args: list[str], needle: str
) -> None:
    """Bad lineage flags: exit 1, one 'error:' line, nothing registered."""
    before = state(pipeline.reg)
    result = run("model", "register", "new", str(weights), "-v", "1.0.0", *args)
    one_error_line(result, needle)
    assert state(reopen(pipeline.reg)) == before


@pytest.mark.parametrize(
    "args",
    [
        ["model", "register", "new", "W", "-v", "1.0.0", "--param", "method=int8"],
        ["model", "register", "new", "W", "-v", "1.0.0", "--relation", "quantized"],
        ["model", "register", "new", "W", "-v", "1.0.0", "--derived-from", "raw:1.0.0"],
        ["data", "register", "new", "W", "-v", "1.0.0", "--transformation", "dedup"],
        ["data", "register", "new", "W", "-v", "1.0.0", "--parent", "raw:1.0.0"],
        ["lineage", "model/ft:1.0.0", "--up", "--down"],
        ["lineage", "model/ft:1.0.0", "--format", "svg"],
    ],
)
def test_cli_usage_errors_exit_2(
    pipeline: Pipeline, weights: Path, run: Run, args: list[str]
) -> None:
    """Flags that do not go together are usage errors (exit 2), never a traceback."""
    before = state(pipeline.reg)
    result = run(*[str(weights) if a == "W" else a for a in args])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert state(reopen(pipeline.reg)) == before


def test_cli_json_flag_equals_format_json(pipeline: Pipeline, run: Run) -> None:
    """--json and --format json print the same document, equal to the API's."""
    reg = pipeline.reg
    for args, api in (
        (["lineage", "model/ft:1.0.0"], reg.lineage("model/ft:1.0.0")),
        (
            ["lineage", "dataset/raw:1.0.0", "--down", "--depth", "1"],
            reg.lineage("dataset/raw:1.0.0", "down", depth=1),
        ),
        (
            ["lineage", "dataset/raw:1.0.0", "--down", "--kind", "model"],
            reg.lineage("dataset/raw:1.0.0", "down", kinds=["model"]),
        ),
        (
            [
                "lineage",
                "dataset/evalset:1.0.0",
                "--down",
                "--kind",
                "used",
                "--kind",
                "produced-by",
            ],
            reg.lineage("dataset/evalset:1.0.0", "down", relations=["used", "produced_by"]),
        ),
        (["model", "lineage", "ft", "-v", "1.0.0"], reg.lineage("model/ft:1.0.0", "up")),
        (["model", "lineage", "base:1.0.0", "--down"], reg.lineage("model/base:1.0.0", "down")),
        (["data", "lineage", "clean:1.0.0"], reg.lineage("dataset/clean:1.0.0", "both")),
        (["data", "provenance", "clean", "-v", "1.0.0"], reg.provenance("clean:1.0.0")),
    ):
        by_flag = run(*args, "--json")
        by_format = run(*args, "--format", "json")
        assert ok(by_flag) == json.loads(api.to_json()), args
        assert by_flag.stdout == by_format.stdout
        check_json_schema(json.loads(by_flag.stdout))


def test_cli_model_lineage_defaults_to_ancestors(pipeline: Pipeline, run: Run) -> None:
    """`pacha model lineage NAME -v VERSION` shows where the version came from."""
    document = ok(run("model", "lineage", "ft", "-v", "1.0.0", "--json"))
    assert document["start"] == "model/ft:1.0.0"
    assert all(n["direction"] == "up" for n in document["nodes"][1:])
    assert len(document["nodes"]) == 7
    provenance = ok(run("data", "provenance", "clean:1.0.0", "--json"))
    assert [n["id"] for n in provenance["nodes"]] == ["dataset/clean:1.0.0", "dataset/raw:1.0.0"]


def test_cli_tree_format(pipeline: Pipeline, run: Run) -> None:
    """The default tree view exits 0 and names every node of the result."""
    reg = pipeline.reg
    for args, api in (
        (["lineage", "dataset/clean:1.0.0"], reg.lineage("dataset/clean:1.0.0")),
        (["lineage", "model/ft:1.0.0", "--up"], reg.lineage("model/ft:1.0.0", "up")),
        (["model", "lineage", "ft:1.0.0"], reg.lineage("model/ft:1.0.0", "up")),
        (["data", "provenance", "clean:1.0.0"], reg.provenance("clean:1.0.0")),
    ):
        text = ok(run(*args, "--format", "tree"))
        assert text == ok(run(*args))
        for node in api.ids:
            assert node in text, (args, node)
    lonely = ok(run("lineage", "model/base:1.0.0", "--up"))
    assert "model/base:1.0.0" in lonely and "no lineage recorded" in lonely


def test_cli_dot_mermaid_and_prov_formats(pipeline: Pipeline, run: Run) -> None:
    """The other formats print what the API's views return."""
    reg = pipeline.reg
    api = reg.lineage("model/ft:1.0.0", "up")
    dot = ok(run("lineage", "model/ft:1.0.0", "--up", "--format", "dot")) + "\n"
    assert dot == api.to_dot()
    render_svg(dot)
    mermaid = ok(run("lineage", "model/ft:1.0.0", "--up", "-f", "mermaid"))
    assert mermaid + "\n" == api.to_mermaid()
    assert mermaid.startswith("graph LR")
    prov = ok(run("lineage", "model/ft:1.0.0", "--up", "--format", "prov-json"))
    assert prov == api.to_prov()
    assert prov_counts(json.dumps(prov))["activity"] == 1


def test_cli_lineage_add(pipeline: Pipeline, run: Run) -> None:
    """`pacha lineage add` records an edge with parameters; again, it says so."""
    first = run(
        "lineage",
        "add",
        "model/base:1.0.0",
        "dataset/raw:1.0.0",
        "--relation",
        "evaluated_on",
        "--param",
        "split=test",
    )
    assert "recorded" in ok(first)
    again = ok(
        run(
            "lineage",
            "add",
            "model/base:1.0.0",
            "dataset/raw:1.0.0",
            "-r",
            "evaluated_on",
            "--param",
            "split=test",
        )
    )
    assert "already recorded" in again
    document = ok(
        run(
            "lineage",
            "add",
            "model/base:1.0.0",
            "dataset/evalset:1.0.0",
            "-r",
            "trained_on",
            "--json",
        )
    )
    assert document["added"] is True and document["relation"] == "trained_on"
    reg = reopen(pipeline.reg)
    assert edges_of(reg.lineage("model/base:1.0.0", "up")) == {
        edge("model/base:1.0.0", "dataset/raw:1.0.0", "evaluated_on", split="test"),
        edge("model/base:1.0.0", "dataset/evalset:1.0.0", "trained_on"),
    }
    before = state(reg)
    one_error_line(
        run(
            "lineage",
            "add",
            "model/base:1.0.0",
            "dataset/raw:1.0.0",
            "-r",
            "quantized",
            "--param",
            "method=int8",
        ),
        "goes from a model to a model",
    )
    one_error_line(
        run("lineage", "add", "model/base:1.0.0", "dataset/raw:1.0.0", "-r", "used"),
        "goes from a run",
    )
    assert state(reopen(pipeline.reg)) == before


def test_cli_impact_and_path(pipeline: Pipeline, weights: Path, run: Run) -> None:
    """`lineage impact` lists models by stage; `lineage path` prints the chain."""
    reg = pipeline.reg
    reg.register_model("prod", weights, "1.0.0", datasets=["raw:1.0.0"])
    reg.stage_model("prod:1.0.0", "staging")
    reg.stage_model("prod:1.0.0", "production")
    reg.alias_model("prod:1.0.0", "champion")
    document = ok(run("lineage", "impact", "dataset/raw:1.0.0", "--json"))
    assert document == [
        {"model": "prod:1.0.0", "stage": "production", "depth": 1, "aliases": ["champion"]},
        {"model": "ft:1.0.0", "stage": "development", "depth": 2, "aliases": []},
    ]
    table = ok(run("lineage", "impact", "dataset/raw:1.0.0"))
    assert table.index("prod:1.0.0") < table.index("ft:1.0.0")
    assert "2 model version(s)" in table and "1 in production" in table
    assert "no model" in ok(run("lineage", "impact", "model/ft:1.0.0"))

    text = ok(run("lineage", "path", "model/ft:1.0.0", "dataset/raw:1.0.0"))
    assert text == (
        "model/ft:1.0.0 ←trained_on← dataset/clean:1.0.0 ←derived_from← dataset/raw:1.0.0"
    )
    path = ok(run("lineage", "path", "model/ft:1.0.0", "dataset/raw:1.0.0", "--json"))
    assert path == reg.lineage_path("model/ft:1.0.0", "dataset/raw:1.0.0").to_dict()
    check_json_schema(path)
    one_error_line(
        run("lineage", "path", "model/base:1.0.0", "dataset/evalset:1.0.0"), "no lineage path"
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["lineage", "model/../x:1.0.0"], "invalid name"),
        (["lineage", "nonsense"], "names no version"),
        (["lineage", "run/zz"], "invalid run id"),
        (["lineage", "model/nothing:1.0.0"], "nothing"),
        (["lineage", "model/ft:1.0.0", "--kind", "bogus"], "unknown --kind"),
        (["lineage", "impact", "run/zz"], "invalid run id"),
        (["lineage", "path", "nonsense", "model/ft:1.0.0"], "names no version"),
        (
            ["lineage", "add", "model/../x:1.0.0", "model/ft:1.0.0", "-r", "fine_tuned"],
            "invalid name",
        ),
        (
            ["lineage", "add", "model/ft:1.0.0", "model/base:1.0.0", "-r", "sired"],
            "unknown lineage relation",
        ),
        (["model", "lineage", "nothing:1.0.0"], "nothing"),
        (["data", "provenance", "nothing:1.0.0"], "nothing"),
    ],
)
def test_cli_bad_references_are_one_error_line(
    pipeline: Pipeline, run: Run, args: list[str], needle: str
) -> None:
    """Malformed or unknown nodes: exit 1, one 'error:' line, nothing on stdout."""
    result = run(*args)
    one_error_line(result, needle)
    assert result.stdout == ""


def test_cli_ambiguous_reference_names_both_forms(
    pipeline: Pipeline, weights: Path, run: Run
) -> None:
    """NAME:VERSION in two kinds: the error line names both typed forms."""
    pipeline.reg.register_model("raw", weights, "1.0.0")
    one_error_line(run("lineage", "raw:1.0.0"), "model/raw:1.0.0", "dataset/raw:1.0.0")


def test_cli_delete_keeps_a_tombstone(pipeline: Pipeline, weights: Path, run: Run) -> None:
    """`model delete` refuses production without --force; a deleted version stays in
    lineage and its number is never given out again; `data delete` likewise."""
    reg = pipeline.reg
    reg.stage_model("ft:1.0.0", "staging")
    reg.stage_model("ft:1.0.0", "production")
    one_error_line(run("model", "delete", "ft:1.0.0"), "production", "--force")
    assert reg.get_model("ft:1.0.0").stage.value == "production"
    assert "tombstone" in ok(run("model", "delete", "ft:1.0.0", "--force"))
    document = ok(run("lineage", "model/ft:1.0.0", "--json"))
    assert document["nodes"][0] == {
        "id": "model/ft:1.0.0",
        "kind": "model",
        "name": "ft",
        "version": "1.0.0",
        "depth": 0,
        "direction": None,
        "deleted": True,
    }
    assert "model/base:1.0.0" in [n["id"] for n in document["nodes"]]
    assert "(deleted)" in ok(run("lineage", "model/ft:1.0.0"))
    one_error_line(run("model", "register", "ft", str(weights), "-v", "1.0.0"), "never reused")
    assert (
        ok(run("model", "register", "ft", str(weights), "--bump", "patch", "--json"))["version"]
        == "1.0.1"
    )
    one_error_line(
        run("model", "register", "x", str(weights), "-v", "1.0.0", "--parent", "ft:1.0.0"),
        "was deleted",
    )
    ok(run("data", "delete", "evalset:1.0.0"))
    up = ok(run("model", "lineage", "ft:1.0.0", "--json"))
    assert {n["id"]: n["deleted"] for n in up["nodes"]}["dataset/evalset:1.0.0"] is True
    one_error_line(run("data", "delete", "evalset:1.0.0"), "evalset")
    with pytest.raises(PachaError):
        reopen(reg).get_dataset("evalset:1.0.0")


def test_the_edge_model_lists_exactly_the_cores_relations() -> None:
    """`LineageEdge.relation` (a typing Literal) matches the relations the core defines."""
    import typing

    from pacha.lineage import RELATIONS
    from pacha.models import LineageEdge

    literal = LineageEdge.model_fields["relation"].annotation
    assert set(typing.get_args(literal)) == set(RELATIONS)
    assert len(RELATIONS) == 12
