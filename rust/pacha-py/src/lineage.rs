//! Lineage query results for Python: a handle on the graph snapshot and the indices a query
//! found. Nothing is converted until asked for, so that a query over a hundred thousand
//! nodes costs the traversal, not a hundred thousand Python objects.

use std::sync::Arc;

use pacha_core::lineage::{render, Direction, Graph, NodeKind, NodeRef, Relation, Subgraph, Walk};
use pyo3::prelude::*;

use crate::errors::to_py;

#[pyclass(frozen, module = "pacha._core")]
#[derive(Debug)]
pub struct LineageResult {
    graph: Arc<Graph>,
    sub: Subgraph,
    /// Whether the first node is the node the query started from.
    has_start: bool,
}

/// (id, kind, name, version, depth, direction, deleted) of one node.
type NodeRow = (
    String,
    &'static str,
    String,
    Option<String>,
    u32,
    Option<&'static str>,
    bool,
);

impl LineageResult {
    pub(crate) fn new(graph: Arc<Graph>, sub: Subgraph, has_start: bool) -> Self {
        LineageResult {
            graph,
            sub,
            has_start,
        }
    }

    fn row(&self, i: usize) -> NodeRow {
        let g = &self.graph;
        let n = self.sub.nodes[i];
        let label = g.label(n);
        let (name, version) = pacha_core::lineage::name_and_version(g.kind(n), label);
        let (name, version) = (name.to_string(), version.map(str::to_string));
        let direction = if !self.has_start || i == 0 {
            // Whole-graph lists have no start, so no direction either.
            None
        } else if self.sub.upward[i] {
            Some("up")
        } else {
            Some("down")
        };
        (
            render::node_id(g, n),
            g.kind(n).as_str(),
            name,
            version,
            self.sub.depths[i],
            direction,
            g.is_deleted(n),
        )
    }
}

#[pymethods]
impl LineageResult {
    fn __len__(&self) -> usize {
        self.sub.nodes.len()
    }

    /// The id (`kind/name:version` or `run/ID`) of the node the query started from.
    #[getter]
    fn start(&self) -> Option<String> {
        match (self.has_start, self.sub.nodes.first()) {
            (true, Some(&n)) => Some(render::node_id(&self.graph, n)),
            _ => None,
        }
    }

    #[getter]
    fn edge_count(&self) -> usize {
        self.sub.edges.len()
    }

    /// Nodes as (id, kind, name, version, depth, direction, deleted), from `start` to
    /// `stop` (all by default).
    #[pyo3(signature = (start = 0, stop = None))]
    fn nodes(&self, start: usize, stop: Option<usize>) -> Vec<NodeRow> {
        let stop = stop.unwrap_or(usize::MAX).min(self.sub.nodes.len());
        (start.min(stop)..stop).map(|i| self.row(i)).collect()
    }

    /// Every node's id, in result order.
    fn ids(&self) -> Vec<String> {
        self.sub
            .nodes
            .iter()
            .map(|&n| render::node_id(&self.graph, n))
            .collect()
    }

    /// Edges as (from id, to id, relation, params as JSON text).
    fn edges(&self) -> Vec<(String, String, &'static str, String)> {
        let g = &self.graph;
        self.sub
            .edges
            .iter()
            .map(|&e| {
                (
                    render::node_id(g, g.edge_from(e)),
                    render::node_id(g, g.edge_to(e)),
                    g.relation(e).as_str(),
                    g.params(e).to_string(),
                )
            })
            .collect()
    }

    /// The whole result as JSON text: {"start", "nodes", "edges"}.
    fn to_json(&self, py: Python<'_>) -> String {
        py.detach(|| render::to_json(&self.graph, &self.sub, self.has_start))
    }

    fn __repr__(&self) -> String {
        format!(
            "LineageResult(start={:?}, nodes={}, edges={})",
            self.start(),
            self.sub.nodes.len(),
            self.sub.edges.len()
        )
    }
}

pub(crate) fn node_ref(text: &str) -> PyResult<NodeRef> {
    NodeRef::parse(text).map_err(to_py)
}

pub(crate) fn params_map(text: &str) -> PyResult<pacha_core::lineage::ParamMap> {
    pacha_core::lineage::parse_params(text).map_err(to_py)
}

/// A traversal specification from the Python arguments.
pub(crate) fn walk_spec(
    direction: &str,
    depth: Option<u32>,
    relations: &[String],
    kinds: &[String],
) -> PyResult<Walk> {
    let mut walk = Walk::new(Direction::parse(direction).map_err(to_py)?);
    walk.max_depth = depth;
    for r in relations {
        walk.relations |= 1 << Relation::parse(r).map_err(to_py)?.index();
    }
    for k in kinds {
        walk.kinds |= 1 << NodeKind::parse(k).map_err(to_py)?.index();
    }
    Ok(walk)
}

/// A result listing `nodes` (no edges, depth 0).
pub(crate) fn node_list(graph: Arc<Graph>, nodes: Vec<u32>) -> LineageResult {
    let count = nodes.len();
    let sub = Subgraph {
        nodes,
        depths: vec![0; count],
        upward: vec![false; count],
        edges: Vec::new(),
    };
    LineageResult::new(graph, sub, false)
}

/// The path result: the nodes along `edges` in order, starting at `first`.
pub(crate) fn path_result(graph: Arc<Graph>, first: u32, edges: Vec<u32>) -> LineageResult {
    let mut nodes = vec![first];
    let mut upward = vec![false];
    let mut at = first;
    for &e in &edges {
        let (from, to) = (graph.edge_from(e), graph.edge_to(e));
        let (next, up) = if from == at {
            (to, true)
        } else {
            (from, false)
        };
        nodes.push(next);
        upward.push(up);
        at = next;
    }
    let depths = (0..nodes.len() as u32).collect();
    let sub = Subgraph {
        nodes,
        depths,
        upward,
        edges,
    };
    LineageResult::new(graph, sub, true)
}
