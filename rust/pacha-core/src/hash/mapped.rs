//! Hashing a large file through a memory map, without the copy `read()` makes.
//!
//! `read()` copies every byte out of the page cache; on 2 cores that copy took 38% of the
//! CPU of hashing a 1 GiB file (perf; benches/run.py), which is most of the gap to `b3sum`,
//! which maps. A map has two hazards that `read()` does not:
//!
//! 1. **Another process rewrites the file**: the bytes change under the hash. A *read lease*
//!    (`fcntl(F_SETLEASE, F_RDLCK)`) rules this out. The kernel grants it only while no one
//!    has the file open for writing (a writable shared map counts), and while it is held any
//!    open for writing or truncate by anyone waits until it is released. A waiting writer
//!    shows as a pending break (`F_GETLEASE` no longer says `F_RDLCK`): the lease is checked
//!    before every chunk, and on a pending break the map is abandoned and the rest is read
//!    with `read()`, so a writer waits for at most one chunk. The lease's SIGIO is turned off
//!    (`F_SETOWN` 0): it is polled instead.
//! 2. **Another process truncates the file**: touching a page past the new end raises SIGBUS,
//!    which kills the process. The lease makes this impossible, except after the kernel
//!    breaks a lease by force (`/proc/sys/fs/lease-break-time`, 45 s by default, after a
//!    break began; possible only if one chunk takes that long, say a process stopped with
//!    Ctrl-Z). For that case a SIGBUS handler (`guard`) replaces the vanished pages of a
//!    registered map with zeros and flags the map, and the hash is refused as "changed while
//!    read" instead of the process dying.
//!
//! Where a lease cannot be had (a file owned by someone else, without CAP_LEASE; a
//! filesystem without leases; a file open for writing somewhere), the caller reads instead.

mod guard;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::update_slice;
use crate::{CoreError, Progress, Result};

/// Bytes hashed between two lease checks: the most a waiting writer waits for.
const CHUNK: usize = 16 << 20;

/// `F_SETSIG` from Linux's <fcntl.h> (the same on every architecture), which the `libc`
/// crate does not export.
const F_SETSIG: libc::c_int = 10;

/// A read lease on an open file, released when dropped.
struct ReadLease<'a> {
    file: &'a File,
}

impl<'a> ReadLease<'a> {
    fn take(file: &'a File) -> Option<Self> {
        let fd = file.as_raw_fd();
        // SAFETY: fcntl with F_SETLEASE/F_SETOWN takes integer arguments only; `fd` is open
        // for as long as `file` is borrowed.
        unsafe {
            // A lease break signals the lease's owner, which taking the lease sets to this
            // process, until `F_SETOWN 0` below clears it; SIGIO, the default, would end the
            // process if a writer came in between. SIGURG is ignored unless handled.
            if libc::fcntl(fd, F_SETSIG, libc::SIGURG) != 0 {
                return None;
            }
            if libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) != 0 {
                return None;
            }
            let lease = ReadLease { file };
            // No signal at all when someone wants the file: `is_held` polls instead.
            if libc::fcntl(fd, libc::F_SETOWN, 0) != 0 {
                return None;
            }
            Some(lease)
        }
    }

    /// False once someone is waiting to write or truncate the file.
    fn is_held(&self) -> bool {
        // SAFETY: as in `take`.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) == libc::F_RDLCK }
    }
}

impl Drop for ReadLease<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `take`. Failure leaves the lease to be released when the file closes.
        unsafe {
            libc::fcntl(self.file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK);
        }
    }
}

/// One window of a leased file, mapped read-only and registered with the SIGBUS guard.
struct Window {
    // Dropped in this order: the guard forgets the map before it is unmapped.
    registered: guard::Registered,
    map: memmap2::Mmap,
}

impl Window {
    fn map(file: &File, offset: u64, len: usize) -> Option<Self> {
        // SAFETY: the map is read-only and only read through the slice handed to the visitor
        // in `for_each_window`, while the caller holds a read lease: nobody can write or
        // truncate the file meanwhile (see the module docs), and visitors stop reading once
        // `usable` turns false. Pages that vanish all the same (a lease broken by force) are
        // replaced by zeros by the SIGBUS guard, and the window's bytes are then refused.
        // (Strictly, Rust's rules do not allow memory behind a `&[u8]` to change at all;
        // the guard's zero pages only ever appear in a window whose result is thrown away.)
        // `registered`, dropped first, stops the guard from touching the map before it is
        // unmapped.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(file)
        }
        .ok()?;
        let registered = guard::Registered::new(map.as_ptr() as usize, map.len())?;
        Some(Window { registered, map })
    }
}

/// Bytes mapped at a time: the map's pages count towards the process's resident memory
/// while mapped, so a 4 GiB file is walked through windows rather than mapped whole.
const WINDOW: usize = 32 << 20;

/// Walk the first `len` bytes of `file` through mapped windows, under a read lease. `visit`
/// gets each window's bytes and a `usable` check (false once a writer waits or pages
/// vanished: stop reading then), and returns how many bytes it consumed. Returns the bytes
/// consumed in all: `len`, or fewer (possibly 0: no lease could be had) when the caller must
/// read the rest. Fails if pages of a window vanished while it was read.
pub(crate) fn for_each_window(
    file: &File,
    len: u64,
    path: &Path,
    mut visit: impl FnMut(&[u8], &dyn Fn() -> bool) -> Result<usize>,
) -> Result<u64> {
    if len == 0 || !guard::install() {
        return Ok(0);
    }
    let Some(lease) = ReadLease::take(file) else {
        return Ok(0);
    };
    // The file may have changed between the caller's fstat and the lease.
    if file.metadata().map(|m| m.len()).ok() != Some(len) {
        return Ok(0);
    }
    let mut done = 0u64;
    while done < len {
        let window_len = usize::try_from(len - done).map_or(WINDOW, |rest| rest.min(WINDOW));
        let Some(window) = Window::map(file, done, window_len) else {
            break;
        };
        let usable = || lease.is_held() && !window.registered.faulted();
        let consumed = visit(&window.map, &usable)?;
        if window.registered.faulted() {
            // SIGBUS also reports an I/O error on a mapped page (a bad sector).
            return Err(CoreError::SourceChanged {
                path: path.into(),
                detail: "it was truncated (or could not be read) while being read".into(),
            });
        }
        done += consumed as u64;
        if consumed < window_len {
            break;
        }
    }
    Ok(done)
}

/// Hash one chunk of a map: on all cores, except inside a rayon worker (a directory's files,
/// objects being verified), where the files already run in parallel and a nested parallel
/// hash would let this thread steal another file's whole work before it checks the lease
/// again, keeping a writer waiting.
pub(crate) fn update_chunk(hasher: &mut blake3::Hasher, chunk: &[u8]) {
    if crate::parallel::in_file_loop() {
        hasher.update(chunk);
    } else {
        update_slice(hasher, chunk);
    }
}

/// Feed the first `len` bytes of `file` to `hasher` through a map, under a read lease.
/// Returns how many bytes it hashed: `len`, or fewer (possibly 0) when no lease could be had
/// or a writer started waiting, in which case the caller reads the rest.
pub(crate) fn update_mapped(
    hasher: &mut blake3::Hasher,
    file: &File,
    len: u64,
    path: &Path,
    progress: &Progress,
) -> Result<u64> {
    update_mapped_between(hasher, file, len, path, progress, || {})
}

/// [`update_mapped`], calling `between_chunks` after each chunk (tests start writers there).
fn update_mapped_between(
    hasher: &mut blake3::Hasher,
    file: &File,
    len: u64,
    path: &Path,
    progress: &Progress,
    mut between_chunks: impl FnMut(),
) -> Result<u64> {
    for_each_window(file, len, path, |bytes, usable| {
        let mut consumed = 0;
        for chunk in bytes.chunks(CHUNK) {
            progress.check()?;
            if !usable() {
                break;
            }
            update_chunk(hasher, chunk);
            consumed += chunk.len();
            progress.advance(chunk.len() as u64);
            between_chunks();
        }
        Ok(consumed)
    })
}

/// For tests here and in `store::copy`: open the file at `path` for writing (truncating it
/// if asked) from a new thread, and return once that open is waiting for the lease `leased`
/// holds. The thread finishes when the lease is released.
#[cfg(test)]
pub(crate) fn start_waiting_writer(
    leased: &File,
    path: &Path,
    truncate: bool,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let path = path.to_path_buf();
    let writer = std::thread::spawn(move || {
        File::options()
            .write(true)
            .truncate(truncate)
            .open(path)
            .map(drop)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // SAFETY: F_GETLEASE on an open descriptor.
    while unsafe { libc::fcntl(leased.as_raw_fd(), libc::F_GETLEASE) } == libc::F_RDLCK
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    writer
}

#[cfg(test)]
mod tests;
