//! Recovery of a registry whose metadata database was lost while its objects remain.
//!
//! Objects alone tell only part of the story: a directory's tree manifest names its files,
//! and a recipe is stored as its TOML text, but names, version numbers, stages, aliases,
//! tags, cards, runs and lineage lived in the database. [`Registry::recover_database`]
//! keeps whatever database file there was (renamed, never deleted), starts an empty one,
//! and [`Registry::adopt`] records an object that is already stored as a version, so that
//! the caller (Python's `pacha recover`) can give every recovered object a version to
//! download it by, and garbage collection no longer sees it as unreferenced.

use std::path::PathBuf;

use super::{OpenMode, Registry, DATABASE_FILE};
use crate::meta::{Kind, Layout, NewVersion, Version, VersionChoice, VersionRecord};
use crate::{tree, CoreError, Digest, Result};

/// What to record for an object that is already stored.
#[derive(Debug, Clone)]
pub struct AdoptRequest {
    pub kind: Kind,
    pub name: String,
    pub version: Version,
    pub digest: Digest,
    pub description: Option<String>,
    /// Card, datasheet or recipe document as JSON text.
    pub card: Option<String>,
    pub actor: String,
}

/// Bytes read to tell a tree manifest from other objects.
const MANIFEST_PREFIX: usize = 32;

impl Registry {
    /// Open the registry at `root` for recovery: its database must be missing or empty while
    /// objects remain (otherwise there is nothing to recover). A database file that is there
    /// (empty, or cut short) is renamed `registry.db.lost-<seconds since the epoch>` (its WAL
    /// and shared-memory files likewise) and a new, empty database is created. Returns the
    /// registry and where the old file was kept.
    pub fn recover_database(root: impl Into<PathBuf>) -> Result<(Registry, Vec<PathBuf>)> {
        let root = root.into();
        match Self::open_with(&root, OpenMode::Existing) {
            Ok(registry) => {
                return Err(CoreError::InvalidInput {
                    message: format!(
                        "the registry at {} has its database; there is nothing to recover \
                         (`pacha verify` checks it)",
                        registry.label().display()
                    ),
                })
            }
            Err(CoreError::MissingDatabase { .. }) => {}
            Err(e) => return Err(e),
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let dir = crate::fsutil::Dir::open(&root)?;
        let mut kept = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let name = format!("{DATABASE_FILE}{suffix}");
            if dir.kind_of(&name)?.is_none() {
                continue;
            }
            let aside = format!("{DATABASE_FILE}.lost-{stamp}{suffix}");
            dir.rename(&name, &dir, &aside)
                .map_err(|e| CoreError::io(root.join(&name), e))?;
            kept.push(root.join(aside));
        }
        dir.sync()?;
        let registry = Self::open_inner(&root, OpenMode::Create, true)?;
        Ok((registry, kept))
    }

    /// The files of the tree manifest stored as `digest` (path, size), or `None` when the
    /// object is not a valid manifest.
    pub fn tree_files(&self, digest: &Digest) -> Result<Option<Vec<(String, u64)>>> {
        let prefix = self.store.read_prefix(digest, MANIFEST_PREFIX)?;
        if !tree::looks_like_manifest(&prefix) {
            return Ok(None);
        }
        match tree::load_manifest(self.store.as_ref(), digest) {
            Ok(manifest) => Ok(Some(
                manifest
                    .entries
                    .into_iter()
                    .map(|e| (e.path, e.size))
                    .collect(),
            )),
            Err(CoreError::Corrupt { .. } | CoreError::InvalidDigest { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Record the stored object `digest` (a file, or a tree manifest whose files are all
    /// stored) as a new version.
    pub fn adopt(&self, request: &AdoptRequest) -> Result<VersionRecord> {
        let _guard = self.registration_guard()?;
        let size_of = |digest: &Digest| {
            self.store
                .size_of(digest)?
                .ok_or(CoreError::ObjectNotFound { digest: *digest })
        };
        let own_size = size_of(&request.digest)?;
        let (layout, size, file_count, mut objects) = match self.tree_files(&request.digest)? {
            Some(files) => {
                let manifest = tree::load_manifest(self.store.as_ref(), &request.digest)?;
                let mut objects = Vec::with_capacity(manifest.entries.len() + 1);
                let mut seen = std::collections::BTreeSet::new();
                for entry in &manifest.entries {
                    let digest = Digest::parse(&entry.digest)?;
                    if seen.insert(digest) {
                        size_of(&digest)?;
                        objects.push((digest, entry.size));
                    }
                }
                let size = files.iter().map(|(_, size)| size).sum();
                (Layout::Tree, size, files.len() as u64, objects)
            }
            None => (Layout::File, own_size, 1, Vec::new()),
        };
        objects.push((request.digest, own_size));
        self.meta.insert_version(&NewVersion {
            kind: request.kind,
            name: crate::meta::names::validate_name(&request.name)?,
            version: VersionChoice::Exact(request.version.clone()),
            digest: request.digest,
            layout,
            size,
            file_count,
            description: request.description.clone(),
            card: request.card.clone(),
            tags: Vec::new(),
            actor: request.actor.clone(),
            objects,
            run_id: None,
            lineage: Vec::new(),
            mode: None,
        })
    }
}
