//! Streaming BLAKE3.
//!
//! Large regular files are memory-mapped under a read lease when one can be had (see
//! `mapped`: that saves the copy `read()` makes, which cost a third of the CPU on 2 cores) and
//! hashed on all cores. Otherwise one thread reads them ahead through a few bounded buffers
//! while the calling thread hashes each buffer on all cores. Small files, pipes and special
//! files go through one bounded buffer. Either way the digest is the plain BLAKE3-256 of the
//! bytes, identical to `b3sum`.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;
use std::sync::mpsc;

pub(crate) mod mapped;

pub use blake3::Hasher;

/// Digest length in bytes (BLAKE3-256).
pub const DIGEST_SIZE: usize = blake3::OUT_LEN;
/// BLAKE3's internal block length in bytes (hashlib's `block_size`).
pub const BLOCK_SIZE: usize = blake3::BLOCK_LEN;

use crate::error::IoContext;
use crate::{CoreError, Digest, Progress, Result};

/// Regular files at least this large are read ahead by a second thread and hashed on all
/// cores. Below it, thread start-up costs more than it saves.
pub const PARALLEL_THRESHOLD: u64 = 1 << 20;

/// Buffer size for plain streaming reads.
pub const STREAM_BUFFER: usize = 256 * 1024;

/// Buffers of the read-ahead pipeline: large enough for rayon to split across cores.
const READ_AHEAD_CHUNK: usize = 4 << 20;
const READ_AHEAD_BUFFERS: usize = 3;

/// Inputs at least this large are hashed on several threads by [`update_slice`].
const PARALLEL_SLICE_MIN: usize = 1 << 20;

/// Hash an in-memory buffer (all cores for large buffers).
pub fn hash_slice(data: &[u8]) -> Digest {
    let mut hasher = Hasher::new();
    update_slice(&mut hasher, data);
    hasher.finalize().into()
}

/// Feed a buffer to a hasher, using several threads when it is large.
pub fn update_slice(hasher: &mut Hasher, data: &[u8]) {
    if data.len() >= PARALLEL_SLICE_MIN {
        crate::parallel::install(|| hasher.update_rayon(data));
    } else {
        hasher.update(data);
    }
}

/// Hash the file at `path`, following symlinks. Directories are refused with
/// [`CoreError::IsADirectory`]; FIFOs and character devices are read as streams.
pub fn hash_file(path: &Path, progress: &Progress) -> Result<Digest> {
    let mut hasher = Hasher::new();
    update_from_file(&mut hasher, path, progress)?;
    Ok(hasher.finalize().into())
}

/// Feed the bytes of the file at `path` to `hasher` (see [`hash_file`]). Adds the file's
/// size to `progress.total()`.
pub fn update_from_file(hasher: &mut Hasher, path: &Path, progress: &Progress) -> Result<()> {
    let file = File::open(path).at(path)?;
    let meta = file.metadata().at(path)?;
    if meta.is_dir() {
        return Err(CoreError::IsADirectory { path: path.into() });
    }
    if meta.is_file() {
        progress.add_total(meta.len());
    }
    update_from_open_file(hasher, file, &meta, path, progress).map(drop)
}

/// Feed an already opened file to `hasher`, choosing the pipeline by its size. Does not touch
/// `progress.total()` (the caller knows better); returns the bytes read.
pub(crate) fn update_from_open_file(
    hasher: &mut Hasher,
    mut file: File,
    meta: &std::fs::Metadata,
    path: &Path,
    progress: &Progress,
) -> Result<u64> {
    if meta.is_file() && meta.len() >= PARALLEL_THRESHOLD {
        let mapped = mapped::update_mapped(hasher, &file, meta.len(), path, progress)?;
        if mapped == meta.len() {
            return Ok(mapped);
        }
        // No lease, or a writer is waiting: read the rest.
        file.seek(io::SeekFrom::Start(mapped)).at(path)?;
        Ok(mapped + update_read_ahead(hasher, &mut file, path, progress)?)
    } else {
        update_from_reader(hasher, file, path, progress)
    }
}

/// Fill `buf` as far as the reader allows; returns the bytes read (0 at end of input).
pub(crate) fn read_full(src: &mut impl Read, src_path: &Path, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CoreError::io(src_path, e)),
        }
    }
    Ok(filled)
}

/// Hash a file through bounded buffers: a second thread reads ahead while this one hashes
/// each buffer on all cores. Returns the bytes read.
pub(crate) fn update_read_ahead(
    hasher: &mut Hasher,
    src: &mut File,
    src_path: &Path,
    progress: &Progress,
) -> Result<u64> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(READ_AHEAD_BUFFERS);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..READ_AHEAD_BUFFERS {
        // The receiver is alive: it is ours until the reader starts.
        let _ = empty_tx.send(vec![0u8; READ_AHEAD_CHUNK]);
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<()> {
            while let Ok(mut buf) = empty_rx.recv() {
                progress.check()?;
                let n = read_full(src, src_path, &mut buf)?;
                if n == 0 || full_tx.send((buf, n)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut total = 0u64;
        for (buf, n) in full_rx {
            update_slice(hasher, &buf[..n]);
            total += n as u64;
            progress.advance(n as u64);
            // After end of input the reader is gone while buffers may still be queued here:
            // a failed hand-back must not stop the hashing.
            let _ = empty_tx.send(buf);
        }
        drop(empty_tx);
        reader.join().unwrap_or_else(|_| {
            Err(CoreError::io(
                src_path,
                io::Error::other("reader thread panicked"),
            ))
        })?;
        Ok(total)
    })
}

/// Stream a reader into `hasher` through one bounded buffer; returns the number of bytes
/// read. `path` names the source in errors.
pub fn update_from_reader(
    hasher: &mut Hasher,
    mut reader: impl Read,
    path: &Path,
    progress: &Progress,
) -> Result<u64> {
    let mut buf = vec![0u8; STREAM_BUFFER];
    let mut total = 0u64;
    loop {
        progress.check()?;
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CoreError::io(path, e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        progress.advance(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn known_vector_empty() {
        // BLAKE3 of the empty input, from the BLAKE3 specification's test vectors.
        assert_eq!(
            hash_slice(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn file_matches_slice_on_both_sides_of_the_parallel_threshold() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            0,
            1,
            1023,
            1024,
            1025,
            PARALLEL_THRESHOLD as usize - 1,
            PARALLEL_THRESHOLD as usize,
            PARALLEL_THRESHOLD as usize + 1,
            3 * READ_AHEAD_CHUNK * READ_AHEAD_BUFFERS + 17,
        ] {
            let data = pattern(len);
            let path = dir.path().join(format!("f{len}"));
            File::create(&path)
                .and_then(|mut f| f.write_all(&data))
                .expect("write");
            let progress = Progress::new();
            assert_eq!(
                hash_file(&path, &progress).expect("hash"),
                hash_slice(&data),
                "len {len}"
            );
            assert_eq!(progress.done(), len as u64);
        }
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            hash_file(dir.path(), &Progress::new()),
            Err(CoreError::IsADirectory { .. })
        ));
    }

    #[test]
    fn missing_file_keeps_its_kind_and_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope");
        match hash_file(&path, &Progress::new()) {
            Err(CoreError::Io { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cancelled_progress_stops_hashing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        File::create(&path)
            .and_then(|mut f| f.write_all(&pattern(2 << 20)))
            .expect("write");
        let progress = Progress::new();
        progress.cancel();
        assert!(matches!(
            hash_file(&path, &progress),
            Err(CoreError::Cancelled)
        ));
    }
}
