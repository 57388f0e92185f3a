//! Directories held open by descriptor, for everything the registry writes inside itself.
//!
//! A path like `objects/ab/<digest>` is resolved by the kernel one component at a time, and a
//! symbolic link planted at any of them (by a teammate with write access to a shared
//! registry, or by an attacker) would redirect a write, a truncation or a rename to anywhere
//! on disk. So the store opens its directories once and reaches everything below them with
//! `*at` calls on one name at a time, each with `O_NOFOLLOW`: a link pacha did not create is
//! never followed, and is reported instead ([`CoreError::Unsafe`]).
//!
//! Hand-written over `rustix` (a well-kept safe wrapper of the system calls) rather than
//! `std::fs` paths, because `std` has no descriptor-relative API.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::{CoreError, Result};

/// A directory opened by descriptor; `path` is kept for messages only.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What an entry of a directory is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl EntryKind {
    fn of(file_type: FileType) -> Self {
        match file_type {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }
}

fn io_err(path: &Path, e: rustix::io::Errno) -> CoreError {
    CoreError::io(path, io::Error::from(e))
}

/// The error for a symbolic link (or other non-directory) found where pacha keeps one of its
/// own directories or files.
pub(crate) fn foreign_entry(path: &Path, what: &str) -> CoreError {
    CoreError::Unsafe {
        path: path.into(),
        detail: format!(
            "{what} that pacha did not create; it is never followed — someone with write \
             access to the registry put it there: remove it and run `pacha verify`"
        ),
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Dir {
    /// Open the directory at `path`, following links in `path` itself (it is the location a
    /// user chose, and may well be a link to another disk).
    pub(crate) fn open(path: &Path) -> Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(path, e))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside this directory, for messages.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The directory `name` inside this one, `None` when absent. A symbolic link or a file
    /// in its place is refused ([`foreign_entry`]).
    pub(crate) fn open_dir(&self, name: &str) -> Result<Option<Dir>> {
        match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir {
                fd,
                path: self.join(name),
            })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                Err(self.refuse_non_dir(name))
            }
            Err(e) => Err(io_err(&self.join(name), e)),
        }
    }

    fn refuse_non_dir(&self, name: &str) -> CoreError {
        let what = match self.kind_of(name) {
            Ok(Some(EntryKind::Symlink)) => "a symbolic link",
            _ => "something other than a directory",
        };
        foreign_entry(&self.join(name), what)
    }

    /// Open (creating it with `mode` if absent) the directory `name` inside this one.
    /// Returns the directory and whether it was created. A new directory gets exactly
    /// `mode` (the umask does not apply: a group-shared registry needs its group bits).
    pub(crate) fn ensure_dir(&self, name: &str, mode: u32) -> Result<(Dir, bool)> {
        let created = match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(io_err(&self.join(name), e)),
        };
        let dir = self
            .open_dir(name)?
            .ok_or_else(|| io_err(&self.join(name), rustix::io::Errno::NOENT))?;
        if created {
            rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(mode))
                .map_err(|e| io_err(&dir.path, e))?;
        }
        Ok((dir, created))
    }

    /// What `name` is, without following it; `None` when absent.
    pub(crate) fn kind_of(&self, name: &str) -> Result<Option<EntryKind>> {
        Ok(self
            .stat(name)?
            .map(|s| EntryKind::of(FileType::from_raw_mode(s.st_mode))))
    }

    /// `lstat` of `name`; `None` when absent.
    pub(crate) fn stat(&self, name: &str) -> Result<Option<Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err(&self.join(name), e)),
        }
    }

    /// Open the file `name` for reading, never following a link (`O_NONBLOCK`, so that a
    /// FIFO cannot block the open). `None` when absent; a link is refused with `ELOOP`.
    pub(crate) fn open_read(&self, name: &str) -> Result<Option<File>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err(&self.join(name), e)),
        }
    }

    /// Open the file at `relative` (a `/`-separated path below this directory) for reading,
    /// resolved inside this directory only: no component may be a symbolic link, except
    /// that with `follow_links` links are followed as long as they stay below this directory.
    /// Linux resolves it in one race-free call (`openat2` with `RESOLVE_BENEATH`); elsewhere
    /// it is opened one component at a time without following links (`follow_links` then
    /// refuses links, with `ELOOP`). A path that leaves the directory fails with `EXDEV`.
    pub(crate) fn open_beneath(&self, relative: &str, follow_links: bool) -> io::Result<File> {
        let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        if !follow_links {
            flags |= OFlags::NOFOLLOW;
        }
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::ResolveFlags;
            let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            if !follow_links {
                resolve |= ResolveFlags::NO_SYMLINKS;
            }
            match rustix::fs::openat2(&self.fd, relative, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(rustix::io::Errno::NOSYS) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // One component at a time, never following a link.
        let mut parts: Vec<&str> = relative.split('/').collect();
        let last = parts.pop().unwrap_or_default();
        let mut current: Option<OwnedFd> = None;
        for part in parts {
            let at = current.as_ref().map_or(self.fd.as_fd(), |fd| fd.as_fd());
            current = Some(rustix::fs::openat(at, part, DIR_FLAGS, Mode::empty())?);
        }
        let at = current.as_ref().map_or(self.fd.as_fd(), |fd| fd.as_fd());
        Ok(File::from(rustix::fs::openat(
            at,
            last,
            flags | OFlags::NOFOLLOW,
            Mode::empty(),
        )?))
    }

    /// Open the regular file `name` for reading and writing, never following a link and
    /// never creating it. `None` when absent.
    pub(crate) fn open_write(&self, name: &str) -> Result<Option<File>> {
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(rustix::io::Errno::LOOP) => Err(foreign_entry(&self.join(name), "a symbolic link")),
            Err(e) => Err(io_err(&self.join(name), e)),
        }
    }

    /// Create the new file `name` (`O_EXCL`: never an existing file, never through a link),
    /// open for reading and writing, with exactly `mode`. `None` when `name` exists.
    pub(crate) fn create_new(&self, name: &str, mode: u32) -> Result<Option<File>> {
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode)) {
            Ok(fd) => {
                // The umask may have removed group bits a shared registry needs.
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                    .map_err(|e| io_err(&self.join(name), e))?;
                Ok(Some(File::from(fd)))
            }
            Err(rustix::io::Errno::EXIST) => Ok(None),
            Err(e) => Err(io_err(&self.join(name), e)),
        }
    }

    /// Open the file `name` for reading and writing, creating it with `mode` if absent, never
    /// through a link and never truncating (lock files, databases).
    pub(crate) fn open_or_create(&self, name: &str, mode: u32) -> Result<File> {
        loop {
            if let Some(file) = self.open_write(name)? {
                return Ok(file);
            }
            if let Some(file) = self.create_new(name, mode)? {
                return Ok(file);
            }
            // Created by someone else between the two calls: open theirs.
        }
    }

    /// Create the empty file `name` unless something is there already (markers). Nothing is
    /// ever opened for writing, so a link or a hard link in its place changes nothing.
    pub(crate) fn create_marker(&self, name: &str, mode: u32) -> Result<()> {
        self.create_new(name, mode).map(drop)
    }

    /// Remove the file (or link) `name`; false when it was absent.
    pub(crate) fn remove_file(&self, name: &str) -> Result<bool> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(io_err(&self.join(name), e)),
        }
    }

    /// Rename `from` in this directory to `to` in `dest` (atomically replacing a file there).
    pub(crate) fn rename(&self, from: &str, dest: &Dir, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &dest.fd, to).map_err(io::Error::from)
    }

    /// Make the directory's entries durable.
    pub(crate) fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| io_err(&self.path, e))
    }

    /// The directory's own `fstat`.
    pub(crate) fn metadata(&self) -> Result<Stat> {
        rustix::fs::fstat(&self.fd).map_err(|e| io_err(&self.path, e))
    }

    /// Every entry but `.` and `..`, with what it is (from the directory itself when the
    /// filesystem says, else from an `lstat`).
    pub(crate) fn entries(&self) -> Result<Vec<(OsString, EntryKind)>> {
        let mut reader = rustix::fs::Dir::read_from(&self.fd).map_err(|e| io_err(&self.path, e))?;
        let mut entries = Vec::new();
        while let Some(entry) = reader.read() {
            let entry = entry.map_err(|e| io_err(&self.path, e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(stat) => EntryKind::of(FileType::from_raw_mode(stat.st_mode)),
                        Err(rustix::io::Errno::NOENT) => continue,
                        Err(e) => return Err(io_err(&self.join(name), e)),
                    }
                }
                other => EntryKind::of(other),
            };
            entries.push((name.to_os_string(), kind));
        }
        Ok(entries)
    }

    /// The directory's absolute path with every link resolved, as the kernel knows it for
    /// this descriptor (so a link planted in the path since it was opened does not count),
    /// for libraries that take paths: SQLite then refuses any link it finds in it.
    pub(crate) fn canonical_path(&self) -> Result<PathBuf> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let link = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
            if let Ok(path) = std::fs::read_link(link) {
                if path.is_absolute() && !path.as_os_str().as_bytes().ends_with(b" (deleted)") {
                    return Ok(path);
                }
            }
        }
        std::fs::canonicalize(&self.path).map_err(|e| CoreError::io(&self.path, e))
    }

    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A second descriptor for the same directory.
    pub(crate) fn try_clone(&self) -> Result<Dir> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| CoreError::io(&self.path, e))?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }
}

/// A new, uniquely named file in a directory, removed when dropped unless [`Self::persist`]
/// renamed it into place: the store's temp files. Created with `O_EXCL` under a random name,
/// so concurrent writers never share one and nothing existing is ever opened.
#[derive(Debug)]
pub(crate) struct TempFile<'a> {
    dir: &'a Dir,
    name: Option<String>,
    file: File,
}

impl<'a> TempFile<'a> {
    pub(crate) fn new_in(dir: &'a Dir, suffix: &str, mode: u32) -> Result<Self> {
        loop {
            let name = format!("{:032x}{suffix}", fastrand::u128(..));
            if let Some(file) = dir.create_new(&name, mode)? {
                return Ok(TempFile {
                    dir,
                    name: Some(name),
                    file,
                });
            }
        }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temp file's path, for messages.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(self.name.as_deref().unwrap_or_default())
    }

    /// Rename the file to `to` inside `dest`, replacing a file there; on failure the temp
    /// file is kept (and removed on drop), and the error returned.
    pub(crate) fn persist(mut self, dest: &Dir, to: &str) -> io::Result<()> {
        let name = self.name.take().unwrap_or_default();
        self.dir
            .rename(&name, dest, to)
            .inspect_err(|_| self.name = Some(name))
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = self.dir.remove_file(name);
        }
    }
}
