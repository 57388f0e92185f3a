//! The in-memory lineage graph: node and edge columns plus compressed adjacency in both
//! directions, so that a traversal touches only the nodes it reports (no hashing, no SQL).
//!
//! Written by hand rather than with a graph crate because the layout is also the on-disk
//! cache format (see `cache.rs`): loading is a copy of arrays, not a rebuild.

use std::collections::VecDeque;

use super::{EdgeRow, LineageRows, NodeKind, NodeRecord, Relation};
use crate::{CoreError, Result};

/// Marks "no edge" in per-node parent arrays.
pub const NO_EDGE: u32 = u32::MAX;

/// Which way to walk: `Up` to what a node came from (ancestors), `Down` to what was made
/// from it (descendants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Both,
}

impl Direction {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "up" | "ancestors" => Ok(Direction::Up),
            "down" | "descendants" => Ok(Direction::Down),
            "both" => Ok(Direction::Both),
            _ => Err(CoreError::InvalidInput {
                message: format!(
                    "unknown direction {:?}: expected up, down or both",
                    text.chars().take(20).collect::<String>()
                ),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Both => "both",
        }
    }
}

/// What a traversal follows and reports.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    pub direction: Direction,
    /// Levels to go at most (`None`: all the way).
    pub max_depth: Option<u32>,
    /// Follow only edges of these relations (bit `Relation::index()`); 0 follows all.
    pub relations: u16,
    /// Report only nodes of these kinds (bit `NodeKind::index()`); 0 reports all. Other
    /// nodes are still walked through: the models downstream of a dataset are reached
    /// through the runs that used it.
    pub kinds: u8,
}

impl Walk {
    pub fn new(direction: Direction) -> Self {
        Walk {
            direction,
            max_depth: None,
            relations: 0,
            kinds: 0,
        }
    }
}

/// The result of a query: node indices (the start first, then in breadth-first order) and
/// the edges among them.
#[derive(Debug, Clone, Default)]
pub struct Subgraph {
    pub nodes: Vec<u32>,
    /// Levels from the start, per node.
    pub depths: Vec<u32>,
    /// Whether each node was reached upward (an ancestor) rather than downward.
    pub upward: Vec<bool>,
    /// Edge indices.
    pub edges: Vec<u32>,
}

impl Subgraph {
    fn push(&mut self, node: u32, depth: u32, upward: bool) {
        self.nodes.push(node);
        self.depths.push(depth);
        self.upward.push(upward);
    }
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub(crate) token: String,
    /// Database ids, ascending.
    pub(crate) ids: Vec<i64>,
    pub(crate) kinds: Vec<u8>,
    pub(crate) deleted: Vec<bool>,
    /// End offset of each label in `labels`.
    pub(crate) label_ends: Vec<u32>,
    pub(crate) labels: String,
    /// Edges sorted by `edge_from`: the up-adjacency of node `i` is
    /// `up_start[i]..up_start[i + 1]`.
    pub(crate) edge_from: Vec<u32>,
    pub(crate) edge_to: Vec<u32>,
    pub(crate) edge_rel: Vec<u8>,
    pub(crate) param_ends: Vec<u32>,
    pub(crate) params: String,
    up_start: Vec<u32>,
    down_start: Vec<u32>,
    /// Edge indices grouped by `edge_to`.
    down_edges: Vec<u32>,
}

fn too_large() -> CoreError {
    CoreError::InvalidInput {
        message: "the lineage graph is too large for its 32-bit index (over 4 billion nodes, \
                  edges or label bytes)"
            .into(),
    }
}

fn to_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| too_large())
}

impl Graph {
    /// Build from database rows (nodes ordered by id).
    pub fn from_rows(rows: LineageRows) -> Result<Self> {
        let n = rows.nodes.len();
        let mut ids = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut deleted = Vec::with_capacity(n);
        let mut label_ends = Vec::with_capacity(n);
        let mut labels = String::new();
        for node in rows.nodes {
            ids.push(node.id);
            kinds.push(node.kind.index());
            deleted.push(node.deleted);
            labels.push_str(&node.label);
            label_ends.push(to_u32(labels.len())?);
        }
        let mut edges: Vec<(u32, u32, u8, String)> = Vec::with_capacity(rows.edges.len());
        for EdgeRow {
            from,
            to,
            relation,
            params,
        } in rows.edges
        {
            let (Ok(f), Ok(t)) = (ids.binary_search(&from), ids.binary_search(&to)) else {
                return Err(CoreError::Corrupt {
                    message: format!("lineage edge {from} → {to} names a node that does not exist"),
                });
            };
            edges.push((to_u32(f)?, to_u32(t)?, relation.index() as u8, params));
        }
        edges.sort_unstable_by_key(|e| e.0);
        let m = edges.len();
        let mut edge_from = Vec::with_capacity(m);
        let mut edge_to = Vec::with_capacity(m);
        let mut edge_rel = Vec::with_capacity(m);
        let mut param_ends = Vec::with_capacity(m);
        let mut params = String::new();
        for (f, t, r, p) in edges {
            edge_from.push(f);
            edge_to.push(t);
            edge_rel.push(r);
            // Most edges have no parameters; `{}` is stored as nothing.
            if p != "{}" {
                params.push_str(&p);
            }
            param_ends.push(to_u32(params.len())?);
        }
        Graph::assemble(
            rows.token, ids, kinds, deleted, label_ends, labels, edge_from, edge_to, edge_rel,
            param_ends, params,
        )
    }

    /// Check the columns (they may come from a cache file) and build the adjacency arrays.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        token: String,
        ids: Vec<i64>,
        kinds: Vec<u8>,
        deleted: Vec<bool>,
        label_ends: Vec<u32>,
        labels: String,
        edge_from: Vec<u32>,
        edge_to: Vec<u32>,
        edge_rel: Vec<u8>,
        param_ends: Vec<u32>,
        params: String,
    ) -> Result<Self> {
        let n = ids.len();
        let m = edge_from.len();
        let corrupt = |what: &str| CoreError::Corrupt {
            message: format!("lineage graph: {what}"),
        };
        if kinds.len() != n || deleted.len() != n || label_ends.len() != n {
            return Err(corrupt("node columns differ in length"));
        }
        if edge_to.len() != m || edge_rel.len() != m || param_ends.len() != m {
            return Err(corrupt("edge columns differ in length"));
        }
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("node ids are not ascending"));
        }
        if kinds.iter().any(|k| NodeKind::from_index(*k).is_none()) {
            return Err(corrupt("unknown node kind"));
        }
        let offsets_ok = |ends: &[u32], text: &str| {
            let mut previous = 0usize;
            ends.iter().all(|&end| {
                let end = end as usize;
                let ok = end >= previous && end <= text.len() && text.is_char_boundary(end);
                previous = end;
                ok
            })
        };
        if !offsets_ok(&label_ends, &labels) || !offsets_ok(&param_ends, &params) {
            return Err(corrupt("text offsets out of range"));
        }
        let n32 = to_u32(n)?;
        if edge_from.iter().chain(&edge_to).any(|&i| i >= n32) {
            return Err(corrupt("edge names a node out of range"));
        }
        if edge_from.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt("edges are not sorted"));
        }
        if edge_rel.iter().any(|r| Relation::from_index(*r).is_none()) {
            return Err(corrupt("unknown relation"));
        }
        // Counting sort into both adjacency arrays: O(nodes + edges).
        let mut up_start = vec![0u32; n + 1];
        let mut down_start = vec![0u32; n + 1];
        for e in 0..m {
            up_start[edge_from[e] as usize + 1] += 1;
            down_start[edge_to[e] as usize + 1] += 1;
        }
        for i in 0..n {
            up_start[i + 1] += up_start[i];
            down_start[i + 1] += down_start[i];
        }
        let mut fill = down_start.clone();
        let mut down_edges = vec![0u32; m];
        for (e, &to) in edge_to.iter().enumerate() {
            let slot = &mut fill[to as usize];
            down_edges[*slot as usize] = e as u32;
            *slot += 1;
        }
        Ok(Graph {
            token,
            ids,
            kinds,
            deleted,
            label_ends,
            labels,
            edge_from,
            edge_to,
            edge_rel,
            param_ends,
            params,
            up_start,
            down_start,
            down_edges,
        })
    }

    /// The token of the database state this snapshot was built from.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn node_count(&self) -> usize {
        self.ids.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edge_from.len()
    }

    /// The index of the node with database id `id`.
    pub fn index_of(&self, id: i64) -> Option<u32> {
        self.ids.binary_search(&id).ok().map(|i| i as u32)
    }

    pub fn id(&self, node: u32) -> i64 {
        self.ids[node as usize]
    }

    pub fn kind(&self, node: u32) -> NodeKind {
        NodeKind::from_index(self.kinds[node as usize]).unwrap_or(NodeKind::Model)
    }

    pub fn is_deleted(&self, node: u32) -> bool {
        self.deleted[node as usize]
    }

    /// `name:version`, or the run id.
    pub fn label(&self, node: u32) -> &str {
        let i = node as usize;
        let start = if i == 0 {
            0
        } else {
            self.label_ends[i - 1] as usize
        };
        &self.labels[start..self.label_ends[i] as usize]
    }

    pub fn record(&self, node: u32) -> NodeRecord {
        NodeRecord {
            id: self.id(node),
            kind: self.kind(node),
            label: self.label(node).to_string(),
            deleted: self.is_deleted(node),
        }
    }

    pub fn edge_from(&self, edge: u32) -> u32 {
        self.edge_from[edge as usize]
    }

    pub fn edge_to(&self, edge: u32) -> u32 {
        self.edge_to[edge as usize]
    }

    pub fn relation(&self, edge: u32) -> Relation {
        Relation::from_index(self.edge_rel[edge as usize]).unwrap_or(Relation::FineTuned)
    }

    /// The edge's parameters as JSON object text.
    pub fn params(&self, edge: u32) -> &str {
        let i = edge as usize;
        let start = if i == 0 {
            0
        } else {
            self.param_ends[i - 1] as usize
        };
        let text = &self.params[start..self.param_ends[i] as usize];
        if text.is_empty() {
            "{}"
        } else {
            text
        }
    }

    /// Edges from `node` to what it came from.
    fn up(&self, node: u32) -> std::ops::Range<usize> {
        self.up_start[node as usize] as usize..self.up_start[node as usize + 1] as usize
    }

    /// Edges into `node` from what was made from it.
    fn down(&self, node: u32) -> &[u32] {
        &self.down_edges
            [self.down_start[node as usize] as usize..self.down_start[node as usize + 1] as usize]
    }

    pub fn up_degree(&self, node: u32) -> usize {
        self.up(node).len()
    }

    pub fn down_degree(&self, node: u32) -> usize {
        self.down(node).len()
    }

    /// Ancestors and/or descendants of `start`, breadth first.
    pub fn walk(&self, start: u32, walk: &Walk) -> Subgraph {
        let mut result = Subgraph::default();
        result.push(start, 0, false);
        let mut found_edges = Vec::new();
        let passes: &[bool] = match walk.direction {
            Direction::Up => &[true],
            Direction::Down => &[false],
            Direction::Both => &[true, false],
        };
        let mut seen = vec![false; self.node_count()];
        for &upward in passes {
            seen.iter_mut().for_each(|s| *s = false);
            seen[start as usize] = true;
            let mut queue = VecDeque::from([(start, 0u32)]);
            while let Some((node, depth)) = queue.pop_front() {
                if walk.max_depth.is_some_and(|max| depth >= max) {
                    continue;
                }
                let mut visit = |edge: u32, next: u32| {
                    if walk.relations != 0
                        && walk.relations & (1 << self.edge_rel[edge as usize]) == 0
                    {
                        return;
                    }
                    found_edges.push(edge);
                    if !seen[next as usize] {
                        seen[next as usize] = true;
                        queue.push_back((next, depth + 1));
                        result.push(next, depth + 1, upward);
                    }
                };
                if upward {
                    for edge in self.up(node) {
                        visit(edge as u32, self.edge_to[edge]);
                    }
                } else {
                    for &edge in self.down(node) {
                        visit(edge, self.edge_from[edge as usize]);
                    }
                }
            }
        }
        if walk.kinds != 0 {
            let keep =
                |i: usize| i == 0 || walk.kinds & (1 << self.kinds[result.nodes[i] as usize]) != 0;
            let mut kept = Subgraph::default();
            for i in 0..result.nodes.len() {
                if keep(i) {
                    kept.push(result.nodes[i], result.depths[i], result.upward[i]);
                }
            }
            result = kept;
        }
        let mut reported = vec![false; self.node_count()];
        for &node in &result.nodes {
            reported[node as usize] = true;
        }
        result.edges = found_edges
            .into_iter()
            .filter(|&e| {
                reported[self.edge_from[e as usize] as usize]
                    && reported[self.edge_to[e as usize] as usize]
            })
            .collect();
        result
    }

    /// The shortest chain of edges between `a` and `b`, whichever came from the other,
    /// listed from `a`'s end. `None` if neither came from the other.
    pub fn path(&self, a: u32, b: u32) -> Option<Vec<u32>> {
        if a == b {
            return Some(Vec::new());
        }
        self.path_up(a, b).or_else(|| {
            self.path_up(b, a).map(|mut edges| {
                edges.reverse();
                edges
            })
        })
    }

    fn path_up(&self, from: u32, target: u32) -> Option<Vec<u32>> {
        let mut via = vec![NO_EDGE; self.node_count()];
        let mut queue = VecDeque::from([from]);
        let mut reached = false;
        'search: while let Some(node) = queue.pop_front() {
            for edge in self.up(node) {
                let next = self.edge_to[edge];
                if next != from && via[next as usize] == NO_EDGE {
                    via[next as usize] = edge as u32;
                    if next == target {
                        reached = true;
                        break 'search;
                    }
                    queue.push_back(next);
                }
            }
        }
        if !reached {
            return None;
        }
        let mut edges = Vec::new();
        let mut node = target;
        while node != from {
            let edge = via[node as usize];
            edges.push(edge);
            node = self.edge_from[edge as usize];
        }
        edges.reverse();
        Some(edges)
    }

    /// Nodes that came from nothing recorded (sources: raw datasets, base models) — among
    /// the ancestors of `start`, or in the whole graph (nodes with at least one edge).
    pub fn roots(&self, start: Option<u32>) -> Vec<u32> {
        match start {
            Some(s) => self
                .walk(s, &Walk::new(Direction::Up))
                .nodes
                .into_iter()
                .filter(|&n| self.up_degree(n) == 0)
                .collect(),
            None => (0..self.node_count() as u32)
                .filter(|&n| self.up_degree(n) == 0 && self.down_degree(n) > 0)
                .collect(),
        }
    }

    /// Nodes nothing was made from — among the descendants of `start`, or in the whole
    /// graph (nodes with at least one edge).
    pub fn leaves(&self, start: Option<u32>) -> Vec<u32> {
        match start {
            Some(s) => self
                .walk(s, &Walk::new(Direction::Down))
                .nodes
                .into_iter()
                .filter(|&n| self.down_degree(n) == 0)
                .collect(),
            None => (0..self.node_count() as u32)
                .filter(|&n| self.down_degree(n) == 0 && self.up_degree(n) > 0)
                .collect(),
        }
    }

    /// Every node before anything made from it — `start` and its ancestors, or the whole
    /// graph (nodes with at least one edge). Kahn's algorithm; ties in id order.
    pub fn topological(&self, start: Option<u32>) -> Vec<u32> {
        let members: Vec<u32> = match start {
            Some(s) => self.walk(s, &Walk::new(Direction::Up)).nodes,
            None => (0..self.node_count() as u32)
                .filter(|&n| self.up_degree(n) > 0 || self.down_degree(n) > 0)
                .collect(),
        };
        let mut member = vec![false; self.node_count()];
        let mut waiting = vec![0u32; self.node_count()];
        for &n in &members {
            member[n as usize] = true;
            // Every ancestor of a member is a member, so all up-edges count.
            waiting[n as usize] = self.up_degree(n) as u32;
        }
        let mut ready: VecDeque<u32> = members
            .iter()
            .copied()
            .filter(|&n| waiting[n as usize] == 0)
            .collect();
        ready.make_contiguous().sort_unstable();
        let mut order = Vec::with_capacity(members.len());
        while let Some(node) = ready.pop_front() {
            order.push(node);
            for &edge in self.down(node) {
                let next = self.edge_from[edge as usize];
                if member[next as usize] {
                    waiting[next as usize] -= 1;
                    if waiting[next as usize] == 0 {
                        ready.push_back(next);
                    }
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests;
