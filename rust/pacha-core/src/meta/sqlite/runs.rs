//! The runs half of the SQLite metadata store.

use rusqlite::{params, Connection, OptionalExtension};

use super::tx::SqliteTx;
use super::{resolve_in, to_sql_int, SqliteMetaStore};
use crate::meta::rules::runs as rules;
use crate::meta::tx::{RowId, RunTx};
use crate::meta::{Kind, MetricPoint, NewRun, Reference, RunRecord, RunStatus};
use crate::{Digest, Result};

const RUN_COLUMNS: &str = "r.id, a.name || ':' || v.version, r.status, r.params, r.environment, \
     r.started_at, r.finished_at, r.error, r.created_by, r.heartbeat_at";

const RUN_FROM: &str = "runs r LEFT JOIN versions v ON v.id = r.recipe_version_id \
     LEFT JOIN artifacts a ON a.id = v.artifact_id";

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let status: String = row.get(2)?;
    Ok(RunRecord {
        id: row.get(0)?,
        recipe: row.get(1)?,
        status: RunStatus::parse(&status).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                "status".into(),
            )
        })?,
        params: row.get(3)?,
        environment: row.get(4)?,
        started_at: super::timestamp_cell(row, 5)?,
        finished_at: super::optional_timestamp_cell(row, 6)?,
        error: row.get(7)?,
        created_by: row.get(8)?,
        heartbeat_at: super::optional_timestamp_cell(row, 9)?,
    })
}

fn runs_where(
    store: &SqliteMetaStore,
    conn: &Connection,
    condition: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<RunRecord>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE {condition}");
    let mut stmt = conn.prepare_cached(&sql).map_err(|e| store.err(e))?;
    let rows = stmt
        .query_map(args, run_from_row)
        .map_err(|e| store.err(e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| store.err(e))
}

pub(super) fn resolve_run(
    store: &SqliteMetaStore,
    conn: &Connection,
    id_or_prefix: &str,
) -> Result<RunRecord> {
    rules::resolve_run(&mut SqliteTx { store, conn }, id_or_prefix)
}

/// Note that a running run is alive (its tracker calls this while nothing else is written).
pub(super) fn heartbeat(store: &SqliteMetaStore, run_id: &str) -> Result<()> {
    store.write(|tx| rules::running(&mut SqliteTx { store, conn: tx }, run_id).map(drop))
}

pub(super) fn create_run(store: &SqliteMetaStore, new: &NewRun) -> Result<RunRecord> {
    store.write(|tx| rules::create_run(&mut SqliteTx { store, conn: tx }, new))
}

pub(super) fn set_params(store: &SqliteMetaStore, run_id: &str, params_json: &str) -> Result<()> {
    store.write(|tx| rules::set_params(&mut SqliteTx { store, conn: tx }, run_id, params_json))
}

pub(super) fn log_metrics(
    store: &SqliteMetaStore,
    run_id: &str,
    points: &[MetricPoint],
) -> Result<()> {
    store.write(|tx| rules::log_metrics(&mut SqliteTx { store, conn: tx }, run_id, points))
}

pub(super) fn log_at_next_step(
    store: &SqliteMetaStore,
    run_id: &str,
    values: &[(String, f64)],
    at: f64,
) -> Result<i64> {
    store.write(|tx| rules::log_at_next_step(&mut SqliteTx { store, conn: tx }, run_id, values, at))
}

pub(super) fn finish_run(
    store: &SqliteMetaStore,
    run_id: &str,
    status: RunStatus,
    error: Option<&str>,
) -> Result<RunRecord> {
    store.write(|tx| rules::finish_run(&mut SqliteTx { store, conn: tx }, run_id, status, error))
}

pub(super) fn list_runs(
    store: &SqliteMetaStore,
    recipe: Option<&Reference>,
    status: Option<RunStatus>,
) -> Result<Vec<RunRecord>> {
    store.read(|conn| {
        let recipe_id = match recipe {
            Some(reference) => Some(resolve_in(store, conn, Kind::Recipe, reference)?.id),
            None => None,
        };
        let status = status.map(RunStatus::as_str);
        runs_where(
            store,
            conn,
            "(?1 IS NULL OR r.recipe_version_id = ?1) AND (?2 IS NULL OR r.status = ?2) \
             ORDER BY r.started_at, r.id",
            &[&recipe_id, &status],
        )
    })
}

fn point(row: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<MetricPoint> {
    Ok(MetricPoint {
        name: row.get(offset)?,
        step: row.get(offset + 1)?,
        value: row.get(offset + 2)?,
        at: row.get(offset + 3)?,
    })
}

pub(super) fn run_metrics(store: &SqliteMetaStore, run_id: &str) -> Result<Vec<MetricPoint>> {
    store.read(|conn| {
        let run = resolve_run(store, conn, run_id)?;
        let mut stmt = conn
            .prepare_cached("SELECT name, step, value, at FROM metrics WHERE run_id = ?1 ORDER BY name, step, rowid")
            .map_err(|e| store.err(e))?;
        let rows = stmt.query_map([&run.id], |r| point(r, 0)).map_err(|e| store.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| store.err(e))
    })
}

pub(super) fn final_metrics(
    store: &SqliteMetaStore,
    run_ids: &[String],
) -> Result<Vec<(String, MetricPoint)>> {
    store.read(|conn| {
        let mut out = Vec::new();
        // Index-driven, so a run's cost is its number of metric names, not of points: a
        // skip scan over the (run_id, name, step) index finds each name, then one lookup per
        // name finds the point at its highest step.
        let mut names = conn
            .prepare_cached(
                "WITH RECURSIVE names(name) AS ( \
                     SELECT MIN(name) FROM metrics WHERE run_id = ?1 \
                     UNION ALL \
                     SELECT (SELECT MIN(name) FROM metrics WHERE run_id = ?1 AND name > names.name) \
                     FROM names WHERE names.name IS NOT NULL) \
                 SELECT name FROM names WHERE name IS NOT NULL",
            )
            .map_err(|e| store.err(e))?;
        let mut last = conn
            .prepare_cached(
                "SELECT name, step, value, at FROM metrics WHERE run_id = ?1 AND name = ?2 \
                 ORDER BY step DESC, rowid DESC LIMIT 1",
            )
            .map_err(|e| store.err(e))?;
        for run_id in run_ids {
            let run = resolve_run(store, conn, run_id)?;
            let run_names = names
                .query_map([&run.id], |r| r.get::<_, String>(0))
                .map_err(|e| store.err(e))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| store.err(e))?;
            for name in run_names {
                let p = last
                    .query_row(params![run.id, name], |r| point(r, 0))
                    .map_err(|e| store.err(e))?;
                out.push((run.id.clone(), p));
            }
        }
        Ok(out)
    })
}

pub(super) fn best_run(
    store: &SqliteMetaStore,
    recipe: &Reference,
    metric: &str,
    minimize: bool,
) -> Result<Option<(RunRecord, MetricPoint)>> {
    store.read(|conn| {
        let recipe_id = resolve_in(store, conn, Kind::Recipe, recipe)?.id;
        // One indexed lookup per completed run: the point at the run's highest step.
        let order = if minimize { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT r.id, last.name, last.step, last.value, last.at FROM runs r \
             JOIN metrics last ON last.rowid = (SELECT m.rowid FROM metrics m \
                 WHERE m.run_id = r.id AND m.name = ?2 ORDER BY m.step DESC, m.rowid DESC LIMIT 1) \
             WHERE r.recipe_version_id = ?1 AND r.status = 'completed' \
             ORDER BY last.value {order}, r.started_at, r.id LIMIT 1"
        );
        let best: Option<(String, MetricPoint)> = conn
            .query_row(&sql, params![recipe_id, metric], |r| {
                Ok((r.get(0)?, point(r, 1)?))
            })
            .optional()
            .map_err(|e| store.err(e))?;
        match best {
            None => Ok(None),
            Some((id, p)) => Ok(Some((resolve_run(store, conn, &id)?, p))),
        }
    })
}

pub(super) fn add_artifact(
    store: &SqliteMetaStore,
    run_id: &str,
    name: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    store.write(|tx| {
        rules::add_artifact(
            &mut SqliteTx { store, conn: tx },
            run_id,
            name,
            digest,
            size,
        )
    })
}

pub(super) fn artifacts(
    store: &SqliteMetaStore,
    run_id: &str,
) -> Result<Vec<(String, Digest, u64)>> {
    store.read(|conn| {
        let run = resolve_run(store, conn, run_id)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT ra.name, ra.digest, o.size FROM run_artifacts ra JOIN objects o ON o.digest = ra.digest \
                 WHERE ra.run_id = ?1 ORDER BY ra.name",
            )
            .map_err(|e| store.err(e))?;
        let rows = stmt
            .query_map([&run.id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(|e| store.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, digest, size) = row.map_err(|e| store.err(e))?;
            out.push((name, Digest::parse(&digest)?, size.try_into().unwrap_or(0)));
        }
        Ok(out)
    })
}

impl RunTx for SqliteTx<'_> {
    fn runs_with_prefix(&mut self, prefix: &str, limit: usize) -> Result<Vec<RunRecord>> {
        // Run ids are validated hex, so the prefix holds no LIKE wildcard.
        let pattern = format!("{prefix}%");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        runs_where(
            self.store,
            self.conn,
            "r.id LIKE ?1 ORDER BY r.id LIMIT ?2",
            &[&pattern, &limit],
        )
    }

    fn insert_run(&mut self, new: &NewRun, id: &str, recipe: Option<RowId>) -> Result<()> {
        let (store, conn) = (self.store, self.conn);
        conn.execute(
            "INSERT INTO runs (id, recipe_version_id, status, params, environment, created_by) \
             VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
            params![id, recipe, new.params, new.environment, new.actor],
        )
        .map_err(|e| store.err(e))?;
        Ok(())
    }

    fn touch_run(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                [id],
            )
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    fn set_run_params(&mut self, id: &str, params: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET params = ?1 WHERE id = ?2",
                params![params, id],
            )
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    fn highest_step(&mut self, id: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT MAX(step) FROM metrics WHERE run_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(|e| self.store.err(e))
    }

    fn insert_metrics(&mut self, id: &str, points: &[MetricPoint]) -> Result<()> {
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| self.store.err(e))?;
        for p in points {
            insert
                .execute(params![id, p.name, p.step, p.value, p.at])
                .map_err(|e| self.store.err(e))?;
        }
        Ok(())
    }

    fn end_run(&mut self, id: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?1, error = ?2, \
                 finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?3",
                params![status.as_str(), error, id],
            )
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    fn put_run_artifact(&mut self, id: &str, name: &str, digest: &Digest, size: u64) -> Result<()> {
        let hex = digest.to_hex();
        let size = to_sql_int(size)?;
        self.conn
            .execute(
                "INSERT OR IGNORE INTO objects (digest, size) VALUES (?1, ?2)",
                params![hex, size],
            )
            .map_err(|e| self.store.err(e))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO run_artifacts (run_id, name, digest) VALUES (?1, ?2, ?3)",
                params![id, name, hex],
            )
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }
}
