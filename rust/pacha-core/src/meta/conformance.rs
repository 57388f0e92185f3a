//! The behaviour every metadata backend shares, written once: each test takes a [`Fixture`]
//! (a fresh, empty store of one backend, and a way to open more connections to it) and each
//! backend instantiates the whole list with [`suite!`] and its own fixture constructor.
//! A constructor returns `None` when its backend cannot be tested here (a server that is
//! not configured); the tests then pass without running, as the constructor says.

use std::collections::HashSet;

use super::*;
use crate::meta::Version;
use crate::CoreError;

/// A fresh store of one backend, and what keeps its database alive.
pub(crate) struct Fixture {
    pub(crate) store: Box<dyn MetadataStore>,
    open: Box<dyn Fn() -> Box<dyn MetadataStore> + Send + Sync>,
    /// Dropped last (fields drop in order): the temporary directory, or the database that
    /// is dropped on the server.
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl Fixture {
    pub(crate) fn new(
        store: Box<dyn MetadataStore>,
        open: impl Fn() -> Box<dyn MetadataStore> + Send + Sync + 'static,
        guard: impl std::any::Any + Send + Sync,
    ) -> Self {
        Fixture {
            store,
            open: Box::new(open),
            _guard: Box::new(guard),
        }
    }

    /// Another store (its own connection) on the same database.
    pub(crate) fn open(&self) -> Box<dyn MetadataStore> {
        (self.open)()
    }
}

/// One `#[test]` per conformance test, each calling `$fixture()` for its store.
macro_rules! suite {
    ($fixture:ident) => {
        $crate::meta::conformance::suite!(@top $fixture;
            register_resolve_and_list_in_precedence_order,
            duplicates_are_refused_including_equal_precedence,
            bump_picks_the_next_version,
            stage_rules_history_and_archive_existing,
            aliases_move_and_are_unique_per_name,
            tags_filter_listing,
            stats_count_objects_once,
            reopening_keeps_the_schema_and_data,
            concurrent_writers_wait_instead_of_failing,
            concurrent_bumps_never_share_a_number,
            a_stage_reference_means_the_version_that_entered_it_last,
            runs_log_finish_and_best,
            run_reads_agree,
            deleting_a_version_and_forgetting_its_objects,
            collection_marks_ripen_in_a_later_run_unless_referenced_again,
            nul_characters_are_treated_alike,
            a_registration_returns_the_record_a_read_returns,
        );
        mod lineage {
            use super::$fixture;
            $crate::meta::conformance::suite!(@lineage $fixture;
                registration_records_typed_edges_with_parameters,
                a_run_brings_its_recipe_and_datasets,
                cycles_are_refused_and_named,
                deleting_keeps_a_tombstone_and_the_number,
                bare_references_resolve_across_kinds_or_are_ambiguous,
            );
        }
    };
    (@top $fixture:ident; $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            if let Some(fixture) = $fixture() {
                $crate::meta::conformance::$name(&fixture);
            }
        }
    )*};
    (@lineage $fixture:ident; $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            if let Some(fixture) = $fixture() {
                $crate::meta::conformance::lineage::$name(&fixture);
            }
        }
    )*};
}
pub(crate) use suite;

pub(crate) fn digest(n: u8) -> Digest {
    crate::hash::hash_slice(&[n])
}

pub(crate) fn new(name: &str, version: &str) -> NewVersion {
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

pub(crate) fn reference(text: &str) -> Reference {
    Reference::parse(text, None).expect("reference")
}

pub(crate) fn register_resolve_and_list_in_precedence_order(fixture: &Fixture) {
    let store = &*fixture.store;
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

pub(crate) fn duplicates_are_refused_including_equal_precedence(fixture: &Fixture) {
    let store = &*fixture.store;
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

pub(crate) fn bump_picks_the_next_version(fixture: &Fixture) {
    let store = &*fixture.store;
    let mut first = new("m", "0.0.0");
    first.version = VersionChoice::Bump(crate::meta::Bump::Minor);
    assert_eq!(
        store.insert_version(&first).expect("first").version,
        "0.1.0"
    );
    store.insert_version(&new("m", "1.4.2")).expect("exact");
    let mut next = new("m", "0.0.0");
    next.version = VersionChoice::Bump(crate::meta::Bump::Patch);
    assert_eq!(store.insert_version(&next).expect("bump").version, "1.4.3");
}

pub(crate) fn stage_rules_history_and_archive_existing(fixture: &Fixture) {
    let store = &*fixture.store;
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

pub(crate) fn aliases_move_and_are_unique_per_name(fixture: &Fixture) {
    let store = &*fixture.store;
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

pub(crate) fn tags_filter_listing(fixture: &Fixture) {
    let store = &*fixture.store;
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

pub(crate) fn stats_count_objects_once(fixture: &Fixture) {
    let store = &*fixture.store;
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

pub(crate) fn a_stage_reference_means_the_version_that_entered_it_last(fixture: &Fixture) {
    let store = &*fixture.store;
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

fn recipe(store: &dyn MetadataStore) {
    let mut r = new("train", "1.0.0");
    r.kind = Kind::Recipe;
    store.insert_version(&r).expect("recipe");
}

fn new_run(store: &dyn MetadataStore, n: u8) -> RunRecord {
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

pub(crate) fn runs_log_finish_and_best(fixture: &Fixture) {
    let store = &*fixture.store;
    recipe(store);
    let a = new_run(store, 1);
    let b = new_run(store, 2);
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

pub(crate) fn reopening_keeps_the_schema_and_data(fixture: &Fixture) {
    fixture.store.insert_version(&new("a", "1.0.0")).expect("a");
    let again = fixture.open();
    assert_eq!(again.stats().expect("stats").versions, 1);
}

pub(crate) fn concurrent_writers_wait_instead_of_failing(fixture: &Fixture) {
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let store = fixture.open();
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
    assert_eq!(fixture.store.stats().expect("stats").versions, 4 * 25 + 25);
}

/// Many processes bumping one name at once: every registration succeeds, with a number of
/// its own, and none is lost.
pub(crate) fn concurrent_bumps_never_share_a_number(fixture: &Fixture) {
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    let got: Vec<String> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                s.spawn(move || {
                    let store = fixture.open();
                    (0..EACH)
                        .map(|_| {
                            let mut bumped = new("shared", "0.0.0");
                            bumped.version = VersionChoice::Bump(crate::meta::Bump::Patch);
                            store.insert_version(&bumped).expect("bump").version
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer"))
            .collect()
    });
    let distinct: HashSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), WRITERS * EACH, "{got:?}");
    let listed = fixture
        .store
        .list_versions(Kind::Model, Some("shared"), &ListFilter::default())
        .expect("list");
    assert_eq!(listed.len(), WRITERS * EACH);
    // Consecutive numbers: 0.0.1 .. 0.0.80, each once.
    let expected: Vec<String> = (1..=WRITERS * EACH).map(|i| format!("0.0.{i}")).collect();
    let versions: Vec<String> = listed.into_iter().map(|r| r.version).collect();
    assert_eq!(versions, expected);
}

/// The reads of runs not covered above: listing, every point, artifacts, heartbeats, params
/// and the next step.
pub(crate) fn run_reads_agree(fixture: &Fixture) {
    let store = &*fixture.store;
    recipe(store);
    let a = new_run(store, 1);
    assert_eq!(a.status, RunStatus::Running);
    assert!(a.heartbeat_at.is_none() && a.finished_at.is_none());
    store
        .set_run_params(&a.id, r#"{"lr":0.1}"#)
        .expect("params");
    store.heartbeat_run(&a.id).expect("heartbeat");
    let again = store.resolve_run(&a.id).expect("run");
    assert_eq!(again.params, r#"{"lr":0.1}"#);
    assert!(again.heartbeat_at.is_some());
    assert_eq!(again.started_at.len(), "2026-12-03T10:15:30.123Z".len());
    assert_eq!(
        store
            .log_at_next_step(&a.id, &[("loss".into(), 1.0), ("acc".into(), 0.5)], 1.5)
            .expect("step"),
        0
    );
    assert_eq!(
        store
            .log_at_next_step(&a.id, &[("loss".into(), 0.5)], 2.5)
            .expect("step"),
        1
    );
    // Two points at one step: the later one is the final value.
    store
        .log_metrics(&a.id, &[p("loss", 1, 0.4), p("loss", 1, 0.3)])
        .expect("points");
    let points = store.run_metrics(&a.id).expect("metrics");
    assert_eq!(
        points
            .iter()
            .map(|m| (m.name.as_str(), m.step, m.value))
            .collect::<Vec<_>>(),
        vec![
            ("acc", 0, 0.5),
            ("loss", 0, 1.0),
            ("loss", 1, 0.5),
            ("loss", 1, 0.4),
            ("loss", 1, 0.3)
        ]
    );
    assert_eq!(points[1].at, 1.5);
    let finals = store
        .final_metrics(std::slice::from_ref(&a.id))
        .expect("finals");
    assert_eq!(
        finals
            .iter()
            .map(|(id, m)| (id.as_str(), m.name.as_str(), m.step, m.value))
            .collect::<Vec<_>>(),
        vec![
            (a.id.as_str(), "acc", 0, 0.5),
            (a.id.as_str(), "loss", 1, 0.3)
        ]
    );
    store
        .add_run_artifact(&a.id, "model.bin", &digest(7), 70)
        .expect("artifact");
    store
        .add_run_artifact(&a.id, "model.bin", &digest(8), 80)
        .expect("replaced");
    store
        .add_run_artifact(&a.id, "eval.json", &digest(9), 9)
        .expect("artifact");
    assert_eq!(
        store.run_artifacts(&a.id).expect("artifacts"),
        vec![
            ("eval.json".to_string(), digest(9), 9),
            ("model.bin".to_string(), digest(8), 80)
        ]
    );
    let b = new_run(store, 2);
    store
        .finish_run(&b.id, RunStatus::Failed, Some("out of memory"))
        .expect("finish");
    let failed = store.resolve_run(&b.id).expect("b");
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (RunStatus::Failed, Some("out of memory"))
    );
    assert!(failed.finished_at.is_some());
    assert!(matches!(
        store.heartbeat_run(&b.id),
        Err(CoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.finish_run(&a.id, RunStatus::Running, None),
        Err(CoreError::InvalidInput { .. })
    ));
    let all: Vec<String> = store
        .list_runs(None, None)
        .expect("runs")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, vec![a.id.clone(), b.id.clone()]);
    let failed_only = store
        .list_runs(Some(&reference("train:1.0.0")), Some(RunStatus::Failed))
        .expect("runs");
    assert_eq!(failed_only.len(), 1);
    assert_eq!(failed_only[0].id, b.id);
    assert!(store
        .best_run(&reference("train:1.0.0"), "loss", true)
        .expect("best")
        .is_none());
    // A recipe with runs is kept; its artifacts count as referenced.
    assert!(matches!(
        store.delete_version(Kind::Recipe, &reference("train:1.0.0"), false),
        Err(CoreError::InvalidInput { .. })
    ));
    let referenced: HashSet<Digest> = store
        .referenced_objects()
        .expect("referenced")
        .into_iter()
        .collect();
    assert!(referenced.contains(&digest(8)) && referenced.contains(&digest(1)));
    assert!(!referenced.contains(&digest(7)));
    assert_eq!(store.stats().expect("stats").runs, 2);
}

/// Deleting versions: labels go, objects stay until forgotten, and only unreferenced
/// objects are forgotten; version contents and object users follow.
/// A shared store collects in two phases: what one run marks, only a later run may remove,
/// and a commit referencing a marked object takes its mark away. A store one machine uses
/// collects in one phase (`None`).
pub(crate) fn collection_marks_ripen_in_a_later_run_unless_referenced_again(fixture: &Fixture) {
    let store = &*fixture.store;
    let (one, two, three) = (digest(1), digest(2), digest(3));
    let Some(first) = store.mark_for_collection(&[one, two], false).expect("mark") else {
        assert_eq!(store.mark_for_collection(&[one], true).expect("dry"), None);
        return;
    };
    assert!(first.is_empty(), "nothing was marked before: {first:?}");
    // A dry run reports what is ripe and marks nothing.
    assert_eq!(
        store
            .mark_for_collection(&[one, two, three], true)
            .expect("dry"),
        Some(if one < two {
            vec![one, two]
        } else {
            vec![two, one]
        })
    );
    // digest(1) is referenced again before the next run.
    store.insert_version(&new("a", "1.0.0")).expect("a");
    let second = store
        .mark_for_collection(&[two, three], false)
        .expect("mark")
        .expect("two-phase");
    assert_eq!(second, vec![two], "digest(3) was first marked by this run");
    // Unreferenced again, digest(1) starts over: marked now, ripe only in a later run.
    store
        .delete_version(Kind::Model, &reference("a:1.0.0"), false)
        .expect("delete");
    let third = store
        .mark_for_collection(&[one, three], false)
        .expect("mark")
        .expect("two-phase");
    assert_eq!(third, vec![three]);
    // A candidate dropped from a run (referenced, or gone) loses its mark.
    let fourth = store
        .mark_for_collection(&[three], false)
        .expect("mark")
        .expect("two-phase");
    assert_eq!(fourth, vec![three]);
    assert_eq!(
        store.mark_for_collection(&[one, three], true).expect("dry"),
        Some(vec![three])
    );
    // Removing an object forgets its mark.
    assert_eq!(store.forget_objects(&[three]).expect("forget"), vec![three]);
    assert_eq!(
        store.mark_for_collection(&[three], true).expect("dry"),
        Some(vec![])
    );
}

pub(crate) fn deleting_a_version_and_forgetting_its_objects(fixture: &Fixture) {
    let store = &*fixture.store;
    let mut a = new("a", "1.0.0");
    a.objects = vec![(digest(1), 10), (digest(2), 20)];
    let a = store.insert_version(&a).expect("a");
    let mut b = new("b", "1.0.0");
    b.objects = vec![(digest(2), 20)];
    b.layout = Layout::Tree;
    b.mode = None;
    let b = store.insert_version(&b).expect("b");
    assert_eq!(b.layout, Layout::Tree);
    assert_eq!((a.mode, b.mode), (Some(0o644), None));
    store
        .set_alias(Kind::Model, &reference("a:1.0.0"), "best")
        .expect("alias");
    let contents = store.version_contents(None).expect("contents");
    assert_eq!(
        contents
            .iter()
            .map(|(r, objects)| (r.label(), objects.len()))
            .collect::<Vec<_>>(),
        vec![("a:1.0.0".to_string(), 2), ("b:1.0.0".to_string(), 1)]
    );
    let only_b = store.version_contents(Some(&[b.id])).expect("contents");
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].1, vec![(digest(2), 20)]);
    let uses = store.object_uses(Some(&[b.id])).expect("uses");
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].users, vec!["b:1.0.0".to_string()]);
    let deleted = store
        .delete_version(Kind::Model, &reference("a@best"), false)
        .expect("delete");
    assert_eq!(deleted.id, a.id);
    assert!(store.history(a.id).expect("history").is_empty());
    assert!(matches!(
        store.delete_alias(Kind::Model, "a", "best"),
        Err(CoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .list_names(Kind::Model)
            .expect("names")
            .into_iter()
            .map(|n| n.name)
            .collect::<Vec<_>>(),
        vec!["b".to_string()]
    );
    assert!(matches!(
        store.list_versions(Kind::Model, Some("a"), &ListFilter::default()),
        Err(CoreError::NotFound { .. })
    ));
    assert_eq!(store.stats().expect("stats").objects, 2);
    // digest(2) is still needed by b: only digest(1) may go.
    assert_eq!(
        store
            .forget_objects(&[digest(1), digest(2)])
            .expect("forget"),
        vec![digest(1)]
    );
    assert_eq!(store.stats().expect("stats").objects, 1);
    assert_eq!(
        store.referenced_objects().expect("referenced"),
        vec![digest(2)]
    );
    let nodes = store.lineage_rows().expect("rows").nodes;
    let current = store
        .versions_of_nodes(&nodes.iter().map(|n| n.id).collect::<Vec<_>>())
        .expect("versions");
    assert_eq!(
        current.iter().map(|(_, r)| r.label()).collect::<Vec<_>>(),
        vec!["b:1.0.0".to_string()]
    );
    // precheck agrees with insert.
    assert!(store
        .precheck(
            Kind::Model,
            "b",
            &VersionChoice::Exact(Version::parse("1.0.0").expect("v"))
        )
        .is_err());
    store
        .precheck(
            Kind::Model,
            "b",
            &VersionChoice::Exact(Version::parse("1.0.1").expect("v")),
        )
        .expect("free");
}

// ---- lineage ----

pub(crate) mod lineage {
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

    fn dataset(store: &dyn MetadataStore, name: &str, version: &str, lineage: Vec<NewEdge>) {
        let mut d = new(name, version);
        d.kind = Kind::Dataset;
        d.lineage = lineage;
        store.insert_version(&d).expect("dataset");
    }

    fn model(store: &dyn MetadataStore, name: &str, version: &str, lineage: Vec<NewEdge>) {
        let mut m = new(name, version);
        m.lineage = lineage;
        store.insert_version(&m).expect("model");
    }

    fn graph(store: &dyn MetadataStore) -> Graph {
        Graph::from_rows(store.lineage_rows().expect("rows")).expect("graph")
    }

    pub(crate) fn registration_records_typed_edges_with_parameters(fixture: &Fixture) {
        let store = &*fixture.store;
        dataset(store, "raw", "1.0.0", vec![]);
        dataset(
            store,
            "clean",
            "1.0.0",
            vec![edge(
                "dataset/raw:1.0.0",
                Relation::DerivedFrom,
                json!({"transformation": "dedup"}),
            )],
        );
        model(
            store,
            "base",
            "1.0.0",
            vec![edge("dataset/clean:1.0.0", Relation::TrainedOn, json!({}))],
        );
        model(
            store,
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

    pub(crate) fn a_run_brings_its_recipe_and_datasets(fixture: &Fixture) {
        let store = &*fixture.store;
        dataset(store, "imdb", "1.0.0", vec![]);
        recipe(store);
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
        let g = graph(store);
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

    pub(crate) fn cycles_are_refused_and_named(fixture: &Fixture) {
        let store = &*fixture.store;
        model(store, "a", "1.0.0", vec![]);
        model(
            store,
            "b",
            "1.0.0",
            vec![edge("model/a:1.0.0", Relation::FineTuned, json!({}))],
        );
        model(
            store,
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

    pub(crate) fn deleting_keeps_a_tombstone_and_the_number(fixture: &Fixture) {
        let store = &*fixture.store;
        dataset(store, "raw", "1.0.0", vec![]);
        model(
            store,
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
        let g = graph(store);
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

    pub(crate) fn bare_references_resolve_across_kinds_or_are_ambiguous(fixture: &Fixture) {
        let store = &*fixture.store;
        model(store, "x", "1.0.0", vec![]);
        assert_eq!(
            store.find_node(&node("x:1.0.0")).expect("x").kind,
            NodeKind::Model
        );
        dataset(store, "x", "1.0.0", vec![]);
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

/// PostgreSQL text cannot hold a NUL character, SQLite's can: every backend refuses one in
/// a description or card, and records a run's error text with it replaced (a run must end).
pub(crate) fn nul_characters_are_treated_alike(fixture: &Fixture) {
    let store = &*fixture.store;
    let mut described = new("nul", "1.0.0");
    described.description = Some("a\0b".into());
    assert!(matches!(
        store.insert_version(&described),
        Err(CoreError::InvalidInput { .. })
    ));
    let mut carded = new("nul", "1.0.0");
    carded.card = Some("{\"x\": \"\0\"}".into());
    assert!(matches!(
        store.insert_version(&carded),
        Err(CoreError::InvalidInput { .. })
    ));
    recipe(store);
    let run = new_run(store, 7);
    let ended = store
        .finish_run(&run.id, RunStatus::Failed, Some("bad\0byte"))
        .expect("a run ends whatever its error text holds");
    assert_eq!(ended.error.as_deref(), Some("bad\u{fffd}byte"));
}

/// The record `insert_version` returns is built from what it wrote, not read back: it must
/// equal what a read returns, field for field (tags by key, the last value of a key given
/// twice, permission bits only, the stamp the database chose).
pub(crate) fn a_registration_returns_the_record_a_read_returns(fixture: &Fixture) {
    let store = &*fixture.store;
    let mut full = new("returned", "1.2.3-rc.1+build.7");
    full.description = Some("a description ✓".into());
    full.card = Some("{\"license\": \"mit\"}".into());
    full.tags = vec![
        ("zeta".into(), "1".into()),
        ("Alpha".into(), "first".into()),
        ("alpha".into(), "2".into()),
        ("zeta".into(), "last".into()),
    ];
    full.mode = Some(0o100_755);
    let returned = store.insert_version(&full).expect("insert");
    let read = store
        .resolve(Kind::Model, &reference("returned:1.2.3-rc.1+build.7"))
        .expect("resolve");
    assert_eq!(returned, read);
    assert_eq!(
        returned.tags,
        vec![
            ("Alpha".to_string(), "first".to_string()),
            ("alpha".to_string(), "2".to_string()),
            ("zeta".to_string(), "last".to_string()),
        ]
    );
    assert_eq!(returned.mode, Some(0o755));
    let plain = new("returned", "2.0.0");
    let mut plain = plain;
    plain.description = None;
    plain.tags = Vec::new();
    plain.mode = None;
    let returned = store.insert_version(&plain).expect("insert");
    let read = store
        .resolve(Kind::Model, &reference("returned:2.0.0"))
        .expect("resolve");
    assert_eq!(returned, read);
}
