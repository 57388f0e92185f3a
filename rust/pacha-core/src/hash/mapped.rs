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
            if libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) != 0 {
                return None;
            }
            let lease = ReadLease { file };
            // No SIGIO when someone wants the file: `is_held` polls instead.
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

/// A file mapped for reading under a read lease, registered with the SIGBUS guard.
pub(crate) struct MappedFile<'a> {
    // Dropped in this order: the guard forgets the map before it is unmapped, and the lease
    // is released last.
    registered: guard::Registered,
    map: memmap2::Mmap,
    lease: ReadLease<'a>,
}

impl<'a> MappedFile<'a> {
    /// Map the first `len` bytes of `file`; `None` where that cannot be done safely (no
    /// lease, a size that changed, no guard slot), and the caller reads instead.
    pub(crate) fn open(file: &'a File, len: u64) -> Option<Self> {
        let len_usize = usize::try_from(len).ok()?;
        if len == 0 || !guard::install() {
            return None;
        }
        let lease = ReadLease::take(file)?;
        // The file may have changed between the caller's fstat and the lease.
        if file.metadata().ok()?.len() != len {
            return None;
        }
        // SAFETY: the map is read-only and only read through `bytes`. Nobody can write or
        // truncate the file while the lease is held (see the module docs), and users stop
        // reading the map once `is_held` turns false. Pages that vanish all the same (a lease
        // broken by force) are replaced by zeros by the SIGBUS guard, which `finish` reports.
        // `registered` (dropped first) stops the guard from touching the map before it is
        // unmapped.
        let map = unsafe { memmap2::MmapOptions::new().len(len_usize).map(file) }.ok()?;
        let registered = guard::Registered::new(map.as_ptr() as usize, map.len())?;
        Some(MappedFile {
            registered,
            map,
            lease,
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// False once someone waits to write or truncate the file: stop reading the map.
    pub(crate) fn is_held(&self) -> bool {
        self.lease.is_held()
    }

    /// Release the map; an error if its pages vanished while it was read (what was read
    /// from it must then be thrown away).
    pub(crate) fn finish(self, path: &Path) -> Result<()> {
        if self.registered.faulted() {
            return Err(CoreError::SourceChanged {
                path: path.into(),
                detail: "it was truncated while being read".into(),
            });
        }
        Ok(())
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
    let Some(mapped) = MappedFile::open(file, len) else {
        return Ok(0);
    };
    let mut done = 0u64;
    for chunk in mapped.bytes().chunks(CHUNK) {
        progress.check()?;
        if !mapped.is_held() {
            break;
        }
        update_slice(hasher, chunk);
        done += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
        between_chunks();
    }
    mapped.finish(path)?;
    Ok(done)
}

#[cfg(test)]
mod tests;
