//! The SQL behind each primitive of [`VersionTx`] for PostgreSQL (and, in `runs.rs` and
//! `lineage.rs`, of `RunTx` and `LineageTx`), with the statement plumbing they share. The
//! rules that use them are in `meta::rules`.

use std::collections::HashMap;

use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Row, Statement};

use super::{classify, damaged, pg_error, to_bigint, PostgresMetaStore, Session};
use crate::meta::tx::{Inserted, NumberUse, RowId, VersionRow, VersionTx, VersionsOf};
use crate::meta::{Kind, Layout, ListFilter, Stage, VersionRecord};
use crate::{CoreError, Digest, Result};

/// Statement parameters.
pub(super) type Params<'p> = [&'p (dyn ToSql + Sync)];

/// A parameter owned by a statement that waits to be sent (see [`PgTx::execute_later`]).
pub(super) type Owned = Box<dyn ToSql + Sync + Send>;

/// A statement held back to travel with the next one that must be answered: PostgreSQL
/// answers pipelined statements in order, so a registration's writes that return nothing
/// cost no round trip of their own.
enum Pending {
    Batch(String),
    Execute(Statement, Vec<Owned>),
}

/// Why a statement failed, as far as running the transaction again is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// A serialization failure or a deadlock: another transaction won; running again (with
    /// a new snapshot) may succeed.
    Conflict,
    /// A unique key that a concurrent transaction took after this one's snapshot: running
    /// again sees it, and the rules then choose another number or refuse properly. It can
    /// also be a lasting error, so it is retried only a few times.
    Duplicate,
    /// The connection is gone (a server restart, the network): the transaction was rolled
    /// back by the server unless COMMIT was already sent.
    Lost,
    /// Anything else: running again would fail the same way.
    Other,
}

/// Send `pending` in order and wait for every answer. Each request is queued on the
/// connection when its future is first polled, and `join_all` polls them in order, so the
/// server receives them in order, back to back, and answers them in one round trip.
async fn send_in_order(
    client: &tokio_postgres::Client,
    pending: &[Pending],
) -> Vec<std::result::Result<(), tokio_postgres::Error>> {
    let sent = pending.iter().map(|held| async move {
        match held {
            Pending::Batch(sql) => client.batch_execute(sql).await,
            Pending::Execute(statement, params) => {
                let params: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                client.execute(statement, &params).await.map(drop)
            }
        }
    });
    futures::future::join_all(sent).await
}

/// The connection of a [`PostgresMetaStore`], inside a transaction for writes.
pub(super) struct PgTx<'a> {
    store: &'a PostgresMetaStore,
    session: &'a mut Session,
    /// The first failed statement's kind: after it PostgreSQL has aborted the transaction
    /// (a COMMIT would silently roll it back), so later failures say nothing new.
    failure: Option<Failure>,
    /// COMMIT was sent: a connection lost now leaves the outcome unknown.
    committing: bool,
    /// Sent, in order, ahead of the next statement whose answer is awaited.
    pending: Vec<Pending>,
}

impl<'a> PgTx<'a> {
    pub(super) fn new(store: &'a PostgresMetaStore, session: &'a mut Session) -> Self {
        PgTx {
            store,
            session,
            failure: None,
            committing: false,
            pending: Vec::new(),
        }
    }

    /// Whether running the whole transaction again may succeed, and why.
    pub(super) fn retry(&self) -> Option<Failure> {
        match self.failure {
            Some(Failure::Lost) if self.committing => None,
            Some(Failure::Other) | None => None,
            other => other,
        }
    }

    pub(super) fn shown(&self) -> &str {
        &self.store.shown
    }

    /// Run `f` between `begin` and COMMIT; anything that fails rolls back.
    pub(super) fn transaction<T>(
        &mut self,
        begin: &str,
        f: &impl Fn(&mut PgTx<'a>) -> Result<T>,
    ) -> Result<T> {
        self.session.in_transaction = true;
        self.pending.push(Pending::Batch(begin.to_string()));
        let outcome = f(self).and_then(|value| {
            if self.failure.is_some() {
                // A caller went on after a failed statement; nothing it did holds.
                return Err(CoreError::Database {
                    path: self.shown().into(),
                    message: "a statement failed inside the transaction; nothing was recorded"
                        .into(),
                });
            }
            self.committing = true;
            self.batch("COMMIT").map_err(|e| match e {
                CoreError::Database { path, message } if self.failure == Some(Failure::Lost) => {
                    CoreError::Database {
                        path,
                        message: format!(
                            "{message} — while committing: the change may or may not have \
                             been recorded; check before repeating it"
                        ),
                    }
                }
                other => other,
            })?;
            Ok(value)
        });
        self.pending.clear();
        if outcome.is_err() && self.failure != Some(Failure::Lost) {
            // Also after a failed COMMIT, where it only draws a warning.
            let _ = self
                .session
                .runtime
                .block_on(self.session.client.batch_execute("ROLLBACK"));
        }
        self.session.in_transaction = false;
        outcome
    }

    /// The error of a failed statement; notes what it means for running again.
    fn fail(&mut self, e: &tokio_postgres::Error) -> CoreError {
        let failure = classify(e);
        if failure == Failure::Lost {
            self.session.broken = true;
        }
        self.failure.get_or_insert(failure);
        pg_error(self.shown(), e)
    }

    /// Statements without parameters or results, sent as one simple query (after those
    /// held back).
    pub(super) fn batch(&mut self, sql: &str) -> Result<()> {
        self.pending.push(Pending::Batch(sql.to_string()));
        self.flush()
    }

    /// Send what is held back and wait for all of it: one round trip. The first failure is
    /// the one reported (PostgreSQL refuses the rest of an aborted transaction).
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let session = &mut *self.session;
        let client = &session.client;
        let outcomes = session.runtime.block_on(send_in_order(client, &pending));
        match outcomes.into_iter().find_map(std::result::Result::err) {
            Some(e) => Err(self.fail(&e)),
            None => Ok(()),
        }
    }

    /// Hold a write that returns nothing back until the next statement that must be
    /// answered (or COMMIT): its failure is reported there, and fails the transaction all
    /// the same.
    pub(super) fn execute_later(&mut self, sql: &str, params: Vec<Owned>) -> Result<()> {
        let statement = self.statement(sql)?;
        self.pending.push(Pending::Execute(statement, params));
        Ok(())
    }

    /// The prepared statement for `sql`, prepared once per connection.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.session.statements.get(sql) {
            return Ok(statement.clone());
        }
        let session = &mut *self.session;
        let prepared = session.runtime.block_on(session.client.prepare(sql));
        let statement = prepared.map_err(|e| self.fail(&e))?;
        let cache = &mut self.session.statements;
        if cache.len() >= super::STATEMENT_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub(super) fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let pending = std::mem::take(&mut self.pending);
        let session = &mut *self.session;
        let client = &session.client;
        let (held, rows) = session.runtime.block_on(async {
            futures::join!(
                send_in_order(client, &pending),
                client.query(&statement, params)
            )
        });
        match held.into_iter().find_map(std::result::Result::err) {
            Some(e) => Err(self.fail(&e)),
            None => rows.map_err(|e| self.fail(&e)),
        }
    }

    /// The first row, if any.
    pub(super) fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The row of a statement that always returns one (an aggregate, RETURNING).
    pub(super) fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| CoreError::Database {
                path: self.shown().into(),
                message: "a statement that returns a row returned none".into(),
            })
    }

    /// The number of rows changed.
    pub(super) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let statement = self.statement(sql)?;
        let pending = std::mem::take(&mut self.pending);
        let session = &mut *self.session;
        let client = &session.client;
        let (held, changed) = session.runtime.block_on(async {
            futures::join!(
                send_in_order(client, &pending),
                client.execute(&statement, params)
            )
        });
        match held.into_iter().find_map(std::result::Result::err) {
            Some(e) => Err(self.fail(&e)),
            None => changed.map_err(|e| self.fail(&e)),
        }
    }

    /// Column `index` of `row`; a value of the wrong type or a NULL where none may be is
    /// damage, reported, never a panic.
    pub(super) fn get<'r, T: FromSql<'r>>(&self, row: &'r Row, index: usize) -> Result<T> {
        row.try_get(index).map_err(|e| {
            let column = row.columns().get(index).map_or("?", |c| c.name());
            let why =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            damaged(
                self.shown(),
                &super::one_line(&format!("column {column}: {why}")),
            )
        })
    }

    pub(super) fn digest(&self, row: &Row, index: usize) -> Result<Digest> {
        let text: String = self.get(row, index)?;
        Digest::parse(&text)
            .map_err(|_| damaged(self.shown(), &format!("malformed digest {text:?}")))
    }

    pub(super) fn artifact_id(&mut self, kind: Kind, name: &str) -> Result<Option<RowId>> {
        match self.query_opt(
            "SELECT id FROM artifacts WHERE kind = $1 AND name = $2",
            &[&kind.as_str(), &name],
        )? {
            Some(row) => Ok(Some(self.get(&row, 0)?)),
            None => Ok(None),
        }
    }

    /// Versions matching `condition` (over `v` and `a`), in id order, without labels.
    pub(super) fn versions_where(
        &mut self,
        condition: &str,
        params: &Params<'_>,
    ) -> Result<Vec<VersionRecord>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN artifacts a ON a.id = v.artifact_id \
             WHERE {condition} ORDER BY v.id"
        );
        let rows = self.query(&sql, params)?;
        rows.iter()
            .map(|row| self.version_at(row, 0))
            .collect::<Result<Vec<_>>>()
    }

    /// A version from the [`VERSION_COLUMNS`] starting at column `at`.
    pub(super) fn version_at(&self, row: &Row, at: usize) -> Result<VersionRecord> {
        let kind: String = self.get(row, at + 1)?;
        let layout: String = self.get(row, at + 5)?;
        let stage: String = self.get(row, at + 8)?;
        let bad = |what: String| damaged(self.shown(), &what);
        Ok(VersionRecord {
            id: self.get(row, at)?,
            kind: Kind::parse(&kind).map_err(|_| bad(format!("unknown kind {kind:?}")))?,
            name: self.get(row, at + 2)?,
            version: self.get(row, at + 3)?,
            digest: self.digest(row, at + 4)?,
            layout: match layout.as_str() {
                "tree" => Layout::Tree,
                _ => Layout::File,
            },
            size: self.get::<i64>(row, at + 6)?.try_into().unwrap_or(0),
            file_count: self.get::<i64>(row, at + 7)?.try_into().unwrap_or(0),
            stage: Stage::parse(&stage).map_err(|_| bad(format!("unknown stage {stage:?}")))?,
            description: self.get(row, at + 9)?,
            card: self.get(row, at + 10)?,
            aliases: Vec::new(),
            tags: Vec::new(),
            created_at: self.get::<Stamp>(row, at + 11)?.0,
            created_by: self.get(row, at + 12)?,
            run_id: self.get(row, at + 13)?,
            // A damaged cell means "not recorded": the mode is a convenience, never checked.
            mode: row
                .try_get::<_, Option<i32>>(at + 14)
                .ok()
                .flatten()
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| *m <= 0o777),
        })
    }

    /// Fill in aliases and tags of the given records (two statements, whatever their number).
    pub(super) fn labels(&mut self, records: &mut [VersionRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let index: HashMap<i64, usize> =
            records.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
        let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
        let aliases = self.query(
            "SELECT version_id, alias FROM aliases WHERE version_id = ANY($1) ORDER BY alias",
            &[&ids],
        )?;
        for row in &aliases {
            let id: i64 = self.get(row, 0)?;
            if let Some(&i) = index.get(&id) {
                records[i].aliases.push(self.get(row, 1)?);
            }
        }
        let tags = self.query(
            "SELECT version_id, key, value FROM tags WHERE version_id = ANY($1) ORDER BY key",
            &[&ids],
        )?;
        for row in &tags {
            let id: i64 = self.get(row, 0)?;
            if let Some(&i) = index.get(&id) {
                records[i].tags.push((self.get(row, 1)?, self.get(row, 2)?));
            }
        }
        Ok(())
    }
}

pub(super) const VERSION_COLUMNS: &str = "v.id, a.kind, a.name, v.version, v.digest, v.layout, \
     v.size, v.file_count, v.stage, v.description, v.card, v.created_at, v.created_by, \
     v.run_id, v.mode";

/// A timestamp column as the text every record carries: `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC,
/// the form the SQLite store writes. Decoded from the binary value (microseconds since
/// 2000-01-01 UTC), so it does not depend on the session's time zone or date style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp(pub(super) String);

impl<'a> FromSql<'a> for Stamp {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let micros = i64::from_be_bytes(raw.try_into()?);
        format_timestamp(micros)
            .map(Stamp)
            .ok_or_else(|| format!("timestamp {micros} is out of range").into())
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }
}

/// Microseconds since 2000-01-01T00:00:00Z as the registry's timestamp text (milliseconds
/// truncated, as SQLite's `%f` does); `None` for ±infinity and years outside 0000–9999.
pub(super) fn format_timestamp(micros: i64) -> Option<String> {
    // 2000-01-01 is day 10957 after 1970-01-01.
    const DAY_MS: i64 = 86_400_000;
    let ms = micros.div_euclid(1000);
    let days = ms.div_euclid(DAY_MS).checked_add(10_957)?;
    let of_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days)?;
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (h, m, s, f) = (
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000,
    );
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{f:03}Z"
    ))
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01); H. Hinnant's
/// algorithm.
fn civil_from_days(days: i64) -> Option<(i64, i64, i64)> {
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe.checked_add(era.checked_mul(400)?)? + i64::from(month <= 2);
    Some((year, month, day))
}

impl VersionTx for PgTx<'_> {
    fn versions_matching(
        &mut self,
        kind: Kind,
        name: Option<&str>,
        filter: &ListFilter,
    ) -> Result<Vec<VersionRecord>> {
        let kind_text = kind.as_str();
        let stage_text = filter.stage.map(Stage::as_str);
        let mut condition = String::from(
            "a.kind = $1 AND ($2::text IS NULL OR a.name = $2) \
             AND ($3::text IS NULL OR v.stage = $3)",
        );
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&kind_text, &name, &stage_text];
        for (key, value) in &filter.tags {
            let k = args.len() + 1;
            condition.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM tags t WHERE t.version_id = v.id \
                 AND t.key = ${k} AND t.value = ${})",
                k + 1
            ));
            args.push(key);
            args.push(value);
        }
        self.versions_where(&condition, &args)
    }

    fn artifact(&mut self, kind: Kind, name: &str) -> Result<Option<RowId>> {
        self.artifact_id(kind, name)
    }

    fn ensure_artifact(&mut self, kind: Kind, name: &str) -> Result<RowId> {
        // One round trip: the row inserted now, or the one that was there (a statement's
        // CTE insert is invisible to its own SELECT, hence the UNION).
        let row = self.query_one(
            "WITH new AS (INSERT INTO artifacts (kind, name) VALUES ($1, $2) \
                 ON CONFLICT (kind, name) DO NOTHING RETURNING id) \
             SELECT id FROM new UNION ALL \
             SELECT id FROM artifacts WHERE kind = $1 AND name = $2 LIMIT 1",
            &[&kind.as_str(), &name],
        )?;
        self.get(&row, 0)
    }

    fn drop_artifact_if_empty(&mut self, artifact: RowId) -> Result<()> {
        self.execute(
            "DELETE FROM artifacts WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.artifact_id = artifacts.id)",
            &[&artifact],
        )
        .map(drop)
    }

    fn numbers_used(&mut self, kind: Kind, name: &str) -> Result<Vec<NumberUse>> {
        let rows = self.query(
            "SELECT version, deleted_at IS NOT NULL FROM lineage_nodes \
             WHERE kind = $1 AND name = $2 AND version IS NOT NULL",
            &[&kind.as_str(), &name],
        )?;
        rows.iter()
            .map(|row| {
                Ok(NumberUse {
                    version: self.get(row, 0)?,
                    deleted: self.get(row, 1)?,
                })
            })
            .collect()
    }

    fn deleted_number(&mut self, kind: Kind, name: &str, key: &str) -> Result<Option<String>> {
        match self.query_opt(
            "SELECT version FROM lineage_nodes WHERE kind = $1 AND name = $2 \
             AND version_key = $3 AND deleted_at IS NOT NULL",
            &[&kind.as_str(), &name, &key],
        )? {
            Some(row) => self.get(&row, 0),
            None => Ok(None),
        }
    }

    fn versions(&mut self, artifact: RowId, which: VersionsOf<'_>) -> Result<Vec<VersionRecord>> {
        match which {
            VersionsOf::Key(key) => self.versions_where(
                "v.artifact_id = $1 AND v.version_key = $2",
                &[&artifact, &key],
            ),
            VersionsOf::Released => {
                self.versions_where("v.artifact_id = $1 AND NOT v.prerelease", &[&artifact])
            }
            VersionsOf::LastEntered(stage) => self.versions_where(
                "v.id = (SELECT h.version_id FROM stage_history h \
                 JOIN versions x ON x.id = h.version_id \
                 WHERE x.artifact_id = $1 AND x.stage = $2 AND h.to_stage = $2 \
                 ORDER BY h.id DESC LIMIT 1)",
                &[&artifact, &stage.as_str()],
            ),
            VersionsOf::Alias(alias) => self.versions_where(
                "v.id = (SELECT version_id FROM aliases WHERE artifact_id = $1 AND alias = $2)",
                &[&artifact, &alias],
            ),
            VersionsOf::InStageExcept(stage, except) => self.versions_where(
                "v.artifact_id = $1 AND v.stage = $2 AND v.id <> $3",
                &[&artifact, &stage.as_str(), &except],
            ),
        }
    }

    fn attach_labels(&mut self, records: &mut [VersionRecord]) -> Result<()> {
        self.labels(records)
    }

    fn insert_version(&mut self, row: &VersionRow<'_>) -> Result<Inserted> {
        let (size, file_count) = (to_bigint(row.size)?, to_bigint(row.file_count)?);
        // The rules keep only the permission bits, which fit.
        let mode = row.mode.and_then(|m| i32::try_from(m).ok());
        let inserted = self.query_one(
            "INSERT INTO versions (artifact_id, version, version_key, prerelease, digest, \
             layout, size, file_count, description, card, created_by, run_id, mode) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             RETURNING id, created_at",
            &[
                &row.artifact,
                &row.version,
                &row.key,
                &row.prerelease,
                &row.digest.to_hex(),
                &row.layout.as_str(),
                &size,
                &file_count,
                &row.description,
                &row.card,
                &row.created_by,
                &row.run_id,
                &mode,
            ],
        )?;
        Ok(Inserted {
            id: self.get(&inserted, 0)?,
            created_at: self.get::<Stamp>(&inserted, 1)?.0,
        })
    }

    fn add_objects(&mut self, version: RowId, objects: &[(Digest, u64)]) -> Result<()> {
        if objects.is_empty() {
            return Ok(());
        }
        // In address order (a directory's many objects then go into the digest-keyed
        // indexes as neighbours, and two writers lock shared rows in the same order), each
        // digest once (a conflict inside one INSERT cannot be resolved).
        let mut sorted: Vec<&(Digest, u64)> = objects.iter().collect();
        sorted.sort_by_key(|(digest, _)| *digest);
        sorted.dedup_by_key(|(digest, _)| *digest);
        let digests: Vec<String> = sorted.iter().map(|(d, _)| d.to_hex()).collect();
        let sizes = sorted
            .iter()
            .map(|(_, size)| to_bigint(*size))
            .collect::<Result<Vec<i64>>>()?;
        // Two statements for any number of objects: the arrays travel as parameters. Both
        // travel with the transaction's next statement.
        self.execute_later(
            "INSERT INTO objects (digest, size) \
             SELECT d, s FROM unnest($1::text[], $2::bigint[]) AS t(d, s) \
             ON CONFLICT (digest) DO NOTHING",
            vec![Box::new(digests.clone()), Box::new(sizes)],
        )?;
        // Referenced again: garbage collection's marks on these go (`registry::gc`).
        self.execute_later(
            "DELETE FROM gc_marks WHERE digest = ANY($1)",
            vec![Box::new(digests.clone())],
        )?;
        self.execute_later(
            "INSERT INTO version_objects (version_id, digest) \
             SELECT $1, d FROM unnest($2::text[]) AS t(d) ON CONFLICT DO NOTHING",
            vec![Box::new(version), Box::new(digests)],
        )
    }

    fn put_tags(&mut self, version: RowId, tags: &[(String, String)]) -> Result<()> {
        // One statement per tag: a key given twice keeps its last value, as in SQLite.
        for (key, value) in tags {
            self.execute_later(
                "INSERT INTO tags (version_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (version_id, key) DO UPDATE SET value = excluded.value",
                vec![
                    Box::new(version),
                    Box::new(key.clone()),
                    Box::new(value.clone()),
                ],
            )?;
        }
        Ok(())
    }

    fn set_stage(&mut self, version: RowId, stage: Stage) -> Result<()> {
        self.execute(
            "UPDATE versions SET stage = $1 WHERE id = $2",
            &[&stage.as_str(), &version],
        )
        .map(drop)
    }

    fn record_transition(
        &mut self,
        version: RowId,
        from: Option<Stage>,
        to: Stage,
        actor: &str,
    ) -> Result<()> {
        self.execute_later(
            "INSERT INTO stage_history (version_id, from_stage, to_stage, \"by\") \
             VALUES ($1, $2, $3, $4)",
            vec![
                Box::new(version),
                Box::new(from.map(Stage::as_str)),
                Box::new(to.as_str()),
                Box::new(actor.to_string()),
            ],
        )
    }

    fn put_alias(&mut self, artifact: RowId, alias: &str, version: RowId) -> Result<()> {
        self.execute(
            "INSERT INTO aliases (artifact_id, alias, version_id) VALUES ($1, $2, $3) \
             ON CONFLICT (artifact_id, alias) DO UPDATE SET version_id = excluded.version_id",
            &[&artifact, &alias, &version],
        )
        .map(drop)
    }

    fn remove_alias(&mut self, artifact: RowId, alias: &str) -> Result<bool> {
        let removed = self.execute(
            "DELETE FROM aliases WHERE artifact_id = $1 AND alias = $2",
            &[&artifact, &alias],
        )?;
        Ok(removed > 0)
    }

    fn runs_of_recipe(&mut self, version: RowId) -> Result<u64> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM runs WHERE recipe_version_id = $1",
            &[&version],
        )?;
        Ok(u64::try_from(self.get::<i64>(&row, 0)?).unwrap_or(0))
    }

    fn remove_version(&mut self, version: RowId) -> Result<()> {
        for table in ["aliases", "tags", "version_objects", "stage_history"] {
            self.execute(
                &format!("DELETE FROM {table} WHERE version_id = $1"),
                &[&version],
            )?;
        }
        super::lineage::bury(self, version)?;
        self.execute("DELETE FROM versions WHERE id = $1", &[&version])
            .map(drop)
    }
}
