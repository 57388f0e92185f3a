//! Experiment runs: their records, statuses and metric points.

use std::fmt;

use crate::{CoreError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "pending" => Ok(RunStatus::Pending),
            "running" => Ok(RunStatus::Running),
            "completed" => Ok(RunStatus::Completed),
            "failed" => Ok(RunStatus::Failed),
            "cancelled" | "canceled" => Ok(RunStatus::Cancelled),
            _ => Err(CoreError::InvalidInput {
                message: format!(
                    "invalid run status {:?}: expected pending, running, completed, failed or cancelled",
                    text.chars().take(40).collect::<String>()
                ),
            }),
        }
    }

    /// Whether a run in this status has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run about to be started.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// 32 lowercase hex characters (a UUID without dashes), chosen by the caller.
    pub id: String,
    pub recipe: Option<super::Reference>,
    /// Parameters actually used, as JSON text.
    pub params: String,
    /// Captured environment (git commit, host, versions...), as JSON text.
    pub environment: String,
    pub actor: String,
    /// Datasets the run uses (lineage `used` edges), with their split (train, test, ...).
    pub used: Vec<(super::Reference, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: String,
    /// `name:version` of the recipe, if the run has one.
    pub recipe: Option<String>,
    pub status: RunStatus,
    pub params: String,
    pub environment: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub created_by: String,
    /// When a running run last showed a sign of life (`None` before any).
    pub heartbeat_at: Option<String>,
}

/// One logged value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub name: String,
    pub step: i64,
    pub value: f64,
    /// Seconds since the Unix epoch.
    pub at: f64,
}

/// Check a run id, or a prefix of one used to find it.
pub fn validate_run_id(text: &str, prefix: bool) -> Result<String> {
    let id = text.trim().to_ascii_lowercase();
    let hex = id.bytes().all(|c| c.is_ascii_hexdigit());
    let ok = if prefix {
        hex && (6..=32).contains(&id.len())
    } else {
        hex && id.len() == 32
    };
    if ok {
        Ok(id)
    } else {
        Err(CoreError::InvalidInput {
            message: format!(
                "invalid run id {:?}: give the 32 hex characters `pacha run start` printed, or a \
                 unique prefix of at least 6",
                text.chars().take(40).collect::<String>()
            ),
        })
    }
}

/// Check a metric name: like a tag key.
pub fn validate_metric(name: &str, value: f64) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
    {
        return Err(CoreError::InvalidInput {
            message: format!(
                "invalid metric name {:?}: use letters, digits, '-', '_', '.', '/' or ':' (e.g. val/loss)",
                name.chars().take(60).collect::<String>()
            ),
        });
    }
    if !value.is_finite() {
        return Err(CoreError::InvalidInput {
            message: format!("metric {name} = {value}: the value must be a finite number"),
        });
    }
    Ok(())
}
