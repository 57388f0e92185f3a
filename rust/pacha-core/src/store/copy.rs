//! The loop that moves artifact bytes through bounded buffers.
//!
//! Hand-written pipelines rather than `io::copy`: the whole point of single-pass ingest is
//! that reading + hashing (one core) overlaps with writing (the other), which brings a
//! hash-while-copy close to the cost of a plain `cp`. Memory stays bounded by
//! `PIPELINE_DEPTH` buffers of `CHUNK` bytes.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc;

use crate::hash::read_full;
use crate::{CoreError, Progress, Result};

/// Bytes per pipeline buffer.
const CHUNK: usize = 1 << 20;
/// Buffers in flight between the stages.
const PIPELINE_DEPTH: usize = 4;

/// Ask the kernel to start writing back every this many bytes, so that the final fsync
/// finds little left to do (disk writes overlap with reading and hashing).
const WRITEBACK_STEP: u64 = 32 << 20;

/// Start asynchronous writeback of `len` bytes at `offset` (Linux). Purely a hint: the
/// durability guarantee comes from the fsync before the rename, never from this.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
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
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Copy `src` to `dst`, feeding every byte to `hasher` on the way. This thread reads and
/// hashes; a second thread writes. Returns the number of bytes copied.
pub(crate) fn copy_hashing(
    src: &mut File,
    src_path: &Path,
    dst: &mut File,
    dst_path: &Path,
    hasher: &mut blake3::Hasher,
    progress: &Progress,
) -> Result<u64> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPELINE_DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..PIPELINE_DEPTH {
        // The receiver is alive: it is ours until the writer starts.
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<()> {
            let mut written = 0u64;
            let mut flushed = 0u64;
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

    #[test]
    fn copy_pipeline_agrees_with_the_one_shot_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..(37 * CHUNK + 12345))
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let path = dir.path().join("src");
        File::create(&path)
            .and_then(|mut f| f.write_all(&data))
            .expect("write");
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
