use super::*;
use crate::store::LocalStore;
use std::os::unix::fs::symlink;

fn setup() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path().join("objects")).expect("store");
    (dir, store)
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, data).expect("write");
}

fn model_folder(root: &Path) {
    write(&root.join("config.json"), b"{\"hidden\": 768}");
    write(&root.join("tokenizer/vocab.txt"), b"a\nb\nc\n");
    write(
        &root.join("model-00001-of-00002.safetensors"),
        &vec![7u8; 3 << 20],
    );
    write(
        &root.join("model-00002-of-00002.safetensors"),
        &vec![7u8; 3 << 20],
    );
    write(&root.join("run.sh"), b"#!/bin/sh\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir_all(root.join("empty/inner")).expect("empty");
    symlink("config.json", root.join("config-link.json")).expect("symlink");
}

fn tree_snapshot(root: &Path) -> Vec<(String, Vec<u8>, bool)> {
    let mut out = Vec::new();
    fn visit(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>, bool)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).expect("ls").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("rel")
                .to_string_lossy()
                .to_string();
            let meta = fs::metadata(&p).expect("meta");
            if meta.is_dir() {
                out.push((format!("{rel}/"), Vec::new(), false));
                visit(root, &p, out);
            } else {
                out.push((
                    rel,
                    fs::read(&p).expect("read"),
                    meta.permissions().mode() & 0o100 != 0,
                ));
            }
        }
    }
    visit(root, root, &mut out);
    out
}

#[test]
fn a_directory_round_trips_exactly_and_shares_identical_files() {
    let (dir, store) = setup();
    let src = dir.path().join("model");
    model_folder(&src);
    let ingested = ingest_dir(&store, &src, &Progress::new()).expect("ingest");
    assert_eq!(ingested.file_count, 6);
    // Two identical shards and the symlinked config are stored once: 4 distinct files + manifest.
    assert_eq!(ingested.objects.len(), 5);
    let manifest = load_manifest(&store, &ingested.manifest).expect("manifest");
    assert_eq!(manifest.empty_directories, vec!["empty/inner".to_string()]);
    let dest = dir.path().join("restored/model");
    export_tree(&store, &manifest, &dest, false, &Progress::new()).expect("export");
    let mut expected = tree_snapshot(&src);
    // The link is restored as the file it points to.
    for entry in &mut expected {
        if entry.0 == "config-link.json" {
            entry.1 = b"{\"hidden\": 768}".to_vec();
        }
    }
    assert_eq!(tree_snapshot(&dest), expected);
    assert!(matches!(
        export_tree(&store, &manifest, &dest, false, &Progress::new()),
        Err(CoreError::AlreadyExists { .. })
    ));
    export_tree(&store, &manifest, &dest, true, &Progress::new()).expect("overwrite");
    assert_eq!(tree_snapshot(&dest), expected);
    // Same directory, same manifest digest.
    assert_eq!(
        ingest_dir(&store, &src, &Progress::new())
            .expect("again")
            .manifest,
        ingested.manifest
    );
}

#[test]
fn links_outside_and_special_files_are_refused() {
    let (dir, store) = setup();
    let outside = dir.path().join("secret.txt");
    write(&outside, b"secret");
    let src = dir.path().join("data");
    write(&src.join("a.txt"), b"a");
    symlink(&outside, src.join("leak")).expect("symlink");
    let err = ingest_dir(&store, &src, &Progress::new())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("outside the directory"), "{err}");
    fs::remove_file(src.join("leak")).expect("rm");
    symlink("loop", src.join("loop")).expect("self loop");
    assert!(ingest_dir(&store, &src, &Progress::new()).is_err());
    fs::remove_file(src.join("loop")).expect("rm");
    let fifo = std::ffi::CString::new(src.join("fifo").as_os_str().as_encoded_bytes()).expect("c");
    // SAFETY: `fifo` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let err = ingest_dir(&store, &src, &Progress::new())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("FIFO"), "{err}");
}

#[test]
fn hostile_manifests_are_refused() {
    let (dir, store) = setup();
    let digest = crate::hash::hash_slice(b"x").to_hex();
    for path in ["../escape", "/etc/passwd", "a/../../b", "", "a//b", "a/./b"] {
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            entries: vec![Entry {
                path: path.into(),
                digest: digest.clone(),
                size: 1,
                mode: 0o644,
            }],
            empty_directories: vec![],
        };
        let bytes = serde_json::to_vec(&manifest).expect("json");
        let stored = store.put_bytes(&bytes).expect("put");
        assert!(
            matches!(
                load_manifest(&store, &stored.digest),
                Err(CoreError::Corrupt { .. })
            ),
            "{path:?} accepted"
        );
    }
    let junk = store.put_bytes(b"not json").expect("put");
    assert!(matches!(
        load_manifest(&store, &junk.digest),
        Err(CoreError::Corrupt { .. })
    ));
    drop(dir);
}
