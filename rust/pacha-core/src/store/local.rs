//! The object store on a local filesystem: `docs/store-format.md`, implemented.
//!
//! Every directory of the store is held open by descriptor and everything inside is reached
//! one name at a time without following links (`fsutil::Dir`), so a symbolic link planted in
//! the store can neither redirect a write nor be followed by a read.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::copy::copy_hashing;
use super::pack::{Pack, PACK_DIR, PACK_MAX};
use super::{
    Expected, ExportOptions, ObjectInfo, ObjectStore, Problem, ProblemKind, PutOutcome, SyncBatch,
    TempSweep, VerifyReport,
};
use crate::destination;
use crate::error::IoContext;
use crate::fsutil::{open_regular, Dir, EntryKind, Sharing, TempFile};
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

/// Objects are read-only files (their directories decide who may read them).
const OBJECT_MODE: u32 = 0o444;

/// The object store rooted at a local directory (`<registry>/objects`).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    dirs: Arc<Dirs>,
    sharing: Sharing,
    /// Shard directories known to exist, so that a write does not pay a `mkdir` each time.
    shards: Arc<[AtomicBool; 256]>,
    /// Small objects written in batches (see `pack.rs`).
    pack: Arc<Pack>,
    /// Loose objects whose directory entries this process has made durable, so that reusing
    /// one again needs no flush (see [`FileIdentity`]).
    durable: Arc<Mutex<HashSet<(Digest, FileIdentity)>>>,
}

/// The store's directories, opened once.
#[derive(Debug)]
struct Dirs {
    root: Dir,
    /// The directories writes need, or why there are none: opened read-only, or one of them
    /// is a link pacha did not create (the store can still be read and verified).
    writable: std::result::Result<WritableDirs, Refusal>,
}

/// Why a store cannot be written (kept to build the error each write returns).
#[derive(Debug)]
enum Refusal {
    ReadOnly(PathBuf),
    Unsafe(PathBuf, String),
}

impl Refusal {
    fn error(&self) -> CoreError {
        match self {
            Refusal::ReadOnly(path) => CoreError::ReadOnly {
                path: path.clone(),
                reason: "it was opened read-only".into(),
            },
            Refusal::Unsafe(path, detail) => CoreError::Unsafe {
                path: path.clone(),
                detail: detail.clone(),
            },
        }
    }
}

impl WritableDirs {
    fn open(root: &Dir, sharing: Sharing) -> Result<std::result::Result<Self, Refusal>> {
        let open = |name| {
            root.ensure_dir(name, sharing.dir_mode())
                .map(|(dir, _)| dir)
        };
        let opened = (|| {
            Ok(WritableDirs {
                tmp: open(TMP_DIR)?,
                sizes: open(SIZES_DIR)?,
                damaged: open(DAMAGED_DIR)?,
            })
        })();
        match opened {
            Ok(dirs) => Ok(Ok(dirs)),
            Err(CoreError::Unsafe { path, detail }) => Ok(Err(Refusal::Unsafe(path, detail))),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug)]
struct WritableDirs {
    tmp: Dir,
    sizes: Dir,
    damaged: Dir,
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
    /// Open the store at `root` (a path the user chose: links in it are followed), creating
    /// it (mode 0700) and its bookkeeping directories.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        crate::fsutil::create_private_dir_all(&root)?;
        let dir = Dir::open(&root)?;
        Self::from_dir(dir, Sharing::PRIVATE, true)
    }

    /// Open the store in `dir` (held open by the caller's descriptor), creating what it needs
    /// with the modes `sharing` calls for; read-only unless `writable`.
    pub(crate) fn from_dir(dir: Dir, sharing: Sharing, writable: bool) -> Result<Self> {
        let writable = if writable {
            WritableDirs::open(&dir, sharing)?
        } else {
            Err(Refusal::ReadOnly(dir.path().to_path_buf()))
        };
        let root = dir.path().to_path_buf();
        let pack = Pack::new(&dir, sharing, writable.is_ok())?;
        Ok(LocalStore {
            dirs: Arc::new(Dirs {
                root: dir,
                writable,
            }),
            sharing,
            shards: Arc::new(std::array::from_fn(|_| AtomicBool::new(false))),
            pack: Arc::new(pack),
            durable: Arc::default(),
            root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the loose object for `digest` lives (whether or not it exists).
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.shard()).join(digest.to_hex())
    }

    /// The directories writes need, or the read-only refusal.
    fn writable(&self) -> Result<&WritableDirs> {
        self.dirs.writable.as_ref().map_err(Refusal::error)
    }

    /// The shard directory of `digest`, if it exists. A link in its place is refused.
    fn shard(&self, digest: &Digest) -> Result<Option<Dir>> {
        self.dirs.root.open_dir(&digest.shard())
    }

    /// Open the loose copy of `digest` for reading (never through a link); `None` when
    /// there is none.
    fn open_loose(&self, digest: &Digest) -> Result<Option<File>> {
        let Some(shard) = self.shard(digest)? else {
            return Ok(None);
        };
        shard.open_read(&digest.to_hex())
    }

    /// The loose copy of `digest`, opened for reading and checked to be a regular file.
    fn open_object(&self, digest: &Digest) -> Result<(File, fs::Metadata)> {
        let path = self.object_path(digest);
        let file = match self.open_loose(digest) {
            Ok(Some(file)) => file,
            Ok(None) => return Err(CoreError::ObjectNotFound { digest: *digest }),
            Err(CoreError::Io { source, .. }) if is_link_error(&source) => {
                self.mark_damaged(digest);
                return Err(CoreError::Corrupt {
                    message: format!(
                        "{}: {LINK_DETAIL}; the object is damaged — add its bytes again to \
                         repair it",
                        path.display()
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata().at(&path)?;
        if !meta.is_file() {
            self.mark_damaged(digest);
            return Err(CoreError::Corrupt {
                message: format!(
                    "{}: the object is a {}, not a regular file; add its bytes again to repair it",
                    path.display(),
                    crate::fsutil::file_kind(&meta)
                ),
            });
        }
        Ok((file, meta))
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
        if self.loose_size_of(digest)? != Some(size) || self.is_marked_damaged(digest)? {
            return Ok(false);
        }
        let path = self.object_path(digest);
        let Some(shard) = self.shard(digest)? else {
            return Ok(false);
        };
        let Some(file) = shard.open_read(&digest.to_hex())? else {
            return Ok(false);
        };
        // The owner may set the times of a read-only file through a read-only descriptor.
        // In a shared registry another member may own it: then its time stays as it is, and
        // the object is rewritten (which makes it this user's, and young).
        match file.set_modified(SystemTime::now()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(false),
            Err(e) => return Err(CoreError::io(&path, e)),
        }
        match batch {
            Some(batch) => batch.mark(),
            None => {
                let identity = FileIdentity::of(&file.metadata().at(&path)?);
                if !identity.is_some_and(|id| self.known_durable(digest, id)) {
                    shard.sync()?;
                    self.dirs.root.sync()?;
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
        let Some(mut file) = self.open_loose(digest)? else {
            return Ok(false);
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

    fn is_marked_damaged(&self, digest: &Digest) -> Result<bool> {
        match &self.dirs.writable {
            Ok(dirs) => Ok(dirs.damaged.stat(&digest.to_hex())?.is_some()),
            Err(_) => Ok(false),
        }
    }

    /// Remember that `digest`'s bytes were found damaged, so that the next ingest of the same
    /// content rewrites it instead of trusting it. A hint only: losing it costs a repair
    /// opportunity, and a stale one costs one rewrite. Created without ever opening an
    /// existing file, so a link planted in its place changes nothing.
    fn mark_damaged(&self, digest: &Digest) {
        if let Ok(dirs) = &self.dirs.writable {
            let _ = dirs
                .damaged
                .create_marker(&digest.to_hex(), self.sharing.file_mode());
        }
    }

    fn clear_damaged(&self, digest: &Digest) {
        if let Ok(dirs) = &self.dirs.writable {
            let _ = dirs.damaged.remove_file(&digest.to_hex());
        }
    }

    fn new_temp(&self) -> Result<TempFile<'_>> {
        TempFile::new_in(&self.writable()?.tmp, ".tmp", 0o600)
    }

    /// The shard directory of `digest`, created (durably) if missing.
    fn ensure_shard(&self, digest: &Digest, batch: Option<&SyncBatch>) -> Result<Dir> {
        let known = &self.shards[usize::from(digest.as_bytes()[0])];
        if known.load(Ordering::Relaxed) {
            if let Some(shard) = self.shard(digest)? {
                return Ok(shard);
            }
        }
        let (shard, created) = self
            .dirs
            .root
            .ensure_dir(&digest.shard(), self.sharing.dir_mode())?;
        if created {
            match batch {
                Some(batch) => batch.mark(),
                None => self.dirs.root.sync()?,
            }
        }
        known.store(true, Ordering::Relaxed);
        Ok(shard)
    }

    fn commit(&self, tmp: TempFile<'_>, digest: &Digest) -> Result<()> {
        self.commit_in(tmp, digest, None)
    }

    /// Make a fully written temp file the object `digest`: read-only, fsync, rename, fsync
    /// the shard. Under a batch, the file and directory flushes are left to the batch.
    fn commit_in(
        &self,
        tmp: TempFile<'_>,
        digest: &Digest,
        batch: Option<&SyncBatch>,
    ) -> Result<()> {
        let shard = self.ensure_shard(digest, batch)?;
        use std::os::unix::fs::PermissionsExt;
        let file = tmp.file();
        file.set_permissions(fs::Permissions::from_mode(OBJECT_MODE))
            .at(&tmp.path())?;
        if batch.is_none() {
            file.sync_all().at(&tmp.path())?;
        }
        let name = digest.to_hex();
        let dest = shard.join(&name);
        let replacing = match shard.kind_of(&name)? {
            None => false,
            Some(EntryKind::File) => true,
            // A directory (or anything else) where the object belongs: damage that `verify`
            // names. It is moved out of the way so that the fresh copy can take its place.
            Some(_) => {
                self.move_aside(&shard, &name)?;
                true
            }
        };
        match tmp.persist(&shard, &name) {
            Ok(()) => {}
            Err(e) => return Err(CoreError::io(&dest, e)),
        }
        match batch {
            Some(batch) => batch.mark(),
            None => shard.sync()?,
        }
        if replacing {
            // The fresh bytes replaced whatever was there, damaged or not.
            self.clear_damaged(digest);
        }
        Ok(())
    }

    /// Move the entry `name` of `shard` (not a regular file: a directory or a link someone
    /// put where an object belongs) into `tmp/`, and delete it from there. A link is removed,
    /// never followed; a directory's contents are deleted without following links in it.
    fn move_aside(&self, shard: &Dir, name: &str) -> Result<()> {
        let tmp = &self.writable()?.tmp;
        let aside = format!("{:032x}.damaged", fastrand::u128(..));
        shard
            .rename(name, tmp, &aside)
            .map_err(|e| CoreError::io(shard.join(name), e))?;
        let path = tmp.join(&aside);
        match tmp.kind_of(&aside)? {
            Some(EntryKind::Dir) => fs::remove_dir_all(&path).at(&path),
            _ => tmp.remove_file(&aside).map(drop),
        }
    }

    /// Leave a hint that an object of `size` bytes exists (see "size markers" in the spec).
    fn mark_size(&self, size: u64) {
        // A hint: failing to write it costs speed on a later ingest, never correctness. Never
        // opens an existing file, so a link planted in its place changes nothing.
        if let Ok(dirs) = &self.dirs.writable {
            let _ = dirs
                .sizes
                .create_marker(&size.to_string(), self.sharing.file_mode());
        }
    }

    fn size_marked(&self, size: u64) -> bool {
        match &self.dirs.writable {
            Ok(dirs) => matches!(dirs.sizes.stat(&size.to_string()), Ok(Some(_))),
            Err(_) => false,
        }
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
        // (A twin file of this batch may have got here first: then nothing is queued.)
        let full = batch.small().queue(digest, data, PACK_FLUSH_BYTES);
        if let Some(rows) = full {
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
        let Some(shard) = self.shard(digest)? else {
            return Ok(None);
        };
        Ok(shard
            .stat(&digest.to_hex())?
            .filter(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_file())
            .map(|s| s.st_size as u64))
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
        tmp.file_mut().write_all(data).at(&tmp.path())?;
        self.commit_in(tmp, &digest, batch)?;
        Ok(PutOutcome {
            digest,
            size,
            written: true,
        })
    }

    /// Store the object `digest` from bytes fetched elsewhere (a cache of another store):
    /// `fill` passes them to its sink in order and returns their digest, as it computed it
    /// while reading; they are written to a temp file and committed only when that digest is
    /// `digest` (else `CoreError::Integrity`, and nothing is stored). Returns the size.
    /// Not flushed to disk: for a cache, whose every read re-hashes what it holds, a copy
    /// torn by a crash is fetched again, and a flush per file would cost more than the
    /// download.
    pub(crate) fn put_streamed(
        &self,
        digest: &Digest,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<Digest>,
    ) -> Result<u64> {
        let mut tmp = self.new_temp()?;
        let tmp_path = tmp.path();
        let mut size = 0u64;
        let actual = {
            let file = tmp.file_mut();
            fill(&mut |data: &[u8]| {
                size += data.len() as u64;
                file.write_all(data).at(&tmp_path)
            })?
        };
        if actual != *digest {
            return Err(CoreError::Integrity {
                expected: *digest,
                actual,
                path: tmp_path,
            });
        }
        // A batch that is never finished: its flushes are skipped (see above).
        self.commit_in(tmp, digest, Some(&SyncBatch::new()))?;
        Ok(size)
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
        let tmp_path = tmp.path();
        let mut hasher = blake3::Hasher::new();
        let copied = copy_hashing(
            &mut file,
            source,
            tmp.file_mut(),
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

    /// All well-formed object files, plus a problem for everything else under the root
    /// (symbolic links included: they are reported, never followed).
    fn scan(&self) -> Result<(Vec<ObjectInfo>, Vec<Problem>)> {
        let mut objects = Vec::new();
        let mut strays = Vec::new();
        let stray = |path: PathBuf, detail: &str| Problem {
            kind: ProblemKind::Stray,
            digest: None,
            path,
            detail: detail.to_string(),
        };
        let root = &self.dirs.root;
        for (name, kind) in root.entries()? {
            let path = root.join(&name);
            let Some(name) = name.to_str() else {
                strays.push(stray(path, "not a shard directory"));
                continue;
            };
            if kind == EntryKind::Symlink {
                strays.push(stray(path, LINK_DETAIL));
                continue;
            }
            if [TMP_DIR, SIZES_DIR, DAMAGED_DIR, PACK_DIR].contains(&name) {
                if kind == EntryKind::Dir {
                    if let Some(dir) = root.open_dir(name)? {
                        strays.extend(bookkeeping_strays(&dir, name)?);
                    }
                } else {
                    strays.push(stray(path, "pacha keeps a directory here"));
                }
                continue;
            }
            if !(kind == EntryKind::Dir && is_shard_name(name)) {
                strays.push(stray(path, "not a shard directory"));
                continue;
            }
            let Some(shard) = root.open_dir(name)? else {
                continue;
            };
            for (object_name, object_kind) in shard.entries()? {
                let object_path = shard.join(&object_name);
                let digest = match object_name.to_str().map(Digest::parse) {
                    Some(Ok(d)) if d.shard() == name => d,
                    _ if object_kind == EntryKind::Symlink => {
                        strays.push(stray(object_path, LINK_DETAIL));
                        continue;
                    }
                    _ => {
                        strays.push(stray(object_path, "not an object name in this shard"));
                        continue;
                    }
                };
                if object_kind == EntryKind::Symlink {
                    strays.push(stray(object_path, LINK_DETAIL));
                    continue;
                }
                let Some(stat) = shard.stat(&digest.to_hex())? else {
                    continue;
                };
                if object_kind != EntryKind::File {
                    strays.push(stray(object_path, "an object must be a regular file"));
                    continue;
                }
                objects.push(ObjectInfo {
                    digest,
                    size: stat.st_size as u64,
                    modified: crate::fsutil::modified(&stat),
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
        let file = match self.open_loose(digest) {
            Ok(Some(file)) => file,
            Ok(None) => {
                return problem(
                    ProblemKind::Missing,
                    "the object file does not exist".into(),
                );
            }
            Err(CoreError::Io { source, .. }) if is_link_error(&source) => {
                return damaged(ProblemKind::Corrupt, LINK_DETAIL.into());
            }
            Err(e @ CoreError::Unsafe { .. }) => {
                return problem(ProblemKind::Missing, e.to_string());
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
        results.extend(crate::parallel::map_files(
            &small,
            |(digest, size, bytes)| Ok((*bytes, check(digest, *size)?)),
        ));
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
        options: ExportOptions,
        progress: &Progress,
    ) -> Result<u64> {
        let parent = destination::prepare_file(dest, options.overwrite)?;
        progress.add_total(data.len() as u64);
        let mut part = destination::part_file(&parent, options.mode)?;
        part.write_all(data).at(part.path())?;
        progress.advance(data.len() as u64);
        destination::publish_file(part, dest, options.overwrite, &parent)?;
        Ok(data.len() as u64)
    }
}

impl ObjectStore for LocalStore {
    fn remove(&self, digests: &[Digest]) -> Result<u64> {
        self.writable()?;
        let mut freed = 0;
        for digest in digests {
            let Some(shard) = self.shard(digest)? else {
                continue;
            };
            let name = digest.to_hex();
            let Some(stat) = shard.stat(&name)? else {
                continue;
            };
            if !shard.remove_file(&name)? {
                continue;
            }
            self.clear_damaged(digest);
            shard.sync()?;
            freed += stat.st_size as u64;
        }
        Ok(freed + self.pack.remove(digests)?)
    }

    fn remove_stale_temps(&self, older_than: SystemTime, dry_run: bool) -> Result<TempSweep> {
        let tmp = &self.writable()?.tmp;
        let mut sweep = TempSweep::default();
        for (name, kind) in tmp.entries()? {
            let Some(name) = name.to_str() else { continue };
            let Some(stat) = tmp.stat(name)? else {
                // Finished (renamed into place) or removed by its writer meanwhile.
                continue;
            };
            if kind != EntryKind::File
                || crate::fsutil::modified(&stat).is_none_or(|m| m >= older_than)
            {
                continue;
            }
            if !dry_run && !tmp.remove_file(name)? {
                continue;
            }
            sweep.files += 1;
            sweep.bytes += stat.st_size as u64;
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
        options: ExportOptions,
        progress: &Progress,
    ) -> Result<u64> {
        if let Some(data) = self.read_packed(digest)? {
            return Self::export_packed(&data, dest, options, progress);
        }
        let object_path = self.object_path(digest);
        let (mut src, meta) = self.open_object(digest)?;
        let parent = destination::prepare_file(dest, options.overwrite)?;
        progress.add_total(meta.len());
        let mut tmp = destination::part_file(&parent, options.mode)?;
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
        destination::publish_file(tmp, dest, options.overwrite, &parent)?;
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
        let (mut file, meta) = self.open_object(digest)?;
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

    fn read_prefix(&self, digest: &Digest, len: usize) -> Result<Vec<u8>> {
        if let Ok(Some(mut data)) = self.pack.get(digest) {
            data.truncate(len);
            return Ok(data);
        }
        let (mut file, _) = self.open_object(digest)?;
        let mut data = vec![0u8; len];
        let n = hash::read_full(&mut file, &self.object_path(digest), &mut data)?;
        data.truncate(n);
        Ok(data)
    }

    fn layout_problems(&self) -> Result<Vec<Problem>> {
        Ok(self.scan()?.1)
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

/// How `verify` describes a symbolic link found in the store.
const LINK_DETAIL: &str = "a symbolic link that pacha did not create (never followed)";

/// `ELOOP` (or `EMLINK` on some systems): an open with `O_NOFOLLOW` met a symbolic link.
fn is_link_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::EMLINK)
}

/// Problems in one of the store's bookkeeping directories (`name`): anything but regular
/// files (and, in `packs/`, only the pack's own files) is a stray.
fn bookkeeping_strays(dir: &Dir, name: &str) -> Result<Vec<Problem>> {
    let mut strays = Vec::new();
    for (entry, kind) in dir.entries()? {
        let set_aside = name == PACK_DIR
            && entry
                .to_str()
                .is_some_and(|e| e.starts_with(super::pack::DAMAGED_PREFIX));
        let detail = match kind {
            EntryKind::File if set_aside => {
                "a damaged pack set aside; its objects are reported missing until repaired \
                 (`pacha repair`); delete it once they are"
            }
            EntryKind::File => continue,
            EntryKind::Symlink => LINK_DETAIL,
            EntryKind::Dir if name == TMP_DIR => continue,
            _ => "pacha keeps only regular files here",
        };
        strays.push(Problem {
            kind: ProblemKind::Stray,
            digest: None,
            path: dir.join(entry),
            detail: detail.into(),
        });
    }
    Ok(strays)
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
