//! The runs half of the SQLite metadata store.

use rusqlite::{params, Connection, OptionalExtension};

use super::{resolve_in, SqliteMetaStore};
use crate::meta::runs::{validate_metric, validate_run_id};
use crate::meta::{Kind, MetricPoint, NewRun, Reference, RunRecord, RunStatus};
use crate::{CoreError, Digest, Result};

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
    let prefix = validate_run_id(id_or_prefix, true)?;
    let pattern = format!("{prefix}%");
    let mut found = runs_where(
        store,
        conn,
        "r.id LIKE ?1 ORDER BY r.id LIMIT 2",
        &[&pattern],
    )?;
    match found.len() {
        0 => Err(CoreError::NotFound {
            message: format!("no run {prefix}; `pacha run list` shows the runs"),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(CoreError::InvalidInput {
            message: format!("run id prefix {prefix} is ambiguous; give more characters"),
        }),
    }
}

/// The run, which must be running, inside a write transaction; every write to a run is a
/// sign of life, so its heartbeat is noted.
fn running(store: &SqliteMetaStore, conn: &Connection, run_id: &str) -> Result<RunRecord> {
    let run = resolve_run(store, conn, run_id)?;
    if run.status.is_final() {
        return Err(CoreError::InvalidInput {
            message: format!(
                "run {} has finished ({}); start a new run to log more",
                run.id, run.status
            ),
        });
    }
    conn.execute(
        "UPDATE runs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
        [&run.id],
    )
    .map_err(|e| store.err(e))?;
    Ok(run)
}

/// Note that a running run is alive (its tracker calls this while nothing else is written).
pub(super) fn heartbeat(store: &SqliteMetaStore, run_id: &str) -> Result<()> {
    store.write(|tx| running(store, tx, run_id).map(drop))
}

pub(super) fn create_run(store: &SqliteMetaStore, new: &NewRun) -> Result<RunRecord> {
    let id = validate_run_id(&new.id, false)?;
    store.write(|tx| {
        let recipe_id = match &new.recipe {
            Some(reference) => Some(resolve_in(store, tx, Kind::Recipe, reference)?.id),
            None => None,
        };
        tx.execute(
            "INSERT INTO runs (id, recipe_version_id, status, params, environment, created_by) \
             VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
            params![id, recipe_id, new.params, new.environment, new.actor],
        )
        .map_err(|e| store.err(e))?;
        let node = super::lineage::add_run_node(store, tx, &id)?;
        super::lineage::record_run_edges(store, tx, &node, recipe_id, &new.used, &new.actor)?;
        resolve_run(store, tx, &id)
    })
}

pub(super) fn set_params(store: &SqliteMetaStore, run_id: &str, params_json: &str) -> Result<()> {
    store.write(|tx| {
        let run = running(store, tx, run_id)?;
        tx.execute(
            "UPDATE runs SET params = ?1 WHERE id = ?2",
            params![params_json, run.id],
        )
        .map_err(|e| store.err(e))?;
        Ok(())
    })
}

pub(super) fn log_metrics(
    store: &SqliteMetaStore,
    run_id: &str,
    points: &[MetricPoint],
) -> Result<()> {
    for p in points {
        validate_metric(&p.name, p.value)?;
    }
    store.write(|tx| {
        let run = running(store, tx, run_id)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| store.err(e))?;
        for p in points {
            insert
                .execute(params![run.id, p.name, p.step, p.value, p.at])
                .map_err(|e| store.err(e))?;
        }
        Ok(())
    })
}

pub(super) fn log_at_next_step(
    store: &SqliteMetaStore,
    run_id: &str,
    values: &[(String, f64)],
    at: f64,
) -> Result<i64> {
    for (name, value) in values {
        validate_metric(name, *value)?;
    }
    store.write(|tx| {
        let run = running(store, tx, run_id)?;
        // Computed inside the write transaction: two processes logging at once get
        // consecutive steps, never the same one.
        let step: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(step), -1) + 1 FROM metrics WHERE run_id = ?1",
                [&run.id],
                |r| r.get(0),
            )
            .map_err(|e| store.err(e))?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| store.err(e))?;
        for (name, value) in values {
            insert
                .execute(params![run.id, name, step, value, at])
                .map_err(|e| store.err(e))?;
        }
        Ok(step)
    })
}

pub(super) fn finish_run(
    store: &SqliteMetaStore,
    run_id: &str,
    status: RunStatus,
    error: Option<&str>,
) -> Result<RunRecord> {
    if !status.is_final() {
        return Err(CoreError::InvalidInput {
            message: format!("a run finishes as completed, failed or cancelled, not {status}"),
        });
    }
    store.write(|tx| {
        let run = running(store, tx, run_id)?;
        tx.execute(
            "UPDATE runs SET status = ?1, error = ?2, \
             finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?3",
            params![status.as_str(), error, run.id],
        )
        .map_err(|e| store.err(e))?;
        resolve_run(store, tx, &run.id)
    })
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
        let run = running(store, tx, run_id)?;
        let hex = digest.to_hex();
        tx.execute(
            "INSERT OR IGNORE INTO objects (digest, size) VALUES (?1, ?2)",
            params![hex, i64::try_from(size).unwrap_or(i64::MAX)],
        )
        .map_err(|e| store.err(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO run_artifacts (run_id, name, digest) VALUES (?1, ?2, ?3)",
            params![run.id, name, hex],
        )
        .map_err(|e| store.err(e))?;
        Ok(())
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
