use super::*;
use crate::meta::Version;

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
        lineage: Vec::new(),
        mode: Some(0o644),
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
            used: Vec::new(),
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

// ---- lineage ----

mod lineage {
    use super::*;
    use crate::lineage::{Graph, NewEdge, NodeKind, NodeRef, Relation};
    use serde_json::{json, Map, Value};

    fn node(text: &str) -> NodeRef {
        NodeRef::parse(text).expect("node ref")
    }

    fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn edge(to: &str, relation: Relation, p: Value) -> NewEdge {
        NewEdge {
            to: node(to),
            relation,
            params: params(p),
        }
    }

    fn dataset(store: &SqliteMetaStore, name: &str, version: &str, lineage: Vec<NewEdge>) {
        let mut d = new(name, version);
        d.kind = Kind::Dataset;
        d.lineage = lineage;
        store.insert_version(&d).expect("dataset");
    }

    fn model(store: &SqliteMetaStore, name: &str, version: &str, lineage: Vec<NewEdge>) {
        let mut m = new(name, version);
        m.lineage = lineage;
        store.insert_version(&m).expect("model");
    }

    fn graph(store: &SqliteMetaStore) -> Graph {
        Graph::from_rows(store.lineage_rows().expect("rows")).expect("graph")
    }

    #[test]
    fn registration_records_typed_edges_with_parameters() {
        let (_dir, store) = store();
        dataset(&store, "raw", "1.0.0", vec![]);
        dataset(
            &store,
            "clean",
            "1.0.0",
            vec![edge(
                "dataset/raw:1.0.0",
                Relation::DerivedFrom,
                json!({"transformation": "dedup"}),
            )],
        );
        model(
            &store,
            "base",
            "1.0.0",
            vec![edge("dataset/clean:1.0.0", Relation::TrainedOn, json!({}))],
        );
        model(
            &store,
            "base-int8",
            "1.0.0",
            vec![edge(
                "model/base:1.0.0",
                Relation::Quantized,
                json!({"method": "int8"}),
            )],
        );
        let rows = store.lineage_rows().expect("rows");
        assert_eq!(rows.edges.len(), 3);
        let quantized = rows
            .edges
            .iter()
            .find(|e| e.relation == Relation::Quantized)
            .expect("quantized edge");
        assert_eq!(quantized.params, r#"{"method":"int8"}"#);
        // Wrong endpoints and bad parameters are refused, and nothing is registered.
        let mut bad = new("x", "1.0.0");
        bad.lineage = vec![edge("model/base:1.0.0", Relation::TrainedOn, json!({}))];
        assert!(matches!(
            store.insert_version(&bad),
            Err(CoreError::InvalidInput { .. })
        ));
        bad.lineage = vec![edge(
            "model/base:1.0.0",
            Relation::Quantized,
            json!({"method": "int3"}),
        )];
        assert!(store.insert_version(&bad).is_err());
        assert!(store.resolve(Kind::Model, &reference("x:1.0.0")).is_err());
    }

    #[test]
    fn a_run_brings_its_recipe_and_datasets() {
        let (_dir, store) = store();
        dataset(&store, "imdb", "1.0.0", vec![]);
        recipe(&store);
        let run = store
            .create_run(&NewRun {
                id: "ab".repeat(16),
                recipe: Some(reference("train:1.0.0")),
                params: "{}".into(),
                environment: "{}".into(),
                actor: "u".into(),
                used: vec![(reference("imdb:1.0.0"), Some("train".into()))],
            })
            .expect("run");
        let mut m = new("bert", "1.0.0");
        m.run_id = Some(run.id.clone());
        store.insert_version(&m).expect("model");
        let g = graph(&store);
        let bert = store.find_node(&node("model/bert:1.0.0")).expect("bert");
        let start = g.index_of(bert.id).expect("in graph");
        let up = g.walk(
            start,
            &crate::lineage::Walk::new(crate::lineage::Direction::Up),
        );
        let mut labels: Vec<String> = up
            .nodes
            .iter()
            .map(|&n| g.record(n).typed_label())
            .collect();
        labels.sort();
        assert_eq!(
            labels,
            vec![
                "dataset/imdb:1.0.0".to_string(),
                "model/bert:1.0.0".into(),
                "recipe/train:1.0.0".into(),
                format!("run/{}", run.id),
            ]
        );
        let relations: Vec<Relation> = up.edges.iter().map(|&e| g.relation(e)).collect();
        for r in [
            Relation::ProducedBy,
            Relation::TrainedWith,
            Relation::TrainedOn,
            Relation::Used,
            Relation::Executed,
        ] {
            assert!(relations.contains(&r), "{r} missing from {relations:?}");
        }
    }

    #[test]
    fn cycles_are_refused_and_named() {
        let (_dir, store) = store();
        model(&store, "a", "1.0.0", vec![]);
        model(
            &store,
            "b",
            "1.0.0",
            vec![edge("model/a:1.0.0", Relation::FineTuned, json!({}))],
        );
        model(
            &store,
            "c",
            "1.0.0",
            vec![edge(
                "model/b:1.0.0",
                Relation::Distilled,
                json!({"temperature": 2}),
            )],
        );
        let before = store.lineage_token().expect("token");
        let err = store
            .add_edge(
                &node("model/a:1.0.0"),
                &node("model/c:1.0.0"),
                Relation::FineTuned,
                &Map::new(),
                "u",
            )
            .expect_err("cycle");
        match err {
            CoreError::LineageCycle { cycle } => assert_eq!(
                cycle,
                "model/a:1.0.0 → model/c:1.0.0 → model/b:1.0.0 → model/a:1.0.0"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            store.add_edge(
                &node("model/a:1.0.0"),
                &node("model/a:1.0.0"),
                Relation::Merged,
                &Map::new(),
                "u"
            ),
            Err(CoreError::LineageCycle { .. })
        ));
        assert_eq!(
            store.lineage_token().expect("token"),
            before,
            "a refused edge changed nothing"
        );
        // A legal explicit edge is recorded once; the token moves.
        assert!(store
            .add_edge(
                &node("model/c:1.0.0"),
                &node("model/a:1.0.0"),
                Relation::Merged,
                &params(json!({"weight": 0.5})),
                "u"
            )
            .expect("edge"));
        assert!(!store
            .add_edge(
                &node("model/c:1.0.0"),
                &node("model/a:1.0.0"),
                Relation::Merged,
                &Map::new(),
                "u"
            )
            .expect("again"));
        assert_ne!(store.lineage_token().expect("token"), before);
    }

    #[test]
    fn deleting_keeps_a_tombstone_and_the_number() {
        let (_dir, store) = store();
        dataset(&store, "raw", "1.0.0", vec![]);
        model(
            &store,
            "m",
            "1.0.0",
            vec![edge(
                "dataset/raw:1.0.0",
                Relation::TrainedOn,
                json!({"split": "train"}),
            )],
        );
        store
            .transition(
                Kind::Model,
                &reference("m:1.0.0"),
                Stage::Staging,
                false,
                "u",
            )
            .expect("staging");
        store
            .transition(
                Kind::Model,
                &reference("m:1.0.0"),
                Stage::Production,
                false,
                "u",
            )
            .expect("production");
        assert!(store
            .delete_version(Kind::Model, &reference("m:1.0.0"), false)
            .is_err());
        store
            .delete_version(Kind::Model, &reference("m:1.0.0"), true)
            .expect("forced delete");
        assert!(store.resolve(Kind::Model, &reference("m:1.0.0")).is_err());
        assert!(store.list_names(Kind::Model).expect("names").is_empty());
        let tomb = store.find_node(&node("model/m:1.0.0")).expect("tombstone");
        assert!(tomb.deleted);
        let g = graph(&store);
        let raw = g
            .index_of(store.find_node(&node("dataset/raw:1.0.0")).expect("raw").id)
            .expect("raw");
        let down = g.walk(
            raw,
            &crate::lineage::Walk::new(crate::lineage::Direction::Down),
        );
        assert_eq!(
            down.nodes.len(),
            2,
            "the tombstone is still downstream of raw"
        );
        assert!(g.is_deleted(down.nodes[1]));
        // The number is never reused, by an exact version or a bump.
        assert!(matches!(
            store.insert_version(&new("m", "1.0.0")),
            Err(CoreError::VersionExists { .. })
        ));
        let mut bumped = new("m", "1.0.0");
        bumped.version = VersionChoice::Bump(crate::meta::Bump::Patch);
        assert_eq!(
            store.insert_version(&bumped).expect("bump").version,
            "1.0.1"
        );
        // No new edge may touch a tombstone.
        assert!(store
            .add_edge(
                &node("model/m:1.0.1"),
                &node("model/m:1.0.0"),
                Relation::FineTuned,
                &Map::new(),
                "u"
            )
            .is_err());
    }

    #[test]
    fn bare_references_resolve_across_kinds_or_are_ambiguous() {
        let (_dir, store) = store();
        model(&store, "x", "1.0.0", vec![]);
        assert_eq!(
            store.find_node(&node("x:1.0.0")).expect("x").kind,
            NodeKind::Model
        );
        dataset(&store, "x", "1.0.0", vec![]);
        let err = store.find_node(&node("x:1.0.0")).expect_err("ambiguous");
        assert!(
            err.to_string().contains("model/x:1.0.0 or dataset/x:1.0.0"),
            "{err}"
        );
        assert!(matches!(
            store.find_node(&node("y:1.0.0")),
            Err(CoreError::NotFound { .. })
        ));
    }
}

/// A registry made before lineage existed gets its nodes and the edges it already knew
/// (which run produced a model, which recipe a run executed) when it is opened.
#[test]
fn migrating_to_lineage_backfills_what_was_known() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("registry.db");
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            .expect("table");
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).expect("old migration");
        }
        let run_id = "cd".repeat(16);
        conn.execute_batch(&format!(
            "INSERT INTO schema_version VALUES (2);
             INSERT INTO artifacts (id, kind, name) VALUES (1, 'recipe', 'r'), (2, 'model', 'm');
             INSERT INTO versions (id, artifact_id, version, version_key, prerelease, digest,
                 layout, size, file_count, created_by)
                 VALUES (1, 1, '1.0.0', '1.0.0', 0, '{d}', 'file', 1, 1, 'u'),
                        (2, 2, '1.0.0', '1.0.0', 0, '{d}', 'file', 1, 1, 'u');
             INSERT INTO runs (id, recipe_version_id, status, params, environment, created_by)
                 VALUES ('{run_id}', 1, 'completed', '{{}}', '{{}}', 'u');
             UPDATE versions SET run_id = '{run_id}' WHERE id = 2;",
            d = "0".repeat(64)
        ))
        .expect("old data");
    }
    let store = SqliteMetaStore::open(&path).expect("migrate");
    let rows = store.lineage_rows().expect("rows");
    assert_eq!(rows.nodes.len(), 3, "two versions and a run");
    let relations: Vec<_> = rows.edges.iter().map(|e| e.relation).collect();
    assert_eq!(
        relations,
        vec![
            crate::lineage::Relation::ProducedBy,
            crate::lineage::Relation::Executed
        ]
    );
    // And the registry keeps working: a bump after the migrated version.
    let mut next = new("m", "1.0.0");
    next.version = VersionChoice::Bump(crate::meta::Bump::Minor);
    assert_eq!(store.insert_version(&next).expect("bump").version, "1.1.0");
}
