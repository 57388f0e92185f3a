//! Small filesystem helpers for durable writes.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use crate::error::IoContext;
use crate::{CoreError, Result};

/// fsync a directory so that a rename or create inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Create `dir` (and missing parents) if absent; returns true when it had to be created.
pub(crate) fn ensure_dir(dir: &Path) -> Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if dir.is_dir() {
                Ok(false)
            } else {
                Err(CoreError::io(
                    dir,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a directory",
                    ),
                ))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).at(dir)?;
            Ok(true)
        }
        Err(e) => Err(CoreError::io(dir, e)),
    }
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

/// Like [`open_regular`], but a symbolic link in the last component is refused (`ELOOP`)
/// instead of followed: for files whose identity was checked beforehand.
pub(crate) fn open_regular_nofollow(path: &Path) -> Result<(File, fs::Metadata)> {
    open_regular_with(path, libc::O_NONBLOCK | libc::O_NOFOLLOW)
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
