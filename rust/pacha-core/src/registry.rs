//! The registry: an object store and a metadata store, and the order in which they are used.
//!
//! Registering stores the bytes first (files, or a directory's files and its manifest), then
//! records the version in one metadata transaction. A crash in between leaves at worst an
//! unreferenced object — garbage to collect — never a version whose bytes are missing.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::IoContext;
use crate::meta::{
    Kind, Layout, MetadataStore, NewVersion, ObjectUse, Reference, SqliteMetaStore, VersionChoice,
    VersionRecord,
};
use crate::store::{Expected, LocalStore, ObjectStore, Problem};
use crate::{tree, CoreError, Digest, Progress, Result};

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

#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetadataStore>,
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
        // Refuse a duplicate before copying gigabytes; the transaction checks again.
        self.meta.precheck(request.kind, &name, &request.version)?;
        let run_id = match &request.run {
            Some(run) => Some(self.meta.resolve_run(run)?.id),
            None => None,
        };
        let source_meta = fs::metadata(&request.source).at(&request.source)?;
        let (digest, layout, size, file_count, objects) = if source_meta.is_dir() {
            let ingested = tree::ingest_dir(self.store.as_ref(), &request.source, progress)?;
            (
                ingested.manifest,
                Layout::Tree,
                ingested.size,
                ingested.file_count,
                ingested.objects,
            )
        } else {
            let outcome = self.store.put_file(&request.source, progress)?;
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
