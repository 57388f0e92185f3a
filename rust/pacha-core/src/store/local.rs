//! The object store on a local filesystem: `docs/store-format.md`, implemented.

use std::collections::HashSet;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rayon::prelude::*;
use tempfile::NamedTempFile;

use super::copy::copy_hashing;
use super::pack::{Pack, PACK_DIR, PACK_MAX};
use super::{
    Expected, ObjectInfo, ObjectStore, Problem, ProblemKind, PutOutcome, SyncBatch, TempSweep,
    VerifyReport,
};
use crate::error::IoContext;
use crate::fsutil::{ensure_dir, open_regular, sync_dir};
use crate::hash;
use crate::{CoreError, Digest, Progress, Result};

/// Sources up to this size are read into memory once, hashed, and written only when new.
pub const SMALL_OBJECT_MAX: u64 = 1 << 20;

/// A batch writes its pending packed objects once they reach this many bytes, which bounds
/// its memory.
const PACK_FLUSH_BYTES: usize = 8 << 20;

const TMP_DIR: &str = "tmp";
const SIZES_DIR: &str = "sizes";
const DAMAGED_DIR: &str = "damaged";

/// The object store rooted at a local directory (`<registry>/objects`).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    tmp: PathBuf,
    sizes: PathBuf,
    damaged: PathBuf,
    /// Shard directories known to exist, so that a write does not pay a `mkdir` each time.
    shards: Arc<[AtomicBool; 256]>,
    /// Small objects written in batches (see `pack.rs`).
    pack: Arc<Pack>,
    /// Loose objects whose directory entries this process has made durable, so that reusing
    /// one again needs no flush (see [`FileIdentity`]).
    durable: Arc<Mutex<HashSet<(Digest, FileIdentity)>>>,
}

/// Which file a name pointed to: the inode number alone is not enough, because a collected
/// object's number can be given to a new copy written by a process that then died before
/// its flush. The birth time tells them apart (and `futimens` does not change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileIdentity {
    inode: u64,
    born: SystemTime,
}

impl FileIdentity {
    /// `None` where the filesystem does not record birth times: then nothing is remembered.
    fn of(meta: &fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        Some(FileIdentity {
            inode: meta.ino(),
            born: meta.created().ok()?,
        })
    }
}

/// At most this many remembered durable objects (a reset costs one flush per object again).
const DURABLE_MEMORY: usize = 1 << 16;

impl LocalStore {
    /// Open the store at `root`, creating it (mode 0700) and its bookkeeping directories.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .at(&root)?;
        let store = LocalStore {
            tmp: root.join(TMP_DIR),
            sizes: root.join(SIZES_DIR),
            damaged: root.join(DAMAGED_DIR),
            shards: Arc::new(std::array::from_fn(|_| AtomicBool::new(false))),
            pack: Arc::new(Pack::new(&root)),
            durable: Arc::default(),
            root,
        };
        ensure_dir(&store.tmp)?;
        ensure_dir(&store.sizes)?;
        ensure_dir(&store.damaged)?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the loose object for `digest` lives (whether or not it exists).
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.shard()).join(digest.to_hex())
    }

    /// Whether ingesting `digest` can skip writing: the object exists with exactly `size`
    /// bytes and has not been found damaged. A truncated or damaged object is not "present",
    /// so ingesting the same bytes again replaces it. Success is reported only once the
    /// object's directory entries are durable (another process may have renamed it into place
    /// and died before its fsync).
    ///
    /// A reused object's modification time is set to now: garbage collection spares objects
    /// younger than its grace period, so an object a registration is about to reference
    /// cannot be collected between this check and the registration's commit. If the object
    /// vanishes before it is freshened (collected a moment ago), it is not present.
    fn is_present(&self, digest: &Digest, size: u64) -> Result<bool> {
        self.is_present_in(digest, size, None)
    }

    /// [`Self::is_present`]; under a batch, the directory flushes are left to the batch.
    fn is_present_in(&self, digest: &Digest, size: u64, batch: Option<&SyncBatch>) -> Result<bool> {
        if self.loose_size_of(digest)? != Some(size) || self.damaged_marker(digest).exists() {
            return Ok(false);
        }
        let path = self.object_path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(CoreError::io(&path, e)),
        };
        // The owner may set the times of a read-only file through a read-only descriptor.
        file.set_modified(SystemTime::now()).at(&path)?;
        match batch {
            Some(batch) => batch.mark(),
            None => {
                let identity = FileIdentity::of(&file.metadata().at(&path)?);
                if !identity.is_some_and(|id| self.known_durable(digest, id)) {
                    sync_dir(&self.root.join(digest.shard()))?;
                    sync_dir(&self.root)?;
                    self.remember_durable(digest, identity);
                }
            }
        }
        Ok(true)
    }

    fn durable_set(&self) -> std::sync::MutexGuard<'_, HashSet<(Digest, FileIdentity)>> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this process flushed the directory entries naming this very file (registering
    /// the same weights under many versions then costs no flush per version).
    fn known_durable(&self, digest: &Digest, identity: FileIdentity) -> bool {
        self.durable_set().contains(&(*digest, identity))
    }

    fn remember_durable(&self, digest: &Digest, identity: Option<FileIdentity>) {
        let Some(identity) = identity else { return };
        let mut durable = self.durable_set();
        if durable.len() >= DURABLE_MEMORY {
            durable.clear();
        }
        durable.insert((*digest, identity));
    }

    /// Whether the stored object's bytes are exactly `data` (compared in bounded chunks).
    fn holds_bytes(&self, digest: &Digest, data: &[u8]) -> Result<bool> {
        let path = self.object_path(digest);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(CoreError::io(&path, e)),
        };
        let mut buf = vec![0u8; hash::STREAM_BUFFER];
        let mut offset = 0usize;
        loop {
            let n = hash::read_full(&mut file, &path, &mut buf)?;
            if n == 0 {
                return Ok(offset == data.len());
            }
            match data.get(offset..offset + n) {
                Some(expected) if expected == &buf[..n] => offset += n,
                _ => return Ok(false),
            }
        }
    }

    fn damaged_marker(&self, digest: &Digest) -> PathBuf {
        self.damaged.join(digest.to_hex())
    }

    /// Remember that `digest`'s bytes were found damaged, so that the next ingest of the same
    /// content rewrites it instead of trusting it. A hint only: losing it costs a repair
    /// opportunity, and a stale one costs one rewrite.
    fn mark_damaged(&self, digest: &Digest) {
        let _ = File::create(self.damaged_marker(digest));
    }

    fn clear_damaged(&self, digest: &Digest) {
        let _ = fs::remove_file(self.damaged_marker(digest));
    }

    fn new_temp(&self) -> Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix("")
            .suffix(".tmp")
            .rand_bytes(16)
            .tempfile_in(&self.tmp)
            .at(&self.tmp)
    }

    /// Make a fully written temp file the object `digest`: read-only, fsync, rename, fsync dir.
    /// Make sure the shard directory of `digest` exists (durably), remembering that it does.
    fn ensure_shard(&self, digest: &Digest, batch: Option<&SyncBatch>) -> Result<PathBuf> {
        let shard = self.root.join(digest.shard());
        let known = &self.shards[usize::from(digest.as_bytes()[0])];
        if !known.load(Ordering::Relaxed) {
            if ensure_dir(&shard)? {
                match batch {
                    Some(batch) => batch.mark(),
                    None => sync_dir(&self.root)?,
                }
            }
            known.store(true, Ordering::Relaxed);
        }
        Ok(shard)
    }

    fn commit(&self, tmp: NamedTempFile, digest: &Digest) -> Result<()> {
        self.commit_in(tmp, digest, None)
    }

    /// [`Self::commit`]; under a batch, the file and directory flushes are left to the batch.
    fn commit_in(
        &self,
        tmp: NamedTempFile,
        digest: &Digest,
        batch: Option<&SyncBatch>,
    ) -> Result<()> {
        let shard = self.ensure_shard(digest, batch)?;
        let file = tmp.as_file();
        file.set_permissions(Permissions::from_mode(0o444))
            .at(tmp.path())?;
        if batch.is_none() {
            file.sync_all().at(tmp.path())?;
        }
        let dest = shard.join(digest.to_hex());
        let replacing = fs::symlink_metadata(&dest).is_ok();
        let tmp = match tmp.persist(&dest) {
            Ok(_) => None,
            // The shard was removed behind our back: forget it, recreate it, try once more.
            Err(e) if e.error.kind() == io::ErrorKind::NotFound => Some(e.file),
            Err(e) => return Err(CoreError::io(&dest, e.error)),
        };
        if let Some(tmp) = tmp {
            self.shards[usize::from(digest.as_bytes()[0])].store(false, Ordering::Relaxed);
            self.ensure_shard(digest, batch)?;
            tmp.persist(&dest)
                .map_err(|e| CoreError::io(&dest, e.error))?;
        }
        match batch {
            Some(batch) => batch.mark(),
            None => sync_dir(&shard)?,
        }
        if replacing {
            // The fresh bytes replaced whatever was there, damaged or not.
            self.clear_damaged(digest);
        }
        Ok(())
    }

    /// Leave a hint that an object of `size` bytes exists (see "size markers" in the spec).
    fn mark_size(&self, size: u64) {
        // A hint: failing to write it costs speed on a later ingest, never correctness.
        let _ = File::create(self.sizes.join(size.to_string()));
    }

    fn size_marked(&self, size: u64) -> bool {
        self.sizes.join(size.to_string()).exists()
    }

    fn put_small(
        &self,
        mut file: File,
        source: &Path,
        meta: &fs::Metadata,
        progress: &Progress,
        batch: Option<&SyncBatch>,
    ) -> Result<PutOutcome> {
        // Sized to the file, not to the limit (this runs for every small registration), plus
        // one byte so that a file that grew is caught below. `meta.len()` is at most
        // SMALL_OBJECT_MAX here.
        let mut buf = vec![0u8; meta.len() as usize + 1];
        let mut len = 0usize;
        loop {
            progress.check()?;
            match file.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CoreError::io(source, e)),
            }
            if len == buf.len() {
                break;
            }
        }
        ensure_unchanged(&file, source, meta, len as u64)?;
        buf.truncate(len);
        progress.advance(len as u64);
        match batch {
            Some(batch) if len as u64 <= PACK_MAX => self.put_packed(buf, batch),
            _ => self.put_slice(&buf, batch),
        }
    }

    /// Queue a small object of a batch for the pack. Whether a copy with these bytes is
    /// already packed is checked when the batch is written (see [`Pack::write`]). A loose
    /// copy of the same bytes (registered alone, or before packs existed) is reused instead:
    /// an object is never stored both ways by a batch, so removing what a failed batch wrote
    /// never takes a loose copy that was there before (one `stat` per file when absent).
    fn put_packed(&self, data: Vec<u8>, batch: &SyncBatch) -> Result<PutOutcome> {
        let digest = hash::hash_slice(&data);
        let size = data.len() as u64;
        let outcome = PutOutcome {
            digest,
            size,
            written: false,
        };
        if batch.small().seen.contains(&digest) {
            return Ok(outcome);
        }
        if self.is_present_in(&digest, size, Some(batch))? && self.holds_bytes(&digest, &data)? {
            return Ok(outcome);
        }
        let mut pending = batch.small();
        if !pending.seen.insert(digest) {
            // A twin file of this batch got here first.
            return Ok(outcome);
        }
        pending.bytes += data.len();
        pending.rows.push((digest, data));
        if pending.bytes >= PACK_FLUSH_BYTES {
            let rows = pending.take_rows();
            drop(pending);
            self.write_packed(batch, rows)?;
        }
        Ok(outcome)
    }

    /// Write a batch's pending rows to the pack and note what they really stored.
    fn write_packed(&self, batch: &SyncBatch, mut rows: Vec<(Digest, Vec<u8>)>) -> Result<()> {
        let written = self.pack.write(&mut rows)?;
        batch.small().written.extend(written);
        Ok(())
    }

    /// The size of the loose copy of `digest`, `None` when there is none.
    fn loose_size_of(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.object_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CoreError::io(&path, e)),
        }
    }

    fn put_slice(&self, data: &[u8], batch: Option<&SyncBatch>) -> Result<PutOutcome> {
        let digest = hash::hash_slice(data);
        let size = data.len() as u64;
        // Readers prefer a packed copy, so one (from a directory holding the same bytes) is
        // reused, or repaired when damaged, rather than shadowing a fresh loose copy.
        if size <= PACK_MAX && self.pack.size_of(&digest)?.is_some() {
            let written = self.pack.write(&mut [(digest, data.to_vec())])?;
            return Ok(PutOutcome {
                digest,
                size,
                written: !written.is_empty(),
            });
        }
        // Small objects are cheap to compare, so an existing copy is trusted only if its bytes
        // really are `data`: undetected damage is repaired here too.
        if self.is_present_in(&digest, size, batch)? && self.holds_bytes(&digest, data)? {
            return Ok(PutOutcome {
                digest,
                size,
                written: false,
            });
        }
        let mut tmp = self.new_temp()?;
        tmp.write_all(data).at(tmp.path())?;
        self.commit_in(tmp, &digest, batch)?;
        Ok(PutOutcome {
            digest,
            size,
            written: true,
        })
    }

    fn put_large(
        &self,
        mut file: File,
        source: &Path,
        meta: &fs::Metadata,
        progress: &Progress,
    ) -> Result<PutOutcome> {
        let size = meta.len();
        // When an object of this exact size may exist, hashing first lets a duplicate cost one
        // read and no write. Otherwise copy and hash in one pass.
        let prehashed = if self.size_marked(size) {
            let mut hasher = hash::Hasher::new();
            hash::update_read_ahead(&mut hasher, &mut file, source, progress)?;
            let digest: Digest = hasher.finalize().into();
            if self.is_present(&digest, size)? {
                ensure_unchanged(&file, source, meta, size)?;
                return Ok(PutOutcome {
                    digest,
                    size,
                    written: false,
                });
            }
            file.seek(SeekFrom::Start(0)).at(source)?;
            progress.add_total(size);
            Some(digest)
        } else {
            None
        };

        let mut tmp = self.new_temp()?;
        let tmp_path = tmp.path().to_path_buf();
        let mut hasher = blake3::Hasher::new();
        let copied = copy_hashing(
            &mut file,
            source,
            tmp.as_file_mut(),
            &tmp_path,
            &mut hasher,
            progress,
        )?;
        ensure_unchanged(&file, source, meta, copied)?;
        let digest: Digest = hasher.finalize().into();
        if let Some(first) = prehashed {
            if first != digest {
                return Err(CoreError::SourceChanged {
                    path: source.into(),
                    detail: "its contents differ between two reads".into(),
                });
            }
        }
        // The object may exist already (no size marker, or another writer was faster). Our copy
        // is verified and fully written, so it replaces the existing file rather than trusting
        // it: that repairs a damaged object at no extra read.
        self.commit(tmp, &digest)?;
        self.mark_size(size);
        Ok(PutOutcome {
            digest,
            size,
            written: true,
        })
    }

    /// All well-formed object files, plus a problem for everything else under the root.
    fn scan(&self) -> Result<(Vec<ObjectInfo>, Vec<Problem>)> {
        let mut objects = Vec::new();
        let mut strays = Vec::new();
        let stray = |path: PathBuf, detail: &str| Problem {
            kind: ProblemKind::Stray,
            digest: None,
            path,
            detail: detail.to_string(),
        };
        for entry in fs::read_dir(&self.root).at(&self.root)? {
            let entry = entry.at(&self.root)?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let file_type = entry.file_type().at(&path)?;
            if name == TMP_DIR || name == SIZES_DIR || name == DAMAGED_DIR || name == PACK_DIR {
                continue;
            }
            if !(file_type.is_dir() && is_shard_name(&name)) {
                strays.push(stray(path, "not a shard directory"));
                continue;
            }
            for object in fs::read_dir(&path).at(&path)? {
                let object = object.at(&path)?;
                let object_path = object.path();
                let object_name = object.file_name();
                let object_name = object_name.to_string_lossy();
                let digest = match Digest::parse(&object_name) {
                    Ok(d) if d.shard() == name => d,
                    _ => {
                        strays.push(stray(object_path, "not an object name in this shard"));
                        continue;
                    }
                };
                let meta = fs::symlink_metadata(&object_path).at(&object_path)?;
                if !meta.is_file() {
                    strays.push(stray(object_path, "an object must be a regular file"));
                    continue;
                }
                objects.push(ObjectInfo {
                    digest,
                    size: meta.len(),
                    modified: meta.modified().ok(),
                });
            }
        }
        objects.sort_by_key(|o| o.digest);
        strays.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((objects, strays))
    }

    /// Hash one object and compare it with its address and expected size. Problems are
    /// returned, not raised, so that `verify` keeps going; only cancellation is an error.
    /// Damaged objects are marked so that the next ingest of the same bytes repairs them;
    /// intact ones lose a stale mark.
    fn check_object(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
        progress: &Progress,
    ) -> Result<Option<Problem>> {
        match self.pack.get(digest) {
            Ok(Some(data)) => Ok(self.check_packed(digest, &data, expected_size)),
            Ok(None) => self.check_loose(digest, expected_size, progress),
            // An unreadable pack is reported against the objects that have no loose copy.
            Err(e) => match self.check_loose(digest, expected_size, progress)? {
                Some(problem) if problem.kind == ProblemKind::Missing => Ok(Some(Problem {
                    kind: ProblemKind::Unreadable,
                    digest: Some(*digest),
                    path: self.pack.path().to_path_buf(),
                    detail: e.to_string(),
                })),
                other => Ok(other),
            },
        }
    }

    /// [`Self::check_object`] for the loose copy.
    fn check_loose(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
        progress: &Progress,
    ) -> Result<Option<Problem>> {
        let path = self.object_path(digest);
        let problem = |kind, detail: String| {
            Ok(Some(Problem {
                kind,
                digest: Some(*digest),
                path: path.clone(),
                detail,
            }))
        };
        let damaged = |kind, detail: String| {
            self.mark_damaged(digest);
            problem(kind, detail)
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return problem(
                    ProblemKind::Missing,
                    "the object file does not exist".into(),
                );
            }
            Err(e) => return problem(ProblemKind::Unreadable, e.to_string()),
        };
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => return problem(ProblemKind::Unreadable, e.to_string()),
        };
        if !meta.is_file() {
            return damaged(
                ProblemKind::Corrupt,
                "the object is not a regular file".into(),
            );
        }
        if let Some(size) = expected_size {
            if meta.len() < size {
                return damaged(
                    ProblemKind::Truncated,
                    format!("{} bytes, expected {size}", meta.len()),
                );
            }
            if meta.len() != size {
                return damaged(
                    ProblemKind::Corrupt,
                    format!("{} bytes, expected {size}", meta.len()),
                );
            }
        }
        let mut hasher = hash::Hasher::new();
        match hash::update_from_open_file(&mut hasher, file, &meta, &path, progress) {
            Ok(_) => {}
            Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
            Err(CoreError::Io { source, .. }) => {
                return problem(ProblemKind::Unreadable, source.to_string())
            }
            Err(e) => return problem(ProblemKind::Unreadable, e.to_string()),
        }
        let actual: Digest = hasher.finalize().into();
        if actual != *digest {
            return damaged(ProblemKind::Corrupt, format!("its bytes hash to {actual}"));
        }
        self.clear_damaged(digest);
        Ok(None)
    }

    /// [`Self::check_object`] for a packed copy. No damage marker: packed objects are always
    /// compared byte for byte before being reused.
    fn check_packed(
        &self,
        digest: &Digest,
        data: &[u8],
        expected_size: Option<u64>,
    ) -> Option<Problem> {
        let problem = |kind, detail: String| {
            Some(Problem {
                kind,
                digest: Some(*digest),
                path: self.pack.path().to_path_buf(),
                detail: format!("packed object {digest}: {detail}"),
            })
        };
        let len = data.len() as u64;
        match expected_size {
            Some(size) if len < size => {
                return problem(
                    ProblemKind::Truncated,
                    format!("{len} bytes, expected {size}"),
                )
            }
            Some(size) if len != size => {
                return problem(
                    ProblemKind::Corrupt,
                    format!("{len} bytes, expected {size}"),
                )
            }
            _ => {}
        }
        let actual = hash::hash_slice(data);
        if actual != *digest {
            return problem(ProblemKind::Corrupt, format!("its bytes hash to {actual}"));
        }
        None
    }

    /// Where an export's temp file goes: next to `dest`, after checking that `dest` may be
    /// written. Returns the parent directory (created if missing).
    fn export_parent(dest: &Path, overwrite: bool) -> Result<PathBuf> {
        match fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => return Err(CoreError::IsADirectory { path: dest.into() }),
            // `--force` replaces a file (or a link), never a FIFO, device or socket: replacing
            // /dev/null with a model is never what was meant.
            Ok(m) if !(m.is_file() || m.file_type().is_symlink()) => {
                return Err(CoreError::InvalidInput {
                    message: format!(
                        "{}: is a {}; pacha writes regular files and will not replace it, even \
                         with --force; choose another output path",
                        dest.display(),
                        crate::fsutil::file_kind(&m)
                    ),
                })
            }
            Ok(_) if !overwrite => return Err(CoreError::AlreadyExists { path: dest.into() }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CoreError::io(dest, e)),
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).at(&parent)?;
        Ok(parent)
    }

    fn export_temp(parent: &Path) -> Result<NamedTempFile> {
        // Mode 0666 before the umask, like any file a program creates.
        tempfile::Builder::new()
            .prefix(".pacha-")
            .suffix(".part")
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(parent)
            .at(parent)
    }

    /// Make a verified, fully written export temp file `dest`, durably.
    fn publish_export(
        tmp: NamedTempFile,
        dest: &Path,
        overwrite: bool,
        parent: &Path,
    ) -> Result<()> {
        tmp.as_file().sync_all().at(tmp.path())?;
        let persisted = if overwrite {
            tmp.persist(dest)
        } else {
            tmp.persist_noclobber(dest)
        };
        match persisted {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CoreError::AlreadyExists { path: dest.into() });
            }
            Err(e) => return Err(CoreError::io(dest, e.error)),
        }
        sync_dir(parent)
    }

    /// Run `check` on every (address, expected size, stored bytes) job. Large objects go one
    /// at a time, each hashed on all cores; small ones are checked in parallel. (A large
    /// object checked inside a parallel loop would be hashed on one core: see
    /// `hash::mapped::update_chunk`.)
    fn check_many(
        &self,
        jobs: &[(Digest, Option<u64>, u64)],
        check: impl Fn(&Digest, Option<u64>) -> Result<Option<Problem>> + Sync,
    ) -> Vec<Result<(u64, Option<Problem>)>> {
        let (large, small): (Vec<_>, Vec<_>) = jobs
            .iter()
            .partition(|(_, _, bytes)| *bytes >= hash::PARALLEL_THRESHOLD);
        let mut results: Vec<Result<(u64, Option<Problem>)>> = large
            .iter()
            .map(|(digest, size, bytes)| Ok((*bytes, check(digest, *size)?)))
            .collect();
        results.par_extend(
            small
                .par_iter()
                .map(|(digest, size, bytes)| Ok((*bytes, check(digest, *size)?))),
        );
        results
    }

    /// The packed bytes of `digest`, verified against it, when they are the copy to read:
    /// `None` when it is not packed, or when the packed copy is damaged or the pack cannot be
    /// read and a loose copy exists (which is then read, and verified, instead). A damaged
    /// packed copy with nothing else to read is an integrity error.
    fn read_packed(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let data = match self.pack.get(digest) {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(None),
            Err(_) if self.loose_size_of(digest)?.is_some() => return Ok(None),
            Err(e) => return Err(e),
        };
        let actual = hash::hash_slice(&data);
        if actual == *digest {
            return Ok(Some(data));
        }
        if self.loose_size_of(digest)?.is_some() {
            return Ok(None);
        }
        Err(CoreError::Integrity {
            expected: *digest,
            actual,
            path: self.pack.path().to_path_buf(),
        })
    }

    /// Export a packed object's bytes (at most [`PACK_MAX`], verified by [`Self::read_packed`]).
    fn export_packed(
        data: &[u8],
        dest: &Path,
        overwrite: bool,
        progress: &Progress,
    ) -> Result<u64> {
        let parent = Self::export_parent(dest, overwrite)?;
        progress.add_total(data.len() as u64);
        let mut tmp = Self::export_temp(&parent)?;
        tmp.write_all(data).at(tmp.path())?;
        progress.advance(data.len() as u64);
        Self::publish_export(tmp, dest, overwrite, &parent)?;
        Ok(data.len() as u64)
    }
}

impl ObjectStore for LocalStore {
    fn remove(&self, digests: &[Digest]) -> Result<u64> {
        let mut freed = 0;
        for digest in digests {
            let path = self.object_path(digest);
            let size = match fs::symlink_metadata(&path) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CoreError::io(&path, e)),
            };
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CoreError::io(&path, e)),
            }
            self.clear_damaged(digest);
            sync_dir(&self.root.join(digest.shard()))?;
            freed += size;
        }
        Ok(freed + self.pack.remove(digests)?)
    }

    fn remove_stale_temps(&self, older_than: SystemTime, dry_run: bool) -> Result<TempSweep> {
        let mut sweep = TempSweep::default();
        for entry in fs::read_dir(&self.tmp).at(&self.tmp)? {
            let entry = entry.at(&self.tmp)?;
            let path = entry.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Finished (renamed into place) or removed by its writer meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CoreError::io(&path, e)),
            };
            if !meta.is_file() || mtime(&meta).is_none_or(|m| m >= older_than) {
                continue;
            }
            if !dry_run {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(CoreError::io(&path, e)),
                }
            }
            sweep.files += 1;
            sweep.bytes += meta.len();
        }
        Ok(sweep)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put_file(&self, source: &Path, progress: &Progress) -> Result<PutOutcome> {
        let (file, meta) = open_regular(source)?;
        self.put_open_file(file, &meta, source, progress)
    }

    fn put_open_file(
        &self,
        file: File,
        meta: &fs::Metadata,
        source: &Path,
        progress: &Progress,
    ) -> Result<PutOutcome> {
        progress.add_total(meta.len());
        if meta.len() <= SMALL_OBJECT_MAX {
            self.put_small(file, source, meta, progress, None)
        } else {
            self.put_large(file, source, meta, progress)
        }
    }

    fn put_bytes(&self, data: &[u8]) -> Result<PutOutcome> {
        self.put_slice(data, None)
    }

    fn put_open_file_batched(
        &self,
        file: File,
        meta: &fs::Metadata,
        source: &Path,
        progress: &Progress,
        batch: &SyncBatch,
    ) -> Result<PutOutcome> {
        if meta.len() <= SMALL_OBJECT_MAX {
            // Safe to defer: an existing small object is trusted only after a byte-for-byte
            // comparison, so one left empty or partial by a crash before the batch's flush is
            // rewritten, never reused.
            self.put_small(file, source, meta, progress, Some(batch))
        } else {
            self.put_large(file, source, meta, progress)
        }
    }

    fn finish_batch(&self, batch: &SyncBatch) -> Result<()> {
        let rows = batch.small().take_rows();
        self.write_packed(batch, rows)?;
        if batch.take() {
            crate::fsutil::sync_filesystem(&self.root)?;
        }
        Ok(())
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.size_of(digest)?.is_some())
    }

    fn size_of(&self, digest: &Digest) -> Result<Option<u64>> {
        match (self.pack.size_of(digest), self.loose_size_of(digest)?) {
            (Ok(Some(size)), _) => Ok(Some(size)),
            (_, Some(size)) => Ok(Some(size)),
            (Ok(None), None) => Ok(None),
            (Err(e), None) => Err(e),
        }
    }

    fn export(
        &self,
        digest: &Digest,
        dest: &Path,
        overwrite: bool,
        progress: &Progress,
    ) -> Result<u64> {
        if let Some(data) = self.read_packed(digest)? {
            return Self::export_packed(&data, dest, overwrite, progress);
        }
        let object_path = self.object_path(digest);
        let (mut src, meta) = match open_regular(&object_path) {
            Ok(opened) => opened,
            Err(CoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(CoreError::ObjectNotFound { digest: *digest });
            }
            Err(e) => return Err(e),
        };
        let parent = Self::export_parent(dest, overwrite)?;
        progress.add_total(meta.len());
        let mut tmp = Self::export_temp(&parent)?;
        let tmp_path = tmp.path().to_path_buf();
        let mut hasher = blake3::Hasher::new();
        let copied = copy_hashing(
            &mut src,
            &object_path,
            tmp.as_file_mut(),
            &tmp_path,
            &mut hasher,
            progress,
        )?;
        let actual: Digest = hasher.finalize().into();
        if actual != *digest {
            // Dropping `tmp` deletes the partial output.
            self.mark_damaged(digest);
            return Err(CoreError::Integrity {
                expected: *digest,
                actual,
                path: object_path,
            });
        }
        Self::publish_export(tmp, dest, overwrite, &parent)?;
        Ok(copied)
    }

    fn get_bytes(&self, digest: &Digest, max_len: u64) -> Result<Vec<u8>> {
        if let Some(data) = self.read_packed(digest)? {
            if data.len() as u64 > max_len {
                return Err(CoreError::Corrupt {
                    message: format!(
                        "object {digest} is {} bytes, more than the {max_len} expected here",
                        data.len()
                    ),
                });
            }
            return Ok(data);
        }
        let path = self.object_path(digest);
        let (mut file, meta) = match open_regular(&path) {
            Ok(opened) => opened,
            Err(CoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(CoreError::ObjectNotFound { digest: *digest });
            }
            Err(e) => return Err(e),
        };
        if meta.len() > max_len {
            return Err(CoreError::Corrupt {
                message: format!(
                    "object {digest} is {} bytes, more than the {max_len} expected here",
                    meta.len()
                ),
            });
        }
        // Bounded by `max_len`, checked above; one byte more catches a file that grew.
        let mut data = vec![0u8; meta.len() as usize + 1];
        let n = hash::read_full(&mut file, &path, &mut data)?;
        data.truncate(n);
        let actual = hash::hash_slice(&data);
        if actual != *digest {
            self.mark_damaged(digest);
            return Err(CoreError::Integrity {
                expected: *digest,
                actual,
                path,
            });
        }
        Ok(data)
    }

    fn list(&self) -> Result<Vec<ObjectInfo>> {
        let mut objects = self.scan()?.0;
        objects.extend(self.pack.list()?);
        // An object stored both loose and packed is listed once, as recently as either copy.
        objects.sort_by(|a, b| (a.digest, b.modified).cmp(&(b.digest, a.modified)));
        objects.dedup_by_key(|o| o.digest);
        Ok(objects)
    }

    fn verify(&self, expected: &[Expected], progress: &Progress) -> Result<VerifyReport> {
        let jobs: Vec<(Digest, Option<u64>, u64)> = expected
            .iter()
            .map(|e| {
                (
                    e.digest,
                    e.size,
                    self.size_of(&e.digest).ok().flatten().unwrap_or(0),
                )
            })
            .collect();
        progress.add_total(jobs.iter().map(|j| j.2).sum());
        let results = self.check_many(&jobs, |digest, size| {
            self.check_object(digest, size, progress)
        });
        collect_report(results, Vec::new())
    }

    fn verify_all(&self, progress: &Progress) -> Result<VerifyReport> {
        let (objects, mut problems) = self.scan()?;
        let pack_problem = |e: CoreError| Problem {
            kind: ProblemKind::Unreadable,
            digest: None,
            path: self.pack.path().to_path_buf(),
            detail: format!("the pack of small objects cannot be read: {e}"),
        };
        let packed = match self.pack.list() {
            Ok(packed) => Some(packed),
            Err(e) => {
                problems.push(pack_problem(e));
                None
            }
        };
        let packed_bytes: u64 = packed.iter().flatten().map(|o| o.size).sum();
        progress.add_total(objects.iter().map(|o| o.size).sum::<u64>() + packed_bytes);
        let jobs: Vec<(Digest, Option<u64>, u64)> =
            objects.iter().map(|o| (o.digest, None, o.size)).collect();
        let mut results =
            self.check_many(&jobs, |digest, _| self.check_loose(digest, None, progress));
        if packed.is_some() {
            let walked = self.pack.for_each(|object| {
                progress.check()?;
                let len = object.data.len() as u64;
                progress.advance(len);
                let problem = match object.digest {
                    Some(digest) => self.check_packed(&digest, object.data, None),
                    None => Some(Problem {
                        kind: ProblemKind::Stray,
                        digest: None,
                        path: self.pack.path().to_path_buf(),
                        detail: "a packed row whose address is not 32 bytes".into(),
                    }),
                };
                results.push(Ok((len, problem)));
                Ok(())
            });
            match walked {
                Ok(()) => {}
                Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
                Err(e) => problems.push(pack_problem(e)),
            }
        }
        collect_report(results, problems)
    }
}

fn collect_report(
    results: Vec<Result<(u64, Option<Problem>)>>,
    mut problems: Vec<Problem>,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for result in results {
        let (bytes, problem) = result?;
        report.checked += 1;
        report.bytes += bytes;
        problems.extend(problem);
    }
    problems.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    report.problems = problems;
    Ok(report)
}

fn is_shard_name(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Refuse a source whose size or modification time changed while we read it, or whose byte
/// count differs from the size it had when opened.
fn ensure_unchanged(file: &File, source: &Path, before: &fs::Metadata, read: u64) -> Result<()> {
    let after = file.metadata().at(source)?;
    let changed = |detail: String| {
        Err(CoreError::SourceChanged {
            path: source.into(),
            detail,
        })
    };
    if read != before.len() {
        return changed(format!(
            "{} bytes when opened, {read} bytes read",
            before.len()
        ));
    }
    if after.len() != before.len() {
        return changed(format!(
            "{} bytes when opened, {} bytes now",
            before.len(),
            after.len()
        ));
    }
    if mtime(&after) != mtime(before) {
        return changed("its modification time changed".into());
    }
    Ok(())
}

fn mtime(meta: &fs::Metadata) -> Option<SystemTime> {
    meta.modified().ok()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pack_tests;
