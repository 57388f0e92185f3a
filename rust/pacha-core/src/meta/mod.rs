//! The metadata database: artifacts, versions, stages, aliases, tags and which objects each
//! version needs.
//!
//! Callers talk to the [`MetadataStore`] trait. Below it, the registry's rules (version
//! numbering, references, stages, aliases, delete guards, runs, lineage) are written once in
//! `rules`, over the primitive reads and writes of [`tx::MetaTx`] that each backend implements
//! inside its own transaction (`sqlite` today). The vocabulary (names, versions, stages,
//! references) is in the other submodules.

#[cfg(test)]
mod conformance;
pub mod names;
mod postgres;
pub mod reference;
mod rules;
pub mod runs;
mod schema;
mod sqlite;
pub mod stage;
pub mod tx;
pub mod version;

use std::fmt;

use crate::lineage::{LineageRows, NodeRecord, NodeRef, Relation};
use crate::{Digest, Result};

pub use postgres::PostgresMetaStore;
pub use reference::{Reference, Selector};
pub use runs::{MetricPoint, NewRun, RunRecord, RunStatus};
pub use sqlite::SqliteMetaStore;
pub use stage::Stage;
pub use version::{Bump, Version};

/// What kind of artifact a name belongs to. The same name may exist once per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Model,
    Dataset,
    Recipe,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Dataset => "dataset",
            Kind::Recipe => "recipe",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "model" => Ok(Kind::Model),
            "dataset" => Ok(Kind::Dataset),
            "recipe" => Ok(Kind::Recipe),
            _ => Err(crate::CoreError::InvalidInput {
                message: format!(
                    "unknown artifact kind {text:?}: expected model, dataset or recipe"
                ),
            }),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a version's bytes are stored: one object, or a tree manifest naming many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    File,
    Tree,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::File => "file",
            Layout::Tree => "tree",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "tree" {
            Layout::Tree
        } else {
            Layout::File
        }
    }
}

/// The version a registration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionChoice {
    Exact(Version),
    /// The next version after the highest existing one (or the first one).
    Bump(Bump),
}

/// A version about to be registered. Its objects are already in the object store.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub kind: Kind,
    pub name: String,
    pub version: VersionChoice,
    pub digest: Digest,
    pub layout: Layout,
    /// Logical bytes: the file's size, or the sum of a tree's file sizes.
    pub size: u64,
    pub file_count: u64,
    pub description: Option<String>,
    /// The model card or datasheet, as JSON text (validated by the Python layer).
    pub card: Option<String>,
    pub tags: Vec<(String, String)>,
    pub actor: String,
    /// Every object this version needs (the file, or the manifest and its files) with sizes.
    pub objects: Vec<(Digest, u64)>,
    /// The run that produced this version, if any.
    pub run_id: Option<String>,
    /// Lineage edges from this version to what it came from.
    pub lineage: Vec<crate::lineage::NewEdge>,
    /// Permission bits of a single file (`None` for a tree: its manifest records them).
    pub mode: Option<u32>,
}

/// One registered version, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub id: i64,
    pub kind: Kind,
    pub name: String,
    pub version: String,
    pub digest: Digest,
    pub layout: Layout,
    pub size: u64,
    pub file_count: u64,
    pub stage: Stage,
    pub description: Option<String>,
    pub card: Option<String>,
    pub aliases: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub created_at: String,
    pub created_by: String,
    /// The run that produced this version, if any.
    pub run_id: Option<String>,
    /// Permission bits of a single-file version's file, when recorded.
    pub mode: Option<u32>,
}

impl VersionRecord {
    /// `name:version`, the form every message uses.
    pub fn label(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }
}

/// One stage change of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<Stage>,
    pub to: Stage,
    pub at: String,
    pub by: String,
}

/// A name with how many versions it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSummary {
    pub name: String,
    pub versions: u64,
    /// The highest non-pre-release version, if any.
    pub latest: Option<String>,
}

/// Filters for listing versions.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub stage: Option<Stage>,
    /// Every pair must match.
    pub tags: Vec<(String, String)>,
}

/// Counts for `pacha stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub models: u64,
    pub datasets: u64,
    pub recipes: u64,
    pub versions: u64,
    pub runs: u64,
    /// Distinct objects referenced by versions.
    pub objects: u64,
    /// Bytes of those objects, each counted once (after deduplication).
    pub stored_bytes: u64,
    /// Sum of every version's size (before deduplication).
    pub logical_bytes: u64,
}

/// A version and the objects (with sizes) recorded for it.
pub type VersionContents = (VersionRecord, Vec<(Digest, u64)>);

/// An object and the versions that need it (`name:version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUse {
    pub digest: Digest,
    pub size: u64,
    pub users: Vec<String>,
}

/// A lock held until dropped (see [`MetadataStore::collector_lock`]).
pub trait CollectorLock: Send + Sync {
    /// `Some(why)` when the lock may have gone: the connection that held it broke (a
    /// server restart, the network), which releases a database lock without telling its
    /// holder. `why` names the cause: the server unreachable now, or the lock lost.
    fn lost(&self) -> Option<crate::CoreError>;
}

/// A held [`CollectorLock`].
pub type HeldLock = Box<dyn CollectorLock>;

/// The metadata database.
pub trait MetadataStore: Send + Sync + fmt::Debug {
    /// For a store several machines share, the garbage collector's lock (see
    /// `registry::gc`): shared for a registration, `exclusive` for the collector; held until
    /// the guard is dropped. `None` for a store one machine uses: the registry's directory
    /// holds that lock.
    fn collector_lock(&self, exclusive: bool) -> Result<Option<HeldLock>> {
        let _ = exclusive;
        Ok(None)
    }

    /// Fail early (before any bytes are stored) when `name`/`choice` cannot be registered.
    /// Advisory: `insert_version` checks again inside its transaction.
    fn precheck(&self, kind: Kind, name: &str, choice: &VersionChoice) -> Result<()>;

    /// Insert a version, its objects, tags and first history entry in one transaction.
    /// A version that exists (same precedence) is `CoreError::AlreadyExists`.
    fn insert_version(&self, new: &NewVersion) -> Result<VersionRecord>;

    fn resolve(&self, kind: Kind, reference: &Reference) -> Result<VersionRecord>;

    fn list_names(&self, kind: Kind) -> Result<Vec<NameSummary>>;

    /// Versions of `name` (or of every name), in precedence order per name.
    fn list_versions(
        &self,
        kind: Kind,
        name: Option<&str>,
        filter: &ListFilter,
    ) -> Result<Vec<VersionRecord>>;

    /// Move a version to `to` following the stage rules; with `archive_existing`, versions of
    /// the same name already in production are archived in the same transaction.
    fn transition(
        &self,
        kind: Kind,
        reference: &Reference,
        to: Stage,
        archive_existing: bool,
        actor: &str,
    ) -> Result<VersionRecord>;

    fn history(&self, version_id: i64) -> Result<Vec<Transition>>;

    /// Point `alias` at the referenced version (moving it if it pointed elsewhere).
    fn set_alias(&self, kind: Kind, reference: &Reference, alias: &str) -> Result<VersionRecord>;

    fn delete_alias(&self, kind: Kind, name: &str, alias: &str) -> Result<()>;

    fn set_tags(
        &self,
        kind: Kind,
        reference: &Reference,
        tags: &[(String, String)],
    ) -> Result<VersionRecord>;

    fn stats(&self) -> Result<Stats>;

    /// Objects needed by the given versions (all versions when `None`), with their users.
    fn object_uses(&self, version_ids: Option<&[i64]>) -> Result<Vec<ObjectUse>>;

    /// Each version (of the given ids; every version when `None`) with the objects recorded
    /// for it, so that `verify` can check the database against itself and the objects.
    fn version_contents(&self, version_ids: Option<&[i64]>) -> Result<Vec<VersionContents>>;

    // ---- experiment runs ----

    /// Record a new run in status `running`.
    fn create_run(&self, new: &NewRun) -> Result<RunRecord>;

    /// A run by its id or a unique prefix of at least 6 characters.
    fn resolve_run(&self, id_or_prefix: &str) -> Result<RunRecord>;

    /// Replace a running run's parameters (JSON text).
    fn set_run_params(&self, run_id: &str, params: &str) -> Result<()>;

    /// Append metric points to a running run, in one transaction.
    fn log_metrics(&self, run_id: &str, points: &[MetricPoint]) -> Result<()>;

    /// Log values at the step after the run's highest step (all at that one step), chosen
    /// inside the transaction; returns the step.
    fn log_at_next_step(&self, run_id: &str, values: &[(String, f64)], at: f64) -> Result<i64>;

    /// Note that a running run is alive (its heartbeat).
    fn heartbeat_run(&self, run_id: &str) -> Result<()>;

    /// End a running run with `status` (completed, failed or cancelled).
    fn finish_run(&self, run_id: &str, status: RunStatus, error: Option<&str>)
        -> Result<RunRecord>;

    /// Runs of a recipe version (all runs when `None`), optionally of one status, oldest first.
    fn list_runs(
        &self,
        recipe: Option<&Reference>,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunRecord>>;

    /// Every point of a run, by name then step.
    fn run_metrics(&self, run_id: &str) -> Result<Vec<MetricPoint>>;

    /// For each run and metric name, the value at the highest step.
    fn final_metrics(&self, run_ids: &[String]) -> Result<Vec<(String, MetricPoint)>>;

    /// Among completed runs of a recipe version, the one with the best value of `metric` at
    /// its highest step (highest value, or lowest with `minimize`).
    fn best_run(
        &self,
        recipe: &Reference,
        metric: &str,
        minimize: bool,
    ) -> Result<Option<(RunRecord, MetricPoint)>>;

    /// Record an artifact (already in the object store) produced by a run.
    fn add_run_artifact(&self, run_id: &str, name: &str, digest: &Digest, size: u64) -> Result<()>;

    /// A run's artifacts: (name, digest, size).
    fn run_artifacts(&self, run_id: &str) -> Result<Vec<(String, Digest, u64)>>;

    // ---- lineage ----

    /// The node a reference names; an exact reference to a deleted version finds its
    /// tombstone.
    fn find_node(&self, node: &NodeRef) -> Result<NodeRecord>;

    /// Record an edge between existing nodes, refusing one that would close a cycle
    /// (`CoreError::LineageCycle`). Returns false if the same edge already existed.
    fn add_edge(
        &self,
        from: &NodeRef,
        to: &NodeRef,
        relation: Relation,
        params: &serde_json::Map<String, serde_json::Value>,
        actor: &str,
    ) -> Result<bool>;

    /// A token that changes whenever the lineage graph does.
    fn lineage_token(&self) -> Result<String>;

    /// Every node and edge, with the token of that state.
    fn lineage_rows(&self) -> Result<LineageRows>;

    /// The current versions behind lineage nodes, as (node id, version).
    fn versions_of_nodes(&self, node_ids: &[i64]) -> Result<Vec<(i64, VersionRecord)>>;

    /// Every object a version or a run artifact references.
    fn referenced_objects(&self) -> Result<Vec<Digest>>;

    /// Drop the bookkeeping rows of those of `digests` that are still unreferenced, in one
    /// transaction, and return those: the objects whose bytes garbage collection may now
    /// remove (one referenced meanwhile is left alone).
    fn forget_objects(&self, digests: &[Digest]) -> Result<Vec<Digest>>;

    /// Two-phase collection, for a store several machines share: record `candidates` (the
    /// objects this garbage collection found unreferenced and older than its grace period)
    /// as marked, clear the marks of objects no longer among them, and return those
    /// candidates an earlier run had already marked: the only ones this run may remove. A
    /// dry run changes nothing. `None` for a store one machine uses, whose collector's lock
    /// (a file lock the kernel releases only with its holder) makes one phase enough.
    fn mark_for_collection(
        &self,
        candidates: &[Digest],
        dry_run: bool,
    ) -> Result<Option<Vec<Digest>>> {
        let _ = (candidates, dry_run);
        Ok(None)
    }

    /// Delete a version: its aliases, tags and history go, its lineage node stays as a
    /// tombstone, its objects are left for garbage collection. A production version needs
    /// `force`.
    fn delete_version(
        &self,
        kind: Kind,
        reference: &Reference,
        force: bool,
    ) -> Result<VersionRecord>;
}
