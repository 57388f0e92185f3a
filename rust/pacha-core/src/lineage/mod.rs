//! The lineage graph: which model, dataset and recipe versions and which runs were made from
//! which.
//!
//! Edges are rows in the metadata database (`lineage_edges`), written in the same
//! transaction as the registration that implies them. Queries run on [`Graph`], a compact
//! in-memory snapshot (compressed adjacency arrays) that [`cache`] keeps on disk next to
//! the database, as git keeps its commit-graph file: a new process loads it in milliseconds
//! instead of reading a million rows, and a change to the graph in any process invalidates
//! it (every write to the lineage tables sets a new random token, by trigger).

pub mod cache;
mod graph;
mod relation;
pub mod render;

use std::fmt;

pub use graph::{Direction, Graph, Subgraph, Walk, NO_EDGE};
pub use relation::{ProvRelation, Relation, GGUF_TYPES, QUANT_METHODS};

use crate::meta::runs::validate_run_id;
use crate::meta::{Kind, Reference};
use crate::{CoreError, Result};

/// What a lineage node is: a version of a model, dataset or recipe, or a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    Model,
    Dataset,
    Recipe,
    Run,
}

impl NodeKind {
    pub const ALL: [NodeKind; 4] = [
        NodeKind::Model,
        NodeKind::Dataset,
        NodeKind::Recipe,
        NodeKind::Run,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Model => "model",
            NodeKind::Dataset => "dataset",
            NodeKind::Recipe => "recipe",
            NodeKind::Run => "run",
        }
    }

    /// Parse a node kind; `data` is accepted for `dataset` (the CLI group's name).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "model" => Ok(NodeKind::Model),
            "dataset" | "data" => Ok(NodeKind::Dataset),
            "recipe" => Ok(NodeKind::Recipe),
            "run" => Ok(NodeKind::Run),
            _ => Err(CoreError::InvalidInput {
                message: format!(
                    "unknown node kind {:?}: expected model, dataset, recipe or run",
                    text.chars().take(40).collect::<String>()
                ),
            }),
        }
    }

    pub fn index(self) -> u8 {
        match self {
            NodeKind::Model => 0,
            NodeKind::Dataset => 1,
            NodeKind::Recipe => 2,
            NodeKind::Run => 3,
        }
    }

    pub fn from_index(index: u8) -> Option<Self> {
        NodeKind::ALL.get(usize::from(index)).copied()
    }

    pub fn artifact_kind(self) -> Option<Kind> {
        match self {
            NodeKind::Model => Some(Kind::Model),
            NodeKind::Dataset => Some(Kind::Dataset),
            NodeKind::Recipe => Some(Kind::Recipe),
            NodeKind::Run => None,
        }
    }
}

impl From<Kind> for NodeKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Model => NodeKind::Model,
            Kind::Dataset => NodeKind::Dataset,
            Kind::Recipe => NodeKind::Recipe,
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node as a user names it: `model/bert:1.2.0`, `dataset/imdb@production`,
/// `recipe/bert-finetune:1.0.0`, `run/3fa9c1` (a unique prefix), or without the kind
/// (`bert:1.2.0`, resolved when exactly one kind has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    Version(Kind, Reference),
    Run(String),
    /// A reference whose kind is to be found.
    Untyped(Reference),
}

impl NodeRef {
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Some((kind, rest)) = text.split_once('/') {
            return match NodeKind::parse(kind)? {
                NodeKind::Run => Ok(NodeRef::Run(validate_run_id(rest, true)?)),
                other => {
                    let kind = other.artifact_kind().unwrap_or(Kind::Model);
                    Ok(NodeRef::Version(kind, Reference::parse(rest, None)?))
                }
            };
        }
        if !text.contains([':', '@']) && validate_run_id(text, true).is_ok() {
            return Ok(NodeRef::Run(validate_run_id(text, true)?));
        }
        Reference::parse(text, None)
            .map(NodeRef::Untyped)
            .map_err(|e| CoreError::InvalidInput {
                message: format!(
                    "{e}; a lineage node is KIND/REF (model/bert:1.0.0, dataset/imdb@production, \
                     recipe/r:1.0.0) or run/RUN_ID"
                ),
            })
    }

    pub fn version(kind: Kind, reference: Reference) -> Self {
        NodeRef::Version(kind, reference)
    }
}

/// A node as stored: its database id, kind, display label (`name:version` or the run id)
/// and whether the version it stands for was deleted (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: i64,
    pub kind: NodeKind,
    pub label: String,
    pub deleted: bool,
}

impl NodeRecord {
    /// `kind/label`, the form every view uses.
    pub fn typed_label(&self) -> String {
        format!("{}/{}", self.kind, self.label)
    }
}

/// An edge to record from a version being registered (or between existing nodes).
#[derive(Debug, Clone)]
pub struct NewEdge {
    pub to: NodeRef,
    pub relation: Relation,
    /// Parameters as a JSON object (checked against the relation's rules).
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// One stored edge, as the snapshot reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRow {
    pub from: i64,
    pub to: i64,
    pub relation: Relation,
    /// JSON object text; `{}` for none.
    pub params: String,
}

impl EdgeRow {
    /// An edge as a backend read it, checked: renderers embed the parameters as they are,
    /// so they must be a JSON object. `database` names the store in the error.
    pub(crate) fn stored(
        from: i64,
        to: i64,
        relation: &str,
        params: String,
        database: &std::path::Path,
    ) -> crate::Result<Self> {
        if params != "{}"
            && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&params).is_err()
        {
            return Err(crate::CoreError::Database {
                path: database.to_path_buf(),
                message: format!(
                    "a value in the database is damaged (the parameters of lineage edge \
                     {from} → {to} are not a JSON object); restore the database from a backup"
                ),
            });
        }
        Ok(EdgeRow {
            from,
            to,
            relation: Relation::parse(relation)?,
            params,
        })
    }
}

/// Everything the graph snapshot is built from, read in one transaction with the token that
/// names this state of the graph.
#[derive(Debug, Clone, Default)]
pub struct LineageRows {
    pub token: String,
    /// Ordered by id.
    pub nodes: Vec<NodeRecord>,
    pub edges: Vec<EdgeRow>,
}

/// A descendant model and its stage, for impact analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpactRow {
    pub node_id: i64,
    pub name: String,
    pub version: String,
    pub stage: crate::meta::Stage,
    pub aliases: Vec<String>,
}

/// An edge's parameters.
pub type ParamMap = serde_json::Map<String, serde_json::Value>;

/// Edge parameters from JSON text: an object of names to values.
pub fn parse_params(text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(CoreError::InvalidInput {
            message: "lineage parameters must be a JSON object of names to values".into(),
        }),
    }
}

/// A label split into the artifact's name and version (a run's label is its id: no version).
pub fn name_and_version(kind: NodeKind, label: &str) -> (&str, Option<&str>) {
    match (kind, label.split_once(':')) {
        (NodeKind::Run, _) | (_, None) => (label, None),
        (_, Some((name, version))) => (name, Some(version)),
    }
}

/// Text for a cycle: `a → b → c → a`.
pub(crate) fn describe_cycle(labels: &[String]) -> String {
    labels.join(" → ")
}
