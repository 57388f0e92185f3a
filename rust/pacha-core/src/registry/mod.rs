//! The registry: an object store and a metadata store, and the order in which they are used.
//!
//! Registering stores the bytes first (files, or a directory's files and its manifest), then
//! records the version in one metadata transaction. A crash in between leaves at worst an
//! unreferenced object — garbage to collect — never a version whose bytes are missing.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::IoContext;
use crate::lineage::{cache, Direction, Graph, NewEdge, NodeKind, NodeRef, Walk};
use crate::meta::{
    Kind, Layout, MetadataStore, NewVersion, ObjectUse, Reference, SqliteMetaStore, VersionChoice,
    VersionRecord,
};
use crate::store::{Expected, LocalStore, ObjectStore, Problem};
use crate::{tree, CoreError, Digest, Progress, Result};

mod gc;
pub use gc::{GcReport, RegistrationGuard};

/// `path` made absolute with symlinks resolved; for a path that does not exist yet, its
/// nearest existing ancestor resolved and the rest appended. `None` if nothing resolves.
fn canonical_target(path: &Path) -> Option<PathBuf> {
    let mut missing = Vec::new();
    let mut current = path.to_path_buf();
    loop {
        if let Ok(found) = fs::canonicalize(&current) {
            return Some(
                missing
                    .iter()
                    .rev()
                    .fold(found, |acc, part: &std::ffi::OsString| acc.join(part)),
            );
        }
        missing.push(current.file_name()?.to_os_string());
        current = match current.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
    }
}

pub const OBJECTS_DIR: &str = "objects";
pub const DATABASE_FILE: &str = "registry.db";

pub const CACHE_DIR: &str = "cache";

#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetadataStore>,
    /// The last lineage snapshot loaded, reused while the database's token is unchanged.
    graph: Arc<Mutex<Option<Arc<Graph>>>>,
}

/// A model downstream of a node, with its current stage.
#[derive(Debug, Clone)]
pub struct Impact {
    pub version: VersionRecord,
    /// Edges between the node and this model.
    pub depth: u32,
}

/// What to register.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    pub kind: Kind,
    pub name: String,
    pub version: VersionChoice,
    /// A regular file or a directory.
    pub source: PathBuf,
    pub description: Option<String>,
    /// Card or datasheet as JSON text.
    pub card: Option<String>,
    pub tags: Vec<(String, String)>,
    pub actor: String,
    /// The run (id or unique prefix) that produced this version, if any.
    pub run: Option<String>,
    /// Lineage edges from the new version to what it came from.
    pub lineage: Vec<NewEdge>,
}

/// A problem found by `verify`, with the versions it breaks.
#[derive(Debug, Clone)]
pub struct RegistryProblem {
    pub problem: Problem,
    /// `name:version` of every version that needs the damaged object.
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RegistryVerifyReport {
    pub checked: u64,
    pub bytes: u64,
    pub problems: Vec<RegistryProblem>,
}

impl Registry {
    /// Open the registry at `root` (created with mode 0700 if absent): the local object store
    /// in `objects/` and the SQLite database `registry.db`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .at(&root)?;
        let store = LocalStore::open(root.join(OBJECTS_DIR))?;
        let meta = SqliteMetaStore::open(root.join(DATABASE_FILE))?;
        Ok(Registry {
            root,
            store: Arc::new(store),
            meta: Arc::new(meta),
            graph: Arc::new(Mutex::new(None)),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn meta(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    /// Register a file or directory as a new version (see the module docs for the order).
    pub fn register(
        &self,
        request: &RegisterRequest,
        progress: &Progress,
    ) -> Result<VersionRecord> {
        let name = crate::meta::names::validate_name(&request.name)?;
        for (key, value) in &request.tags {
            crate::meta::names::validate_tag(key, value)?;
        }
        // Until the version commits, its objects are referenced by nothing: keep gc out.
        let _guard = self.registration_guard()?;
        // Refuse a duplicate before copying gigabytes; the transaction checks again.
        self.meta.precheck(request.kind, &name, &request.version)?;
        let run_id = match &request.run {
            Some(run) => Some(self.meta.resolve_run(run)?.id),
            None => None,
        };
        // Every lineage edge is checked before any bytes are copied (and again, inside the
        // registration's transaction, when it is recorded).
        for edge in &request.lineage {
            let target = self.meta.find_node(&edge.to)?;
            edge.relation
                .check_endpoints(request.kind.into(), target.kind)?;
            edge.relation.check_params(&edge.params)?;
        }
        let written = Mutex::new(Vec::new());
        let result = self.store_and_record(request, name, run_id, progress, &written);
        if result.is_err() {
            // Leave the store as it was: what this registration wrote is referenced by
            // nothing (unless another registration has used it meanwhile).
            drop(_guard);
            let written = written.into_inner().unwrap_or_else(|p| p.into_inner());
            if !written.is_empty() {
                // Best effort: whatever is left is garbage `gc` collects.
                drop(self.discard_unreferenced(&written));
            }
        }
        result
    }

    fn store_and_record(
        &self,
        request: &RegisterRequest,
        name: String,
        run_id: Option<String>,
        progress: &Progress,
        written: &Mutex<Vec<Digest>>,
    ) -> Result<VersionRecord> {
        let source_meta = fs::metadata(&request.source).at(&request.source)?;
        let (digest, layout, size, file_count, objects) = if source_meta.is_dir() {
            let ingested = tree::ingest_dir_recording(
                self.store.as_ref(),
                &request.source,
                progress,
                written,
            )?;
            (
                ingested.manifest,
                Layout::Tree,
                ingested.size,
                ingested.file_count,
                ingested.objects,
            )
        } else {
            let outcome = self.store.put_file(&request.source, progress)?;
            if outcome.written {
                written
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(outcome.digest);
            }
            (
                outcome.digest,
                Layout::File,
                outcome.size,
                1,
                vec![(outcome.digest, outcome.size)],
            )
        };
        self.meta.insert_version(&NewVersion {
            kind: request.kind,
            name,
            version: request.version.clone(),
            digest,
            layout,
            size,
            file_count,
            description: request.description.clone(),
            card: request.card.clone(),
            tags: request.tags.clone(),
            actor: request.actor.clone(),
            objects,
            run_id,
            lineage: request.lineage.clone(),
        })
    }

    /// Write a version's bytes to `dest` (a file, or a directory for a tree), verified.
    pub fn download(
        &self,
        kind: Kind,
        reference: &Reference,
        dest: &Path,
        overwrite: bool,
        progress: &Progress,
    ) -> Result<VersionRecord> {
        let record = self.meta.resolve(kind, reference)?;
        self.check_destination(dest)?;
        match record.layout {
            Layout::File => {
                self.store
                    .export(&record.digest, dest, overwrite, progress)?;
            }
            Layout::Tree => {
                let manifest = tree::load_manifest(self.store.as_ref(), &record.digest)?;
                tree::export_tree(self.store.as_ref(), &manifest, dest, overwrite, progress)?;
            }
        }
        Ok(record)
    }

    /// Refuse destinations whose replacement (with `--force`) or filling would destroy the
    /// registry itself or the directory the user stands in: anything inside the registry,
    /// the registry's directory or one of its parents, the current directory or one of its
    /// parents, and the home directory.
    fn check_destination(&self, dest: &Path) -> Result<()> {
        let Some(target) = canonical_target(dest) else {
            return Ok(());
        };
        let refuse = |why: &str| CoreError::InvalidInput {
            message: format!(
                "refusing to write to {}: {why}; choose another output path",
                dest.display()
            ),
        };
        if let Ok(root) = fs::canonicalize(&self.root) {
            if target.starts_with(&root) {
                return Err(refuse("it is inside the registry"));
            }
            if root.starts_with(&target) {
                return Err(refuse("it contains the registry"));
            }
        }
        if let Ok(cwd) = std::env::current_dir().and_then(fs::canonicalize) {
            if cwd.starts_with(&target) {
                return Err(refuse("it is the current directory or one of its parents"));
            }
        }
        if let Some(home) = std::env::var_os("HOME").and_then(|h| fs::canonicalize(h).ok()) {
            if home == target {
                return Err(refuse("it is the home directory"));
            }
        }
        Ok(())
    }

    /// Store a file as an artifact of a running run.
    pub fn add_run_artifact(
        &self,
        run: &str,
        name: &str,
        source: &Path,
        progress: &Progress,
    ) -> Result<crate::store::PutOutcome> {
        let run = self.meta.resolve_run(run)?;
        let _guard = self.registration_guard()?;
        let stored = self.store.put_file(source, progress)?;
        self.meta
            .add_run_artifact(&run.id, name, &stored.digest, stored.size)?;
        Ok(stored)
    }

    /// Delete a version (see `MetadataStore::delete_version`).
    pub fn delete(&self, kind: Kind, reference: &Reference, force: bool) -> Result<VersionRecord> {
        self.meta.delete_version(kind, reference, force)
    }

    /// The lineage graph as it is now: the snapshot in memory if the database has not
    /// changed since, else the one cached on disk, else rebuilt from the database (and
    /// cached for the next process).
    pub fn lineage_graph(&self) -> Result<Arc<Graph>> {
        let token = self.meta.lineage_token()?;
        let mut held = self.graph.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(graph) = held.as_ref().filter(|g| g.token() == token) {
            return Ok(Arc::clone(graph));
        }
        let dir = self.root.join(CACHE_DIR);
        let graph = match cache::load(&dir, &token) {
            Some(graph) => graph,
            None => {
                let graph = Graph::from_rows(self.meta.lineage_rows()?)?;
                // Best effort: a registry on a read-only medium still answers queries.
                let saved = fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| CoreError::io(&dir, e))
                    .and_then(|()| cache::save(&graph, &dir));
                drop(saved);
                graph
            }
        };
        let graph = Arc::new(graph);
        *held = Some(Arc::clone(&graph));
        Ok(graph)
    }

    /// The graph and the index of the node `node` names in it.
    pub fn lineage_node(&self, node: &NodeRef) -> Result<(Arc<Graph>, u32)> {
        let record = self.meta.find_node(node)?;
        // A node created after the snapshot's token was read needs a newer snapshot.
        for _ in 0..2 {
            let graph = self.lineage_graph()?;
            if let Some(index) = graph.index_of(record.id) {
                return Ok((graph, index));
            }
        }
        Err(CoreError::Corrupt {
            message: format!(
                "{} is missing from the lineage graph; remove {}/{} and try again",
                record.typed_label(),
                self.root.join(CACHE_DIR).display(),
                cache::FILE_NAME
            ),
        })
    }

    /// Record an edge between existing nodes (refusing cycles).
    pub fn add_edge(
        &self,
        from: &NodeRef,
        to: &NodeRef,
        relation: crate::lineage::Relation,
        params: &serde_json::Map<String, serde_json::Value>,
        actor: &str,
    ) -> Result<bool> {
        self.meta.add_edge(from, to, relation, params, actor)
    }

    /// Every model downstream of `node` that still exists, with its stage: production
    /// first, then staging, development and archived; nearest first within a stage.
    pub fn impact(&self, node: &NodeRef) -> Result<Vec<Impact>> {
        let (graph, start) = self.lineage_node(node)?;
        let mut walk = Walk::new(Direction::Down);
        walk.kinds = 1 << NodeKind::Model.index();
        let found = graph.walk(start, &walk);
        let depth_of: HashMap<i64, u32> = found
            .nodes
            .iter()
            .zip(&found.depths)
            .skip(1)
            .map(|(&n, &d)| (graph.id(n), d))
            .collect();
        let ids: Vec<i64> = depth_of.keys().copied().collect();
        let mut impacts: Vec<Impact> = self
            .meta
            .versions_of_nodes(&ids)?
            .into_iter()
            .map(|(node_id, version)| Impact {
                depth: depth_of.get(&node_id).copied().unwrap_or(0),
                version,
            })
            .collect();
        impacts.sort_by(|a, b| {
            (
                a.version.stage.impact_rank(),
                a.depth,
                &a.version.name,
                a.version.id,
            )
                .cmp(&(
                    b.version.stage.impact_rank(),
                    b.depth,
                    &b.version.name,
                    b.version.id,
                ))
        });
        Ok(impacts)
    }

    /// Check the objects needed by the given version ids (every version when `None`), naming
    /// the versions each problem breaks.
    pub fn verify(
        &self,
        version_ids: Option<&[i64]>,
        progress: &Progress,
    ) -> Result<RegistryVerifyReport> {
        let uses: Vec<ObjectUse> = self.meta.object_uses(version_ids)?;
        let expected: Vec<Expected> = uses
            .iter()
            .map(|u| Expected {
                digest: u.digest,
                size: Some(u.size),
            })
            .collect();
        let report = self.store.verify(&expected, progress)?;
        let users_of: HashMap<Digest, &Vec<String>> =
            uses.iter().map(|u| (u.digest, &u.users)).collect();
        let problems = report
            .problems
            .into_iter()
            .map(|problem| {
                let users = problem
                    .digest
                    .and_then(|d| users_of.get(&d).map(|u| (*u).clone()))
                    .unwrap_or_default();
                RegistryProblem { problem, users }
            })
            .collect();
        Ok(RegistryVerifyReport {
            checked: report.checked,
            bytes: report.bytes,
            problems,
        })
    }
}
