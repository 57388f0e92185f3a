//! The content-addressed object store.
//!
//! Callers (the binding, and later the registry) talk to the [`ObjectStore`] trait only, so
//! that an S3-compatible store can join [`LocalStore`] without touching them. The on-disk
//! format of the local store is specified in `docs/store-format.md`.

pub(crate) mod cached;
mod copy;
mod local;
mod pack;
mod s3;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Digest, Progress, Result};

pub use cached::{CacheUsage, CachedStore};
pub use local::{LocalStore, SMALL_OBJECT_MAX};
pub(crate) use pack::PACK_DIR;
pub use pack::PACK_MAX;
pub use s3::{S3Location, S3Store};

/// The result of putting bytes into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    pub digest: Digest,
    pub size: u64,
    /// False when the object was already present and nothing was written.
    pub written: bool,
}

/// How [`ObjectStore::export`] writes its destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Replace an existing file (or link) at the destination.
    pub overwrite: bool,
    /// Permission bits for the new file, less the umask (0666 less the umask when `None`).
    pub mode: Option<u32>,
}

/// An object as listed by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub digest: Digest,
    pub size: u64,
    /// When the object was last written or reused (see [`ObjectStore::put_file`]); garbage
    /// collection spares objects younger than its grace period.
    pub modified: Option<std::time::SystemTime>,
}

/// What [`ObjectStore::remove_stale_temps`] found (or removed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TempSweep {
    pub files: u64,
    pub bytes: u64,
}

/// What a caller knows about an object it references, for [`ObjectStore::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub digest: Digest,
    /// The size the referrer recorded, if any; lets `verify` tell "truncated" from "corrupt".
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// The bytes do not hash to the object's address.
    Corrupt,
    /// Shorter than the size its referrer recorded.
    Truncated,
    /// Referenced but absent.
    Missing,
    /// A file under the store's root that is not a well-formed object.
    Stray,
    /// The object could not be read (an I/O error such as EIO or EACCES).
    Unreadable,
    /// The metadata disagrees with itself or with the objects (a version whose digest is not
    /// among its recorded objects, a tree whose manifest lists other files): the database is
    /// damaged.
    Inconsistent,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Missing => "missing",
            ProblemKind::Stray => "stray",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::Inconsistent => "inconsistent",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found by `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The object's address, when the problem concerns an object (not a stray file).
    pub digest: Option<Digest>,
    pub path: PathBuf,
    /// A human-readable explanation (what was expected, what was found).
    pub detail: String,
}

/// Everything `verify` found: it never stops at the first problem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Objects checked (hashed or found missing).
    pub checked: u64,
    /// Bytes hashed.
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Durability deferred across many small writes (a directory of small files): objects are
/// written without a flush each (or, in the local store, packed together and written in a few
/// transactions), and [`ObjectStore::finish_batch`] makes all of them durable at once, before
/// anything references them.
#[derive(Debug, Default)]
pub struct SyncBatch {
    pending: std::sync::atomic::AtomicBool,
    small: std::sync::Mutex<PendingSmall>,
}

/// Small objects a batch has yet to store, and those it has stored so far.
#[derive(Debug, Default)]
pub(crate) struct PendingSmall {
    pub rows: Vec<(Digest, Vec<u8>)>,
    pub bytes: usize,
    /// Every address handed to this batch: a duplicate file is handled once.
    pub seen: std::collections::HashSet<Digest>,
    /// Objects the batch's writes really stored (not those found already present).
    pub written: Vec<Digest>,
}

impl PendingSmall {
    /// Queue a small object for the batch's next write, unless a twin got here first.
    /// Returns the rows to write now once the pending bytes reach `flush_at` (which bounds
    /// the batch's memory).
    pub fn queue(
        &mut self,
        digest: Digest,
        data: Vec<u8>,
        flush_at: usize,
    ) -> Option<Vec<(Digest, Vec<u8>)>> {
        if !self.seen.insert(digest) {
            return None;
        }
        self.bytes += data.len();
        self.rows.push((digest, data));
        (self.bytes >= flush_at).then(|| self.take_rows())
    }

    /// The pending rows, to be written now.
    pub fn take_rows(&mut self) -> Vec<(Digest, Vec<u8>)> {
        self.bytes = 0;
        std::mem::take(&mut self.rows)
    }
}

impl SyncBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn mark(&self) {
        self.pending
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn take(&self) -> bool {
        self.pending
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn small(&self) -> std::sync::MutexGuard<'_, PendingSmall> {
        self.small.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The objects this batch has really stored so far, beyond those reported `written` by
    /// the puts themselves (a store may look for existing copies only when it writes the
    /// batch). Taken even when the batch fails part-way, so that they can be removed again.
    pub fn take_written(&self) -> Vec<Digest> {
        std::mem::take(&mut self.small().written)
    }
}

/// Where a packed object lives in a bucket: its pack object and its byte range there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedAt {
    pub pack: Digest,
    pub offset: u64,
    pub size: u64,
    /// When the pack was recorded (garbage collection's grace period counts from it).
    pub recorded: Option<std::time::SystemTime>,
}

/// The index of a bucket's small objects, kept beside the registry's metadata (a table in
/// the shared database): small files travel packed many to one object, and what a bucket
/// holds is learned from one query here, not one request per object.
/// What a [`PackIndex`] holds of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing: never stored whole, or forgotten by gc.
    Unknown,
    /// Stored whole (its PUT completed).
    Sound,
    /// A check found it missing or damaged since.
    Damaged,
}

pub trait PackIndex: Send + Sync + fmt::Debug {
    /// Those of `digests` the registry already has, packed or referenced by a version (one
    /// query).
    fn known(&self, digests: &[Digest]) -> Result<std::collections::HashSet<Digest>>;

    /// Where those of `digests` that are packed are (one query).
    fn locate(&self, digests: &[Digest]) -> Result<Vec<(Digest, PackedAt)>>;

    /// Record a pack object, uploaded already, and its members (one transaction). A member
    /// packed already elsewhere keeps its place, unless it was marked damaged: it moves here.
    /// Returns the members that were marked damaged (whole again now: a loose copy of one
    /// is the damaged copy, which the caller deletes).
    fn record_pack(
        &self,
        pack: &Digest,
        size: u64,
        members: &[(Digest, u64, u64)],
    ) -> Result<Vec<Digest>>;

    /// Every packed object.
    fn packed(&self) -> Result<Vec<(Digest, PackedAt)>>;

    /// Every recorded pack object.
    fn packs(&self) -> Result<Vec<Digest>>;

    /// Forget packed objects (garbage collection); returns the packs left with no member,
    /// whose rows are gone too and whose objects the caller deletes.
    fn forget_packed(&self, digests: &[Digest]) -> Result<Vec<Digest>>;

    /// What the index holds of one object (one query).
    fn recorded(&self, digest: &Digest) -> Result<Recorded>;

    /// A check found `digests` missing or damaged: no longer [`Self::known`], so that the
    /// next store of the same bytes, in any process, writes them again (a packed one into a
    /// new pack, which [`Self::record_pack`] then gives it as its place). Until then a read
    /// still finds the damaged bytes, and says so.
    fn mark_damaged(&self, digests: &[Digest]) -> Result<()>;

    /// `digests` were stored again, whole, under keys of their own: known again, and any
    /// pack place of theirs (the damaged copy) forgotten.
    fn mark_repaired(&self, digests: &[Digest]) -> Result<()>;

    /// A multipart upload to `key` started with the bucket's id `upload`: recorded, so that
    /// gc can abort it if its writer dies (its parts are invisible to any object listing).
    fn begin_upload(&self, key: &str, upload: &str) -> Result<()>;

    /// The upload is alive (its writer renews it while parts go up).
    fn renew_upload(&self, upload: &str) -> Result<()>;

    /// The upload completed or was aborted.
    fn end_upload(&self, upload: &str) -> Result<()>;

    /// Uploads not renewed for longer than `idle`, as (key, upload id), by the database's
    /// clock (every writer's renewals are stamped by it).
    fn stale_uploads(&self, idle: std::time::Duration) -> Result<Vec<(String, String)>>;
}

/// A content-addressed store of immutable objects.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// A hint that the objects `digests` are about to be read (a tree's files): a store
    /// that must look each one up may look them up together now. Never required.
    fn prefetch(&self, digests: &[Digest]) -> Result<()> {
        let _ = digests;
        Ok(())
    }

    /// Where the store lives, for messages (a directory for the local store, a URL later).
    fn location(&self) -> String;

    /// Ingest the regular file at `source` in a single streaming pass (see the format spec).
    /// Already-present content writes nothing and succeeds.
    fn put_file(&self, source: &Path, progress: &Progress) -> Result<PutOutcome>;

    /// Ingest an already opened regular file (`meta` is its fstat): for callers that checked
    /// the file's identity when they opened it. `source` names it in errors.
    fn put_open_file(
        &self,
        file: std::fs::File,
        meta: &std::fs::Metadata,
        source: &Path,
        progress: &Progress,
    ) -> Result<PutOutcome>;

    /// Store a small in-memory object (a manifest, a card). Not for artifacts.
    fn put_bytes(&self, data: &[u8]) -> Result<PutOutcome>;

    /// [`ObjectStore::put_open_file`], with durability deferred to `finish_batch` where the
    /// store can do that safely (small objects, whose existing copies are compared byte for
    /// byte before being trusted). A small object may be stored only when the batch is
    /// written: its outcome then says `written: false`, and [`SyncBatch::take_written`]
    /// reports it. Unlike `put_open_file`, adds nothing to `progress.total()`: a batch's
    /// caller knows the total before it starts.
    fn put_open_file_batched(
        &self,
        file: std::fs::File,
        meta: &std::fs::Metadata,
        source: &Path,
        progress: &Progress,
        batch: &SyncBatch,
    ) -> Result<PutOutcome>;

    /// Make everything written under `batch` durable. Must return before any metadata
    /// references those objects.
    fn finish_batch(&self, batch: &SyncBatch) -> Result<()>;

    /// True when an object file with this address exists (its bytes are not checked).
    fn contains(&self, digest: &Digest) -> Result<bool>;

    /// The stored size of an object, `None` when absent.
    fn size_of(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Stream an object to `dest`, re-hashing it on the way; refuses corrupt bytes with
    /// `CoreError::Integrity` and leaves no partial output. Returns the bytes written.
    fn export(
        &self,
        digest: &Digest,
        dest: &Path,
        options: ExportOptions,
        progress: &Progress,
    ) -> Result<u64>;

    /// Read a small object (a manifest, a card) whole, verified against its address.
    /// Objects larger than `max_len` are refused: this is not a way to read artifacts.
    fn get_bytes(&self, digest: &Digest, max_len: u64) -> Result<Vec<u8>>;

    /// Up to `len` bytes from the start of an object, **not verified** (a hint for telling
    /// what an object is; anything trusted is read with `get_bytes` or `export`).
    fn read_prefix(&self, digest: &Digest, len: usize) -> Result<Vec<u8>>;

    /// Every object in the store, ordered by digest.
    fn list(&self) -> Result<Vec<ObjectInfo>>;

    /// Check the given objects; problems are collected, not raised.
    fn verify(&self, expected: &[Expected], progress: &Progress) -> Result<VerifyReport>;

    /// Check every object in the store and report strays.
    fn verify_all(&self, progress: &Progress) -> Result<VerifyReport>;

    /// Report what is in the store's location but is not an object or its bookkeeping
    /// (strays, symbolic links), without reading any object.
    fn layout_problems(&self) -> Result<Vec<Problem>>;

    /// Delete objects (garbage collection only), every stored copy of each; returns the
    /// bytes freed. Objects already gone are skipped.
    fn remove(&self, digests: &[Digest]) -> Result<u64>;

    /// Temporary files of interrupted writes last touched before `older_than`: removed, or
    /// only counted with `dry_run`.
    fn remove_stale_temps(
        &self,
        older_than: std::time::SystemTime,
        dry_run: bool,
    ) -> Result<TempSweep>;
}
