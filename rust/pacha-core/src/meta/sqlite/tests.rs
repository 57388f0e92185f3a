//! The SQLite store: the conformance suite every backend passes, and what only SQLite has
//! (migrations from its older schemas).

use super::*;
use crate::meta::conformance::{self, new, Fixture};

/// A fresh registry database in a temporary directory.
fn fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("registry.db");
    let store = SqliteMetaStore::open(&path).expect("open");
    Some(Fixture::new(
        Box::new(store),
        move || Box::new(SqliteMetaStore::open(&path).expect("reopen")),
        dir,
    ))
}

conformance::suite!(fixture);

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
