use std::io::Write;

use super::*;
use crate::hash;

fn file_of(dir: &Path, name: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
    let path = dir.join(name);
    File::create(&path)
        .and_then(|mut f| f.write_all(&data))
        .expect("write");
    (path, data)
}

#[test]
fn a_mapped_hash_is_the_plain_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    for len in [1, 4095, 4096, CHUNK - 1, CHUNK + 1, 2 * CHUNK + 12345] {
        let (path, data) = file_of(dir.path(), &format!("f{len}"), len);
        let file = File::open(&path).expect("open");
        let mut hasher = blake3::Hasher::new();
        let progress = Progress::new();
        let done = update_mapped(&mut hasher, &file, len as u64, &path, &progress).expect("map");
        assert_eq!(done, len as u64, "a lease is available on a file we own");
        assert_eq!(
            crate::Digest::from(hasher.finalize()),
            hash::hash_slice(&data)
        );
        assert_eq!(progress.done(), len as u64);
    }
}

#[test]
fn a_file_open_for_writing_is_not_mapped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = file_of(dir.path(), "f", 1 << 20);
    let _writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open for writing");
    let file = File::open(&path).expect("open");
    let mut hasher = blake3::Hasher::new();
    let done = update_mapped(&mut hasher, &file, 1 << 20, &path, &Progress::new()).expect("map");
    assert_eq!(
        done, 0,
        "no lease while someone may write: the caller reads instead"
    );
}

#[test]
fn a_waiting_writer_stops_the_map_after_one_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let len = 3 * CHUNK;
    let (path, data) = file_of(dir.path(), "f", len);
    let file = File::open(&path).expect("open");
    let mut writer = None;
    let mut hasher = blake3::Hasher::new();
    let done = update_mapped_between(
        &mut hasher,
        &file,
        len as u64,
        &path,
        &Progress::new(),
        || {
            if writer.is_none() {
                writer = Some(start_waiting_writer(&file, &path, true));
            }
        },
    )
    .expect("map");
    assert_eq!(done, CHUNK as u64, "the map is abandoned at the next chunk");
    let mut expected = blake3::Hasher::new();
    expected.update(&data[..CHUNK]);
    assert_eq!(hasher.finalize(), expected.finalize());
    writer
        .expect("started")
        .join()
        .expect("join")
        .expect("the writer proceeds once the lease is released");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 0);
}

#[test]
fn the_guard_turns_vanished_pages_into_zeros_and_a_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let len = 64 * 1024;
    let (path, _) = file_of(dir.path(), "f", len);
    let file = File::open(&path).expect("open");
    assert!(guard::install());
    // SAFETY: the test truncates the file on purpose; the guard is what is under test.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(&file) }.expect("map");
    let registered = guard::Registered::new(map.as_ptr() as usize, map.len()).expect("slot");
    assert_eq!(map[len - 1], ((len - 1) * 13 % 251) as u8);
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(0))
        .expect("truncate");
    // SAFETY: reading a byte of the live map; volatile so the read really happens after the
    // truncation.
    let last = unsafe { std::ptr::read_volatile(map.as_ptr().add(len - 1)) };
    assert_eq!(last, 0);
    assert!(registered.faulted());
}
