use super::*;

fn store() -> (tempfile::TempDir, SqliteMetaStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteMetaStore::open(dir.path().join("registry.db")).expect("open");
    (dir, store)
}

fn digest(n: u8) -> Digest {
    crate::hash::hash_slice(&[n])
}

fn new(name: &str, version: &str) -> NewVersion {
    NewVersion {
        kind: Kind::Model,
        name: name.into(),
        version: VersionChoice::Exact(Version::parse(version).expect("version")),
        digest: digest(1),
        layout: Layout::File,
        size: 10,
        file_count: 1,
        description: None,
        card: None,
        tags: vec![("team".into(), "nlp".into())],
        actor: "tester".into(),
        objects: vec![(digest(1), 10)],
        run_id: None,
    }
}

fn reference(text: &str) -> Reference {
    Reference::parse(text, None).expect("reference")
}

#[test]
fn register_resolve_and_list_in_precedence_order() {
    let (_dir, store) = store();
    for v in ["1.10.0", "1.2.0", "1.0.0-alpha", "1.0.0", "2.0.0-rc.1"] {
        store.insert_version(&new("bert", v)).expect("insert");
    }
    let listed: Vec<String> = store
        .list_versions(Kind::Model, Some("bert"), &ListFilter::default())
        .expect("list")
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(
        listed,
        ["1.0.0-alpha", "1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]
    );
    assert_eq!(
        store
            .resolve(Kind::Model, &reference("bert:latest"))
            .expect("latest")
            .version,
        "1.10.0"
    );
    let names = store.list_names(Kind::Model).expect("names");
    assert_eq!(names[0].versions, 5);
    assert_eq!(names[0].latest.as_deref(), Some("1.10.0"));
    let record = store
        .resolve(Kind::Model, &reference("bert:1.2.0"))
        .expect("exact");
    assert_eq!(record.tags, vec![("team".to_string(), "nlp".to_string())]);
    assert_eq!(record.stage, Stage::Development);
}

#[test]
fn duplicates_are_refused_including_equal_precedence() {
    let (_dir, store) = store();
    store
        .insert_version(&new("bert", "1.0.0+build.1"))
        .expect("first");
    for dup in ["1.0.0+build.1", "1.0.0", "1.0.0+other"] {
        assert!(matches!(
            store.insert_version(&new("bert", dup)),
            Err(CoreError::VersionExists { .. })
        ));
    }
    // Another kind may reuse the name.
    let mut dataset = new("bert", "1.0.0");
    dataset.kind = Kind::Dataset;
    store.insert_version(&dataset).expect("dataset");
}

#[test]
fn bump_picks_the_next_version() {
    let (_dir, store) = store();
    let mut first = new("m", "0.0.0");
    first.version = VersionChoice::Bump(super::super::Bump::Minor);
    assert_eq!(
        store.insert_version(&first).expect("first").version,
        "0.1.0"
    );
    store.insert_version(&new("m", "1.4.2")).expect("exact");
    let mut next = new("m", "0.0.0");
    next.version = VersionChoice::Bump(super::super::Bump::Patch);
    assert_eq!(store.insert_version(&next).expect("bump").version, "1.4.3");
}

#[test]
fn stage_rules_history_and_archive_existing() {
    let (_dir, store) = store();
    store.insert_version(&new("m", "1.0.0")).expect("1");
    store.insert_version(&new("m", "2.0.0")).expect("2");
    let refused = store.transition(
        Kind::Model,
        &reference("m:1.0.0"),
        Stage::Production,
        false,
        "u",
    );
    assert!(matches!(refused, Err(CoreError::InvalidTransition { .. })));
    for v in ["m:1.0.0", "m:2.0.0"] {
        store
            .transition(Kind::Model, &reference(v), Stage::Staging, false, "u")
            .expect("staging");
    }
    store
        .transition(
            Kind::Model,
            &reference("m:1.0.0"),
            Stage::Production,
            false,
            "u",
        )
        .expect("prod");
    store
        .transition(
            Kind::Model,
            &reference("m:2.0.0"),
            Stage::Production,
            true,
            "u",
        )
        .expect("prod 2");
    assert_eq!(
        store
            .resolve(Kind::Model, &reference("m:1.0.0"))
            .expect("1")
            .stage,
        Stage::Archived
    );
    assert_eq!(
        store
            .resolve(Kind::Model, &reference("m@production"))
            .expect("prod")
            .version,
        "2.0.0"
    );
    let id = store
        .resolve(Kind::Model, &reference("m:1.0.0"))
        .expect("1")
        .id;
    let history: Vec<(Option<Stage>, Stage)> = store
        .history(id)
        .expect("history")
        .into_iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        history,
        vec![
            (None, Stage::Development),
            (Some(Stage::Development), Stage::Staging),
            (Some(Stage::Staging), Stage::Production),
            (Some(Stage::Production), Stage::Archived),
        ]
    );
}

#[test]
fn aliases_move_and_are_unique_per_name() {
    let (_dir, store) = store();
    store.insert_version(&new("m", "1.0.0")).expect("1");
    store.insert_version(&new("m", "2.0.0")).expect("2");
    store
        .set_alias(Kind::Model, &reference("m:1.0.0"), "champion")
        .expect("alias");
    assert_eq!(
        store
            .resolve(Kind::Model, &reference("m@champion"))
            .expect("a")
            .version,
        "1.0.0"
    );
    let moved = store
        .set_alias(Kind::Model, &reference("m:2.0.0"), "champion")
        .expect("move");
    assert_eq!(moved.aliases, vec!["champion".to_string()]);
    assert!(store
        .resolve(Kind::Model, &reference("m:1.0.0"))
        .expect("1")
        .aliases
        .is_empty());
    store
        .delete_alias(Kind::Model, "m", "champion")
        .expect("delete");
    assert!(matches!(
        store.resolve(Kind::Model, &reference("m@champion")),
        Err(CoreError::NotFound { .. })
    ));
    assert!(store
        .set_alias(Kind::Model, &reference("m:1.0.0"), "production")
        .is_err());
}

#[test]
fn tags_filter_listing() {
    let (_dir, store) = store();
    store.insert_version(&new("m", "1.0.0")).expect("1");
    store.insert_version(&new("m", "2.0.0")).expect("2");
    store
        .set_tags(
            Kind::Model,
            &reference("m:2.0.0"),
            &[("team".into(), "vision".into())],
        )
        .expect("tag");
    let filter = ListFilter {
        stage: None,
        tags: vec![("team".into(), "vision".into())],
    };
    let found = store
        .list_versions(Kind::Model, None, &filter)
        .expect("list");
    assert_eq!(
        found.iter().map(|r| r.version.as_str()).collect::<Vec<_>>(),
        ["2.0.0"]
    );
}

#[test]
fn stats_count_objects_once() {
    let (_dir, store) = store();
    store.insert_version(&new("a", "1.0.0")).expect("a");
    store.insert_version(&new("b", "1.0.0")).expect("b");
    let stats = store.stats().expect("stats");
    assert_eq!((stats.models, stats.versions, stats.objects), (2, 2, 1));
    assert_eq!((stats.logical_bytes, stats.stored_bytes), (20, 10));
    let uses = store.object_uses(None).expect("uses");
    assert_eq!(
        uses[0].users,
        vec!["a:1.0.0".to_string(), "b:1.0.0".to_string()]
    );
}

#[test]
fn reopening_keeps_the_schema_and_data() {
    let (dir, store) = store();
    store.insert_version(&new("a", "1.0.0")).expect("a");
    drop(store);
    let again = SqliteMetaStore::open(dir.path().join("registry.db")).expect("reopen");
    assert_eq!(again.stats().expect("stats").versions, 1);
}

#[test]
fn concurrent_writers_wait_instead_of_failing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("registry.db");
    SqliteMetaStore::open(&path).expect("create");
    std::thread::scope(|s| {
        for t in 0..4 {
            let path = path.clone();
            s.spawn(move || {
                let store = SqliteMetaStore::open(&path).expect("open");
                for i in 0..25 {
                    store
                        .insert_version(&new(&format!("m{t}"), &format!("1.0.{i}")))
                        .expect("insert");
                    // Every writer also races on one shared version.
                    match store.insert_version(&new("shared", &format!("0.0.{i}"))) {
                        Ok(_) | Err(CoreError::VersionExists { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let store = SqliteMetaStore::open(&path).expect("open");
    assert_eq!(store.stats().expect("stats").versions, 4 * 25 + 25);
}

#[test]
fn a_stage_reference_means_the_version_that_entered_it_last() {
    let (_dir, store) = store();
    for v in ["1.9.0", "2.0.0"] {
        store.insert_version(&new("m", v)).expect("insert");
        store
            .transition(
                Kind::Model,
                &reference(&format!("m:{v}")),
                Stage::Staging,
                false,
                "u",
            )
            .expect("staging");
    }
    store
        .transition(
            Kind::Model,
            &reference("m:2.0.0"),
            Stage::Production,
            false,
            "u",
        )
        .expect("2");
    store
        .transition(
            Kind::Model,
            &reference("m:1.9.0"),
            Stage::Production,
            false,
            "u",
        )
        .expect("1.9");
    // A rollback to 1.9.0 takes effect although 2.0.0 has higher precedence.
    assert_eq!(
        store
            .resolve(Kind::Model, &reference("m@production"))
            .expect("prod")
            .version,
        "1.9.0"
    );
    // Archiving the others works even for a version already in production.
    store
        .transition(
            Kind::Model,
            &reference("m:1.9.0"),
            Stage::Production,
            true,
            "u",
        )
        .expect("again");
    assert_eq!(
        store
            .resolve(Kind::Model, &reference("m:2.0.0"))
            .expect("2")
            .stage,
        Stage::Archived
    );
}

fn recipe(store: &SqliteMetaStore) {
    let mut r = new("train", "1.0.0");
    r.kind = Kind::Recipe;
    store.insert_version(&r).expect("recipe");
}

fn new_run(store: &SqliteMetaStore, n: u8) -> RunRecord {
    store
        .create_run(&NewRun {
            id: format!("{n:02x}{:030x}", 7),
            recipe: Some(reference("train:1.0.0")),
            params: "{}".into(),
            environment: "{}".into(),
            actor: "u".into(),
        })
        .expect("run")
}

fn p(name: &str, step: i64, value: f64) -> MetricPoint {
    MetricPoint {
        name: name.into(),
        step,
        value,
        at: 0.0,
    }
}

#[test]
fn runs_log_finish_and_best() {
    let (_dir, store) = store();
    recipe(&store);
    let a = new_run(&store, 1);
    let b = new_run(&store, 2);
    assert_eq!(a.recipe.as_deref(), Some("train:1.0.0"));
    store
        .log_metrics(
            &a.id,
            &[p("loss", 0, 1.0), p("loss", 10, 0.2), p("acc", 10, 0.9)],
        )
        .expect("a");
    store
        .log_metrics(&b.id, &[p("loss", 0, 0.1), p("loss", 10, 0.3)])
        .expect("b");
    // Best by the value at the highest step: a (0.2) beats b (0.3) although b logged 0.1.
    for r in [&a, &b] {
        store
            .finish_run(&r.id, RunStatus::Completed, None)
            .expect("finish");
    }
    let (best, point) = store
        .best_run(&reference("train:1.0.0"), "loss", true)
        .expect("best")
        .expect("some");
    assert_eq!(
        (best.id.as_str(), point.step, point.value),
        (a.id.as_str(), 10, 0.2)
    );
    let (best, _) = store
        .best_run(&reference("train:1.0.0"), "loss", false)
        .expect("best")
        .expect("some");
    assert_eq!(best.id, b.id);
    assert!(matches!(
        store.log_metrics(&a.id, &[p("loss", 11, 0.1)]),
        Err(CoreError::InvalidInput { .. })
    ));
    let finals = store
        .final_metrics(std::slice::from_ref(&a.id))
        .expect("finals");
    assert_eq!(finals.len(), 2);
    assert_eq!(store.resolve_run(&a.id[..6]).expect("prefix").id, a.id);
    assert!(store.resolve_run("zz").is_err());
    assert!(store.log_metrics(&b.id, &[p("bad name", 0, 1.0)]).is_err());
    assert!(store.log_metrics(&b.id, &[p("loss", 0, f64::NAN)]).is_err());
}
