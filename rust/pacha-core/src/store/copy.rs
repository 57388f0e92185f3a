//! The loop that moves artifact bytes through bounded buffers.
//!
//! Hand-written pipelines rather than `io::copy`: the whole point of single-pass ingest is
//! that reading + hashing (one core) overlaps with writing (the other), which brings a
//! hash-while-copy close to the cost of a plain `cp`. Memory stays bounded by
//! `PIPELINE_DEPTH` buffers of `CHUNK` bytes.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::path::Path;
use std::sync::mpsc;

use crate::hash::mapped;
use crate::hash::read_full;
use crate::{CoreError, Progress, Result};

/// Bytes per pipeline buffer.
const CHUNK: usize = 1 << 20;
/// Buffers in flight between the stages.
const PIPELINE_DEPTH: usize = 4;

/// Ask the kernel to start writing back every this many bytes, so that the final fsync
/// finds little left to do (disk writes overlap with reading and hashing).
pub(crate) const WRITEBACK_STEP: u64 = 32 << 20;

/// Start asynchronous writeback of `len` bytes at `offset` (Linux). Purely a hint: the
/// durability guarantee comes from the fsync before the rename, never from this.
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::unix::io::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; `file` is open for the whole
    // call, so the descriptor is valid. An error (e.g. on a filesystem without support) is
    // harmless and ignored.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Sources at least this large are copied from a memory map when one can be had safely
/// (`hash::mapped`): the writer copies straight from the page cache and the hash reads the
/// same pages, instead of both going through a copy made by `read()`.
const MAP_MIN: u64 = 1 << 20;

/// Bytes per step of a mapped copy: hashed on all cores while the previous step is written.
const MAPPED_CHUNK: usize = 4 << 20;

/// Copy `src` to `dst`, feeding every byte to `hasher` on the way: from a map of `src` where
/// possible (see [`MAP_MIN`]), else (and for whatever remains when a writer of `src` starts
/// waiting) through bounded buffers. Returns the number of bytes copied.
pub(crate) fn copy_hashing(
    src: &mut File,
    src_path: &Path,
    dst: &mut File,
    dst_path: &Path,
    hasher: &mut blake3::Hasher,
    progress: &Progress,
) -> Result<u64> {
    copy_hashing_between(src, src_path, dst, dst_path, hasher, progress, || {})
}

/// [`copy_hashing`], calling `between_chunks` after each mapped chunk (tests start writers
/// of the source there).
fn copy_hashing_between(
    src: &mut File,
    src_path: &Path,
    dst: &mut File,
    dst_path: &Path,
    hasher: &mut blake3::Hasher,
    progress: &Progress,
    mut between_chunks: impl FnMut(),
) -> Result<u64> {
    let len = src
        .metadata()
        .map_err(|e| CoreError::io(src_path, e))?
        .len();
    let mut copied = 0;
    if len >= MAP_MIN {
        copied = mapped::for_each_window(src, len, src_path, |bytes, usable| {
            let offset = copied;
            let done = copy_window(
                bytes,
                usable,
                dst,
                dst_path,
                hasher,
                progress,
                offset,
                &mut between_chunks,
            )?;
            copied += done as u64;
            Ok(done)
        })?;
        // A map does not move the file position: the buffered copy goes on from there (and
        // finds the end at once when everything was copied, or checks that nothing was
        // appended meanwhile).
        src.seek(io::SeekFrom::Start(copied))
            .map_err(|e| CoreError::io(src_path, e))?;
    }
    Ok(copied + copy_read(src, src_path, dst, dst_path, hasher, progress, copied)?)
}

/// The mapped part of [`copy_hashing`], one window at a time: this thread hashes each chunk
/// while a second thread writes it. Stops early (returning the bytes done) once `usable`
/// turns false. `offset` is where the window starts in `dst` (for the writeback hints).
#[allow(clippy::too_many_arguments)]
fn copy_window(
    bytes: &[u8],
    usable: &dyn Fn() -> bool,
    dst: &mut File,
    dst_path: &Path,
    hasher: &mut blake3::Hasher,
    progress: &Progress,
    offset: u64,
    between_chunks: &mut impl FnMut(),
) -> Result<usize> {
    let (tx, rx) = mpsc::sync_channel::<&[u8]>(PIPELINE_DEPTH);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<()> {
            let mut written = offset;
            let mut flushed = offset;
            for chunk in rx {
                dst.write_all(chunk)
                    .map_err(|e| CoreError::io(dst_path, e))?;
                written += chunk.len() as u64;
                if written - flushed >= WRITEBACK_STEP {
                    start_writeback(dst, flushed, written - flushed);
                    flushed = written;
                }
            }
            Ok(())
        });
        let hashed = (|| -> Result<usize> {
            let mut done = 0;
            for chunk in bytes.chunks(MAPPED_CHUNK) {
                progress.check()?;
                if !usable() {
                    break;
                }
                // If the writer died its error is reported below; stop.
                if tx.send(chunk).is_err() {
                    break;
                }
                mapped::update_chunk(hasher, chunk);
                done += chunk.len();
                progress.advance(chunk.len() as u64);
                between_chunks();
            }
            Ok(done)
        })();
        drop(tx);
        writer.join().unwrap_or_else(|_| {
            Err(CoreError::io(
                dst_path,
                io::Error::other("writer thread panicked"),
            ))
        })?;
        hashed
    })
}

/// The buffered part of [`copy_hashing`]: this thread reads and hashes; a second thread
/// writes. `offset` is where `dst`'s writing starts (for the writeback hints).
fn copy_read(
    src: &mut File,
    src_path: &Path,
    dst: &mut File,
    dst_path: &Path,
    hasher: &mut blake3::Hasher,
    progress: &Progress,
    offset: u64,
) -> Result<u64> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPELINE_DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..PIPELINE_DEPTH {
        // The receiver is alive: it is ours until the writer starts.
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<()> {
            let mut written = offset;
            let mut flushed = offset;
            for (buf, len) in full_rx {
                dst.write_all(&buf[..len])
                    .map_err(|e| CoreError::io(dst_path, e))?;
                written += len as u64;
                if written - flushed >= WRITEBACK_STEP {
                    start_writeback(dst, flushed, written - flushed);
                    flushed = written;
                }
                // The reader may already have stopped; then the buffer is simply freed.
                let _ = empty_tx.send(buf);
            }
            Ok(())
        });
        let read_side = (|| -> Result<u64> {
            let mut total = 0u64;
            // If the writer died its error is reported below; stop reading.
            while let Ok(mut buf) = empty_rx.recv() {
                progress.check()?;
                let n = read_full(src, src_path, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                total += n as u64;
                progress.advance(n as u64);
                if full_tx.send((buf, n)).is_err() {
                    break;
                }
            }
            Ok(total)
        })();
        drop(full_tx);
        let written = writer.join().unwrap_or_else(|_| {
            Err(CoreError::io(
                dst_path,
                io::Error::other("writer thread panicked"),
            ))
        });
        // A write error explains an early stop of the reader, so it wins.
        written?;
        read_side
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{hash, Digest};

    /// A source file of `len` patterned bytes in `dir`, and those bytes.
    fn source(dir: &Path, len: usize, step: usize) -> (std::path::PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * step % 241) as u8).collect();
        let path = dir.join("src");
        File::create(&path)
            .and_then(|mut f| f.write_all(&data))
            .expect("write");
        (path, data)
    }

    #[test]
    fn a_copy_interrupted_by_a_waiting_writer_goes_on_by_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, data) = source(dir.path(), 5 * MAPPED_CHUNK + 99, 11);
        let expected = hash::hash_slice(&data);
        let mut src = File::open(&path).expect("open");
        let leased = src.try_clone().expect("clone");
        let dst_path = dir.path().join("dst");
        let mut dst = File::create(&dst_path).expect("create");
        let mut hasher = blake3::Hasher::new();
        let mut chunks = 0;
        let mut writer = None;
        let n = copy_hashing_between(
            &mut src,
            &path,
            &mut dst,
            &dst_path,
            &mut hasher,
            &Progress::new(),
            || {
                chunks += 1;
                if chunks == 2 {
                    // Opening for writing waits for the lease; it changes nothing.
                    writer = Some(mapped::start_waiting_writer(&leased, &path, false));
                }
            },
        )
        .expect("copy");
        assert_eq!(chunks, 2, "the map was abandoned once the writer waited");
        assert_eq!(n, data.len() as u64);
        assert_eq!(Digest::from(hasher.finalize()), expected);
        assert_eq!(
            hash::hash_file(&dst_path, &Progress::new()).expect("hash"),
            expected
        );
        writer
            .expect("started")
            .join()
            .expect("join")
            .expect("opened");
    }

    #[test]
    fn copy_pipeline_agrees_with_the_one_shot_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, data) = source(dir.path(), 37 * CHUNK + 12345, 7);
        let expected = hash::hash_slice(&data);

        let progress = Progress::new();
        assert_eq!(hash::hash_file(&path, &progress).expect("hash"), expected);
        assert_eq!(progress.done(), data.len() as u64);

        let mut src = File::open(&path).expect("open");
        let dst_path = dir.path().join("dst");
        let mut dst = File::create(&dst_path).expect("create");
        let mut hasher = blake3::Hasher::new();
        let n = copy_hashing(
            &mut src,
            &path,
            &mut dst,
            &dst_path,
            &mut hasher,
            &Progress::new(),
        )
        .expect("copy");
        assert_eq!(n, data.len() as u64);
        assert_eq!(Digest::from(hasher.finalize()), expected);
        assert_eq!(
            hash::hash_file(&dst_path, &Progress::new()).expect("hash"),
            expected
        );
    }
}
