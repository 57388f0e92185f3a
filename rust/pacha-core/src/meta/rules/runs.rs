//! The rules about runs, written once over [`RunTx`]: how an id prefix resolves, that only a
//! running run takes writes (each one a sign of life), how a run ends, and which step a
//! metric logged without one gets.

use super::resolve;
use crate::meta::runs::{validate_metric, validate_run_id};
use crate::meta::tx::{MetaTx, RunTx};
use crate::meta::{Kind, MetricPoint, NewRun, RunRecord, RunStatus};
use crate::{CoreError, Digest, Result};

/// A run by its id or a unique prefix of it.
pub(crate) fn resolve_run(tx: &mut dyn RunTx, id_or_prefix: &str) -> Result<RunRecord> {
    let prefix = validate_run_id(id_or_prefix, true)?;
    let mut found = tx.runs_with_prefix(&prefix, 2)?;
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

/// The run, which must be running; every write to a run is a sign of life, so its
/// heartbeat is noted.
pub(crate) fn running(tx: &mut dyn RunTx, id_or_prefix: &str) -> Result<RunRecord> {
    let run = resolve_run(tx, id_or_prefix)?;
    if run.status.is_final() {
        return Err(CoreError::InvalidInput {
            message: format!(
                "run {} has finished ({}); start a new run to log more",
                run.id, run.status
            ),
        });
    }
    tx.touch_run(&run.id)?;
    Ok(run)
}

/// Start a run of a recipe version (if any), recording what it executes and uses.
pub(crate) fn create_run(tx: &mut dyn MetaTx, new: &NewRun) -> Result<RunRecord> {
    let id = validate_run_id(&new.id, false)?;
    let recipe = match &new.recipe {
        Some(reference) => Some(resolve(tx, Kind::Recipe, reference)?.id),
        None => None,
    };
    tx.insert_run(new, &id, recipe)?;
    super::lineage::record_run(tx, &id, recipe, new)?;
    resolve_run(tx, &id)
}

pub(crate) fn set_params(tx: &mut dyn RunTx, id: &str, params: &str) -> Result<()> {
    let run = running(tx, id)?;
    tx.set_run_params(&run.id, params)
}

pub(crate) fn log_metrics(tx: &mut dyn RunTx, id: &str, points: &[MetricPoint]) -> Result<()> {
    for p in points {
        validate_metric(&p.name, p.value)?;
    }
    let run = running(tx, id)?;
    tx.insert_metrics(&run.id, points)
}

/// Log `values` at the step after the run's highest one. Chosen inside the transaction, so
/// two processes logging at once get consecutive steps, never the same one.
pub(crate) fn log_at_next_step(
    tx: &mut dyn RunTx,
    id: &str,
    values: &[(String, f64)],
    at: f64,
) -> Result<i64> {
    for (name, value) in values {
        validate_metric(name, *value)?;
    }
    let run = running(tx, id)?;
    let step = match tx.highest_step(&run.id)? {
        None => 0,
        Some(highest) => highest
            .checked_add(1)
            .ok_or_else(|| CoreError::InvalidInput {
                message: format!("run {} has logged the largest step already", run.id),
            })?,
    };
    let points: Vec<MetricPoint> = values
        .iter()
        .map(|(name, value)| MetricPoint {
            name: name.clone(),
            step,
            value: *value,
            at,
        })
        .collect();
    tx.insert_metrics(&run.id, &points)?;
    Ok(step)
}

pub(crate) fn finish_run(
    tx: &mut dyn RunTx,
    id: &str,
    status: RunStatus,
    error: Option<&str>,
) -> Result<RunRecord> {
    if !status.is_final() {
        return Err(CoreError::InvalidInput {
            message: format!("a run finishes as completed, failed or cancelled, not {status}"),
        });
    }
    let run = running(tx, id)?;
    // An exception's text is recorded as it is, but for NUL characters, which PostgreSQL
    // text cannot hold: a run must always be able to end.
    let error = error.map(|text| text.replace('\0', "\u{fffd}"));
    tx.end_run(&run.id, status, error.as_deref())?;
    resolve_run(tx, &run.id)
}

pub(crate) fn add_artifact(
    tx: &mut dyn RunTx,
    id: &str,
    name: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let run = running(tx, id)?;
    tx.put_run_artifact(&run.id, name, digest, size)
}
