//! Small filesystem helpers for durable writes, and the descriptor-relative directories
//! (`dir`) and access rules (`access`) everything inside a registry goes through.

mod access;
mod dir;

use std::fs::{self, File};

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::IoContext;
use crate::{CoreError, Result};

pub(crate) use access::check_registry_dir;
pub use access::{Access, Sharing};
pub(crate) use dir::{foreign_entry, Dir, EntryKind, TempFile};

/// Create `dir` and its missing parents, the new ones private to their owner (0700).
pub(crate) fn create_private_dir_all(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at(dir)
}

/// The process's umask, read without changing it (Linux reports it in /proc; elsewhere the
/// common 022 is assumed).
pub(crate) fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Every mount point of this process's mount namespace (Linux: from /proc/self/mountinfo,
/// whose fifth field is the mount point with spaces and the like octal-escaped).
pub(crate) fn mount_points() -> Vec<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let unescape = |field: &str| {
        let bytes = field.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let octal = bytes.get(i + 1..i + 4).and_then(|d| {
                std::str::from_utf8(d)
                    .ok()
                    .and_then(|d| u8::from_str_radix(d, 8).ok())
            });
            match (bytes[i], octal) {
                (b'\\', Some(byte)) => {
                    out.push(byte);
                    i += 4;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        std::path::PathBuf::from(std::ffi::OsString::from_vec(out))
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.as_os_str() != "/")
        .collect()
}

/// The modification time in a `stat`.
pub(crate) fn modified(stat: &rustix::fs::Stat) -> Option<SystemTime> {
    let secs = u64::try_from(stat.st_mtime).ok()?;
    let nanos = u32::try_from(stat.st_mtime_nsec).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// fsync a directory so that a rename or create inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Name the kind of a non-regular file for error messages.
pub(crate) fn file_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO (named pipe)"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_symlink() {
        "symbolic link"
    } else {
        "regular file"
    }
}

/// Open `path` for reading and insist that it is a regular file.
///
/// `O_NONBLOCK` keeps a FIFO from blocking the open until a writer appears: we look at what
/// we opened (fstat on the descriptor, no race with a rename) and refuse it.
pub(crate) fn open_regular(path: &Path) -> Result<(File, fs::Metadata)> {
    open_regular_with(path, libc::O_NONBLOCK)
}

fn open_regular_with(path: &Path, flags: i32) -> Result<(File, fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .at(path)?;
    let meta = file.metadata().at(path)?;
    if meta.is_dir() {
        return Err(CoreError::IsADirectory { path: path.into() });
    }
    if !meta.is_file() {
        return Err(CoreError::NotARegularFile {
            path: path.into(),
            kind: file_kind(&meta),
        });
    }
    Ok((file, meta))
}

/// Flush every written file and directory entry of the filesystem holding `path` (one
/// `syncfs` instead of an `fsync` per file, for batches of small objects).
pub(crate) fn sync_filesystem(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;

    let dir = File::open(path).at(path)?;
    // SAFETY: `syncfs` only reads its argument, a descriptor that `dir` keeps open for the
    // duration of the call; no memory is shared with the kernel.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc != 0 {
        return Err(CoreError::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}
