//! The registry for Python: a handle over the core's `Registry` and plain records. The
//! Python layer (`python/pacha/registry.py`) turns the records into pydantic models.

use std::path::PathBuf;

use pacha_core::lineage::{NewEdge, Relation};
use pacha_core::meta::{
    self, Bump, Kind, ListFilter, MetricPoint, NewRun, Reference, RunRecord, RunStatus, Stage,
    Version, VersionChoice, VersionRecord,
};
use pacha_core::registry::{self, RegisterRequest};
use pyo3::prelude::*;
use pyo3::IntoPyObject;

use crate::detach::{detached, progress_of, run_detached, Progress};
use crate::errors::to_py;
use crate::lineage::LineageResult;
use crate::store::{ObjectStore, Problem};

fn kind(text: &str) -> PyResult<Kind> {
    Kind::parse(text).map_err(to_py)
}

fn reference(text: &str, version: Option<&str>) -> PyResult<Reference> {
    Reference::parse(text, version).map_err(to_py)
}

/// One registered version.
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub version: String,
    pub digest: String,
    pub layout: String,
    pub size: u64,
    pub file_count: u64,
    pub stage: String,
    pub description: Option<String>,
    pub card: Option<String>,
    pub aliases: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub created_at: String,
    pub created_by: String,
    pub run_id: Option<String>,
}

impl From<VersionRecord> for VersionInfo {
    fn from(r: VersionRecord) -> Self {
        VersionInfo {
            id: r.id,
            kind: r.kind.as_str().to_string(),
            name: r.name,
            version: r.version,
            digest: r.digest.to_hex(),
            layout: r.layout.as_str().to_string(),
            size: r.size,
            file_count: r.file_count,
            stage: r.stage.as_str().to_string(),
            description: r.description,
            card: r.card,
            aliases: r.aliases,
            tags: r.tags,
            created_at: r.created_at,
            created_by: r.created_by,
            run_id: r.run_id,
        }
    }
}

#[pymethods]
impl VersionInfo {
    fn __repr__(&self) -> String {
        format!("VersionInfo({} {}:{})", self.kind, self.name, self.version)
    }
}

/// One experiment run.
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: String,
    pub recipe: Option<String>,
    pub status: String,
    pub params: String,
    pub environment: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub created_by: String,
    pub heartbeat_at: Option<String>,
}

impl From<RunRecord> for RunInfo {
    fn from(r: RunRecord) -> Self {
        RunInfo {
            id: r.id,
            recipe: r.recipe,
            status: r.status.as_str().to_string(),
            params: r.params,
            environment: r.environment,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: r.error,
            created_by: r.created_by,
            heartbeat_at: r.heartbeat_at,
        }
    }
}

/// One stage change.
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct TransitionInfo {
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub at: String,
    pub by: String,
}

/// A name and how many versions it has.
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct NameInfo {
    pub name: String,
    pub versions: u64,
    pub latest: Option<String>,
}

/// A verify problem and the versions it breaks (`name:version`).
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct RegistryProblem {
    pub problem: Problem,
    pub users: Vec<String>,
}

#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct RegistryVerifyReport {
    pub checked: u64,
    pub bytes: u64,
    pub problems: Vec<RegistryProblem>,
}

/// Counts for `pacha stats`.
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct StatsInfo {
    pub models: u64,
    pub datasets: u64,
    pub recipes: u64,
    pub versions: u64,
    pub runs: u64,
    pub objects: u64,
    pub stored_bytes: u64,
    pub logical_bytes: u64,
}

/// A registry: the object store and the metadata database under one directory.
#[pyclass(frozen, module = "pacha._core")]
#[derive(Debug)]
pub struct Registry(registry::Registry);

#[pymethods]
impl Registry {
    /// Open the registry at `root`: created (mode 0700) if needed (unless not `create`),
    /// read-only where it may only be read; with `read_only`, it must exist and nothing is
    /// created or changed.
    #[new]
    #[pyo3(signature = (root, *, read_only = false, create = true))]
    fn new(py: Python<'_>, root: PathBuf, read_only: bool, create: bool) -> PyResult<Self> {
        let mode = open_mode(read_only, create);
        detached(py, || registry::Registry::open_with(root, mode)).map(Registry)
    }

    /// Open the registry whose metadata is at `metadata` (a registry directory, or a
    /// postgresql:// URL) and objects at `objects` (None for the directory's own store, or
    /// an s3:// URL).
    #[staticmethod]
    #[pyo3(signature = (metadata, objects = None, *, read_only = false, create = true))]
    fn connect(
        py: Python<'_>,
        metadata: &str,
        objects: Option<&str>,
        read_only: bool,
        create: bool,
    ) -> PyResult<Self> {
        let mode = open_mode(read_only, create);
        detached(py, || registry::Registry::connect(metadata, objects, mode)).map(Registry)
    }

    /// The registry directory; None for a shared registry (PostgreSQL and S3).
    #[getter]
    fn root(&self) -> Option<PathBuf> {
        self.0.root().map(PathBuf::from)
    }

    /// How messages name the registry: its directory, or its database's URL with the
    /// password masked.
    #[getter]
    fn label(&self) -> String {
        self.0.label().display().to_string()
    }

    /// Why this registry may only be read here, or None when it may be written.
    #[getter]
    fn read_only_reason(&self) -> Option<String> {
        self.0.read_only_reason().map(str::to_string)
    }

    /// The registry's object store.
    #[getter]
    fn store(&self) -> ObjectStore {
        ObjectStore::from_arc(self.0.store().clone())
    }

    /// Register the file or directory `source` as a new version. Give exactly one of
    /// `version` and `bump`. Returns the version and the paths of a directory that were left
    /// out (`.git`, `__pycache__`, unless `include_vcs`).
    #[pyo3(signature = (kind, name, source, *, version = None, bump = None, description = None,
                        card = None, tags = Vec::new(), actor, run = None, lineage = Vec::new(),
                        include_vcs = false, progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        kind: &str,
        name: String,
        source: PathBuf,
        version: Option<&str>,
        bump: Option<&str>,
        description: Option<String>,
        card: Option<String>,
        tags: Vec<(String, String)>,
        actor: String,
        run: Option<String>,
        lineage: Vec<(String, String, String)>,
        include_vcs: bool,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<(VersionInfo, Vec<String>)> {
        let lineage = lineage
            .iter()
            .map(|(node, relation, params)| {
                Ok(NewEdge {
                    to: crate::lineage::node_ref(node)?,
                    relation: Relation::parse(relation).map_err(to_py)?,
                    params: crate::lineage::params_map(params)?,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let choice = match (version, bump) {
            (Some(v), None) => VersionChoice::Exact(Version::parse(v).map_err(to_py)?),
            (None, Some(b)) => VersionChoice::Bump(Bump::parse(b).map_err(to_py)?),
            _ => {
                return Err(crate::errors::InvalidInputError::new_err(
                    "give a version (-v 1.0.0) or a bump (--bump major|minor|patch), not both or neither",
                ))
            }
        };
        let request = RegisterRequest {
            kind: self::kind(kind)?,
            name,
            version: choice,
            source,
            description,
            card,
            tags,
            actor,
            run,
            lineage,
            walk: pacha_core::tree::WalkOptions { include_vcs },
        };
        let registry = self.0.clone();
        run_detached(py, progress_of(progress), move |p| {
            registry.register(&request, p)
        })
        .map(|done| (VersionInfo::from(done.record), done.skipped))
    }

    /// Resolve `reference` (`NAME:VERSION`, `NAME:latest`, `NAME@STAGE`, `NAME@ALIAS`, or a
    /// bare name with `version`).
    #[pyo3(signature = (kind, reference, version = None))]
    fn resolve(
        &self,
        py: Python<'_>,
        kind: &str,
        reference: &str,
        version: Option<&str>,
    ) -> PyResult<VersionInfo> {
        let kind = self::kind(kind)?;
        let reference = self::reference(reference, version)?;
        detached(py, || self.0.meta().resolve(kind, &reference)).map(VersionInfo::from)
    }

    fn list_names(&self, py: Python<'_>, kind: &str) -> PyResult<Vec<NameInfo>> {
        let kind = self::kind(kind)?;
        let names = detached(py, || self.0.meta().list_names(kind))?;
        Ok(names
            .into_iter()
            .map(|n| NameInfo {
                name: n.name,
                versions: n.versions,
                latest: n.latest,
            })
            .collect())
    }

    /// Versions in precedence order (per name, names alphabetical), optionally filtered.
    #[pyo3(signature = (kind, name = None, stage = None, tags = Vec::new()))]
    fn list_versions(
        &self,
        py: Python<'_>,
        kind: &str,
        name: Option<String>,
        stage: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> PyResult<Vec<VersionInfo>> {
        let kind = self::kind(kind)?;
        let name = name
            .map(|n| meta::names::validate_name(&n))
            .transpose()
            .map_err(to_py)?;
        let tags = tags
            .iter()
            .map(|(k, v)| meta::names::validate_tag(k, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_py)?;
        let filter = ListFilter {
            stage: stage.map(Stage::parse).transpose().map_err(to_py)?,
            tags,
        };
        let versions = detached(py, || {
            self.0.meta().list_versions(kind, name.as_deref(), &filter)
        })?;
        Ok(versions.into_iter().map(VersionInfo::from).collect())
    }

    /// Like `list_versions`, but each version as a plain tuple in `VERSION_ROW_FIELDS` order:
    /// building 10,000 tuples in one call is several times cheaper than reading 10,000
    /// objects attribute by attribute, which is what makes listing large registries fast.
    #[pyo3(signature = (kind, name = None, stage = None, tags = Vec::new()))]
    fn list_version_rows<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        name: Option<String>,
        stage: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> PyResult<Vec<Bound<'py, pyo3::types::PyTuple>>> {
        let versions = self.list_versions(py, kind, name, stage, tags)?;
        versions
            .into_iter()
            .map(|v| {
                let items: [Bound<'py, PyAny>; 15] = [
                    v.kind.into_pyobject(py)?.into_any(),
                    v.name.into_pyobject(py)?.into_any(),
                    v.version.into_pyobject(py)?.into_any(),
                    v.stage.into_pyobject(py)?.into_any(),
                    v.digest.into_pyobject(py)?.into_any(),
                    v.layout.into_pyobject(py)?.into_any(),
                    v.size.into_pyobject(py)?.into_any(),
                    v.file_count.into_pyobject(py)?.into_any(),
                    v.description.into_pyobject(py)?.into_any(),
                    v.aliases.into_pyobject(py)?.into_any(),
                    v.tags.into_pyobject(py)?.into_any(),
                    v.created_at.into_pyobject(py)?.into_any(),
                    v.created_by.into_pyobject(py)?.into_any(),
                    v.card.into_pyobject(py)?.into_any(),
                    v.run_id.into_pyobject(py)?.into_any(),
                ];
                pyo3::types::PyTuple::new(py, items)
            })
            .collect()
    }

    /// Move a version to another stage (the original pacha's rules).
    #[pyo3(signature = (kind, reference, version, to, *, archive_existing = false, actor))]
    #[allow(clippy::too_many_arguments)]
    fn transition(
        &self,
        py: Python<'_>,
        kind: &str,
        reference: &str,
        version: Option<&str>,
        to: &str,
        archive_existing: bool,
        actor: String,
    ) -> PyResult<VersionInfo> {
        let kind = self::kind(kind)?;
        let reference = self::reference(reference, version)?;
        let to = Stage::parse(to).map_err(to_py)?;
        detached(py, || {
            self.0
                .meta()
                .transition(kind, &reference, to, archive_existing, &actor)
        })
        .map(VersionInfo::from)
    }

    fn history(&self, py: Python<'_>, version_id: i64) -> PyResult<Vec<TransitionInfo>> {
        let history = detached(py, || self.0.meta().history(version_id))?;
        Ok(history
            .into_iter()
            .map(|t| TransitionInfo {
                from_stage: t.from.map(|s| s.as_str().to_string()),
                to_stage: t.to.as_str().to_string(),
                at: t.at,
                by: t.by,
            })
            .collect())
    }

    #[pyo3(signature = (kind, reference, version, alias))]
    fn set_alias(
        &self,
        py: Python<'_>,
        kind: &str,
        reference: &str,
        version: Option<&str>,
        alias: &str,
    ) -> PyResult<VersionInfo> {
        let kind = self::kind(kind)?;
        let reference = self::reference(reference, version)?;
        detached(py, || self.0.meta().set_alias(kind, &reference, alias)).map(VersionInfo::from)
    }

    fn delete_alias(&self, py: Python<'_>, kind: &str, name: &str, alias: &str) -> PyResult<()> {
        let kind = self::kind(kind)?;
        detached(py, || self.0.meta().delete_alias(kind, name, alias))
    }

    #[pyo3(signature = (kind, reference, version, tags))]
    fn set_tags(
        &self,
        py: Python<'_>,
        kind: &str,
        reference: &str,
        version: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> PyResult<VersionInfo> {
        let kind = self::kind(kind)?;
        let reference = self::reference(reference, version)?;
        detached(py, || self.0.meta().set_tags(kind, &reference, &tags)).map(VersionInfo::from)
    }

    /// Write a version to `dest` (a file, or a directory for directory artifacts), verified.
    #[pyo3(signature = (kind, reference, version, dest, *, overwrite = false, progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn download(
        &self,
        py: Python<'_>,
        kind: &str,
        reference: &str,
        version: Option<&str>,
        dest: PathBuf,
        overwrite: bool,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<(VersionInfo, Vec<String>)> {
        let kind = self::kind(kind)?;
        let reference = self::reference(reference, version)?;
        let registry = self.0.clone();
        run_detached(py, progress_of(progress), move |p| {
            registry.download(kind, &reference, &dest, overwrite, p)
        })
        .map(|done| (VersionInfo::from(done.record), done.removed))
    }

    /// Repair a version's stored bytes from `source`, a copy of what was registered.
    /// Returns the version, how many problems it had, and the problems left.
    #[pyo3(signature = (kind, reference, version, source, *, include_vcs = false, progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn repair(
        &self,
        py: Python<'_>,
        kind: &str,
        reference: &str,
        version: Option<&str>,
        source: PathBuf,
        include_vcs: bool,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<(VersionInfo, u64, Vec<RegistryProblem>)> {
        let kind = self::kind(kind)?;
        let reference = self::reference(reference, version)?;
        let registry = self.0.clone();
        let walk = pacha_core::tree::WalkOptions { include_vcs };
        let done = run_detached(py, progress_of(progress), move |p| {
            registry.repair(kind, &reference, &source, walk, p)
        })?;
        let remaining = done
            .remaining
            .into_iter()
            .map(|p| RegistryProblem {
                problem: Problem::from(p.problem),
                users: p.users,
            })
            .collect();
        Ok((VersionInfo::from(done.record), done.damaged, remaining))
    }

    /// Check the objects of the given version ids (all versions when None).
    #[pyo3(signature = (version_ids = None, progress = None))]
    fn verify(
        &self,
        py: Python<'_>,
        version_ids: Option<Vec<i64>>,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<RegistryVerifyReport> {
        let registry = self.0.clone();
        let report = run_detached(py, progress_of(progress), move |p| {
            registry.verify(version_ids.as_deref(), p)
        })?;
        Ok(RegistryVerifyReport {
            checked: report.checked,
            bytes: report.bytes,
            problems: report
                .problems
                .into_iter()
                .map(|p| RegistryProblem {
                    problem: Problem::from(p.problem),
                    users: p.users,
                })
                .collect(),
        })
    }

    /// Start a run (status `running`) with a caller-chosen 32-hex id.
    #[pyo3(signature = (id, recipe, recipe_version, params, environment, actor, used = Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn create_run(
        &self,
        py: Python<'_>,
        id: String,
        recipe: Option<&str>,
        recipe_version: Option<&str>,
        params: String,
        environment: String,
        actor: String,
        used: Vec<(String, Option<String>)>,
    ) -> PyResult<RunInfo> {
        let recipe = recipe
            .map(|r| self::reference(r, recipe_version))
            .transpose()?;
        let used = used
            .iter()
            .map(|(r, split)| Ok((self::reference(r, None)?, split.clone())))
            .collect::<PyResult<Vec<_>>>()?;
        let new = NewRun {
            id,
            recipe,
            params,
            environment,
            actor,
            used,
        };
        detached(py, || self.0.meta().create_run(&new)).map(RunInfo::from)
    }

    /// A run by id or unique prefix (at least 6 characters).
    fn resolve_run(&self, py: Python<'_>, id: &str) -> PyResult<RunInfo> {
        detached(py, || self.0.meta().resolve_run(id)).map(RunInfo::from)
    }

    fn set_run_params(&self, py: Python<'_>, id: &str, params: &str) -> PyResult<()> {
        detached(py, || self.0.meta().set_run_params(id, params))
    }

    /// Append `(name, step, value, unix_time)` points in one transaction.
    fn log_metrics(
        &self,
        py: Python<'_>,
        id: &str,
        points: Vec<(String, i64, f64, f64)>,
    ) -> PyResult<()> {
        let points: Vec<MetricPoint> = points
            .into_iter()
            .map(|(name, step, value, at)| MetricPoint {
                name,
                step,
                value,
                at,
            })
            .collect();
        detached(py, || self.0.meta().log_metrics(id, &points))
    }

    /// Log `(name, value)` pairs at the step after the run's highest step; returns it.
    fn log_at_next_step(
        &self,
        py: Python<'_>,
        id: &str,
        values: Vec<(String, f64)>,
        at: f64,
    ) -> PyResult<i64> {
        detached(py, || self.0.meta().log_at_next_step(id, &values, at))
    }

    /// Note that a running run is alive.
    fn heartbeat_run(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        detached(py, || self.0.meta().heartbeat_run(id))
    }

    #[pyo3(signature = (id, status, error = None))]
    fn finish_run(
        &self,
        py: Python<'_>,
        id: &str,
        status: &str,
        error: Option<&str>,
    ) -> PyResult<RunInfo> {
        let status = RunStatus::parse(status).map_err(to_py)?;
        detached(py, || self.0.meta().finish_run(id, status, error)).map(RunInfo::from)
    }

    #[pyo3(signature = (recipe = None, recipe_version = None, status = None))]
    fn list_runs(
        &self,
        py: Python<'_>,
        recipe: Option<&str>,
        recipe_version: Option<&str>,
        status: Option<&str>,
    ) -> PyResult<Vec<RunInfo>> {
        let recipe = recipe
            .map(|r| self::reference(r, recipe_version))
            .transpose()?;
        let status = status.map(RunStatus::parse).transpose().map_err(to_py)?;
        let runs = detached(py, || self.0.meta().list_runs(recipe.as_ref(), status))?;
        Ok(runs.into_iter().map(RunInfo::from).collect())
    }

    /// Every point of a run: `(name, step, value, unix_time)`, by name then step.
    fn run_metrics(&self, py: Python<'_>, id: &str) -> PyResult<Vec<(String, i64, f64, f64)>> {
        let points = detached(py, || self.0.meta().run_metrics(id))?;
        Ok(points
            .into_iter()
            .map(|p| (p.name, p.step, p.value, p.at))
            .collect())
    }

    /// `(run id, name, step, value)` of each metric's point at its highest step.
    fn final_metrics(
        &self,
        py: Python<'_>,
        ids: Vec<String>,
    ) -> PyResult<Vec<(String, String, i64, f64)>> {
        let finals = detached(py, || self.0.meta().final_metrics(&ids))?;
        Ok(finals
            .into_iter()
            .map(|(id, p)| (id, p.name, p.step, p.value))
            .collect())
    }

    /// The completed run of a recipe version with the best final value of `metric`:
    /// `(run, step, value)`, or None when no completed run logged it.
    #[pyo3(signature = (recipe, recipe_version, metric, minimize = false))]
    fn best_run(
        &self,
        py: Python<'_>,
        recipe: &str,
        recipe_version: Option<&str>,
        metric: &str,
        minimize: bool,
    ) -> PyResult<Option<(RunInfo, i64, f64)>> {
        let recipe = self::reference(recipe, recipe_version)?;
        let best = detached(py, || self.0.meta().best_run(&recipe, metric, minimize))?;
        Ok(best.map(|(run, p)| (RunInfo::from(run), p.step, p.value)))
    }

    /// Store the file at `path` and record it as an artifact of a running run.
    #[pyo3(signature = (id, path, name, progress = None))]
    fn add_run_artifact(
        &self,
        py: Python<'_>,
        id: String,
        path: PathBuf,
        name: String,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<(String, u64)> {
        let registry = self.0.clone();
        run_detached(py, progress_of(progress), move |p| {
            let stored = registry.add_run_artifact(&id, &name, &path, p)?;
            Ok((stored.digest.to_hex(), stored.size))
        })
    }

    /// A run's artifacts: `(name, digest, size)`.
    fn run_artifacts(&self, py: Python<'_>, id: &str) -> PyResult<Vec<(String, String, u64)>> {
        let artifacts = detached(py, || self.0.meta().run_artifacts(id))?;
        Ok(artifacts
            .into_iter()
            .map(|(name, digest, size)| (name, digest.to_hex(), size))
            .collect())
    }

    fn stats(&self, py: Python<'_>) -> PyResult<StatsInfo> {
        let s = detached(py, || self.0.meta().stats())?;
        Ok(StatsInfo {
            models: s.models,
            datasets: s.datasets,
            recipes: s.recipes,
            versions: s.versions,
            runs: s.runs,
            objects: s.objects,
            stored_bytes: s.stored_bytes,
            logical_bytes: s.logical_bytes,
        })
    }

    // ---- lineage ----

    /// Ancestors (`up`), descendants (`down`) or both of a node, breadth first.
    #[pyo3(signature = (node, direction = "down", depth = None, relations = Vec::new(), kinds = Vec::new()))]
    fn lineage(
        &self,
        py: Python<'_>,
        node: &str,
        direction: &str,
        depth: Option<u32>,
        relations: Vec<String>,
        kinds: Vec<String>,
    ) -> PyResult<LineageResult> {
        let node = crate::lineage::node_ref(node)?;
        let walk = crate::lineage::walk_spec(direction, depth, &relations, &kinds)?;
        detached(py, || {
            let (graph, start) = self.0.lineage_node(&node)?;
            let sub = graph.walk(start, &walk);
            Ok(LineageResult::new(graph, sub, true))
        })
    }

    /// The shortest chain of edges between two nodes, whichever came from the other.
    fn lineage_path(&self, py: Python<'_>, a: &str, b: &str) -> PyResult<LineageResult> {
        let (a_ref, b_ref) = (crate::lineage::node_ref(a)?, crate::lineage::node_ref(b)?);
        detached(py, || {
            // Both ends in one snapshot: find the later-made node first, then the other in
            // the same graph (a newer snapshot only if the second is newer still).
            let (mut graph, mut to) = self.0.lineage_node(&b_ref)?;
            let from_id = self.0.meta().find_node(&a_ref)?.id;
            let from = match graph.index_of(from_id) {
                Some(i) => i,
                None => {
                    let (g, i) = self.0.lineage_node(&a_ref)?;
                    let to_id = graph.id(to);
                    graph = g;
                    to = graph.index_of(to_id).unwrap_or(to);
                    i
                }
            };
            match graph.path(from, to) {
                Some(edges) => Ok(crate::lineage::path_result(graph, from, edges)),
                None => Err(pacha_core::CoreError::NotFound {
                    message: format!(
                        "no lineage path between {a} and {b}: neither came from the other"
                    ),
                }),
            }
        })
    }

    /// `roots`, `leaves` or `topological` order, of a node's ancestry (roots, order) or
    /// descendants (leaves), or of the whole graph when `node` is None.
    #[pyo3(signature = (query, node = None))]
    fn lineage_nodes(
        &self,
        py: Python<'_>,
        query: &str,
        node: Option<&str>,
    ) -> PyResult<LineageResult> {
        let node = node.map(crate::lineage::node_ref).transpose()?;
        let query = query.to_string();
        detached(py, || {
            let (graph, start) = match &node {
                Some(n) => {
                    let (g, s) = self.0.lineage_node(n)?;
                    (g, Some(s))
                }
                None => (self.0.lineage_graph()?, None),
            };
            let nodes = match query.as_str() {
                "roots" => graph.roots(start),
                "leaves" => graph.leaves(start),
                "topological" => graph.topological(start),
                other => {
                    return Err(pacha_core::CoreError::InvalidInput {
                        message: format!(
                        "unknown lineage query {other:?}: expected roots, leaves or topological"
                    ),
                    })
                }
            };
            Ok(crate::lineage::node_list(graph, nodes))
        })
    }

    /// Record an edge between existing nodes; False if it already existed.
    fn add_edge(
        &self,
        py: Python<'_>,
        from_node: &str,
        to_node: &str,
        relation: &str,
        params: &str,
        actor: &str,
    ) -> PyResult<bool> {
        let from = crate::lineage::node_ref(from_node)?;
        let to = crate::lineage::node_ref(to_node)?;
        let relation = Relation::parse(relation).map_err(to_py)?;
        let params = crate::lineage::params_map(params)?;
        detached(py, || self.0.add_edge(&from, &to, relation, &params, actor))
    }

    /// Models downstream of a node that still exist: (version, depth), production first.
    fn impact(&self, py: Python<'_>, node: &str) -> PyResult<Vec<(VersionInfo, u32)>> {
        let node = crate::lineage::node_ref(node)?;
        detached(py, || self.0.impact(&node)).map(|found| {
            found
                .into_iter()
                .map(|i| (VersionInfo::from(i.version), i.depth))
                .collect()
        })
    }

    /// (id, kind, deleted) of the node a reference names.
    fn find_node(&self, py: Python<'_>, node: &str) -> PyResult<(String, &'static str, bool)> {
        let node = crate::lineage::node_ref(node)?;
        detached(py, || self.0.meta().find_node(&node))
            .map(|n| (n.typed_label(), n.kind.as_str(), n.deleted))
    }

    /// Garbage collection: (objects removed, bytes freed, temp files removed, temp bytes
    /// freed, young unreferenced objects kept, referenced objects kept).
    #[pyo3(signature = (grace_seconds, dry_run = false))]
    fn gc(
        &self,
        py: Python<'_>,
        grace_seconds: f64,
        dry_run: bool,
    ) -> PyResult<(u64, u64, u64, u64, u64, u64, u64)> {
        let grace = std::time::Duration::try_from_secs_f64(grace_seconds).map_err(|_| {
            crate::errors::InvalidInputError::new_err(format!(
                "invalid grace period {grace_seconds}: give a number of seconds ≥ 0"
            ))
        })?;
        detached(py, || self.0.gc(grace, dry_run)).map(|r| {
            (
                r.objects_removed,
                r.bytes_freed,
                r.temp_files_removed,
                r.temp_bytes_freed,
                r.young_objects_kept,
                r.objects_kept,
                r.objects_marked,
            )
        })
    }

    /// Delete a version (its lineage node stays as a tombstone); production needs `force`.
    #[pyo3(signature = (kind, reference, version = None, force = false))]
    fn delete(
        &self,
        py: Python<'_>,
        kind: &str,
        reference: &str,
        version: Option<&str>,
        force: bool,
    ) -> PyResult<VersionInfo> {
        let kind = self::kind(kind)?;
        let reference = self::reference(reference, version)?;
        detached(py, || self.0.delete(kind, &reference, force)).map(VersionInfo::from)
    }

    /// Open a registry whose database is missing or empty for recovery: the old database
    /// file (if any) is kept under another name, a new one is created. Returns the registry
    /// and the kept files.
    #[staticmethod]
    fn recover_database(py: Python<'_>, root: PathBuf) -> PyResult<(Registry, Vec<PathBuf>)> {
        detached(py, || registry::Registry::recover_database(root))
            .map(|(registry, kept)| (Registry(registry), kept))
    }

    /// The files (path, size) of the tree manifest stored as `digest`, or None when that
    /// object is not a manifest.
    fn tree_files(&self, py: Python<'_>, digest: &str) -> PyResult<Option<Vec<(String, u64)>>> {
        let digest = pacha_core::Digest::parse(digest).map_err(to_py)?;
        detached(py, || self.0.tree_files(&digest))
    }

    /// Record the stored object `digest` (a file, or a tree manifest) as a new version.
    #[pyo3(signature = (kind, name, version, digest, *, description = None, card = None, actor))]
    #[allow(clippy::too_many_arguments)]
    fn adopt(
        &self,
        py: Python<'_>,
        kind: &str,
        name: String,
        version: &str,
        digest: &str,
        description: Option<String>,
        card: Option<String>,
        actor: String,
    ) -> PyResult<VersionInfo> {
        let request = registry::AdoptRequest {
            kind: self::kind(kind)?,
            name,
            version: Version::parse(version).map_err(to_py)?,
            digest: pacha_core::Digest::parse(digest).map_err(to_py)?,
            description,
            card,
            actor,
        };
        detached(py, || self.0.adopt(&request)).map(VersionInfo::from)
    }

    fn __repr__(&self) -> String {
        format!("Registry({:?})", self.0.label())
    }
}

fn open_mode(read_only: bool, create: bool) -> registry::OpenMode {
    match (read_only, create) {
        (true, _) => registry::OpenMode::ReadOnly,
        (false, true) => registry::OpenMode::Create,
        (false, false) => registry::OpenMode::Existing,
    }
}

/// Why a registry cannot have its metadata at `metadata` and its objects at `objects` (None
/// for the registry directory's own store), or None when it can; nothing is opened.
#[pyfunction]
#[pyo3(signature = (metadata, objects = None))]
pub fn location_problem(metadata: &str, objects: Option<&str>) -> Option<String> {
    let parsed = registry::MetadataLocation::parse(metadata)
        .and_then(|m| Ok((m, registry::ObjectsLocation::parse(objects)?)));
    match parsed {
        Ok((metadata, objects)) => registry::backends::pair_problem(&metadata, &objects),
        Err(e) => Some(e.to_string()),
    }
}

/// Canonical text of a semantic version; raises `InvalidInputError` for anything else.
#[pyfunction]
pub fn parse_version(text: &str) -> PyResult<String> {
    Version::parse(text).map(|v| v.to_string()).map_err(to_py)
}

/// -1, 0 or 1 as `a` has lower, equal or higher precedence than `b` (SemVer 2.0.0 §11).
#[pyfunction]
pub fn compare_versions(a: &str, b: &str) -> PyResult<i32> {
    let a = Version::parse(a).map_err(to_py)?;
    let b = Version::parse(b).map_err(to_py)?;
    Ok(a.cmp_precedence(&b) as i32)
}

/// The canonical (NFC) form of a valid artifact name; raises `InvalidInputError` otherwise.
#[pyfunction]
pub fn validate_name(text: &str) -> PyResult<String> {
    meta::names::validate_name(text).map_err(to_py)
}

/// Raise `InvalidInputError` unless `name` is a valid metric name and `value` finite.
#[pyfunction]
pub fn validate_metric(name: &str, value: f64) -> PyResult<()> {
    meta::runs::validate_metric(name, value).map_err(to_py)
}

/// The download cache of shared registries: (directory, objects, bytes, removed, freed).
type CacheTuple = (PathBuf, u64, u64, u64, u64);

fn cache_tuple((dir, usage): (PathBuf, pacha_core::store::CacheUsage)) -> CacheTuple {
    (dir, usage.objects, usage.bytes, usage.removed, usage.freed)
}

/// What the download cache holds: (directory, objects, bytes, 0, 0). Creates nothing.
#[pyfunction]
pub fn download_cache_usage(py: Python<'_>) -> PyResult<CacheTuple> {
    detached(py, registry::Registry::download_cache_usage).map(cache_tuple)
}

/// Remove the least recently used cached copies until the cache holds at most `max_bytes`:
/// (directory, objects kept, bytes kept, removed, freed).
#[pyfunction]
#[pyo3(signature = (max_bytes, dry_run = false))]
pub fn prune_download_cache(py: Python<'_>, max_bytes: u64, dry_run: bool) -> PyResult<CacheTuple> {
    detached(py, || {
        registry::Registry::prune_download_cache(max_bytes, dry_run)
    })
    .map(cache_tuple)
}
