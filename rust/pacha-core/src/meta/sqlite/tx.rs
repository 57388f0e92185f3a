//! The SQL behind each primitive of [`VersionTx`] (and, in `runs.rs`, of `RunTx`) for SQLite,
//! and nothing else: the rules that use them are in `meta::rules`.

use rusqlite::{params, Connection, OptionalExtension};

use super::{lineage, to_sql_int, SqliteMetaStore};
use crate::meta::tx::{Inserted, NumberUse, RowId, VersionRow, VersionTx, VersionsOf};
use crate::meta::{Kind, ListFilter, Stage, VersionRecord};
use crate::{CoreError, Digest, Result};

/// A connection (inside a transaction for writes) of a [`SqliteMetaStore`].
pub(super) struct SqliteTx<'a> {
    pub(super) store: &'a SqliteMetaStore,
    pub(super) conn: &'a Connection,
}

impl SqliteTx<'_> {
    fn err(&self, e: rusqlite::Error) -> CoreError {
        self.store.err(e)
    }
}

impl VersionTx for SqliteTx<'_> {
    fn artifact(&mut self, kind: Kind, name: &str) -> Result<Option<RowId>> {
        super::artifact_id(self.store, self.conn, kind, name)
    }

    fn ensure_artifact(&mut self, kind: Kind, name: &str) -> Result<RowId> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO artifacts (kind, name) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![kind.as_str(), name]))
            .map_err(|e| self.err(e))?;
        self.artifact(kind, name)?
            .ok_or_else(|| CoreError::Database {
                path: self.store.path.clone(),
                message: "artifact row vanished inside its transaction".into(),
            })
    }

    fn drop_artifact_if_empty(&mut self, artifact: RowId) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM artifacts WHERE id = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.artifact_id = artifacts.id)",
                [artifact],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn numbers_used(&mut self, kind: Kind, name: &str) -> Result<Vec<NumberUse>> {
        self.conn
            .prepare_cached(
                "SELECT version, deleted_at IS NOT NULL FROM lineage_nodes \
                 WHERE kind = ?1 AND name = ?2 AND version IS NOT NULL",
            )
            .and_then(|mut s| {
                s.query_map(params![kind.as_str(), name], |r| {
                    Ok(NumberUse {
                        version: r.get(0)?,
                        deleted: r.get(1)?,
                    })
                })
                .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.err(e))
    }

    fn deleted_number(&mut self, kind: Kind, name: &str, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached(
                "SELECT version FROM lineage_nodes WHERE kind = ?1 AND name = ?2 \
                 AND version_key = ?3 AND deleted_at IS NOT NULL",
            )
            .and_then(|mut s| {
                s.query_row(params![kind.as_str(), name, key], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| self.err(e))
    }

    fn versions(&mut self, artifact: RowId, which: VersionsOf<'_>) -> Result<Vec<VersionRecord>> {
        let (store, conn) = (self.store, self.conn);
        match which {
            VersionsOf::Key(key) => super::versions_where(
                store,
                conn,
                "v.artifact_id = ?1 AND v.version_key = ?2",
                &[&artifact, &key],
            ),
            VersionsOf::Released => super::versions_where(
                store,
                conn,
                "v.artifact_id = ?1 AND v.prerelease = 0",
                &[&artifact],
            ),
            VersionsOf::LastEntered(stage) => super::versions_where(
                store,
                conn,
                "v.id = (SELECT h.version_id FROM stage_history h \
                 JOIN versions x ON x.id = h.version_id \
                 WHERE x.artifact_id = ?1 AND x.stage = ?2 AND h.to_stage = ?2 \
                 ORDER BY h.id DESC LIMIT 1)",
                &[&artifact, &stage.as_str()],
            ),
            VersionsOf::Alias(alias) => super::versions_where(
                store,
                conn,
                "v.id = (SELECT version_id FROM aliases WHERE artifact_id = ?1 AND alias = ?2)",
                &[&artifact, &alias],
            ),
            VersionsOf::InStageExcept(stage, except) => super::versions_where(
                store,
                conn,
                "v.artifact_id = ?1 AND v.stage = ?2 AND v.id != ?3",
                &[&artifact, &stage.as_str(), &except],
            ),
        }
    }

    fn versions_matching(
        &mut self,
        kind: Kind,
        name: Option<&str>,
        filter: &ListFilter,
    ) -> Result<Vec<VersionRecord>> {
        let kind_text = kind.as_str();
        let stage_text = filter.stage.map(Stage::as_str);
        let mut condition = String::from(
            "a.kind = ?1 AND (?2 IS NULL OR a.name = ?2) AND (?3 IS NULL OR v.stage = ?3)",
        );
        let mut tag_args: Vec<&str> = Vec::new();
        for (key, value) in &filter.tags {
            let k = tag_args.len() + 4;
            condition.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM tags t WHERE t.version_id = v.id \
                 AND t.key = ?{k} AND t.value = ?{})",
                k + 1
            ));
            tag_args.push(key);
            tag_args.push(value);
        }
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&kind_text, &name, &stage_text];
        args.extend(tag_args.iter().map(|a| a as &dyn rusqlite::ToSql));
        super::versions_where(self.store, self.conn, &condition, &args)
    }

    fn attach_labels(&mut self, records: &mut [VersionRecord]) -> Result<()> {
        super::attach_labels(self.store, self.conn, records)
    }

    fn insert_version(&mut self, row: &VersionRow<'_>) -> Result<Inserted> {
        let (size, file_count) = (to_sql_int(row.size)?, to_sql_int(row.file_count)?);
        self.conn
            .prepare_cached(
                "INSERT INTO versions (artifact_id, version, version_key, prerelease, digest, \
                 layout, size, file_count, description, card, created_by, run_id, mode) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 RETURNING id, created_at",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        row.artifact,
                        row.version,
                        row.key,
                        row.prerelease,
                        row.digest.to_hex(),
                        row.layout.as_str(),
                        size,
                        file_count,
                        row.description,
                        row.card,
                        row.created_by,
                        row.run_id,
                        row.mode,
                    ],
                    |r| {
                        Ok(Inserted {
                            id: r.get(0)?,
                            created_at: super::timestamp_cell(r, 1)?,
                        })
                    },
                )
            })
            .map_err(|e| self.err(e))
    }

    fn add_objects(&mut self, version: RowId, objects: &[(Digest, u64)]) -> Result<()> {
        let mut object = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO objects (digest, size) VALUES (?1, ?2)")
            .map_err(|e| self.err(e))?;
        let mut link = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO version_objects (version_id, digest) VALUES (?1, ?2)",
            )
            .map_err(|e| self.err(e))?;
        // In address order, so that a directory's many objects go into the digest-keyed
        // B-trees as appends and neighbours rather than at random pages.
        let mut sorted: Vec<&(Digest, u64)> = objects.iter().collect();
        sorted.sort_unstable_by_key(|(digest, _)| *digest);
        for (digest, size) in sorted {
            let hex = digest.to_hex();
            object
                .execute(params![hex, to_sql_int(*size)?])
                .map_err(|e| self.store.err(e))?;
            link.execute(params![version, hex])
                .map_err(|e| self.store.err(e))?;
        }
        Ok(())
    }

    fn put_tags(&mut self, version: RowId, tags: &[(String, String)]) -> Result<()> {
        let mut tag = self
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO tags (version_id, key, value) VALUES (?1, ?2, ?3)",
            )
            .map_err(|e| self.err(e))?;
        for (key, value) in tags {
            tag.execute(params![version, key, value])
                .map_err(|e| self.store.err(e))?;
        }
        Ok(())
    }

    fn set_stage(&mut self, version: RowId, stage: Stage) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE versions SET stage = ?1 WHERE id = ?2")
            .and_then(|mut s| s.execute(params![stage.as_str(), version]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn record_transition(
        &mut self,
        version: RowId,
        from: Option<Stage>,
        to: Stage,
        actor: &str,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO stage_history (version_id, from_stage, to_stage, by) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    version,
                    from.map(Stage::as_str),
                    to.as_str(),
                    actor
                ])
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn put_alias(&mut self, artifact: RowId, alias: &str, version: RowId) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO aliases (artifact_id, alias, version_id) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (artifact_id, alias) DO UPDATE SET version_id = excluded.version_id",
                params![artifact, alias, version],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn remove_alias(&mut self, artifact: RowId, alias: &str) -> Result<bool> {
        let removed = self
            .conn
            .execute(
                "DELETE FROM aliases WHERE artifact_id = ?1 AND alias = ?2",
                params![artifact, alias],
            )
            .map_err(|e| self.err(e))?;
        Ok(removed > 0)
    }

    fn runs_of_recipe(&mut self, version: RowId) -> Result<u64> {
        let runs: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM runs WHERE recipe_version_id = ?1",
                [version],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(runs).unwrap_or(0))
    }

    fn remove_version(&mut self, version: RowId) -> Result<()> {
        for table in ["aliases", "tags", "version_objects", "stage_history"] {
            self.conn
                .execute(
                    &format!("DELETE FROM {table} WHERE version_id = ?1"),
                    [version],
                )
                .map_err(|e| self.err(e))?;
        }
        lineage::bury(self.store, self.conn, version)?;
        self.conn
            .execute("DELETE FROM versions WHERE id = ?1", [version])
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
