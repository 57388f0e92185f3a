use super::*;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, data).expect("write source");
    path
}

fn fresh() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path().join("objects")).expect("open");
    (dir, store)
}

fn tmp_is_empty(store: &LocalStore) -> bool {
    fs::read_dir(store.root().join(TMP_DIR))
        .expect("tmp dir")
        .next()
        .is_none()
}

#[test]
fn round_trip_across_the_small_and_large_paths() {
    let (dir, store) = fresh();
    let small = SMALL_OBJECT_MAX as usize;
    for len in [0, 1, 4096, small - 1, small, small + 1, 5 << 20] {
        let data = pattern(len, 7);
        let src = write(dir.path(), &format!("src{len}"), &data);
        let out = store.put_file(&src, &Progress::new()).expect("put");
        assert_eq!(out.digest, hash::hash_slice(&data));
        assert_eq!(out.size, len as u64);
        assert!(out.written);
        let object = store.object_path(&out.digest);
        assert_eq!(
            fs::metadata(&object).expect("object").permissions().mode() & 0o777,
            0o444
        );
        let dest = dir.path().join(format!("out/{len}"));
        assert_eq!(
            store
                .export(
                    &out.digest,
                    &dest,
                    ExportOptions::default(),
                    &Progress::new()
                )
                .expect("export"),
            len as u64
        );
        assert_eq!(fs::read(&dest).expect("read back"), data);
    }
    assert!(tmp_is_empty(&store));
}

#[test]
fn same_bytes_twice_write_once() {
    let (dir, store) = fresh();
    for len in [100, 3 << 20] {
        let data = pattern(len, 1);
        let a = write(dir.path(), "a", &data);
        let b = write(dir.path(), "b", &data);
        let first = store.put_file(&a, &Progress::new()).expect("first");
        let second = store.put_file(&b, &Progress::new()).expect("second");
        assert!(first.written);
        assert!(!second.written, "len {len}");
        assert_eq!(first.digest, second.digest);
    }
    assert_eq!(store.list().expect("list").len(), 2);
    assert!(tmp_is_empty(&store));
}

#[test]
fn same_size_different_bytes_are_both_stored() {
    // The second ingest takes the size-marker path (hash first, then copy).
    let (dir, store) = fresh();
    let a = write(dir.path(), "a", &pattern(2 << 20, 1));
    let b = write(dir.path(), "b", &pattern(2 << 20, 2));
    let first = store.put_file(&a, &Progress::new()).expect("a");
    let second = store.put_file(&b, &Progress::new()).expect("b");
    assert!(first.written && second.written);
    assert_ne!(first.digest, second.digest);
    assert!(store.verify_all(&Progress::new()).expect("verify").is_ok());
}

#[test]
fn concurrent_ingest_of_the_same_bytes_leaves_one_object() {
    let (dir, store) = fresh();
    let data = pattern(3 << 20, 9);
    let sources: Vec<PathBuf> = (0..6)
        .map(|i| write(dir.path(), &format!("s{i}"), &data))
        .collect();
    let outcomes: Vec<PutOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| s.spawn(|| store.put_file(src, &Progress::new())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("put"))
            .collect()
    });
    assert!(outcomes.iter().all(|o| o.digest == outcomes[0].digest));
    assert_eq!(store.list().expect("list").len(), 1);
    assert!(store.verify_all(&Progress::new()).expect("verify").is_ok());
    assert!(tmp_is_empty(&store));
}

fn corrupt(path: &Path, f: impl FnOnce(&Path)) {
    fs::set_permissions(path, Permissions::from_mode(0o644)).expect("chmod");
    f(path);
}

#[test]
fn verify_and_export_catch_every_kind_of_damage() {
    let (dir, store) = fresh();
    let flipped = store
        .put_file(&write(dir.path(), "a", &pattern(5000, 1)), &Progress::new())
        .expect("a");
    let truncated = store
        .put_file(&write(dir.path(), "b", &pattern(5000, 2)), &Progress::new())
        .expect("b");
    let deleted = store
        .put_file(&write(dir.path(), "c", &pattern(5000, 3)), &Progress::new())
        .expect("c");
    let intact = store
        .put_file(&write(dir.path(), "d", &pattern(5000, 4)), &Progress::new())
        .expect("d");

    corrupt(&store.object_path(&flipped.digest), |p| {
        let mut bytes = fs::read(p).expect("read");
        bytes[1234] ^= 0x01;
        fs::write(p, bytes).expect("write");
    });
    corrupt(&store.object_path(&truncated.digest), |p| {
        let bytes = fs::read(p).expect("read");
        fs::write(p, &bytes[..4000]).expect("write");
    });
    fs::remove_file(store.object_path(&deleted.digest)).expect("delete");
    fs::write(store.root().join("ab").join("not-an-object"), b"x").ok();
    fs::create_dir_all(store.root().join("ab")).expect("shard");
    fs::write(store.root().join("ab").join("not-an-object"), b"x").expect("stray");

    let expected: Vec<Expected> = [flipped, truncated, deleted, intact]
        .iter()
        .map(|o| Expected {
            digest: o.digest,
            size: Some(o.size),
        })
        .collect();
    let report = store.verify(&expected, &Progress::new()).expect("verify");
    assert_eq!(report.checked, 4);
    let kinds: Vec<(ProblemKind, Option<Digest>)> =
        report.problems.iter().map(|p| (p.kind, p.digest)).collect();
    assert_eq!(
        kinds,
        vec![
            (ProblemKind::Corrupt, Some(flipped.digest)),
            (ProblemKind::Truncated, Some(truncated.digest)),
            (ProblemKind::Missing, Some(deleted.digest)),
        ]
    );

    let all = store.verify_all(&Progress::new()).expect("verify all");
    let kinds: Vec<ProblemKind> = all.problems.iter().map(|p| p.kind).collect();
    // Without recorded sizes a truncated object is simply corrupt; a deleted one is invisible.
    assert_eq!(
        kinds,
        vec![
            ProblemKind::Corrupt,
            ProblemKind::Corrupt,
            ProblemKind::Stray
        ]
    );
    assert_eq!(all.checked, 3);

    let out = dir.path().join("out");
    match store.export(
        &flipped.digest,
        &out,
        ExportOptions::default(),
        &Progress::new(),
    ) {
        Err(CoreError::Integrity {
            expected,
            actual,
            path,
        }) => {
            assert_eq!(expected, flipped.digest);
            assert_ne!(actual, flipped.digest);
            assert_eq!(path, store.object_path(&flipped.digest));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!out.exists());
    assert!(matches!(
        store.export(
            &deleted.digest,
            &out,
            ExportOptions::default(),
            &Progress::new()
        ),
        Err(CoreError::ObjectNotFound { .. })
    ));
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "partial output left behind");
}

#[test]
fn ingesting_again_heals_a_truncated_object() {
    let (dir, store) = fresh();
    let data = pattern(4 << 20, 5);
    let src = write(dir.path(), "a", &data);
    let out = store.put_file(&src, &Progress::new()).expect("put");
    corrupt(&store.object_path(&out.digest), |p| {
        fs::write(p, &data[..100]).expect("truncate");
    });
    let again = store.put_file(&src, &Progress::new()).expect("again");
    assert!(again.written);
    assert!(store.verify_all(&Progress::new()).expect("verify").is_ok());
}

#[test]
fn export_refuses_to_clobber_or_write_onto_a_directory() {
    let (dir, store) = fresh();
    let out = store
        .put_file(&write(dir.path(), "a", b"hello"), &Progress::new())
        .expect("put");
    let existing = write(dir.path(), "existing", b"keep me");
    assert!(matches!(
        store.export(
            &out.digest,
            &existing,
            ExportOptions::default(),
            &Progress::new()
        ),
        Err(CoreError::AlreadyExists { .. })
    ));
    assert_eq!(fs::read(&existing).expect("read"), b"keep me");
    store
        .export(
            &out.digest,
            &existing,
            ExportOptions {
                overwrite: true,
                mode: None,
            },
            &Progress::new(),
        )
        .expect("overwrite");
    assert_eq!(fs::read(&existing).expect("read"), b"hello");
    assert!(matches!(
        store.export(
            &out.digest,
            dir.path(),
            ExportOptions {
                overwrite: true,
                mode: None
            },
            &Progress::new()
        ),
        Err(CoreError::IsADirectory { .. })
    ));
}

#[test]
fn non_regular_sources_are_refused_and_nothing_is_stored() {
    let (dir, store) = fresh();
    assert!(matches!(
        store.put_file(dir.path(), &Progress::new()),
        Err(CoreError::IsADirectory { .. })
    ));
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("cstring");
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    assert!(matches!(
        store.put_file(&fifo, &Progress::new()),
        Err(CoreError::NotARegularFile { .. })
    ));
    match store.put_file(&dir.path().join("missing"), &Progress::new()) {
        Err(CoreError::Io { source, .. }) => assert_eq!(source.kind(), io::ErrorKind::NotFound),
        other => panic!("unexpected {other:?}"),
    }
    assert!(store.list().expect("list").is_empty());
}

#[test]
fn a_source_that_changed_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "a", b"0123456789");
    let file = File::open(&path).expect("open");
    let before = file.metadata().expect("meta");
    assert!(ensure_unchanged(&file, &path, &before, 10).is_ok());
    assert!(matches!(
        ensure_unchanged(&file, &path, &before, 9),
        Err(CoreError::SourceChanged { .. })
    ));
    fs::write(&path, b"0123456789abc").expect("grow");
    assert!(matches!(
        ensure_unchanged(&file, &path, &before, 10),
        Err(CoreError::SourceChanged { .. })
    ));
}

#[test]
fn cancelled_ingest_leaves_no_temp_file() {
    let (dir, store) = fresh();
    let src = write(dir.path(), "a", &pattern(3 << 20, 3));
    let progress = Progress::new();
    progress.cancel();
    assert!(matches!(
        store.put_file(&src, &progress),
        Err(CoreError::Cancelled)
    ));
    assert!(tmp_is_empty(&store));
    assert!(store.list().expect("list").is_empty());
}

fn flip_a_byte(path: &Path) {
    corrupt(path, |p| {
        let mut bytes = fs::read(p).expect("read");
        bytes[10] ^= 0x80;
        fs::write(p, bytes).expect("write");
    });
}

#[test]
fn a_damaged_small_object_is_repaired_by_ingesting_it_again() {
    let (dir, store) = fresh();
    let src = write(dir.path(), "a", &pattern(5000, 1));
    let out = store.put_file(&src, &Progress::new()).expect("put");
    flip_a_byte(&store.object_path(&out.digest));
    // No verify needed: small objects are compared byte for byte before being trusted.
    assert!(
        store
            .put_file(&src, &Progress::new())
            .expect("again")
            .written
    );
    assert!(store.verify_all(&Progress::new()).expect("verify").is_ok());
}

#[test]
fn a_damaged_large_object_found_by_verify_or_export_is_repaired_by_ingesting_it_again() {
    let (dir, store) = fresh();
    let src = write(dir.path(), "a", &pattern(3 << 20, 2));
    let out = store.put_file(&src, &Progress::new()).expect("put");
    for detect in ["verify", "export"] {
        flip_a_byte(&store.object_path(&out.digest));
        if detect == "verify" {
            let report = store.verify_all(&Progress::new()).expect("verify");
            assert_eq!(report.problems[0].kind, ProblemKind::Corrupt);
        } else {
            let dest = dir.path().join("out");
            assert!(store
                .export(
                    &out.digest,
                    &dest,
                    ExportOptions {
                        overwrite: true,
                        mode: None
                    },
                    &Progress::new()
                )
                .is_err());
        }
        let again = store.put_file(&src, &Progress::new()).expect("again");
        assert!(again.written, "{detect}: damaged object trusted as present");
        assert!(store.verify_all(&Progress::new()).expect("verify").is_ok());
        // Once repaired, the object is trusted again: no rewrite.
        assert!(
            !store
                .put_file(&src, &Progress::new())
                .expect("third")
                .written
        );
    }
}

#[test]
fn verify_reports_unreadable_objects_and_keeps_going() {
    let (dir, store) = fresh();
    let a = store
        .put_file(&write(dir.path(), "a", b"aaaa"), &Progress::new())
        .expect("a");
    let b = store
        .put_file(&write(dir.path(), "b", b"bbbb"), &Progress::new())
        .expect("b");
    // Replace an object by a directory: opening it for reading works, reading fails.
    let path = store.object_path(&a.digest);
    fs::remove_file(&path).expect("rm");
    fs::create_dir(&path).expect("mkdir");
    let report = store
        .verify(
            &[
                Expected {
                    digest: a.digest,
                    size: None,
                },
                Expected {
                    digest: b.digest,
                    size: None,
                },
            ],
            &Progress::new(),
        )
        .expect("verify");
    assert_eq!(report.checked, 2);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].digest, Some(a.digest));
}

#[test]
fn verify_progress_counts_each_byte_once() {
    let (dir, store) = fresh();
    store
        .put_file(
            &write(dir.path(), "a", &pattern(3 << 20, 4)),
            &Progress::new(),
        )
        .expect("a");
    store
        .put_file(&write(dir.path(), "b", &pattern(1000, 5)), &Progress::new())
        .expect("b");
    let progress = Progress::new();
    store.verify_all(&progress).expect("verify");
    assert_eq!(progress.total(), (3 << 20) + 1000);
    assert_eq!(progress.done(), progress.total());
}
