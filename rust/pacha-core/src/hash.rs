//! Streaming BLAKE3.
//!
//! Large regular files are memory-mapped and hashed on all cores (the `blake3` crate's rayon
//! support), in slices so that progress is reported and cancellation is honoured; small files,
//! pipes and special files are read through a bounded buffer. Either way the digest is the
//! plain BLAKE3-256 of the bytes, identical to `b3sum`.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

pub use blake3::Hasher;

/// Digest length in bytes (BLAKE3-256).
pub const DIGEST_SIZE: usize = blake3::OUT_LEN;
/// BLAKE3's internal block length in bytes (hashlib's `block_size`).
pub const BLOCK_SIZE: usize = blake3::BLOCK_LEN;

use crate::error::IoContext;
use crate::{CoreError, Digest, Progress, Result};

/// Regular files at least this large are memory-mapped and hashed with several threads.
/// Below it, thread start-up and mapping cost more than they save.
pub const MMAP_THRESHOLD: u64 = 1 << 20;

/// Buffer size for streaming reads. Large enough that syscall overhead vanishes, small
/// enough to stay in L2 while it is hashed.
pub const STREAM_BUFFER: usize = 256 * 1024;

/// Slices of a mapped file handed to the multi-threaded hasher between progress updates.
const MMAP_SLICE: usize = 64 << 20;

/// Inputs at least this large are hashed on several threads by [`hash_slice`].
const PARALLEL_SLICE_MIN: usize = 1 << 20;

/// Hash an in-memory buffer (all cores for large buffers).
pub fn hash_slice(data: &[u8]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    update_slice(&mut hasher, data);
    hasher.finalize().into()
}

/// Feed a buffer to a hasher, using several threads when it is large.
pub fn update_slice(hasher: &mut blake3::Hasher, data: &[u8]) {
    if data.len() >= PARALLEL_SLICE_MIN {
        hasher.update_rayon(data);
    } else {
        hasher.update(data);
    }
}

/// Hash the file at `path`, following symlinks. Directories are refused with
/// [`CoreError::IsADirectory`]; FIFOs and character devices are read as streams.
pub fn hash_file(path: &Path, progress: &Progress) -> Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    update_from_file(&mut hasher, path, progress)?;
    Ok(hasher.finalize().into())
}

/// Feed the bytes of the file at `path` to `hasher` (see [`hash_file`]).
pub fn update_from_file(
    hasher: &mut blake3::Hasher,
    path: &Path,
    progress: &Progress,
) -> Result<()> {
    let file = File::open(path).at(path)?;
    let meta = file.metadata().at(path)?;
    if meta.is_dir() {
        return Err(CoreError::IsADirectory { path: path.into() });
    }
    if meta.is_file() && meta.len() >= MMAP_THRESHOLD {
        progress.add_total(meta.len());
        update_mapped(hasher, &file, path, progress)
    } else {
        if meta.is_file() {
            progress.add_total(meta.len());
        }
        update_from_reader(hasher, file, path, progress).map(drop)
    }
}

fn update_mapped(
    hasher: &mut blake3::Hasher,
    file: &File,
    path: &Path,
    progress: &Progress,
) -> Result<()> {
    // SAFETY: the mapping is read-only and lives only for this function. The one hazard of
    // mapping a file is another process truncating or rewriting it while we read: a rewrite
    // yields a digest of mixed bytes (which callers that store objects detect by comparing
    // sizes and mtimes, and by re-hashing what they wrote), a truncation raises SIGBUS. This
    // is the same contract as `b3sum` and the `blake3` crate's own `update_mmap_rayon`; the
    // object store itself never maps files it does not own (see store/local.rs).
    let map = unsafe { memmap2::Mmap::map(file) }.at(path)?;
    #[cfg(unix)]
    {
        // Advice only; failure changes nothing but speed.
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    for slice in map.chunks(MMAP_SLICE) {
        progress.check()?;
        hasher.update_rayon(slice);
        progress.advance(slice.len() as u64);
    }
    Ok(())
}

/// Stream a reader into `hasher` through a bounded buffer; returns the number of bytes read.
/// `path` names the source in errors.
pub fn update_from_reader(
    hasher: &mut blake3::Hasher,
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
    fn file_matches_slice_on_both_sides_of_the_mmap_threshold() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            0,
            1,
            1023,
            1024,
            1025,
            MMAP_THRESHOLD as usize - 1,
            MMAP_THRESHOLD as usize,
            MMAP_THRESHOLD as usize + 1,
            3 * MMAP_SLICE / 2,
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
