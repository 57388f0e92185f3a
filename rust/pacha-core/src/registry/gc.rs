//! Garbage collection: mark the objects the metadata references, sweep the rest.
//!
//! Safe while other processes register, by a lock that registrations hold shared and the
//! collector exclusively. A registry several machines share keeps it in its database (a
//! PostgreSQL advisory lock: `meta::postgres::locks`); a registry directory, in two files:
//! every registration holds `gc.lock` shared from before it stores its first byte until its
//! metadata transaction commits, and the collector holds it exclusively while it marks and
//! sweeps, so no object can be found unreferenced while a registration is about to
//! reference it. `gc.intent` makes the collector's request win against a stream of
//! registrations (a shared `flock` is otherwise granted while an exclusive one waits):
//! registrations pass through it shared, the collector holds it exclusively.
//!
//! Objects written without metadata (`pacha store add`) and temporary files are swept only
//! once older than a grace period, as git prunes only old unreachable objects.
//!
//! A shared registry collects in two phases (`MetadataStore::mark_for_collection`): a run
//! marks the unreferenced objects older than the grace period, and only a later run deletes
//! those it finds marked and still unreferenced; a commit that references a marked object
//! removes its mark. A database lock goes with its connection, silently for its holder, and
//! clients of other versions may not take it at all; the marks give any registration a
//! whole gc interval to commit before the bytes it counts on can go. Removal itself drops
//! the rows of the still-unreferenced objects in one transaction before any bytes are
//! deleted, so a reference committed meanwhile saves its object.

use std::collections::HashSet;
use std::fs::File;
use std::time::{Duration, SystemTime};

use super::Registry;
use crate::error::IoContext;
use crate::meta::HeldLock;
use crate::{Digest, Result};

const LOCK_FILE: &str = "gc.lock";
const INTENT_FILE: &str = "gc.intent";

/// What `gc` removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub objects_removed: u64,
    pub bytes_freed: u64,
    pub temp_files_removed: u64,
    pub temp_bytes_freed: u64,
    /// Unreferenced objects spared because they are younger than the grace period.
    pub young_objects_kept: u64,
    /// Unreferenced objects marked by this run (a shared registry's first phase): a later
    /// run removes them if they are still unreferenced then.
    pub objects_marked: u64,
    pub objects_kept: u64,
    pub dry_run: bool,
}

/// Held by a registration from its first stored byte to its commit.
pub struct RegistrationGuard {
    _held: Held,
}

impl RegistrationGuard {
    /// Refuse to commit when the shared lock may have gone during the registration (its
    /// connection broke): a collector could then have run and removed objects this
    /// registration found present. Run again, it stores them anew.
    pub(crate) fn check(&self) -> Result<()> {
        match &self._held {
            Held::Database(held) => held.lost().map_or(Ok(()), Err),
            Held::Files(_) => Ok(()),
        }
    }
}

impl std::fmt::Debug for RegistrationGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistrationGuard")
    }
}

/// One side of the collector's lock, released when dropped.
enum Held {
    /// In the database (see `MetadataStore::collector_lock`).
    Database(HeldLock),
    /// In the registry directory's lock files (the intent file is only passed through by a
    /// registration, so it holds just the lock file).
    Files(#[allow(dead_code)] Vec<File>),
}

impl Registry {
    /// Open (creating if needed) one of the lock files; never through a link, never
    /// truncating.
    fn open_lock(&self, name: &str) -> Result<(File, std::path::PathBuf)> {
        let home = self.home("the collector's lock file")?;
        let file = home.dir.open_or_create(name, home.sharing.file_mode())?;
        Ok((file, home.root.join(name)))
    }

    /// Take the shared side of the collector's lock (see the module docs).
    pub(crate) fn registration_guard(&self) -> Result<RegistrationGuard> {
        self.ensure_writable()?;
        if let Some(held) = self.meta.collector_lock(false)? {
            return Ok(RegistrationGuard {
                _held: Held::Database(held),
            });
        }
        let (intent, intent_path) = self.open_lock(INTENT_FILE)?;
        intent.lock_shared().at(&intent_path)?;
        let (lock, lock_path) = self.open_lock(LOCK_FILE)?;
        lock.lock_shared().at(&lock_path)?;
        drop(intent);
        Ok(RegistrationGuard {
            _held: Held::Files(vec![lock]),
        })
    }

    /// The exclusive side (see the module docs), held until dropped.
    fn collector_lock(&self) -> Result<Held> {
        self.ensure_writable()?;
        if let Some(held) = self.meta.collector_lock(true)? {
            return Ok(Held::Database(held));
        }
        let (intent, intent_path) = self.open_lock(INTENT_FILE)?;
        intent.lock().at(&intent_path)?;
        let (lock, lock_path) = self.open_lock(LOCK_FILE)?;
        lock.lock().at(&lock_path)?;
        Ok(Held::Files(vec![intent, lock]))
    }

    /// Remove those of `digests` that nothing references, under the collector's lock (so
    /// that no registration in flight can be about to reference them).
    pub(crate) fn discard_unreferenced(&self, digests: &[Digest]) -> Result<()> {
        let _held = self.collector_lock()?;
        let referenced: HashSet<Digest> = self.meta.referenced_objects()?.into_iter().collect();
        let unreferenced: Vec<Digest> = digests
            .iter()
            .filter(|d| !referenced.contains(d))
            .copied()
            .collect();
        // The rows first: a shared store's index then never names bytes that are gone (a
        // crash between the two leaves unrecorded objects, which the next gc sweeps).
        let removable = self.meta.forget_objects(&unreferenced)?;
        self.store.remove(&removable).map(drop)
    }

    /// Remove every object that no version, run artifact or tree references (a tree's
    /// manifest and files are all recorded as its version's objects) and is older than
    /// `grace`, and temporary files of interrupted writes older than `grace`.
    pub fn gc(&self, grace: Duration, dry_run: bool) -> Result<GcReport> {
        let _held = self.collector_lock()?;
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let referenced: HashSet<Digest> = self.meta.referenced_objects()?.into_iter().collect();
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        let mut candidates = Vec::new();
        for object in self.store.list()? {
            if referenced.contains(&object.digest) {
                report.objects_kept += 1;
                continue;
            }
            if object.modified.is_none_or(|m| m >= cutoff) {
                report.young_objects_kept += 1;
                continue;
            }
            candidates.push((object.digest, object.size));
        }
        let digests: Vec<Digest> = candidates.iter().map(|(digest, _)| *digest).collect();
        let ripe: Option<HashSet<Digest>> = self
            .meta
            .mark_for_collection(&digests, dry_run)?
            .map(|ripe| ripe.into_iter().collect());
        let mut removed = Vec::new();
        for (digest, size) in candidates {
            if ripe.as_ref().is_some_and(|ripe| !ripe.contains(&digest)) {
                report.objects_marked += 1;
                continue;
            }
            report.objects_removed += 1;
            report.bytes_freed += size;
            removed.push(digest);
        }
        if !dry_run {
            // Rows before bytes (see `discard_unreferenced`). What was really freed: an
            // object may have two copies, have gone meanwhile, or be referenced again.
            let removable = self.meta.forget_objects(&removed)?;
            report.objects_kept += (removed.len() - removable.len()) as u64;
            report.objects_removed = removable.len() as u64;
            report.bytes_freed = self.store.remove(&removable)?;
        }
        let temps = self.store.remove_stale_temps(cutoff, dry_run)?;
        report.temp_files_removed = temps.files;
        report.temp_bytes_freed = temps.bytes;
        Ok(report)
    }
}
