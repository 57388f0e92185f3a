//! The primitive reads and writes a metadata backend offers inside one transaction.
//!
//! A backend (SQLite today, PostgreSQL next) implements [`VersionTx`] with its own SQL and
//! nothing else: no rule about which version number comes next, which names are reserved or
//! what may be deleted. Those rules live once, in [`super::rules`], written against this
//! trait, so that every backend enforces them the same way.

use super::{Kind, ListFilter, MetricPoint, NewRun, RunRecord, RunStatus, Stage, VersionRecord};
use crate::lineage::{NodeRecord, Relation};
use crate::{Digest, Result};

/// A row's identity inside one backend's database. It never leaves the metadata layer's
/// callers as a promise: another registry numbers its rows differently.
pub type RowId = i64;

/// Which versions of one artifact a read selects.
#[derive(Debug, Clone, Copy)]
pub enum VersionsOf<'a> {
    /// The version whose precedence key (the version without build metadata) is this.
    Key(&'a str),
    /// Every version that is not a pre-release.
    Released,
    /// The version in `stage` that entered it most recently (at most one).
    LastEntered(Stage),
    /// The version an alias points at (at most one).
    Alias(&'a str),
    /// Every version in `stage` except one.
    InStageExcept(Stage, RowId),
}

/// What a version number was used for, found in the lineage history (which keeps the
/// numbers of deleted versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberUse {
    pub version: String,
    pub deleted: bool,
}

/// The columns of a new version row; the rules have chosen every value.
#[derive(Debug, Clone)]
pub struct VersionRow<'a> {
    pub artifact: RowId,
    pub version: &'a str,
    pub key: &'a str,
    pub prerelease: bool,
    pub digest: &'a Digest,
    pub layout: super::Layout,
    pub size: u64,
    pub file_count: u64,
    pub description: Option<&'a str>,
    pub card: Option<&'a str>,
    pub created_by: &'a str,
    pub run_id: Option<&'a str>,
    pub mode: Option<u32>,
}

/// A version row just inserted: what the database chose for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    pub id: RowId,
    pub created_at: String,
}

/// Reads and writes of artifacts, versions, stages, aliases and tags inside one
/// transaction. Records come back without aliases and tags until [`Self::attach_labels`].
pub trait VersionTx {
    fn artifact(&mut self, kind: Kind, name: &str) -> Result<Option<RowId>>;

    /// The artifact's row, created if it did not exist.
    fn ensure_artifact(&mut self, kind: Kind, name: &str) -> Result<RowId>;

    /// Remove the artifact if it has no version left.
    fn drop_artifact_if_empty(&mut self, artifact: RowId) -> Result<()>;

    /// Every version number the lineage history knows for `kind`/`name`, deleted or not.
    fn numbers_used(&mut self, kind: Kind, name: &str) -> Result<Vec<NumberUse>>;

    /// The number of a deleted version with this precedence key, if any.
    fn deleted_number(&mut self, kind: Kind, name: &str, key: &str) -> Result<Option<String>>;

    fn versions(&mut self, artifact: RowId, which: VersionsOf<'_>) -> Result<Vec<VersionRecord>>;

    /// Versions of `kind` (of one name, or of every name) in the filter's stage and with
    /// all its tags, in any order.
    fn versions_matching(
        &mut self,
        kind: Kind,
        name: Option<&str>,
        filter: &ListFilter,
    ) -> Result<Vec<VersionRecord>>;

    /// Fill in aliases and tags of the given records.
    fn attach_labels(&mut self, records: &mut [VersionRecord]) -> Result<()>;

    /// Insert the row; its id and the time it was stamped with (the record is then known
    /// without reading it back).
    fn insert_version(&mut self, row: &VersionRow<'_>) -> Result<Inserted>;

    /// Record the objects a version needs (each object's row created if new).
    fn add_objects(&mut self, version: RowId, objects: &[(Digest, u64)]) -> Result<()>;

    /// Set tags (a key already set gets the new value).
    fn put_tags(&mut self, version: RowId, tags: &[(String, String)]) -> Result<()>;

    fn set_stage(&mut self, version: RowId, stage: Stage) -> Result<()>;

    /// Append to a version's stage history, stamped now.
    fn record_transition(
        &mut self,
        version: RowId,
        from: Option<Stage>,
        to: Stage,
        actor: &str,
    ) -> Result<()>;

    /// Point an alias of the artifact at a version (moving it if it pointed elsewhere).
    fn put_alias(&mut self, artifact: RowId, alias: &str, version: RowId) -> Result<()>;

    /// Remove an alias; false if it did not exist.
    fn remove_alias(&mut self, artifact: RowId, alias: &str) -> Result<bool>;

    /// How many runs record this (recipe) version.
    fn runs_of_recipe(&mut self, version: RowId) -> Result<u64>;

    /// Remove a version with its aliases, tags, object references and history, and turn
    /// its lineage node into a tombstone stamped now.
    fn remove_version(&mut self, version: RowId) -> Result<()>;
}

/// Reads and writes of runs, their metrics and artifacts inside one transaction.
pub trait RunTx {
    /// Runs whose id starts with `prefix`, in id order, at most `limit`.
    fn runs_with_prefix(&mut self, prefix: &str, limit: usize) -> Result<Vec<RunRecord>>;

    /// Record a new run in status `running`.
    fn insert_run(&mut self, new: &NewRun, id: &str, recipe: Option<RowId>) -> Result<()>;

    /// Stamp the run's heartbeat with the current time.
    fn touch_run(&mut self, id: &str) -> Result<()>;

    fn set_run_params(&mut self, id: &str, params: &str) -> Result<()>;

    /// The highest step logged for the run, if any.
    fn highest_step(&mut self, id: &str) -> Result<Option<i64>>;

    fn insert_metrics(&mut self, id: &str, points: &[MetricPoint]) -> Result<()>;

    /// Set a final status, the error and the finish time (now).
    fn end_run(&mut self, id: &str, status: RunStatus, error: Option<&str>) -> Result<()>;

    /// Record an artifact of the run (the object's row created if new; a name already
    /// recorded gets the new object).
    fn put_run_artifact(&mut self, id: &str, name: &str, digest: &Digest, size: u64) -> Result<()>;
}

/// Reads and writes of the lineage graph's nodes and edges inside one transaction.
pub trait LineageTx {
    /// The node of a (current) version.
    fn node_of_version(&mut self, version: RowId) -> Result<Option<NodeRecord>>;

    fn node_of_run(&mut self, run_id: &str) -> Result<Option<NodeRecord>>;

    fn node(&mut self, id: RowId) -> Result<Option<NodeRecord>>;

    /// The tombstone of a deleted version with this precedence key.
    fn tombstone(&mut self, kind: Kind, name: &str, key: &str) -> Result<Option<NodeRecord>>;

    fn insert_version_node(&mut self, record: &VersionRecord, key: &str) -> Result<NodeRecord>;

    fn insert_run_node(&mut self, run_id: &str) -> Result<NodeRecord>;

    /// Whether any edge leads to the node (something derives from it).
    fn has_descendants(&mut self, node: RowId) -> Result<bool>;

    /// The nodes the node's edges lead to (what it came from).
    fn parents(&mut self, node: RowId) -> Result<Vec<RowId>>;

    /// The edges of a node whose relation is one of `relations`: (relation, parameters as
    /// JSON text, the node it leads to).
    fn edges_from(
        &mut self,
        node: RowId,
        relations: &[Relation],
    ) -> Result<Vec<(Relation, String, NodeRecord)>>;

    /// Insert an edge; false if the same edge (ends and relation) existed.
    fn insert_edge(
        &mut self,
        from: RowId,
        to: RowId,
        relation: Relation,
        params: &str,
        actor: &str,
    ) -> Result<bool>;
}

/// Every primitive of one backend's transaction.
pub trait MetaTx: VersionTx + RunTx + LineageTx {}

impl<T: VersionTx + RunTx + LineageTx> MetaTx for T {}
