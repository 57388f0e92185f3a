//! The runs half of the PostgreSQL metadata store: the SQL of [`RunTx`] and the reads of
//! runs, metrics and run artifacts. The rules are in `meta::rules::runs`.

use tokio_postgres::Row;

use super::tx::{Params, PgTx, Stamp};
use super::{damaged, to_bigint};
use crate::meta::rules;
use crate::meta::tx::{RowId, RunTx};
use crate::meta::{Kind, MetricPoint, NewRun, Reference, RunRecord, RunStatus};
use crate::{Digest, Result};

const RUN_COLUMNS: &str = "r.id, a.name || ':' || v.version, r.status, r.params, \
     r.environment, r.started_at, r.finished_at, r.error, r.created_by, r.heartbeat_at";

const RUN_FROM: &str = "runs r LEFT JOIN versions v ON v.id = r.recipe_version_id \
     LEFT JOIN artifacts a ON a.id = v.artifact_id";

impl PgTx<'_> {
    fn run_at(&self, row: &Row) -> Result<RunRecord> {
        let status: String = self.get(row, 2)?;
        Ok(RunRecord {
            id: self.get(row, 0)?,
            recipe: self.get(row, 1)?,
            status: RunStatus::parse(&status)
                .map_err(|_| damaged(self.shown(), &format!("unknown run status {status:?}")))?,
            params: self.get(row, 3)?,
            environment: self.get(row, 4)?,
            started_at: self.get::<Stamp>(row, 5)?.0,
            finished_at: self.get::<Option<Stamp>>(row, 6)?.map(|s| s.0),
            error: self.get(row, 7)?,
            created_by: self.get(row, 8)?,
            heartbeat_at: self.get::<Option<Stamp>>(row, 9)?.map(|s| s.0),
        })
    }

    fn runs_where(&mut self, condition: &str, params: &Params<'_>) -> Result<Vec<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE {condition}");
        let rows = self.query(&sql, params)?;
        rows.iter().map(|row| self.run_at(row)).collect()
    }

    /// A metric point from (name, step, value, at) starting at column `at`.
    fn point_at(&self, row: &Row, at: usize) -> Result<MetricPoint> {
        Ok(MetricPoint {
            name: self.get(row, at)?,
            step: self.get(row, at + 1)?,
            value: self.get(row, at + 2)?,
            at: self.get(row, at + 3)?,
        })
    }
}

pub(super) fn list_runs(
    tx: &mut PgTx<'_>,
    recipe: Option<&Reference>,
    status: Option<RunStatus>,
) -> Result<Vec<RunRecord>> {
    let recipe_id = match recipe {
        Some(reference) => Some(rules::resolve(tx, Kind::Recipe, reference)?.id),
        None => None,
    };
    let status = status.map(RunStatus::as_str);
    tx.runs_where(
        "($1::bigint IS NULL OR r.recipe_version_id = $1) \
         AND ($2::text IS NULL OR r.status = $2) ORDER BY r.started_at, r.id",
        &[&recipe_id, &status],
    )
}

pub(super) fn run_metrics(tx: &mut PgTx<'_>, run_id: &str) -> Result<Vec<MetricPoint>> {
    let run = rules::runs::resolve_run(tx, run_id)?;
    let rows = tx.query(
        "SELECT name, step, value, at FROM metrics WHERE run_id = $1 ORDER BY name, step, id",
        &[&run.id],
    )?;
    rows.iter().map(|row| tx.point_at(row, 0)).collect()
}

pub(super) fn final_metrics(
    tx: &mut PgTx<'_>,
    run_ids: &[String],
) -> Result<Vec<(String, MetricPoint)>> {
    let mut out = Vec::new();
    for run_id in run_ids {
        let run = rules::runs::resolve_run(tx, run_id)?;
        // Index-driven, so a run's cost is its number of metric names, not of points: a
        // skip scan over the (run_id, name, step, id) index finds each name, then one
        // backward index probe per name finds the point at its highest step (the last one
        // logged there on a tie).
        let rows = tx.query(
            "WITH RECURSIVE names(name) AS ( \
                 SELECT min(name) FROM metrics WHERE run_id = $1 \
                 UNION ALL \
                 SELECT (SELECT min(m.name) FROM metrics m \
                         WHERE m.run_id = $1 AND m.name > names.name) \
                 FROM names WHERE names.name IS NOT NULL) \
             SELECT p.name, p.step, p.value, p.at FROM names \
             CROSS JOIN LATERAL (SELECT m.name, m.step, m.value, m.at FROM metrics m \
                 WHERE m.run_id = $1 AND m.name = names.name \
                 ORDER BY m.step DESC, m.id DESC LIMIT 1) p \
             ORDER BY p.name",
            &[&run.id],
        )?;
        for row in &rows {
            out.push((run.id.clone(), tx.point_at(row, 0)?));
        }
    }
    Ok(out)
}

pub(super) fn best_run(
    tx: &mut PgTx<'_>,
    recipe: &Reference,
    metric: &str,
    minimize: bool,
) -> Result<Option<(RunRecord, MetricPoint)>> {
    let recipe_id = rules::resolve(tx, Kind::Recipe, recipe)?.id;
    // One indexed probe per completed run: the point at the run's highest step.
    let order = if minimize { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT r.id, last.name, last.step, last.value, last.at FROM runs r \
         CROSS JOIN LATERAL (SELECT m.name, m.step, m.value, m.at FROM metrics m \
             WHERE m.run_id = r.id AND m.name = $2 ORDER BY m.step DESC, m.id DESC LIMIT 1) last \
         WHERE r.recipe_version_id = $1 AND r.status = 'completed' \
         ORDER BY last.value {order}, r.started_at, r.id LIMIT 1"
    );
    let Some(row) = tx.query_opt(&sql, &[&recipe_id, &metric])? else {
        return Ok(None);
    };
    let id: String = tx.get(&row, 0)?;
    let point = tx.point_at(&row, 1)?;
    Ok(Some((rules::runs::resolve_run(tx, &id)?, point)))
}

pub(super) fn artifacts(tx: &mut PgTx<'_>, run_id: &str) -> Result<Vec<(String, Digest, u64)>> {
    let run = rules::runs::resolve_run(tx, run_id)?;
    let rows = tx.query(
        "SELECT ra.name, ra.digest, o.size FROM run_artifacts ra \
         JOIN objects o ON o.digest = ra.digest WHERE ra.run_id = $1 ORDER BY ra.name",
        &[&run.id],
    )?;
    rows.iter()
        .map(|row| {
            let size: i64 = tx.get(row, 2)?;
            Ok((
                tx.get(row, 0)?,
                tx.digest(row, 1)?,
                size.try_into().unwrap_or(0),
            ))
        })
        .collect()
}

impl RunTx for PgTx<'_> {
    fn runs_with_prefix(&mut self, prefix: &str, limit: usize) -> Result<Vec<RunRecord>> {
        // Run ids are validated hex, so the prefix holds no LIKE wildcard; the id column's
        // "C" collation lets the primary key serve the prefix.
        let pattern = format!("{prefix}%");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.runs_where("r.id LIKE $1 ORDER BY r.id LIMIT $2", &[&pattern, &limit])
    }

    fn insert_run(&mut self, new: &NewRun, id: &str, recipe: Option<RowId>) -> Result<()> {
        self.execute(
            "INSERT INTO runs (id, recipe_version_id, status, params, environment, created_by) \
             VALUES ($1, $2, 'running', $3, $4, $5)",
            &[&id, &recipe, &new.params, &new.environment, &new.actor],
        )
        .map(drop)
    }

    fn touch_run(&mut self, id: &str) -> Result<()> {
        self.execute("UPDATE runs SET heartbeat_at = now() WHERE id = $1", &[&id])
            .map(drop)
    }

    fn set_run_params(&mut self, id: &str, params: &str) -> Result<()> {
        self.execute("UPDATE runs SET params = $1 WHERE id = $2", &[&params, &id])
            .map(drop)
    }

    fn highest_step(&mut self, id: &str) -> Result<Option<i64>> {
        let row = self.query_one("SELECT MAX(step) FROM metrics WHERE run_id = $1", &[&id])?;
        self.get(&row, 0)
    }

    fn insert_metrics(&mut self, id: &str, points: &[MetricPoint]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        // One statement for any number of points; unnest keeps their order, so ids (the
        // tie-break between points at one step) follow it.
        let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
        let steps: Vec<i64> = points.iter().map(|p| p.step).collect();
        let values: Vec<f64> = points.iter().map(|p| p.value).collect();
        let ats: Vec<f64> = points.iter().map(|p| p.at).collect();
        self.execute(
            "INSERT INTO metrics (run_id, name, step, value, at) \
             SELECT $1, n, s, v, t FROM unnest($2::text[], $3::bigint[], \
                 $4::double precision[], $5::double precision[]) WITH ORDINALITY \
                 AS p(n, s, v, t, i) ORDER BY i",
            &[&id, &names, &steps, &values, &ats],
        )
        .map(drop)
    }

    fn end_run(&mut self, id: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
        self.execute(
            "UPDATE runs SET status = $1, error = $2, finished_at = now() WHERE id = $3",
            &[&status.as_str(), &error, &id],
        )
        .map(drop)
    }

    fn put_run_artifact(&mut self, id: &str, name: &str, digest: &Digest, size: u64) -> Result<()> {
        let hex = digest.to_hex();
        let size = to_bigint(size)?;
        self.execute(
            "INSERT INTO objects (digest, size) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
            &[&hex, &size],
        )?;
        self.execute("DELETE FROM gc_marks WHERE digest = $1", &[&hex])?;
        self.execute(
            "INSERT INTO run_artifacts (run_id, name, digest) VALUES ($1, $2, $3) \
             ON CONFLICT (run_id, name) DO UPDATE SET digest = excluded.digest",
            &[&id, &name, &hex],
        )
        .map(drop)
    }
}
