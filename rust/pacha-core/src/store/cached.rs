//! A shared store read through a local cache keyed by digest, like the Hugging Face cache:
//! the second download of the same bytes, or of a version sharing most of its files with one
//! downloaded before, moves nothing over the network.
//!
//! Reads fill the cache in the same pass that writes the caller's output (one GET, one hash,
//! two writes), and a cached copy is re-hashed on every read like any local object, so a
//! damaged one is fetched again rather than handed out. Everything else — writes, listings,
//! `verify`, garbage collection — goes to the shared store, which is the truth: the cache is
//! only ever a verified copy of some of its objects, and removing it loses nothing.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use super::{
    copy, Expected, ExportOptions, LocalStore, ObjectInfo, ObjectStore, Problem, PutOutcome,
    S3Store, SyncBatch, TempSweep, VerifyReport,
};
use crate::destination;
use crate::error::IoContext;
use crate::{CoreError, Digest, Progress, Result};

/// A bucket, read through a local cache.
#[derive(Debug)]
pub struct CachedStore {
    remote: S3Store,
    cache: LocalStore,
}

impl CachedStore {
    pub fn new(remote: S3Store, cache: LocalStore) -> Self {
        CachedStore { remote, cache }
    }

    /// The local cache's directory.
    pub fn cache_root(&self) -> &Path {
        self.cache.root()
    }

    /// A cached copy found damaged, or gone since it was found (a prune in another
    /// process): passed over, so that the caller fetches the object again.
    fn cached_copy_usable<T>(outcome: Result<T>) -> Option<Result<T>> {
        match outcome {
            Err(CoreError::Integrity { .. } | CoreError::ObjectNotFound { .. }) => None,
            other => Some(other),
        }
    }

    /// Mark a cached copy as just used, for [`prune`]'s least-recently-used order (best
    /// effort; a small object kept in the cache's pack has no file of its own).
    fn touch(&self, digest: &Digest) {
        use rustix::fs::{utimensat, AtFlags, Timestamps, CWD};
        let now = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        };
        let omit = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        };
        let times = Timestamps {
            last_access: omit,
            last_modification: now,
        };
        let _ = utimensat(
            CWD,
            self.cache.object_path(digest),
            &times,
            AtFlags::empty(),
        );
    }
}

/// Chunks (of up to 8 MiB, the ranged reads) queued for the output's writer.
const OUTPUT_BACKLOG: usize = 2;

/// Write what arrives to a download's output, starting its writeback as it grows: it is
/// synced before it is published, and this way the disk writes overlap the transfer (the
/// cache copy is not synced: it is re-hashed whenever it is read).
fn write_output(
    file: &mut std::fs::File,
    path: &Path,
    arriving: std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<()> {
    let (mut written, mut flushed) = (0u64, 0u64);
    for chunk in arriving {
        file.write_all(&chunk).at(path)?;
        written += chunk.len() as u64;
        if written - flushed >= copy::WRITEBACK_STEP {
            copy::start_writeback(file, flushed, written - flushed);
            flushed = written;
        }
    }
    Ok(())
}

/// What a download cache holds (after a prune, what it kept), and what a prune removed (or,
/// in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheUsage {
    pub objects: u64,
    pub bytes: u64,
    pub removed: u64,
    pub freed: u64,
}

/// What `cache` holds.
pub fn usage(cache: &LocalStore) -> Result<CacheUsage> {
    let listed = cache.list()?;
    Ok(CacheUsage {
        objects: listed.len() as u64,
        bytes: listed.iter().map(|o| o.size).sum(),
        ..CacheUsage::default()
    })
}

/// Remove the least recently used copies from `cache` until it holds at most `max_bytes`
/// (everything, with 0). Safe beside other processes: one reading a copy keeps its open
/// file, and one about to read a copy that went fetches it again.
pub fn prune(cache: &LocalStore, max_bytes: u64, dry_run: bool) -> Result<CacheUsage> {
    let mut listed = cache.list()?;
    // Oldest use first (a copy is touched when a download reads it).
    listed.sort_by_key(|o| (o.modified, o.digest));
    let mut left: u64 = listed.iter().map(|o| o.size).sum();
    let mut report = CacheUsage {
        objects: listed.len() as u64,
        ..CacheUsage::default()
    };
    let mut doomed = Vec::new();
    for object in &listed {
        if left <= max_bytes {
            break;
        }
        left -= object.size;
        report.removed += 1;
        report.freed += object.size;
        doomed.push(object.digest);
    }
    if !dry_run && !doomed.is_empty() {
        cache.remove(&doomed)?;
    }
    report.objects -= report.removed;
    report.bytes = left;
    Ok(report)
}

impl ObjectStore for CachedStore {
    fn location(&self) -> String {
        self.remote.location()
    }

    fn put_file(&self, source: &Path, progress: &Progress) -> Result<PutOutcome> {
        self.remote.put_file(source, progress)
    }

    fn put_open_file(
        &self,
        file: std::fs::File,
        meta: &std::fs::Metadata,
        source: &Path,
        progress: &Progress,
    ) -> Result<PutOutcome> {
        self.remote.put_open_file(file, meta, source, progress)
    }

    fn put_bytes(&self, data: &[u8]) -> Result<PutOutcome> {
        self.remote.put_bytes(data)
    }

    fn put_open_file_batched(
        &self,
        file: std::fs::File,
        meta: &std::fs::Metadata,
        source: &Path,
        progress: &Progress,
        batch: &SyncBatch,
    ) -> Result<PutOutcome> {
        self.remote
            .put_open_file_batched(file, meta, source, progress, batch)
    }

    fn finish_batch(&self, batch: &SyncBatch) -> Result<()> {
        self.remote.finish_batch(batch)
    }

    fn prefetch(&self, digests: &[Digest]) -> Result<()> {
        self.remote.prefetch(digests)
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        self.remote.contains(digest)
    }

    fn size_of(&self, digest: &Digest) -> Result<Option<u64>> {
        self.remote.size_of(digest)
    }

    fn export(
        &self,
        digest: &Digest,
        dest: &Path,
        options: ExportOptions,
        progress: &Progress,
    ) -> Result<u64> {
        if self.cache.contains(digest)? {
            let cached = self.cache.export(digest, dest, options, progress);
            if let Some(outcome) = Self::cached_copy_usable(cached) {
                if outcome.is_ok() {
                    self.touch(digest);
                }
                return outcome;
            }
        }
        let parent = destination::prepare_file(dest, options.overwrite)?;
        let mut part = destination::part_file(&parent, options.mode)?;
        let part_path = part.path().to_path_buf();
        // The output is written on a thread of its own while this one writes the cache copy:
        // each write is a copy into the page cache that costs the kernel as much CPU as the
        // transfer, and done one after the other they took twice as long (`perf`).
        let (chunks, arriving) = std::sync::mpsc::sync_channel::<Vec<u8>>(OUTPUT_BACKLOG);
        let output = part.as_file_mut();
        let (stored, written) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || write_output(output, &part_path, arriving));
            let stored = self.cache.put_streamed(digest, |cache| {
                self.remote.fetch(digest, progress, |data| {
                    cache(data)?;
                    // A writer that stopped has an error of its own, reported below first.
                    chunks.send(data.to_vec()).map_err(|_| CoreError::Internal {
                        message: "the download's output writer stopped".into(),
                    })
                })
            });
            drop(chunks);
            let written = writer.join().unwrap_or_else(|_| {
                Err(CoreError::Internal {
                    message: "the thread writing a download's output panicked".into(),
                })
            });
            (stored, written)
        });
        written?;
        let size = match stored {
            // Dropping `part` deletes the partial output.
            Err(CoreError::Integrity { actual, .. }) => {
                return Err(CoreError::Integrity {
                    expected: *digest,
                    actual,
                    path: self.remote.display(digest),
                })
            }
            other => other?,
        };
        destination::publish_file(part, dest, options.overwrite, &parent)?;
        Ok(size)
    }

    fn get_bytes(&self, digest: &Digest, max_len: u64) -> Result<Vec<u8>> {
        if self.cache.contains(digest)? {
            let cached = self.cache.get_bytes(digest, max_len);
            if let Some(outcome) = Self::cached_copy_usable(cached) {
                return outcome;
            }
        }
        let data = self.remote.get_bytes(digest, max_len)?;
        // Best effort: a cache that cannot take it only means fetching it again next time.
        drop(self.cache.put_bytes(&data));
        Ok(data)
    }

    fn read_prefix(&self, digest: &Digest, len: usize) -> Result<Vec<u8>> {
        if self.cache.contains(digest)? {
            if let Ok(prefix) = self.cache.read_prefix(digest, len) {
                return Ok(prefix);
            }
        }
        self.remote.read_prefix(digest, len)
    }

    fn list(&self) -> Result<Vec<ObjectInfo>> {
        self.remote.list()
    }

    fn verify(&self, expected: &[Expected], progress: &Progress) -> Result<VerifyReport> {
        self.remote.verify(expected, progress)
    }

    fn verify_all(&self, progress: &Progress) -> Result<VerifyReport> {
        self.remote.verify_all(progress)
    }

    fn layout_problems(&self) -> Result<Vec<Problem>> {
        self.remote.layout_problems()
    }

    fn remove(&self, digests: &[Digest]) -> Result<u64> {
        // Cached copies stay: they are verified copies of immutable bytes, and another
        // registry (or a later registration of the same bytes) may need them.
        self.remote.remove(digests)
    }

    fn remove_stale_temps(&self, older_than: SystemTime, dry_run: bool) -> Result<TempSweep> {
        self.remote.remove_stale_temps(older_than, dry_run)
    }
}
