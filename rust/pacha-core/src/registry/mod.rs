//! The registry: an object store and a metadata store, and the order in which they are used.
//!
//! Registering stores the bytes first (files, or a directory's files and its manifest), then
//! records the version in one metadata transaction. A crash in between leaves at worst an
//! unreferenced object — garbage to collect — never a version whose bytes are missing.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::IoContext;
use crate::fsutil::{Access, Dir, EntryKind, Sharing};
use crate::lineage::{cache, Direction, Graph, NewEdge, NodeKind, NodeRef, Walk};
use crate::meta::{
    Kind, Layout, MetadataStore, NewVersion, ObjectUse, Reference, SqliteMetaStore, VersionChoice,
    VersionRecord,
};
use crate::store::{Expected, LocalStore, ObjectStore, Problem, PACK_DIR};
use crate::{tree, CoreError, Digest, Progress, Result};

pub mod backends;
mod gc;
mod recover;
pub use backends::{MetadataLocation, ObjectsLocation};
pub use gc::{GcReport, RegistrationGuard};
pub use recover::AdoptRequest;

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

/// [`holds_objects`] for the store inside the registry directory `dir`.
fn holds_objects_at(dir: &Dir) -> Result<bool> {
    match dir.open_dir(OBJECTS_DIR)? {
        Some(objects) => holds_objects(&objects),
        None => Ok(false),
    }
}

#[derive(Debug, Clone)]
pub struct Registry {
    /// How messages name the registry: its directory, or its database's URL (password
    /// masked).
    label: PathBuf,
    /// The registry directory, for a registry kept in one (SQLite and local objects); a
    /// shared registry (PostgreSQL and S3) has none.
    home: Option<Home>,
    /// Why writes are refused, for a registry opened read-only.
    read_only: Option<String>,
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetadataStore>,
    /// The last lineage snapshot loaded, reused while the database's token is unchanged.
    graph: Arc<Mutex<Option<Arc<Graph>>>>,
}

/// A registry directory.
#[derive(Debug, Clone)]
struct Home {
    root: PathBuf,
    /// Held open: its files are reached from it without following links (see
    /// `fsutil::Dir`).
    dir: Arc<Dir>,
    sharing: Sharing,
}

/// How to open a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read-write, creating the registry if it does not exist; read-only (with the reason
    /// kept for the first write) when this user or this file system may only read it.
    Create,
    /// As [`OpenMode::Create`], but the registry must exist already.
    Existing,
    /// Only read: the registry must exist, and nothing is created or changed (not even its
    /// schema or caches).
    ReadOnly,
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
    /// How a directory is read (what is skipped).
    pub walk: tree::WalkOptions,
}

/// A source's bytes, stored.
struct Stored {
    digest: Digest,
    layout: Layout,
    size: u64,
    file_count: u64,
    objects: Vec<(Digest, u64)>,
    skipped: Vec<String>,
    mode: Option<u32>,
}

/// What [`Registry::repair`] did.
#[derive(Debug, Clone)]
pub struct Repaired {
    pub record: VersionRecord,
    /// Problems the version had before the repair.
    pub damaged: u64,
    /// Problems it still has (none when the repair worked).
    pub remaining: Vec<RegistryProblem>,
}

/// What a download did.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub record: VersionRecord,
    /// Entries of a replaced directory that were not part of the version (see
    /// [`tree::TreeExport::removed`]).
    pub removed: Vec<String>,
}

/// What a registration did.
#[derive(Debug, Clone)]
pub struct Registered {
    pub record: VersionRecord,
    /// Paths of a directory left out by the walk's rules (see [`tree::VCS_AND_CACHES`]).
    pub skipped: Vec<String>,
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

/// Whether the file system holding `dir` is mounted read-only, or this process may not write
/// to `dir`.
fn cannot_write(dir: &Dir) -> Option<String> {
    if rustix::fs::fstatvfs(dir.as_fd())
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
    {
        return Some("its file system is mounted read-only".into());
    }
    match rustix::fs::accessat(
        dir.as_fd(),
        ".",
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        rustix::fs::AtFlags::EACCESS,
    ) {
        Ok(()) => None,
        Err(rustix::io::Errno::ROFS) => Some("its file system is mounted read-only".into()),
        Err(_) => Some("you may not write to its directory".into()),
    }
}

/// Whether the store in `objects` holds anything: a shard directory or a pack.
fn holds_objects(objects: &Dir) -> Result<bool> {
    Ok(objects.entries()?.iter().any(|(name, _)| {
        let name = name.to_string_lossy();
        name == PACK_DIR || (name.len() == 2 && name.bytes().all(|c| c.is_ascii_hexdigit()))
    }))
}

impl Registry {
    /// Open the registry at `root`, creating it (mode 0700) if absent; read-only when it may
    /// only be read here (see [`OpenMode::Create`]).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(root, OpenMode::Create)
    }

    /// Open the registry at `root` as `mode` says.
    pub fn open_with(root: impl Into<PathBuf>, mode: OpenMode) -> Result<Self> {
        Self::open_inner(&root.into(), mode, false)
    }

    /// [`Self::open_with`]; `recovering` lets a new database be created beside objects (the
    /// caller, recovery, records them next).
    fn open_inner(root: &Path, mode: OpenMode, recovering: bool) -> Result<Self> {
        let root = root.to_path_buf();
        let no_registry = || CoreError::NotFound {
            message: format!(
                "there is no registry at {}; create one with `pacha init` (or check the path)",
                root.display()
            ),
        };
        if mode == OpenMode::Create {
            crate::fsutil::create_private_dir_all(&root)?;
        }
        let dir = match Dir::open(&root) {
            Ok(dir) => dir,
            Err(CoreError::Io { source, .. })
                if mode != OpenMode::Create && source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(no_registry())
            }
            Err(e) => return Err(e),
        };
        let stat = dir.metadata()?;
        let access = crate::fsutil::check_registry_dir(&root, &stat)?;
        let read_only = match (mode, access) {
            (OpenMode::ReadOnly, _) => Some("it was opened read-only".to_string()),
            (_, Access::ReadOnly(reason)) => Some(reason),
            (_, Access::ReadWrite) => cannot_write(&dir),
        };
        let writable = read_only.is_none();
        let sharing = Sharing::of_mode(stat.st_mode);
        let objects = if writable {
            let (objects, _) = dir.ensure_dir(OBJECTS_DIR, sharing.dir_mode())?;
            Some(objects)
        } else {
            dir.open_dir(OBJECTS_DIR)?
        };
        if dir.kind_of(DATABASE_FILE)? == Some(EntryKind::Symlink) {
            return Err(crate::fsutil::foreign_entry(
                &root.join(DATABASE_FILE),
                "a symbolic link",
            ));
        }
        let database_exists = dir.stat(DATABASE_FILE)?.is_some_and(|s| s.st_size > 0);
        if !database_exists {
            if !recovering && objects.as_ref().map(holds_objects).transpose()? == Some(true) {
                return Err(CoreError::MissingDatabase {
                    root: root.clone(),
                    database: root.join(DATABASE_FILE),
                });
            }
            if !writable || mode != OpenMode::Create {
                return Err(no_registry());
            }
            Self::make_private_if_new(&dir, &stat, sharing)?;
        }
        let objects = objects.ok_or_else(no_registry)?;
        crate::fsutil::check_registry_dir(objects.path(), &objects.metadata()?)?;
        let store = LocalStore::from_dir(objects, sharing, writable)?;
        let meta = SqliteMetaStore::open_in(
            &dir,
            DATABASE_FILE,
            sharing.file_mode(),
            read_only.as_deref(),
        )?;
        if meta.created() && database_exists && !recovering {
            // The database file existed but held no registry (truncated to its header, or a
            // stray empty database): it was just given a schema. That is only safe while the
            // store is empty as well.
            if holds_objects_at(&dir)? {
                return Err(CoreError::MissingDatabase {
                    root: root.clone(),
                    database: root.join(DATABASE_FILE),
                });
            }
        }
        Ok(Registry {
            label: root.clone(),
            home: Some(Home {
                root,
                dir: Arc::new(dir),
                sharing,
            }),
            read_only,
            store: Arc::new(store),
            meta: Arc::new(meta),
            graph: Arc::new(Mutex::new(None)),
        })
    }

    /// A registry created in a directory that already existed gets the modes of one pacha
    /// creates (0700), unless the directory is shared with a group on purpose (setgid) or
    /// holds anything else: its other files are not ours to expose or hide.
    fn make_private_if_new(dir: &Dir, stat: &rustix::fs::Stat, sharing: Sharing) -> Result<()> {
        let mode = stat.st_mode & 0o7777;
        if sharing != Sharing::PRIVATE || mode & 0o077 == 0 {
            return Ok(());
        }
        if stat.st_uid != rustix::process::geteuid().as_raw() {
            return Ok(());
        }
        let ours = [OBJECTS_DIR, DATABASE_FILE];
        if dir
            .entries()?
            .iter()
            .any(|(name, _)| !ours.iter().any(|o| name == o))
        {
            return Ok(());
        }
        rustix::fs::fchmod(dir.as_fd(), rustix::fs::Mode::from_raw_mode(0o700))
            .map_err(|e| CoreError::io(dir.path(), e.into()))
    }

    /// Open the registry whose metadata and objects live where `metadata` and `objects`
    /// say (see [`backends`]): a registry directory (objects `None`), or a PostgreSQL URL
    /// and an S3 URL. The schema of a new PostgreSQL database is created, except in
    /// [`OpenMode::ReadOnly`].
    pub fn connect(metadata: &str, objects: Option<&str>, mode: OpenMode) -> Result<Self> {
        let metadata = MetadataLocation::parse(metadata)?;
        let objects = ObjectsLocation::parse(objects)?;
        if let Some(problem) = backends::pair_problem(&metadata, &objects) {
            return Err(CoreError::InvalidInput { message: problem });
        }
        match (metadata, objects) {
            (MetadataLocation::Directory(root), _) => Self::open_with(root, mode),
            (MetadataLocation::Postgres(url), ObjectsLocation::S3(bucket)) => {
                let read_only = (mode == OpenMode::ReadOnly).then_some("it was opened read-only");
                let meta = Arc::new(crate::meta::PostgresMetaStore::connect_with(
                    &url, read_only,
                )?);
                let bucket = crate::store::S3Store::open(&bucket)?
                    .with_index(Arc::clone(&meta) as Arc<dyn crate::store::PackIndex>);
                // A database and its objects are a pair: each names the other, so that
                // neither is used with another registry's (whose `gc` would delete them).
                if let Some(id) = meta.bind_objects(&bucket.location())? {
                    bucket.check_owner(&id, read_only.is_none())?;
                }
                let store: Arc<dyn ObjectStore> = match Self::download_cache() {
                    Some(cache) => Arc::new(crate::store::CachedStore::new(bucket, cache)),
                    None => Arc::new(bucket),
                };
                Ok(Registry {
                    label: PathBuf::from(meta.url()),
                    home: None,
                    read_only: read_only.map(str::to_string),
                    store,
                    meta,
                    graph: Arc::new(Mutex::new(None)),
                })
            }
            _ => Err(CoreError::Internal {
                message: "backends::pair_problem let an unsupported pair through".into(),
            }),
        }
    }

    /// The local store that caches a shared registry's downloads (see
    /// [`backends::cache_dir`]); `None` when there is no place for it, or it cannot be made
    /// there (a read-only home): downloads then come from the bucket each time, verified
    /// all the same.
    fn download_cache() -> Option<LocalStore> {
        let dir = backends::cache_dir()?;
        crate::fsutil::create_private_dir_all(&dir).ok()?;
        LocalStore::open(dir.join(OBJECTS_DIR)).ok()
    }

    /// The download cache's directory and what it holds (nothing is created).
    pub fn download_cache_usage() -> Result<(PathBuf, crate::store::CacheUsage)> {
        Self::with_download_cache(crate::store::cached::usage)
    }

    /// Remove the least recently used copies from the download cache until it holds at
    /// most `max_bytes` (see `store::cached::prune`).
    pub fn prune_download_cache(
        max_bytes: u64,
        dry_run: bool,
    ) -> Result<(PathBuf, crate::store::CacheUsage)> {
        Self::with_download_cache(|cache| crate::store::cached::prune(cache, max_bytes, dry_run))
    }

    fn with_download_cache(
        f: impl FnOnce(&LocalStore) -> Result<crate::store::CacheUsage>,
    ) -> Result<(PathBuf, crate::store::CacheUsage)> {
        let dir = backends::cache_dir().ok_or_else(|| CoreError::InvalidInput {
            message: "there is no download cache: none of PACHA_CACHE, XDG_CACHE_HOME and \
                      HOME is set"
                .into(),
        })?;
        let objects = dir.join(OBJECTS_DIR);
        if !objects.is_dir() {
            return Ok((dir, crate::store::CacheUsage::default()));
        }
        let usage = f(&LocalStore::open(objects)?)?;
        Ok((dir, usage))
    }

    /// The registry directory, `None` for a shared registry (PostgreSQL and S3).
    pub fn root(&self) -> Option<&Path> {
        self.home.as_ref().map(|home| home.root.as_path())
    }

    /// How messages name the registry: its directory, or its database's URL (password
    /// masked).
    pub fn label(&self) -> &Path {
        &self.label
    }

    /// The registry directory, for what only a registry kept in one has.
    fn home(&self, what: &str) -> Result<&Home> {
        self.home.as_ref().ok_or_else(|| CoreError::InvalidInput {
            message: format!(
                "{what} works on a registry directory, and {} is a shared registry",
                self.label.display()
            ),
        })
    }

    /// Why this registry may only be read, or `None` when it may be written.
    pub fn read_only_reason(&self) -> Option<&str> {
        self.read_only.as_deref()
    }

    /// The refusal for a write to a read-only registry.
    pub(crate) fn ensure_writable(&self) -> Result<()> {
        match &self.read_only {
            None => Ok(()),
            Some(reason) => Err(CoreError::ReadOnly {
                path: self.label.clone(),
                reason: reason.clone(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn meta(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    /// Register a file or directory as a new version (see the module docs for the order).
    pub fn register(&self, request: &RegisterRequest, progress: &Progress) -> Result<Registered> {
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
        let result = self.store_and_record(request, name, run_id, progress, &written, &_guard);
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

    /// Store a file or a directory (the bytes of a registration or a repair), adding to
    /// `written` what was really written.
    fn store_source(
        &self,
        source: &Path,
        walk: tree::WalkOptions,
        progress: &Progress,
        written: &Mutex<Vec<Digest>>,
    ) -> Result<Stored> {
        let source_meta = fs::metadata(source).at(source)?;
        if source_meta.is_dir() {
            let ingested =
                tree::ingest_dir_recording(self.store.as_ref(), source, walk, progress, written)?;
            return Ok(Stored {
                digest: ingested.manifest,
                layout: Layout::Tree,
                size: ingested.size,
                file_count: ingested.file_count,
                objects: ingested.objects,
                skipped: ingested.skipped,
                mode: None,
            });
        }
        let outcome = self.store.put_file(source, progress)?;
        if outcome.written {
            written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(outcome.digest);
        }
        use std::os::unix::fs::PermissionsExt;
        Ok(Stored {
            digest: outcome.digest,
            layout: Layout::File,
            size: outcome.size,
            file_count: 1,
            objects: vec![(outcome.digest, outcome.size)],
            skipped: Vec::new(),
            mode: Some(source_meta.permissions().mode() & 0o777),
        })
    }

    fn store_and_record(
        &self,
        request: &RegisterRequest,
        name: String,
        run_id: Option<String>,
        progress: &Progress,
        written: &Mutex<Vec<Digest>>,
        guard: &gc::RegistrationGuard,
    ) -> Result<Registered> {
        let Stored {
            digest,
            layout,
            size,
            file_count,
            objects,
            skipped,
            mode,
        } = self.store_source(&request.source, request.walk, progress, written)?;
        guard.check()?;
        let record = self.meta.insert_version(&NewVersion {
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
            mode,
        })?;
        Ok(Registered { record, skipped })
    }

    /// Repair the stored bytes of a registered version from `source`, a copy of what was
    /// registered: the version's objects are checked (which marks the damaged ones), the
    /// source is stored again (rewriting every object found damaged or missing), and
    /// checked again. A source whose digest differs from the version's is refused, naming
    /// both, and what it stored is removed. Metadata is never changed.
    pub fn repair(
        &self,
        kind: Kind,
        reference: &Reference,
        source: &Path,
        walk: tree::WalkOptions,
        progress: &Progress,
    ) -> Result<Repaired> {
        let record = self.meta.resolve(kind, reference)?;
        let before = self.verify(Some(&[record.id]), &Progress::new())?;
        let guard = self.registration_guard()?;
        let written = Mutex::new(Vec::new());
        let stored = self.store_source(source, walk, progress, &written);
        drop(guard);
        let mismatch = match &stored {
            Ok(stored) if stored.digest != record.digest => Some(stored.digest),
            _ => None,
        };
        if stored.is_err() || mismatch.is_some() {
            let written = written.into_inner().unwrap_or_else(|p| p.into_inner());
            if !written.is_empty() {
                drop(self.discard_unreferenced(&written));
            }
        }
        stored?;
        if let Some(actual) = mismatch {
            return Err(CoreError::InvalidInput {
                message: format!(
                    "{} is not a copy of {}: its digest is {actual}, the version's {}; nothing \
                     was changed",
                    source.display(),
                    record.label(),
                    record.digest
                ),
            });
        }
        let after = self.verify(Some(&[record.id]), &Progress::new())?;
        Ok(Repaired {
            record,
            damaged: before.problems.len() as u64,
            remaining: after.problems,
        })
    }

    /// Write a version's bytes to `dest` (a file, or a directory for a tree), verified.
    /// Everything that can be checked (the version, the destination, a tree's manifest) is
    /// checked before anything is written.
    pub fn download(
        &self,
        kind: Kind,
        reference: &Reference,
        dest: &Path,
        overwrite: bool,
        progress: &Progress,
    ) -> Result<Downloaded> {
        let record = self.meta.resolve(kind, reference)?;
        self.check_destination(dest)?;
        let removed = match record.layout {
            Layout::File => {
                let options = crate::store::ExportOptions {
                    overwrite,
                    mode: record.mode,
                };
                self.store.export(&record.digest, dest, options, progress)?;
                Vec::new()
            }
            Layout::Tree => {
                let manifest = tree::load_manifest(self.store.as_ref(), &record.digest)?;
                tree::export_tree(self.store.as_ref(), &manifest, dest, overwrite, progress)?
                    .removed
            }
        };
        Ok(Downloaded { record, removed })
    }

    /// Refuse destinations whose replacement (with `--force`) or filling would destroy what
    /// is not the download's: anything inside the registry or containing it, the current
    /// directory or one of its parents, the home directory or one of its parents, and a mount
    /// point or a directory holding one.
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
        if let Some(Ok(root)) = self.root().map(fs::canonicalize) {
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
            if home.starts_with(&target) {
                return Err(refuse("it is the home directory or one of its parents"));
            }
        }
        if let Some(mount) = crate::fsutil::mount_points()
            .into_iter()
            .find(|m| m.starts_with(&target))
        {
            return Err(refuse(&if mount == target {
                "it is a mount point".to_string()
            } else {
                format!("it holds the mount point {}", mount.display())
            }));
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
        let guard = self.registration_guard()?;
        let stored = self.store.put_file(source, progress)?;
        guard.check()?;
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
        // A shared registry keeps no cache on disk: each process loads the graph once.
        let cached = self.home.as_ref().and_then(|home| {
            let dir = home.dir.open_dir(CACHE_DIR).ok().flatten()?;
            cache::load(&dir, &token)
        });
        let graph = match cached {
            Some(graph) => graph,
            None => {
                let graph = Graph::from_rows(self.meta.lineage_rows()?)?;
                // Best effort: a registry on a read-only medium still answers queries.
                if let Some(home) = self.home.as_ref().filter(|_| self.read_only.is_none()) {
                    let saved = home
                        .dir
                        .ensure_dir(CACHE_DIR, home.sharing.dir_mode())
                        .and_then(|(dir, _)| cache::save(&graph, &dir, home.sharing.file_mode()));
                    drop(saved);
                }
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
        let remedy = match self.root() {
            Some(root) => format!(
                "remove {}/{} and try again",
                root.join(CACHE_DIR).display(),
                cache::FILE_NAME
            ),
            None => "try again".to_string(),
        };
        Err(CoreError::Corrupt {
            message: format!(
                "{} is missing from the lineage graph; {remedy}",
                record.typed_label()
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
    /// the versions each problem breaks. A full check also reports anything in the registry
    /// that is not what pacha keeps there (symbolic links above all: never followed).
    ///
    /// Versions may be deleted (and their objects collected) while the check runs: a problem
    /// is reported only if a version that still exists needs the object.
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
        // Who needs what now, after the check (only read again when something was found).
        let now: HashMap<Digest, Vec<String>> = if report.problems.is_empty() {
            HashMap::new()
        } else {
            self.meta
                .object_uses(version_ids)?
                .into_iter()
                .map(|u| (u.digest, u.users))
                .collect()
        };
        let mut problems: Vec<RegistryProblem> = report
            .problems
            .into_iter()
            .filter_map(|problem| {
                let users = match problem.digest {
                    Some(digest) => now.get(&digest)?.clone(),
                    None => Vec::new(),
                };
                Some(RegistryProblem { problem, users })
            })
            .collect();
        problems.extend(self.consistency_problems(version_ids)?);
        if version_ids.is_none() {
            // A damaged object (a link or a directory in its place) is reported once, by
            // the check of the versions that need it.
            let named: std::collections::HashSet<PathBuf> =
                problems.iter().map(|p| p.problem.path.clone()).collect();
            problems.extend(
                self.layout_problems()?
                    .into_iter()
                    .filter(|p| !named.contains(&p.problem.path)),
            );
        }
        Ok(RegistryVerifyReport {
            checked: report.checked,
            bytes: report.bytes,
            problems,
        })
    }

    /// The database as messages name it: the registry directory's file, or the server.
    fn database_path(&self) -> PathBuf {
        match self.root() {
            Some(root) => root.join(DATABASE_FILE),
            None => self.label.clone(),
        }
    }

    /// Versions whose metadata disagrees with itself or with the objects: a digest that is
    /// not among the version's recorded objects, a file whose recorded size differs from its
    /// object's, a tree whose manifest lists files, sizes or a count other than recorded.
    /// (Objects that are missing or damaged are the store check's to report.)
    fn consistency_problems(&self, version_ids: Option<&[i64]>) -> Result<Vec<RegistryProblem>> {
        let mut problems = Vec::new();
        for (record, objects) in self.meta.version_contents(version_ids)? {
            let problem = |detail: String| RegistryProblem {
                problem: Problem {
                    kind: crate::store::ProblemKind::Inconsistent,
                    digest: Some(record.digest),
                    path: self.database_path(),
                    detail: format!("{detail}; the database is damaged — restore it from a backup"),
                },
                users: vec![record.label()],
            };
            let recorded: HashMap<Digest, u64> = objects.iter().copied().collect();
            let Some(&own_size) = recorded.get(&record.digest) else {
                problems.push(problem(format!(
                    "the version's digest {} is not among the objects recorded for it",
                    record.digest
                )));
                continue;
            };
            match record.layout {
                Layout::File => {
                    if own_size != record.size || objects.len() != 1 {
                        problems.push(problem(format!(
                            "the version records {} bytes in {} object(s), its object has {own_size}",
                            record.size,
                            objects.len()
                        )));
                    }
                }
                Layout::Tree => {
                    let manifest = match tree::load_manifest(self.store.as_ref(), &record.digest) {
                        Ok(manifest) => manifest,
                        Err(CoreError::Corrupt { message }) => {
                            problems.push(problem(format!("its manifest is not valid: {message}")));
                            continue;
                        }
                        // Missing or damaged objects are reported by the store's check.
                        Err(_) => continue,
                    };
                    let size: u64 = manifest.entries.iter().map(|e| e.size).sum();
                    let unrecorded = manifest.entries.iter().find(|e| {
                        Digest::parse(&e.digest).map_or(true, |d| recorded.get(&d) != Some(&e.size))
                    });
                    if let Some(entry) = unrecorded {
                        problems.push(problem(format!(
                            "its manifest lists {:?} ({}, {} bytes), which is not recorded for it",
                            entry.path, entry.digest, entry.size
                        )));
                    } else if size != record.size
                        || manifest.entries.len() as u64 != record.file_count
                    {
                        problems.push(problem(format!(
                            "the version records {} files and {} bytes, its manifest {} and {size}",
                            record.file_count,
                            record.size,
                            manifest.entries.len()
                        )));
                    }
                }
            }
        }
        Ok(problems)
    }

    /// Entries of the registry directory and of the store that pacha did not put there:
    /// symbolic links (never followed), files where directories belong, strays.
    fn layout_problems(&self) -> Result<Vec<RegistryProblem>> {
        let mut problems = self.store.layout_problems()?;
        let link = |path: PathBuf| Problem {
            kind: crate::store::ProblemKind::Stray,
            digest: None,
            path,
            detail: "a symbolic link that pacha did not create (never followed)".into(),
        };
        if let Some(home) = &self.home {
            for (name, kind) in home.dir.entries()? {
                if kind == EntryKind::Symlink {
                    problems.push(link(home.root.join(&name)));
                }
            }
            if let Some(cache) = home.dir.open_dir(CACHE_DIR).ok().flatten() {
                for (name, kind) in cache.entries()? {
                    if kind == EntryKind::Symlink {
                        problems.push(link(cache.join(&name)));
                    }
                }
            }
        }
        Ok(problems
            .into_iter()
            .map(|problem| RegistryProblem {
                problem,
                users: Vec::new(),
            })
            .collect())
    }
}
