//! Where downloads land: a path the user chose, outside the registry.
//!
//! A download is written to a part file (or, for a directory, a part directory) beside its
//! destination and renamed into place only once every byte is verified, so a destination
//! never holds a partial or corrupt copy. Each part is named `.pacha-*.part` and holds an
//! exclusive `flock` for as long as its writer lives: a part that is not locked, and not
//! brand new, was left by a download that was killed (SIGKILL, a power cut), and the next
//! download into the same directory removes it.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::{NamedTempFile, TempDir};

use crate::error::IoContext;
use crate::{CoreError, Result};

const PART_PREFIX: &str = ".pacha-";
const PART_SUFFIX: &str = ".part";

/// A part younger than this is never taken for a leftover: its writer may be between
/// creating it and locking it.
const PART_GRACE: Duration = Duration::from_secs(10);

/// Check that `dest` may be written as a file (`overwrite` replaces a file or a link, never
/// anything else), create its parent if missing, and return the parent.
pub(crate) fn prepare_file(dest: &Path, overwrite: bool) -> Result<PathBuf> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => return Err(CoreError::IsADirectory { path: dest.into() }),
        // `--force` replaces a file (or a link), never a FIFO, device or socket: replacing
        // /dev/null with a model is never what was meant.
        Ok(m) if !(m.is_file() || m.file_type().is_symlink()) => {
            return Err(CoreError::InvalidInput {
                message: format!(
                    "{}: is a {}; pacha writes regular files and will not replace it, even \
                     when asked to; choose another output path",
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
    let parent = parent_of(dest);
    fs::create_dir_all(&parent).at(&parent)?;
    Ok(parent)
}

/// The directory `dest` is in (`.` for a bare name).
pub(crate) fn parent_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new part file in `parent`, locked, created with `mode` (less the umask; 0666 when
/// `None`, like any file a program creates). Leftover parts of killed downloads are removed
/// first.
pub(crate) fn part_file(parent: &Path, mode: Option<u32>) -> Result<NamedTempFile> {
    remove_stale_parts(parent);
    let part = tempfile::Builder::new()
        .prefix(PART_PREFIX)
        .suffix(PART_SUFFIX)
        .permissions(fs::Permissions::from_mode(mode.unwrap_or(0o666)))
        .tempfile_in(parent)
        .at(parent)?;
    part.as_file().lock().at(part.path())?;
    Ok(part)
}

/// A new part directory in `parent`, with the lock that marks it as being written (held by
/// the returned file until dropped). Leftover parts are removed first.
pub(crate) fn part_dir(parent: &Path) -> Result<(TempDir, File)> {
    remove_stale_parts(parent);
    let dir = tempfile::Builder::new()
        .prefix(PART_PREFIX)
        .suffix(PART_SUFFIX)
        .tempdir_in(parent)
        .at(parent)?;
    let lock = File::open(dir.path()).at(dir.path())?;
    lock.lock().at(dir.path())?;
    Ok((dir, lock))
}

/// Make a verified, fully written part file `dest`, durably.
pub(crate) fn publish_file(
    part: NamedTempFile,
    dest: &Path,
    overwrite: bool,
    parent: &Path,
) -> Result<()> {
    part.as_file().sync_all().at(part.path())?;
    let persisted = if overwrite {
        part.persist(dest)
    } else {
        part.persist_noclobber(dest)
    };
    match persisted {
        Ok(_) => {}
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(CoreError::AlreadyExists { path: dest.into() });
        }
        Err(e) => return Err(CoreError::io(dest, e.error)),
    }
    crate::fsutil::sync_dir(parent)
}

/// Remove the parts in `parent` that no living download holds (best effort: a part that
/// cannot be examined is left alone).
pub(crate) fn remove_stale_parts(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(PART_PREFIX) && name.ends_with(PART_SUFFIX)) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let young = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_none_or(|age| age < PART_GRACE);
        if young || !(meta.is_file() || meta.is_dir()) {
            continue;
        }
        // Never through a link: a part is a file or directory a download made here.
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(handle) = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        if handle.try_lock().is_err() {
            continue; // a download in progress
        }
        let _ = if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}
