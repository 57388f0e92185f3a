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
    copy, Expected, ExportOptions, LocalStore, ObjectInfo, ObjectStore, Problem, PutOutcome, S3Store,
    SyncBatch, TempSweep, VerifyReport,
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

    /// A cached copy found damaged: dropped, so that the caller fetches the object again.
    fn cached_copy_usable<T>(outcome: Result<T>) -> Option<Result<T>> {
        match outcome {
            Err(CoreError::Integrity { .. }) => None,
            other => Some(other),
        }
    }
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
                return outcome;
            }
        }
        let parent = destination::prepare_file(dest, options.overwrite)?;
        let mut part = destination::part_file(&parent, options.mode)?;
        let part_path = part.path().to_path_buf();
        let (mut written, mut flushed) = (0u64, 0u64);
        let stored = self.cache.put_streamed(digest, |cache| {
            self.remote.fetch(digest, progress, |data| {
                cache(data)?;
                part.as_file_mut().write_all(data).at(&part_path)?;
                // The output is synced before it is published: start its writeback as it
                // grows, so the disk writes overlap the transfer (the cache copy is not
                // synced: it is re-hashed whenever it is read).
                written += data.len() as u64;
                if written - flushed >= copy::WRITEBACK_STEP {
                    copy::start_writeback(part.as_file(), flushed, written - flushed);
                    flushed = written;
                }
                Ok(())
            })
        });
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
