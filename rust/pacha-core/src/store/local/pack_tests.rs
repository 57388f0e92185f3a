//! The pack of small objects, seen through the store's trait.

use super::*;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn fresh() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path().join("objects")).expect("open");
    (dir, store)
}

/// Put `data` (written to a file first) as part of `batch`.
fn put(store: &LocalStore, dir: &Path, batch: &SyncBatch, data: &[u8]) -> PutOutcome {
    let path = dir.join(format!("src-{}", hash::hash_slice(data)));
    fs::write(&path, data).expect("write source");
    let (file, meta) = crate::fsutil::open_regular(&path).expect("open");
    store
        .put_open_file_batched(file, &meta, &path, &Progress::new(), batch)
        .expect("put")
}

fn loose_files(store: &LocalStore) -> usize {
    store.scan().expect("scan").0.len()
}

fn damage_packed_row(store: &LocalStore, digest: &Digest, data: &[u8]) {
    let conn = rusqlite::Connection::open(store.pack.path()).expect("open pack");
    conn.execute(
        "UPDATE objects SET data = ?2 WHERE digest = ?1",
        rusqlite::params![digest.as_bytes().as_slice(), data],
    )
    .expect("update");
}

#[test]
fn a_batch_packs_its_small_objects_and_they_read_back_like_loose_ones() {
    let (dir, store) = fresh();
    let batch = SyncBatch::new();
    let small = pattern(4096, 1);
    let empty: Vec<u8> = Vec::new();
    let largest = pattern(PACK_MAX as usize, 2);
    let loose = pattern(PACK_MAX as usize + 1, 3);
    let outcomes: Vec<PutOutcome> = [&small, &empty, &largest, &loose]
        .iter()
        .map(|data| put(&store, dir.path(), &batch, data))
        .collect();
    // Nothing is stored in the pack before the batch is written.
    assert!(store.pack.get(&outcomes[0].digest).expect("get").is_none());
    store.finish_batch(&batch).expect("finish");
    let mut written = batch.take_written();
    written.sort();
    let mut packed: Vec<Digest> = outcomes[..3].iter().map(|o| o.digest).collect();
    packed.sort();
    assert_eq!(written, packed);
    assert!(outcomes[3].written, "larger objects stay loose files");
    assert_eq!(loose_files(&store), 1);
    for (outcome, data) in outcomes.iter().zip([&small, &empty, &largest, &loose]) {
        assert_eq!(outcome.digest, hash::hash_slice(data));
        assert!(store.contains(&outcome.digest).expect("contains"));
        assert_eq!(
            store.size_of(&outcome.digest).expect("size"),
            Some(data.len() as u64)
        );
        assert_eq!(
            &store.get_bytes(&outcome.digest, 1 << 20).expect("get"),
            data
        );
        let out = dir.path().join(format!("out-{}", outcome.digest));
        assert_eq!(
            store
                .export(
                    &outcome.digest,
                    &out,
                    ExportOptions::default(),
                    &Progress::new()
                )
                .expect("export"),
            data.len() as u64
        );
        assert_eq!(&fs::read(&out).expect("read"), data);
    }
    let listed: Vec<Digest> = store
        .list()
        .expect("list")
        .iter()
        .map(|o| o.digest)
        .collect();
    let mut all: Vec<Digest> = outcomes.iter().map(|o| o.digest).collect();
    all.sort();
    assert_eq!(listed, all);
    assert!(store
        .list()
        .expect("list")
        .iter()
        .all(|o| o.modified.is_some()));
    let report = store.verify_all(&Progress::new()).expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checked, 4);
}

#[test]
fn twins_are_stored_once_and_a_second_batch_reuses_them() {
    let (dir, store) = fresh();
    let data = pattern(1000, 4);
    let batch = SyncBatch::new();
    let first = put(&store, dir.path(), &batch, &data);
    let twin = put(&store, dir.path(), &batch, &data);
    assert_eq!(first.digest, twin.digest);
    store.finish_batch(&batch).expect("finish");
    assert_eq!(batch.take_written(), vec![first.digest]);
    let before = store.list().expect("list")[0].modified;

    std::thread::sleep(std::time::Duration::from_millis(5));
    let again = SyncBatch::new();
    put(&store, dir.path(), &again, &data);
    store.finish_batch(&again).expect("finish");
    assert!(
        again.take_written().is_empty(),
        "already packed: nothing written"
    );
    let after = store.list().expect("list")[0].modified;
    assert!(
        after > before,
        "reuse refreshes the time gc's grace period reads"
    );
}

#[test]
fn a_large_batch_is_written_in_bounded_steps() {
    let (dir, store) = fresh();
    let batch = SyncBatch::new();
    let count = PACK_FLUSH_BYTES / PACK_MAX as usize + 2;
    for seed in 0..count {
        let mut data = pattern(PACK_MAX as usize, 5);
        data[..8].copy_from_slice(&(seed as u64).to_le_bytes());
        put(&store, dir.path(), &batch, &data);
    }
    assert!(
        !batch.take_written().is_empty(),
        "pending objects are written once they reach the flush size"
    );
    store.finish_batch(&batch).expect("finish");
    assert_eq!(store.list().expect("list").len(), count);
}

#[test]
fn an_unfinished_batch_stores_nothing() {
    let (dir, store) = fresh();
    let batch = SyncBatch::new();
    let outcome = put(&store, dir.path(), &batch, &pattern(100, 6));
    drop(batch);
    assert!(!store.contains(&outcome.digest).expect("contains"));
    assert!(store.list().expect("list").is_empty());
}

#[test]
fn damage_to_a_packed_object_is_reported_refused_and_repaired() {
    let (dir, store) = fresh();
    let data = pattern(3000, 7);
    let batch = SyncBatch::new();
    let outcome = put(&store, dir.path(), &batch, &data);
    store.finish_batch(&batch).expect("finish");
    let mut damaged = data.clone();
    damaged[100] ^= 1;
    damage_packed_row(&store, &outcome.digest, &damaged);

    let report = store.verify_all(&Progress::new()).expect("verify");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].kind, ProblemKind::Corrupt);
    assert_eq!(report.problems[0].path, store.pack.path());
    let expected = [Expected {
        digest: outcome.digest,
        size: Some(data.len() as u64 + 1),
    }];
    let report = store.verify(&expected, &Progress::new()).expect("verify");
    assert_eq!(report.problems[0].kind, ProblemKind::Truncated);

    let out = dir.path().join("out");
    assert!(matches!(
        store.export(
            &outcome.digest,
            &out,
            ExportOptions::default(),
            &Progress::new()
        ),
        Err(CoreError::Integrity { .. })
    ));
    assert!(!out.exists(), "no partial output");
    assert!(matches!(
        store.get_bytes(&outcome.digest, 1 << 20),
        Err(CoreError::Integrity { .. })
    ));

    // Ingesting the same bytes again compares them with the damaged row and replaces it.
    let repair = SyncBatch::new();
    put(&store, dir.path(), &repair, &data);
    store.finish_batch(&repair).expect("finish");
    assert_eq!(repair.take_written(), vec![outcome.digest]);
    assert!(store.verify_all(&Progress::new()).expect("verify").is_ok());
}

#[test]
fn a_batch_reuses_a_loose_copy_instead_of_packing_a_second_one() {
    let (dir, store) = fresh();
    let data = pattern(2000, 8);
    let src = dir.path().join("single");
    fs::write(&src, &data).expect("write");
    let single = store.put_file(&src, &Progress::new()).expect("put");
    let batch = SyncBatch::new();
    let outcome = put(&store, dir.path(), &batch, &data);
    store.finish_batch(&batch).expect("finish");
    assert_eq!(outcome.digest, single.digest);
    assert!(
        batch.take_written().is_empty(),
        "a failed batch must not remove the loose copy"
    );
    assert!(store.pack.get(&single.digest).expect("get").is_none());
}

#[test]
fn remove_deletes_packed_and_loose_copies() {
    let (dir, store) = fresh();
    let data = pattern(2000, 8);
    // A loose copy, and a packed one written directly (as a registry from before the loose
    // check could hold).
    let src = dir.path().join("single");
    fs::write(&src, &data).expect("write");
    let single = store.put_file(&src, &Progress::new()).expect("put");
    store
        .pack
        .write(&mut [(single.digest, data.clone())])
        .expect("pack");
    let batch = SyncBatch::new();
    let other = put(&store, dir.path(), &batch, &pattern(10, 9));
    store.finish_batch(&batch).expect("finish");
    assert_eq!(
        store.list().expect("list").len(),
        2,
        "listed once per address"
    );

    let freed = store
        .remove(&[single.digest, single.digest])
        .expect("remove");
    assert_eq!(
        freed,
        2 * data.len() as u64,
        "both copies freed, a repeat is skipped"
    );
    assert!(!store.contains(&single.digest).expect("contains"));
    assert!(store.contains(&other.digest).expect("contains"));
    assert_eq!(store.remove(&[single.digest]).expect("again"), 0);
}

#[test]
fn verify_walks_a_pack_larger_than_one_read() {
    let (dir, store) = fresh();
    let batch = SyncBatch::new();
    let count = 3 * super::super::pack::WALK_ROWS as usize + 7;
    for seed in 0..count {
        let mut data = pattern(64, 1);
        data[..8].copy_from_slice(&(seed as u64).to_le_bytes());
        put(&store, dir.path(), &batch, &data);
    }
    store.finish_batch(&batch).expect("finish");
    let report = store.verify_all(&Progress::new()).expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checked, count as u64);
}

#[test]
fn an_unreadable_pack_does_not_stop_loose_objects() {
    let (dir, store) = fresh();
    let loose = dir.path().join("loose");
    fs::write(&loose, pattern(3000, 11)).expect("write");
    let single = store.put_file(&loose, &Progress::new()).expect("put");
    let batch = SyncBatch::new();
    let packed = put(&store, dir.path(), &batch, &pattern(100, 12));
    store.finish_batch(&batch).expect("finish");
    let pack_path = store.pack.path().to_path_buf();
    drop(store);
    fs::write(&pack_path, vec![0x5a; 64 * 1024]).expect("clobber the pack");

    let store = LocalStore::open(dir.path().join("objects")).expect("open");
    let out = dir.path().join("out");
    store
        .export(
            &single.digest,
            &out,
            ExportOptions::default(),
            &Progress::new(),
        )
        .expect("a loose object still exports");
    assert_eq!(store.size_of(&single.digest).expect("size"), Some(3000));
    assert!(store
        .export(
            &packed.digest,
            &dir.path().join("p"),
            ExportOptions::default(),
            &Progress::new()
        )
        .is_err());
    let report = store
        .verify_all(&Progress::new())
        .expect("verify keeps going");
    assert_eq!(report.checked, 1, "the loose object was checked");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].kind, ProblemKind::Unreadable);
    assert_eq!(report.problems[0].path, pack_path);
}

#[test]
fn a_batch_leaves_the_progress_total_to_its_caller() {
    let (dir, store) = fresh();
    let batch = SyncBatch::new();
    let path = dir.path().join("a");
    fs::write(&path, pattern(500, 10)).expect("write");
    let (file, meta) = crate::fsutil::open_regular(&path).expect("open");
    let progress = Progress::new();
    store
        .put_open_file_batched(file, &meta, &path, &progress, &batch)
        .expect("put");
    assert_eq!(progress.total(), 0);
    assert_eq!(progress.done(), 500);
}
