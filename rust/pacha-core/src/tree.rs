//! Directories as artifacts: a tree manifest (relative path, digest, size and permission
//! bits of every file, plus empty directories), itself stored as an object.
//!
//! The manifest is JSON with a fixed field order and entries sorted by path, so the same
//! directory always gives the same manifest digest. A manifest read back from the store is
//! validated as hostile input: no absolute paths, no `..`, no duplicates.
//!
//! The directory is walked by descriptor (each subdirectory opened relative to its parent,
//! never through a link) and each file is opened relative to the root with every component
//! checked again, so what the walk saw is what is stored: swapping a subdirectory for a link
//! while a large directory is being registered cannot bring in a file from elsewhere.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::fsutil::{Dir, EntryKind};
use crate::store::{ObjectStore, SyncBatch};
use crate::{CoreError, Digest, Progress, Result};

pub const MANIFEST_FORMAT: &str = "pacha.tree/2";
/// The first format: an executable flag instead of permission bits. Still read.
const MANIFEST_FORMAT_V1: &str = "pacha.tree/1";

/// Manifests larger than this are refused when read back (a corrupt or hostile object).
pub const MAX_MANIFEST_BYTES: u64 = 512 << 20;

/// Directories (and `.git` files of worktrees and submodules) left out of a registered
/// directory unless asked for: version-control metadata, which can make git run programs
/// in a downloaded copy (`core.fsmonitor`), and Python's bytecode caches.
pub const VCS_AND_CACHES: &[&str] = &[".git", "__pycache__"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub entries: Vec<Entry>,
    /// Directories with nothing in them (others are implied by the entries' paths).
    pub empty_directories: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative, `/`-separated.
    pub path: String,
    pub digest: String,
    pub size: u64,
    /// Permission bits (`0o777` at most: set-id and sticky bits are never recorded).
    pub mode: u32,
}

impl Entry {
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// A version 1 manifest, converted on reading.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestV1 {
    #[allow(dead_code)]
    format: String,
    entries: Vec<EntryV1>,
    empty_directories: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryV1 {
    path: String,
    digest: String,
    size: u64,
    executable: bool,
}

/// What ingesting a directory produced.
#[derive(Debug, Clone)]
pub struct TreeIngest {
    pub manifest: Digest,
    /// Sum of the files' sizes.
    pub size: u64,
    pub file_count: u64,
    /// Every object the tree needs: each distinct file object and the manifest.
    pub objects: Vec<(Digest, u64)>,
    /// What was left out ([`VCS_AND_CACHES`]), relative paths.
    pub skipped: Vec<String>,
}

/// Choices for reading a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkOptions {
    /// Keep [`VCS_AND_CACHES`] instead of skipping them.
    pub include_vcs: bool,
}

struct FileToStore {
    relative: String,
    size: u64,
    mode: u32,
    /// Reached through a symbolic link (followed, inside the directory only).
    through_link: bool,
    /// (device, inode) seen by the walk: the file opened later must be this very file.
    identity: (u64, u64),
}

/// What the walk found.
#[derive(Default)]
struct Walked {
    files: Vec<FileToStore>,
    empty: Vec<String>,
    skipped: Vec<String>,
}

fn refuse(path: &Path, why: &str) -> CoreError {
    CoreError::InvalidInput {
        message: format!("{}: {why}", path.display()),
    }
}

fn replaced(path: &Path, what: &str) -> CoreError {
    CoreError::SourceChanged {
        path: path.into(),
        detail: format!("{what} during the walk"),
    }
}

/// Walk the directory `dir` (at `prefix` below the root), collecting regular files, links
/// to files inside the root, and empty directories; refuse anything that cannot be stored
/// faithfully.
fn walk(
    root: &Dir,
    dir: &Dir,
    prefix: &str,
    options: WalkOptions,
    found: &mut Walked,
) -> Result<()> {
    let mut entries = dir.entries()?;
    if entries.is_empty() && !prefix.is_empty() {
        found.empty.push(prefix.trim_end_matches('/').to_string());
        return Ok(());
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in entries {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(refuse(
                &path,
                "the file name is not valid UTF-8; rename it to store the directory",
            ));
        };
        let relative = format!("{prefix}{name}");
        if !options.include_vcs && VCS_AND_CACHES.contains(&name) {
            found.skipped.push(relative);
            continue;
        }
        match kind {
            EntryKind::Dir => {
                let child = match dir.open_dir(name) {
                    Ok(Some(child)) => child,
                    Ok(None) => return Err(replaced(&path, "it was removed")),
                    Err(CoreError::Unsafe { .. }) => {
                        return Err(replaced(&path, "it was replaced by a symbolic link"))
                    }
                    Err(e) => return Err(e),
                };
                walk(root, &child, &format!("{relative}/"), options, found)?;
            }
            EntryKind::File => {
                let Some(stat) = dir.stat(name)? else {
                    return Err(replaced(&path, "it was removed"));
                };
                if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file() {
                    return Err(replaced(&path, "it was replaced"));
                }
                found.files.push(FileToStore {
                    relative,
                    size: stat.st_size as u64,
                    mode: stat.st_mode & 0o777,
                    through_link: false,
                    identity: (stat.st_dev, stat.st_ino),
                });
            }
            EntryKind::Symlink => {
                let file = open_link_target(root, &relative, &path)?;
                let meta = file.metadata().map_err(|e| CoreError::io(&path, e))?;
                if !meta.is_file() {
                    return Err(refuse(
                        &path,
                        "a symbolic link to something other than a regular file; only links to \
                         files inside the directory are stored (as the file they point to)",
                    ));
                }
                found.files.push(FileToStore {
                    relative,
                    size: meta.len(),
                    mode: meta.permissions().mode() & 0o777,
                    through_link: true,
                    identity: (meta.dev(), meta.ino()),
                });
            }
            EntryKind::Other => {
                let what = dir
                    .stat(name)?
                    .map(|s| file_type_name(rustix::fs::FileType::from_raw_mode(s.st_mode)))
                    .unwrap_or("special file");
                return Err(refuse(
                    &path,
                    &format!("a {what}; a directory artifact may hold only files and directories"),
                ));
            }
        }
    }
    Ok(())
}

fn file_type_name(t: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match t {
        FileType::Fifo => "FIFO (named pipe)",
        FileType::Socket => "socket",
        FileType::BlockDevice => "block device",
        FileType::CharacterDevice => "character device",
        _ => "special file",
    }
}

/// Open what the link at `relative` points to, following links only inside `root`.
fn open_link_target(root: &Dir, relative: &str, path: &Path) -> Result<fs::File> {
    root.open_beneath(relative, true).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EXDEV) => {
                "a symbolic link pointing outside the directory; copy the file in instead"
                    .to_string()
            }
            Some(libc::ELOOP) => {
                "a symbolic link that cannot be followed (it loops); copy the file in instead"
                    .to_string()
            }
            Some(libc::ENOENT) => {
                "a symbolic link that cannot be followed (it points to nothing)".to_string()
            }
            _ => format!("a symbolic link that cannot be followed ({e})"),
        };
        refuse(path, &why)
    })
}

/// Store every file under `root` and a manifest naming them; identical files are stored once.
pub fn ingest_dir(store: &dyn ObjectStore, root: &Path, progress: &Progress) -> Result<TreeIngest> {
    ingest_dir_recording(
        store,
        root,
        WalkOptions::default(),
        progress,
        &Mutex::new(Vec::new()),
    )
}

/// [`ingest_dir`], adding to `written` every object it wrote (not those that were already
/// stored), even when it fails part-way: a failed registration removes them again.
pub fn ingest_dir_recording(
    store: &dyn ObjectStore,
    root: &Path,
    options: WalkOptions,
    progress: &Progress,
    written: &Mutex<Vec<Digest>>,
) -> Result<TreeIngest> {
    let record = |outcome: &crate::store::PutOutcome| {
        if outcome.written {
            written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(outcome.digest);
        }
    };
    let root_dir = Dir::open(root)?;
    let mut found = Walked::default();
    walk(&root_dir, &root_dir, "", options, &mut found)?;
    if found.files.is_empty() && found.empty.is_empty() {
        let why = if found.skipped.is_empty() {
            "the directory is empty; there is nothing to register".to_string()
        } else {
            format!(
                "every entry of the directory is skipped ({}); pass --include-vcs \
                 (include_vcs=True) to keep them",
                found.skipped.join(", ")
            )
        };
        return Err(refuse(root, &why));
    }
    progress.add_total(found.files.iter().map(|f| f.size).sum());
    let batch = SyncBatch::new();
    let stored = store_files(store, &root_dir, &found.files, progress, &batch, &record);
    // Recorded whether or not the batch failed: what it stored must be removable.
    written
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(batch.take_written());
    let mut entries = stored?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    found.empty.sort();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        entries,
        empty_directories: found.empty,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| CoreError::InvalidInput {
        message: format!("cannot encode the tree manifest: {e}"),
    })?;
    let manifest_object = store.put_bytes(&bytes)?;
    record(&manifest_object);
    let mut objects: Vec<(Digest, u64)> = Vec::with_capacity(manifest.entries.len() + 1);
    let mut seen = BTreeSet::new();
    for entry in &manifest.entries {
        let digest = Digest::parse(&entry.digest)?;
        if seen.insert(digest) {
            objects.push((digest, entry.size));
        }
    }
    objects.push((manifest_object.digest, manifest_object.size));
    Ok(TreeIngest {
        manifest: manifest_object.digest,
        size: manifest.entries.iter().map(|e| e.size).sum(),
        file_count: manifest.entries.len() as u64,
        objects,
        skipped: found.skipped,
    })
}

/// Continue [`ingest_dir_recording`] after the walk: store every file in one batch.
fn store_files(
    store: &dyn ObjectStore,
    root: &Dir,
    files: &[FileToStore],
    progress: &Progress,
    batch: &SyncBatch,
    record: &(dyn Fn(&crate::store::PutOutcome) + Sync),
) -> Result<Vec<Entry>> {
    let stored: Vec<Result<Entry>> = crate::parallel::map_files(files, |file| {
        // Opened below the root again, every component checked, and compared with what the
        // walk saw: a file swapped for a link (to a secret outside the directory), or a
        // directory swapped for one, while a large directory is being stored is refused.
        let path = root.join(&file.relative);
        let opened = match root.open_beneath(&file.relative, file.through_link) {
            Ok(opened) => opened,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::EXDEV | libc::ENOTDIR)
                ) =>
            {
                return Err(replaced(
                    &path,
                    "it (or a directory above it) was replaced by a symbolic link",
                ));
            }
            Err(e) => return Err(CoreError::io(&path, e)),
        };
        let meta = opened.metadata().map_err(|e| CoreError::io(&path, e))?;
        if !meta.is_file() || (meta.dev(), meta.ino()) != file.identity {
            return Err(replaced(&path, "it was replaced by another file"));
        }
        let outcome = store.put_open_file_batched(opened, &meta, &path, progress, batch)?;
        record(&outcome);
        Ok(Entry {
            path: file.relative.clone(),
            digest: outcome.digest.to_hex(),
            size: outcome.size,
            mode: file.mode,
        })
    });
    let entries = stored.into_iter().collect::<Result<Vec<_>>>()?;
    // Every file durable before the manifest that names them is written.
    store.finish_batch(batch)?;
    Ok(entries)
}

/// A relative path from a manifest, checked component by component.
fn safe_relative(text: &str) -> Result<PathBuf> {
    let corrupt = |why: &str| {
        CoreError::Corrupt {
        message: format!("tree manifest has an unsafe path {text:?} ({why}); the manifest object is damaged or forged"),
    }
    };
    // A backslash is an ordinary character in a POSIX file name (the walk stores such names
    // faithfully), so it is accepted here too: only `/` separates components.
    if text.is_empty() || text.contains('\0') {
        return Err(corrupt("empty or NUL"));
    }
    // Checked on the text, not with `Path::components`, which silently drops `.` parts.
    if text.starts_with('/') {
        return Err(corrupt("absolute"));
    }
    if text
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(corrupt("empty, '.' or '..' component"));
    }
    let path = PathBuf::from(text);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(corrupt("not a plain relative path"));
    }
    Ok(path)
}

/// Whether `prefix` (the first bytes of an object) may be a tree manifest, as this crate
/// writes them (its `format` field first).
pub fn looks_like_manifest(prefix: &[u8]) -> bool {
    prefix.starts_with(br#"{"format":"pacha.tree/"#)
}

/// Parse a manifest of either format (version 1 manifests are converted).
fn parse_manifest(bytes: &[u8], digest: &Digest) -> Result<Manifest> {
    let invalid = |e: serde_json::Error| CoreError::Corrupt {
        message: format!("object {digest} is not a valid tree manifest: {e}"),
    };
    match serde_json::from_slice::<Manifest>(bytes) {
        Ok(manifest) => Ok(manifest),
        Err(e) => match serde_json::from_slice::<ManifestV1>(bytes) {
            Ok(old) if old.format == MANIFEST_FORMAT_V1 => Ok(Manifest {
                format: MANIFEST_FORMAT.to_string(),
                entries: old
                    .entries
                    .into_iter()
                    .map(|e| Entry {
                        path: e.path,
                        digest: e.digest,
                        size: e.size,
                        mode: if e.executable { 0o755 } else { 0o644 },
                    })
                    .collect(),
                empty_directories: old.empty_directories,
            }),
            _ => Err(invalid(e)),
        },
    }
}

/// Read and validate the manifest stored as `digest`.
pub fn load_manifest(store: &dyn ObjectStore, digest: &Digest) -> Result<Manifest> {
    let bytes = store.get_bytes(digest, MAX_MANIFEST_BYTES)?;
    let manifest = parse_manifest(&bytes, digest)?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(CoreError::Corrupt {
            message: format!(
                "object {digest} is a tree manifest of format {:?}, not {MANIFEST_FORMAT:?}; upgrade pacha",
                manifest.format
            ),
        });
    }
    let mut seen = BTreeSet::new();
    for entry in &manifest.entries {
        safe_relative(&entry.path)?;
        Digest::parse(&entry.digest)?;
        if entry.mode & !0o777 != 0 {
            return Err(CoreError::Corrupt {
                message: format!(
                    "tree manifest {digest} gives {:?} the mode {:o}, beyond permission bits",
                    entry.path, entry.mode
                ),
            });
        }
        if !seen.insert(entry.path.as_str()) {
            return Err(CoreError::Corrupt {
                message: format!("tree manifest {digest} lists {:?} twice", entry.path),
            });
        }
    }
    for dir in &manifest.empty_directories {
        safe_relative(dir)?;
    }
    Ok(manifest)
}

/// What [`export_tree`] did.
#[derive(Debug, Clone, Default)]
pub struct TreeExport {
    /// Bytes written.
    pub bytes: u64,
    /// Entries of a directory that was replaced (with `overwrite`) that were not part of the
    /// tree written in its place: what the replacement removed (relative paths).
    pub removed: Vec<String>,
}

/// Relative paths under `root` that `manifest` does not account for (not a file of it, not
/// a directory it implies or lists), refusing a `root` that holds a mount point: replacing it
/// would delete another file system's contents.
fn foreign_entries(root: &Path, manifest: &Manifest) -> Result<Vec<String>> {
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for path in manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .chain(manifest.empty_directories.iter().map(String::as_str))
    {
        known.insert(path);
        let mut rest = path;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            known.insert(parent);
            rest = parent;
        }
    }
    let device = fs::symlink_metadata(root).at(root)?.dev();
    let mut foreign = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let relative = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = fs::symlink_metadata(entry.path()).at(&entry.path())?;
            if meta.is_dir() && meta.dev() != device {
                return Err(refuse(
                    root,
                    &format!(
                        "holds a mount point ({relative}); pacha will not replace a directory \
                         holding another file system, even when asked to; choose another output"
                    ),
                ));
            }
            let kept = known.contains(relative.as_str());
            if meta.is_dir() {
                if !kept {
                    foreign.push(format!("{relative}/"));
                }
                stack.push((entry.path(), format!("{relative}/")));
            } else if !kept {
                foreign.push(relative);
            }
        }
    }
    foreign.sort();
    Ok(foreign)
}

/// Recreate the directory of `manifest` at `dest`: built in a part directory beside it,
/// every file verified (and given its recorded permission bits, less the umask), then
/// renamed into place. An existing `dest` is replaced only when `overwrite` is set; what
/// the replacement removes is reported.
pub fn export_tree(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    dest: &Path,
    overwrite: bool,
    progress: &Progress,
) -> Result<TreeExport> {
    let exists = match fs::symlink_metadata(dest) {
        Ok(meta) => {
            if !overwrite {
                return Err(CoreError::AlreadyExists { path: dest.into() });
            }
            if meta.file_type().is_symlink() {
                return Err(refuse(
                    dest,
                    "is a symbolic link; give the real directory, or another output",
                ));
            }
            if !meta.is_dir() {
                return Err(refuse(
                    dest,
                    "exists and is not a directory; remove it or choose another output",
                ));
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(CoreError::io(dest, e)),
    };
    let removed = if exists {
        foreign_entries(dest, manifest)?
    } else {
        Vec::new()
    };
    let parent = crate::destination::parent_of(dest);
    fs::create_dir_all(&parent).at(&parent)?;
    let (staging, _lock) = crate::destination::part_dir(&parent)?;
    progress.add_total(manifest.entries.iter().map(|e| e.size).sum());
    for dir in &manifest.empty_directories {
        let path = staging.path().join(safe_relative(dir)?);
        fs::create_dir_all(&path).at(&path)?;
    }
    let digests: Vec<Digest> = manifest
        .entries
        .iter()
        .filter_map(|e| Digest::parse(&e.digest).ok())
        .collect();
    // A store that must look each file up (packed small files in a bucket) does it in one go.
    store.prefetch(&digests)?;
    let written: Vec<Result<u64>> = crate::parallel::map_files(&manifest.entries, |entry| {
        let path = staging.path().join(safe_relative(&entry.path)?);
        let digest = Digest::parse(&entry.digest)?;
        let options = crate::store::ExportOptions {
            overwrite: false,
            mode: Some(entry.mode),
        };
        let n = store.export(&digest, &path, options, &Progress::new())?;
        progress.advance(n);
        Ok(n)
    });
    let bytes = written.into_iter().sum::<Result<u64>>()?;
    progress.check()?;
    // The part directory is private like any temp dir; give it the mode `mkdir` would.
    let mode = 0o777 & !crate::fsutil::umask();
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(mode)).at(staging.path())?;
    if exists {
        // One atomic step: the new tree takes `dest`'s place and the old one moves to the
        // part path, from where it is deleted (dropping `staging`). Readers of `dest` never
        // see it missing, and a crash leaves either the old tree or the new one in place
        // (and the old one, unlocked, is removed by the next download here).
        exchange(staging.path(), dest)?;
    } else {
        fs::rename(staging.path(), dest).at(dest)?;
        // Renamed away: nothing is left for `staging` to delete.
        let _ = staging.keep();
    }
    crate::fsutil::sync_dir(&parent)?;
    Ok(TreeExport { bytes, removed })
}

/// Atomically swap two directory entries (Linux `renameat2(RENAME_EXCHANGE)`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| refuse(p, "the path contains a NUL byte"))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call, and
    // AT_FDCWD makes the kernel resolve them like any relative or absolute path.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(CoreError::io(b, io::Error::last_os_error()))
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, b: &Path) -> Result<()> {
    Err(refuse(b, "replacing an existing directory needs an atomic exchange, which this platform lacks; remove it first"))
}

#[cfg(test)]
mod tests;
