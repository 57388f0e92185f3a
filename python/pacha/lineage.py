"""Lineage query results and their views: JSON, Graphviz DOT, Mermaid, W3C PROV-JSON and a
terminal tree.

Queries run in the Rust core over a snapshot of the graph; a `Lineage` holds the result
there and turns nodes into pydantic `LineageNode` objects only when they are read, so that
asking for a hundred thousand descendants costs the traversal, not a hundred thousand
Python objects.

Edges point from the derived node to what it came from (a model ``trained_on`` a dataset).
The DOT and Mermaid views draw arrows the way data flows instead — from the dataset to the
model — which is how people read a pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Optional, Union, cast, overload

from pacha import _core

if TYPE_CHECKING:
    from pacha.models import ArtifactVersion, LineageEdge, LineageNode, RunRecord

__all__ = ["RELATIONS", "Lineage", "NodeLike", "node_text"]

#: Every edge kind, in the order the docs list them (defined in the Rust core).
RELATIONS = tuple(_core.LINEAGE_RELATIONS)

#: A node: `kind/name:version`, `name:version` (when only one kind has it), `run/RUN_ID`, or
#: a registered version or run object.
NodeLike = Union[str, "ArtifactVersion", "RunRecord"]

_NODE_KINDS = ("model", "dataset", "recipe", "run")


def node_text(node: NodeLike) -> str:
    """The text form of a node reference."""
    if isinstance(node, str):
        return node
    kind = getattr(node, "kind", None)
    if kind in ("model", "dataset", "recipe"):
        return f"{kind}/{node.name}:{node.version}"  # type: ignore[union-attr]
    run_id = getattr(node, "id", None)
    if isinstance(run_id, str):
        return f"run/{run_id}"
    raise TypeError(f"not a lineage node: {node!r}; give 'kind/name:version' or a version")


class _Nodes(Sequence["LineageNode"]):
    """The nodes of a result, built on access."""

    def __init__(self, result: _core.LineageResult) -> None:
        self._result = result
        self._cache: dict[int, LineageNode] = {}

    def __len__(self) -> int:
        return len(self._result)

    @overload
    def __getitem__(self, index: int) -> LineageNode: ...

    @overload
    def __getitem__(self, index: slice) -> list[LineageNode]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[LineageNode, list[LineageNode]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("lineage node index out of range")
        node = self._cache.get(index)
        if node is None:
            node = _node(self._result.nodes(index, index + 1)[0])
            self._cache[index] = node
        return node

    def __iter__(self) -> Iterator[LineageNode]:
        # In batches: one call into the core per thousand nodes, not per node.
        total = len(self)
        for start in range(0, total, 1024):
            for offset, row in enumerate(self._result.nodes(start, start + 1024)):
                index = start + offset
                node = self._cache.get(index)
                if node is None:
                    node = self._cache[index] = _node(row)
                yield node


def _node(row: tuple[str, str, str, Optional[str], int, Optional[str], bool]) -> LineageNode:
    from pacha.models import LineageNode

    node_id, kind, name, version, depth, direction, deleted = row
    # Built without re-validation: the core produced every field in its final form.
    return LineageNode.model_construct(
        id=node_id,
        kind=cast(Any, kind),
        name=name,
        version=version,
        depth=depth,
        direction=cast(Any, direction),
        deleted=deleted,
    )


class Lineage:
    """The result of a lineage query: a sized, iterable collection of `LineageNode` (the
    start first, then breadth first) and the `LineageEdge` objects among them."""

    def __init__(self, result: _core.LineageResult, direction: Optional[str] = None) -> None:
        self._result = result
        self.direction = direction
        self.nodes: Sequence[LineageNode] = _Nodes(result)

    @property
    def start(self) -> Optional[str]:
        """The id of the node the query started from (None for whole-graph queries)."""
        return self._result.start

    def __len__(self) -> int:
        return len(self._result)

    def __iter__(self) -> Iterator[LineageNode]:
        return iter(self.nodes)

    def __contains__(self, node: object) -> bool:
        try:
            text = node_text(node)  # type: ignore[arg-type]
        except TypeError:
            return False
        return text in self.ids

    def __repr__(self) -> str:
        return f"Lineage(start={self.start!r}, nodes={len(self)}, edges={self.edge_count})"

    @cached_property
    def ids(self) -> list[str]:
        """Every node's id, in result order (cheaper than building the nodes)."""
        return self._result.ids()

    @property
    def edge_count(self) -> int:
        return self._result.edge_count

    @cached_property
    def edges(self) -> list[LineageEdge]:
        from pacha.models import LineageEdge

        return [
            LineageEdge.model_construct(
                from_=source, to=target, relation=cast(Any, relation), params=json.loads(params)
            )
            for source, target, relation, params in self._result.edges()
        ]

    # ---- views ----

    def to_json(self) -> str:
        """``{"start": ..., "nodes": [...], "edges": [...]}`` (written by the core)."""
        return self._result.to_json()

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.to_json())
        return result

    def to_dot(self) -> str:
        """Graphviz DOT (`dot -Tsvg`): arrows go from what something came from to it."""
        shapes = {"model": "box", "dataset": "cylinder", "recipe": "note", "run": "ellipse"}
        index: dict[str, str] = {}
        lines = [
            "digraph lineage {",
            "  rankdir=LR;",
            '  node [fontname="Helvetica", fontsize=11];',
            '  edge [fontname="Helvetica", fontsize=9];',
        ]
        for i, row in enumerate(self._result.nodes()):
            node_id, kind, _name, _version, _depth, _direction, deleted = row
            index[node_id] = f"n{i}"
            attrs = [f"label={_dot_quote(node_id + (' (deleted)' if deleted else ''))}"]
            attrs.append(f"shape={shapes.get(kind, 'box')}")
            if deleted:
                attrs.append('style=dashed, color="gray50", fontcolor="gray50"')
            if i == 0 and self.start is not None:
                attrs.append("penwidth=2")
            lines.append(f"  n{i} [{', '.join(attrs)}];")
        for source, target, relation, params in self._result.edges():
            label = _edge_label(relation, params)
            lines.append(f"  {index[target]} -> {index[source]} [label={_dot_quote(label)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """A Mermaid ``graph`` block (paste it into Markdown inside a ```mermaid fence)."""
        shapes = {
            "model": ('["', '"]'),
            "dataset": ('[("', '")]'),
            "recipe": ('>"', '"]'),
            "run": ('(["', '"])'),
        }
        index: dict[str, str] = {}
        lines = ["graph LR"]
        deleted_nodes: list[str] = []
        for i, row in enumerate(self._result.nodes()):
            node_id, kind, _name, _version, _depth, _direction, deleted = row
            index[node_id] = f"n{i}"
            left, right = shapes.get(kind, ('["', '"]'))
            text = node_id + (" (deleted)" if deleted else "")
            lines.append(f"  n{i}{left}{_mermaid_escape(text)}{right}")
            if deleted:
                deleted_nodes.append(f"n{i}")
        for source, target, relation, params in self._result.edges():
            label = _mermaid_escape(_edge_label(relation, params))
            lines.append(f'  {index[target]} -->|"{label}"| {index[source]}')
        if deleted_nodes:
            lines.append("  classDef deleted stroke-dasharray: 5 5,color:#888")
            lines.append(f"  class {','.join(deleted_nodes)} deleted")
        return "\n".join(lines) + "\n"

    def to_prov(self) -> dict[str, Any]:
        """W3C PROV-JSON: versions are entities, runs are activities; each edge is the PROV
        relation it maps onto, with pacha's relation and parameters as attributes."""
        document: dict[str, Any] = {
            "prefix": {"pacha": "https://pacha.dev/ns/prov#"},
        }
        entities: dict[str, Any] = {}
        activities: dict[str, Any] = {}
        for node_id, kind, name, version, _depth, _direction, deleted in self._result.nodes():
            attributes: dict[str, Any] = {
                "prov:type": {"$": f"pacha:{kind}", "type": "prov:QUALIFIED_NAME"},
                "prov:label": node_id,
                "pacha:name": name,
            }
            if version is not None:
                attributes["pacha:version"] = version
            if deleted:
                attributes["pacha:deleted"] = True
            (activities if kind == "run" else entities)[_prov_id(node_id)] = attributes
        if entities:
            document["entity"] = entities
        if activities:
            document["activity"] = activities
        roles = {
            "wasDerivedFrom": ("prov:generatedEntity", "prov:usedEntity"),
            "wasGeneratedBy": ("prov:entity", "prov:activity"),
            "used": ("prov:activity", "prov:entity"),
            "wasInfluencedBy": ("prov:influencee", "prov:influencer"),
        }
        for n, (source, target, relation, params) in enumerate(self._result.edges()):
            prov = _PROV_OF[relation]
            first, second = roles[prov]
            record: dict[str, Any] = {
                first: _prov_id(source),
                second: _prov_id(target),
                "pacha:relation": relation,
            }
            for key, value in json.loads(params).items():
                record[f"pacha:{key}"] = value
            document.setdefault(prov, {})[f"_:e{n}"] = record
        return document

    def to_prov_json(self) -> str:
        return json.dumps(self.to_prov(), indent=2)

    def tree(self) -> Any:
        """A `rich.tree.Tree` of the result: from the start, what it came from (up) and/or
        what was made from it (down). A node reached twice is shown once, then referred to."""
        from rich.markup import escape
        from rich.tree import Tree

        rows = self._result.nodes()
        by_id = {row[0]: row for row in rows}
        up: dict[str, list[tuple[str, str, str]]] = {}
        down: dict[str, list[tuple[str, str, str]]] = {}
        for source, target, relation, params in self._result.edges():
            label = _edge_label(relation, params)
            up.setdefault(source, []).append((target, label, relation))
            down.setdefault(target, []).append((source, label, relation))
        colours = {"model": "cyan", "dataset": "green", "recipe": "magenta", "run": "yellow"}

        def text(node_id: str) -> str:
            row = by_id.get(node_id)
            kind = row[1] if row else "model"
            deleted = bool(row and row[6])
            shown = f"[{colours.get(kind, 'white')}]{escape(node_id)}[/]"
            return f"[dim strike]{escape(node_id)}[/] [dim](deleted)[/]" if deleted else shown

        start = self.start or (rows[0][0] if rows else "(empty)")
        root = Tree(text(start) if rows else start)
        if not rows:
            return root
        shown: set[str] = {start}

        def grow(
            branch: Tree, node_id: str, links: dict[str, list[tuple[str, str, str]]], arrow: str
        ) -> None:
            # Depth-first, in order, with an explicit stack (a thousand-level chain must not
            # hit Python's recursion limit); a node seen before is printed above, so it is
            # referred to instead of repeated.
            stack = [(branch, other, label) for other, label, _ in reversed(links.get(node_id, []))]
            while stack:
                parent, current, label = stack.pop()
                line = f"[dim]{arrow} {escape(label)}[/] {text(current)}"
                if current in shown:
                    parent.add(f"{line} [dim](see above)[/]")
                    continue
                shown.add(current)
                child = parent.add(line)
                for other, next_label, _ in reversed(links.get(current, [])):
                    stack.append((child, other, next_label))

        direction = self.direction or "up"
        if direction in ("up", "both") and up.get(start):
            branch = root.add("[bold]came from[/]") if direction == "both" else root
            grow(branch, start, up, "←")
        if direction in ("down", "both") and down.get(start):
            branch = root.add("[bold]made from it[/]") if direction == "both" else root
            grow(branch, start, down, "→")
        if self.start is None:
            for row in rows[1:]:
                root.add(text(row[0]))
            return root
        # Nodes reached only through nodes a --kind filter hides have no edge to draw.
        unlinked = [row for row in rows[1:] if row[0] not in shown]
        if unlinked:
            branch = root.add("[bold]reached through hidden nodes[/]")
            for row in unlinked:
                arrow = "←" if row[5] == "up" else "→"
                branch.add(f"[dim]{arrow} {row[4]} steps[/] {text(row[0])}")
        return root


#: The PROV-DM relation each edge kind maps onto (defined in the Rust core).
_PROV_OF: dict[str, str] = dict(_core.LINEAGE_PROV)


def _prov_id(node_id: str) -> str:
    # Percent-encoding keeps the local part valid PROV-N (PN_LOCAL allows %XX) and distinct
    # node ids distinct: `model/a:1.0.0` → `pacha:model%2Fa%3A1.0.0`.
    from urllib.parse import quote

    return "pacha:" + quote(node_id, safe="-_.")


def _edge_label(relation: str, params: str) -> str:
    values = json.loads(params) if params != "{}" else {}
    if not values:
        return relation
    shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
    return f"{relation} ({shown})"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _mermaid_escape(text: str) -> str:
    replacements = {'"': "#quot;", "|": "#124;", "<": "#lt;", ">": "#gt;", "\n": " "}
    return "".join(replacements.get(c, c) for c in text)
