//! Directories as artifacts: a tree manifest (relative path, digest, size, executable bit for
//! every file, plus empty directories), itself stored as an object.
//!
//! The manifest is JSON with a fixed field order and entries sorted by path, so the same
//! directory always gives the same manifest digest. A manifest read back from the store is
//! validated as hostile input: no absolute paths, no `..`, no duplicates.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::fsutil::{file_kind, open_regular_nofollow};
use crate::store::{ObjectStore, SyncBatch};
use crate::{CoreError, Digest, Progress, Result};

pub const MANIFEST_FORMAT: &str = "pacha.tree/1";

/// Manifests larger than this are refused when read back (a corrupt or hostile object).
pub const MAX_MANIFEST_BYTES: u64 = 512 << 20;

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
    pub executable: bool,
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
}

struct FileToStore {
    relative: String,
    absolute: PathBuf,
    size: u64,
    executable: bool,
    /// (device, inode) seen by the walk: the file opened later must be this very file.
    identity: (u64, u64),
}

fn refuse(path: &Path, why: &str) -> CoreError {
    CoreError::InvalidInput {
        message: format!("{}: {why}", path.display()),
    }
}

fn relative_text(root: &Path, path: &Path) -> Result<String> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let text = relative.to_str().ok_or_else(|| {
        refuse(
            path,
            "the file name is not valid UTF-8; rename it to store the directory",
        )
    })?;
    Ok(text.to_string())
}

/// Walk `root`, collecting regular files and empty directories; refuse anything that cannot
/// be stored faithfully.
fn walk(
    root: &Path,
    canonical_root: &Path,
    dir: &Path,
    files: &mut Vec<FileToStore>,
    empty: &mut Vec<String>,
) -> Result<()> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .at(dir)?
        .collect::<io::Result<_>>()
        .at(dir)?;
    if entries.is_empty() && dir != root {
        empty.push(relative_text(root, dir)?);
        return Ok(());
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).at(&path)?;
        let file_type = meta.file_type();
        if file_type.is_dir() {
            walk(root, canonical_root, &path, files, empty)?;
        } else if file_type.is_file() {
            files.push(FileToStore {
                relative: relative_text(root, &path)?,
                size: meta.len(),
                executable: meta.permissions().mode() & 0o111 != 0,
                identity: (meta.dev(), meta.ino()),
                absolute: path,
            });
        } else if file_type.is_symlink() {
            let target = fs::canonicalize(&path).map_err(|e| {
                refuse(
                    &path,
                    &format!("a symbolic link that cannot be followed ({e})"),
                )
            })?;
            if !target.starts_with(canonical_root) {
                return Err(refuse(
                    &path,
                    "a symbolic link pointing outside the directory; copy the file in instead",
                ));
            }
            let target_meta = fs::metadata(&target).at(&target)?;
            if !target_meta.is_file() {
                return Err(refuse(
                    &path,
                    "a symbolic link to something other than a regular file; only links to \
                     files inside the directory are stored (as the file they point to)",
                ));
            }
            files.push(FileToStore {
                relative: relative_text(root, &path)?,
                size: target_meta.len(),
                executable: target_meta.permissions().mode() & 0o111 != 0,
                identity: (target_meta.dev(), target_meta.ino()),
                absolute: target,
            });
        } else {
            return Err(refuse(
                &path,
                &format!(
                    "a {}; a directory artifact may hold only files and directories",
                    file_kind(&meta)
                ),
            ));
        }
    }
    Ok(())
}

/// Store every file under `root` and a manifest naming them; identical files are stored once.
pub fn ingest_dir(store: &dyn ObjectStore, root: &Path, progress: &Progress) -> Result<TreeIngest> {
    ingest_dir_recording(store, root, progress, &Mutex::new(Vec::new()))
}

/// [`ingest_dir`], adding to `written` every object it wrote (not those that were already
/// stored), even when it fails part-way: a failed registration removes them again.
pub fn ingest_dir_recording(
    store: &dyn ObjectStore,
    root: &Path,
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
    let canonical_root = fs::canonicalize(root).at(root)?;
    let mut files = Vec::new();
    let mut empty = Vec::new();
    walk(root, &canonical_root, root, &mut files, &mut empty)?;
    progress.add_total(files.iter().map(|f| f.size).sum());
    let batch = SyncBatch::new();
    let stored = store_files(store, &files, progress, &batch, &record);
    // Recorded whether or not the batch failed: what it stored must be removable.
    written
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(batch.take_written());
    let mut entries = stored?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    empty.sort();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        entries,
        empty_directories: empty,
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
    })
}

/// Continue [`ingest_dir_recording`] after the walk: store every file in one batch.
fn store_files(
    store: &dyn ObjectStore,
    files: &[FileToStore],
    progress: &Progress,
    batch: &SyncBatch,
    record: &(dyn Fn(&crate::store::PutOutcome) + Sync),
) -> Result<Vec<Entry>> {
    let stored: Vec<Result<Entry>> = files
        .par_iter()
        .map(|file| {
            // Opened without following links and checked against what the walk saw, so that
            // swapping a file for a link (to a secret outside the directory) while a large
            // directory is being stored cannot smuggle it in.
            let (opened, meta) = open_regular_nofollow(&file.absolute)?;
            if (meta.dev(), meta.ino()) != file.identity {
                return Err(CoreError::SourceChanged {
                    path: file.absolute.clone(),
                    detail: "it was replaced by another file during the walk".into(),
                });
            }
            let outcome =
                store.put_open_file_batched(opened, &meta, &file.absolute, progress, batch)?;
            record(&outcome);
            Ok(Entry {
                path: file.relative.clone(),
                digest: outcome.digest.to_hex(),
                size: outcome.size,
                executable: file.executable,
            })
        })
        .collect();
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
    if text.is_empty() || text.contains('\0') || text.contains('\\') {
        return Err(corrupt("empty, NUL or backslash"));
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

/// Read and validate the manifest stored as `digest`.
pub fn load_manifest(store: &dyn ObjectStore, digest: &Digest) -> Result<Manifest> {
    let bytes = store.get_bytes(digest, MAX_MANIFEST_BYTES)?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| CoreError::Corrupt {
        message: format!("object {digest} is not a valid tree manifest: {e}"),
    })?;
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

/// Recreate the directory of `manifest` at `dest`: built in a temp directory beside it, every
/// file verified, then renamed into place. An existing `dest` is replaced only when
/// `overwrite` is set.
pub fn export_tree(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    dest: &Path,
    overwrite: bool,
    progress: &Progress,
) -> Result<u64> {
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
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).at(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".pacha-")
        .suffix(".part")
        .tempdir_in(&parent)
        .at(&parent)?;
    progress.add_total(manifest.entries.iter().map(|e| e.size).sum());
    for dir in &manifest.empty_directories {
        let path = staging.path().join(safe_relative(dir)?);
        fs::create_dir_all(&path).at(&path)?;
    }
    let written: Vec<Result<u64>> = manifest
        .entries
        .par_iter()
        .map(|entry| {
            let path = staging.path().join(safe_relative(&entry.path)?);
            let digest = Digest::parse(&entry.digest)?;
            let n = store.export(&digest, &path, false, &Progress::new())?;
            progress.advance(n);
            if entry.executable {
                let mode = fs::metadata(&path).at(&path)?.permissions().mode();
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o111)).at(&path)?;
            }
            Ok(n)
        })
        .collect();
    let total = written.into_iter().sum::<Result<u64>>()?;
    progress.check()?;
    // The staging directory is 0700 like any temp dir; give it ordinary permissions.
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755)).at(staging.path())?;
    if exists {
        // One atomic step: the new tree takes `dest`'s place and the old one moves to the
        // staging path, from where it is deleted (dropping `staging`). Readers of `dest` never
        // see it missing, and a crash leaves either the old tree or the new one in place.
        exchange(staging.path(), dest)?;
    } else {
        fs::rename(staging.path(), dest).at(dest)?;
        // Renamed away: nothing is left for `staging` to delete.
        let _ = staging.keep();
    }
    crate::fsutil::sync_dir(&parent)?;
    Ok(total)
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
