//! The registry's rules about versions, written once over [`VersionTx`]: which number a
//! registration gets (deleted numbers are never reused), how a reference resolves, which
//! stage moves are allowed and what archive-existing does, reserved alias names, and what a
//! delete refuses. Every backend runs these same functions inside its own transaction.

pub(crate) mod lineage;
pub(crate) mod runs;

use std::collections::BTreeMap;

use super::names::{validate_alias, validate_name, validate_tag};
use super::tx::{MetaTx, RowId, VersionRow, VersionTx, VersionsOf};
use super::version::{sort_by_precedence, Version};
use super::{
    Kind, ListFilter, NameSummary, NewVersion, Reference, Selector, Stage, VersionChoice,
    VersionRecord,
};
use crate::{CoreError, Result};

/// The version as a uniqueness key: build metadata does not make a different version.
pub(crate) fn version_key(version: &Version) -> String {
    let text = version.to_string();
    match text.split_once('+') {
        Some((key, _)) => key.to_string(),
        None => text,
    }
}

pub(crate) fn not_found(kind: Kind, what: String) -> CoreError {
    let list = match kind {
        Kind::Model => "pacha model list",
        Kind::Dataset => "pacha data list",
        Kind::Recipe => "pacha recipe list",
    };
    CoreError::NotFound {
        message: format!("{kind} {what} does not exist; `{list}` shows what does"),
    }
}

/// Each name with its number of versions and its latest (the highest version that is not a
/// pre-release), from every (name, version, pre-release) of one kind; ordered by name.
pub(crate) fn name_summaries(
    rows: impl IntoIterator<Item = (String, String, bool)>,
) -> Vec<NameSummary> {
    let mut by_name: std::collections::BTreeMap<String, (u64, Vec<String>)> =
        std::collections::BTreeMap::new();
    for (name, version, prerelease) in rows {
        let entry = by_name.entry(name).or_default();
        entry.0 += 1;
        if !prerelease {
            entry.1.push(version);
        }
    }
    by_name
        .into_iter()
        .map(|(name, (versions, mut releases))| {
            sort_by_precedence(&mut releases, |v| v);
            NameSummary {
                name,
                versions,
                latest: releases.pop(),
            }
        })
        .collect()
}

/// Versions of `kind` matching `filter`: each name's in precedence order, names in
/// alphabetical order. A name that does not exist is an error, a name without matches not.
pub(crate) fn list_versions(
    tx: &mut dyn VersionTx,
    kind: Kind,
    name: Option<&str>,
    filter: &ListFilter,
) -> Result<Vec<VersionRecord>> {
    let mut rows = tx.versions_matching(kind, name, filter)?;
    if let Some(name) = name {
        if rows.is_empty() && tx.artifact(kind, name)?.is_none() {
            return Err(not_found(kind, format!("{name:?}")));
        }
    }
    sort_by_precedence(&mut rows, |r| &r.version);
    // Stable sort: precedence order within each name, names alphabetical.
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    tx.attach_labels(&mut rows)?;
    Ok(rows)
}

/// The number a registration of `name` gets: the exact one asked for if it was never used
/// (deleted versions keep their numbers), or the next after the highest ever used.
pub(crate) fn choose_version(
    tx: &mut dyn VersionTx,
    kind: Kind,
    name: &str,
    choice: &VersionChoice,
) -> Result<Version> {
    match choice {
        VersionChoice::Exact(version) => {
            let key = version_key(version);
            if let Some(artifact) = tx.artifact(kind, name)? {
                if let Some(existing) = tx.versions(artifact, VersionsOf::Key(&key))?.pop() {
                    return Err(CoreError::VersionExists {
                        message: format!(
                            "{kind} {name}:{} is already registered; versions are immutable — \
                             register a new version",
                            existing.version
                        ),
                    });
                }
            }
            if let Some(deleted) = tx.deleted_number(kind, name, &key)? {
                return Err(CoreError::VersionExists {
                    message: format!(
                        "{kind} {name}:{deleted} was deleted and its number is kept in the \
                         lineage history; version numbers are never reused — register another"
                    ),
                });
            }
            Ok(version.clone())
        }
        VersionChoice::Bump(part) => {
            // Deleted versions count: their numbers are never given out again.
            let mut known: Vec<String> = tx
                .numbers_used(kind, name)?
                .into_iter()
                .map(|used| used.version)
                .collect();
            sort_by_precedence(&mut known, |v| v);
            Ok(match known.pop() {
                None => Version::initial(*part),
                Some(highest) => Version::parse(&highest)?.bump(*part)?,
            })
        }
    }
}

/// The version a reference names, with its aliases and tags.
pub(crate) fn resolve(
    tx: &mut dyn VersionTx,
    kind: Kind,
    reference: &Reference,
) -> Result<VersionRecord> {
    let name = &reference.name;
    let Some(artifact) = tx.artifact(kind, name)? else {
        return Err(not_found(kind, format!("{name:?}")));
    };
    let mut found = match &reference.selector {
        Selector::Exact(version) => {
            let key = version_key(version);
            tx.versions(artifact, VersionsOf::Key(&key))?
                .pop()
                .ok_or_else(|| not_found(kind, format!("{name}:{version}")))?
        }
        Selector::Latest => {
            let mut rows = tx.versions(artifact, VersionsOf::Released)?;
            sort_by_precedence(&mut rows, |r| &r.version);
            rows.pop().ok_or_else(|| {
                not_found(
                    kind,
                    format!("{name}:latest (no version that is not a pre-release)"),
                )
            })?
        }
        // The version that entered the stage most recently, so that promoting an older
        // version (a rollback) takes effect at once.
        Selector::Stage(stage) => tx
            .versions(artifact, VersionsOf::LastEntered(*stage))?
            .pop()
            .ok_or_else(|| not_found(kind, format!("{name}@{stage} (no version in that stage)")))?,
        Selector::Alias(alias) => tx
            .versions(artifact, VersionsOf::Alias(alias))?
            .pop()
            .ok_or_else(|| not_found(kind, format!("{name}@{alias} (no such alias or stage)")))?,
    };
    tx.attach_labels(std::slice::from_mut(&mut found))?;
    Ok(found)
}

/// The same version read again (after a write changed its labels or stage).
fn reread(tx: &mut dyn VersionTx, record: &VersionRecord) -> Result<VersionRecord> {
    let again = Reference {
        name: record.name.clone(),
        selector: Selector::Exact(Version::parse(&record.version)?),
    };
    resolve(tx, record.kind, &again)
}

fn check_tags(tags: &[(String, String)]) -> Result<Vec<(String, String)>> {
    tags.iter().map(|(k, v)| validate_tag(k, v)).collect()
}

/// Register a version: choose its number, record its row, objects, tags, first stage and
/// lineage.
pub(crate) fn insert_version(tx: &mut dyn MetaTx, new: &NewVersion) -> Result<VersionRecord> {
    let name = &validate_name(&new.name)?;
    let tags = check_tags(&new.tags)?;
    for (what, text) in [("description", &new.description), ("card", &new.card)] {
        if text.as_deref().is_some_and(|t| t.contains('\0')) {
            // PostgreSQL text cannot hold one; every backend refuses it alike.
            return Err(CoreError::InvalidInput {
                message: format!("the {what} contains a NUL character; remove it"),
            });
        }
    }
    let version = choose_version(tx, new.kind, name, &new.version)?;
    let artifact = tx.ensure_artifact(new.kind, name)?;
    let key = version_key(&version);
    let text = version.to_string();
    let mode = new.mode.map(|m| m & 0o777);
    let inserted = tx.insert_version(&VersionRow {
        artifact,
        version: &text,
        key: &key,
        prerelease: version.is_prerelease(),
        digest: &new.digest,
        layout: new.layout,
        size: new.size,
        file_count: new.file_count,
        description: new.description.as_deref(),
        card: new.card.as_deref(),
        created_by: &new.actor,
        run_id: new.run_id.as_deref(),
        mode,
    })?;
    let id = inserted.id;
    tx.add_objects(id, &new.objects)?;
    tx.put_tags(id, &tags)?;
    tx.record_transition(id, None, Stage::Development, &new.actor)?;
    // The record as a read would return it, built from what was written (a read back would
    // cost a shared registry four round trips per version): tags by key, a key given twice
    // keeping its last value, as `put_tags` stores them.
    let tags: BTreeMap<String, String> = tags.into_iter().collect();
    let record = VersionRecord {
        id,
        kind: new.kind,
        name: name.clone(),
        version: text,
        digest: new.digest,
        layout: new.layout,
        size: new.size,
        file_count: new.file_count,
        stage: Stage::Development,
        description: new.description.clone(),
        card: new.card.clone(),
        aliases: Vec::new(),
        tags: tags.into_iter().collect(),
        created_at: inserted.created_at,
        created_by: new.actor.clone(),
        run_id: new.run_id.clone(),
        mode,
    };
    lineage::record_version(tx, &record, &key, &new.lineage, &new.actor)?;
    Ok(record)
}

/// Move a version to `to` following the stage rules; with `archive_existing`, the other
/// versions of the same name in production are archived in the same transaction.
pub(crate) fn transition(
    tx: &mut dyn VersionTx,
    kind: Kind,
    reference: &Reference,
    to: Stage,
    archive_existing: bool,
    actor: &str,
) -> Result<VersionRecord> {
    let record = resolve(tx, kind, reference)?;
    record.stage.check_transition(to)?;
    if to == Stage::Production && archive_existing {
        let artifact = artifact_of(tx, &record)?;
        let current = tx.versions(
            artifact,
            VersionsOf::InStageExcept(Stage::Production, record.id),
        )?;
        for old in current {
            tx.set_stage(old.id, Stage::Archived)?;
            tx.record_transition(old.id, Some(Stage::Production), Stage::Archived, actor)?;
        }
    }
    if record.stage == to {
        return Ok(record);
    }
    tx.set_stage(record.id, to)?;
    tx.record_transition(record.id, Some(record.stage), to, actor)?;
    let mut updated = record;
    updated.stage = to;
    Ok(updated)
}

fn artifact_of(tx: &mut dyn VersionTx, record: &VersionRecord) -> Result<RowId> {
    tx.artifact(record.kind, &record.name)?
        .ok_or_else(|| CoreError::Corrupt {
            message: format!(
                "{} {} has no artifact row; the registry database is inconsistent",
                record.kind,
                record.label()
            ),
        })
}

/// An alias as the user gave it, refused when it is a stage name or `latest` (both already
/// mean something in a reference).
fn check_alias(alias: &str) -> Result<String> {
    let alias = validate_alias(alias)?;
    if Stage::parse(&alias).is_ok() {
        return Err(CoreError::InvalidInput {
            message: format!("{alias:?} is a stage name and cannot be an alias; pick another name"),
        });
    }
    if alias == "latest" {
        return Err(CoreError::InvalidInput {
            message: "\"latest\" is reserved and cannot be an alias; pick another name".into(),
        });
    }
    Ok(alias)
}

/// Point an alias at the referenced version.
pub(crate) fn set_alias(
    tx: &mut dyn VersionTx,
    kind: Kind,
    reference: &Reference,
    alias: &str,
) -> Result<VersionRecord> {
    let alias = &check_alias(alias)?;
    let record = resolve(tx, kind, reference)?;
    let artifact = artifact_of(tx, &record)?;
    tx.put_alias(artifact, alias, record.id)?;
    reread(tx, &record)
}

pub(crate) fn delete_alias(
    tx: &mut dyn VersionTx,
    kind: Kind,
    name: &str,
    alias: &str,
) -> Result<()> {
    let name = &validate_name(name)?;
    let alias = &validate_alias(alias)?;
    let Some(artifact) = tx.artifact(kind, name)? else {
        return Err(not_found(kind, format!("{name:?}")));
    };
    if !tx.remove_alias(artifact, alias)? {
        return Err(CoreError::NotFound {
            message: format!("{kind} {name} has no alias {alias:?}"),
        });
    }
    Ok(())
}

/// Set tags on the referenced version.
pub(crate) fn set_tags(
    tx: &mut dyn VersionTx,
    kind: Kind,
    reference: &Reference,
    tags: &[(String, String)],
) -> Result<VersionRecord> {
    let tags = &check_tags(tags)?;
    let record = resolve(tx, kind, reference)?;
    tx.put_tags(record.id, tags)?;
    reread(tx, &record)
}

/// Delete a version: a production version needs `force`, a recipe version with runs is
/// kept. Its lineage node stays as a tombstone; a name with no version left disappears.
pub(crate) fn delete_version(
    tx: &mut dyn VersionTx,
    kind: Kind,
    reference: &Reference,
    force: bool,
) -> Result<VersionRecord> {
    let record = resolve(tx, kind, reference)?;
    if record.stage == Stage::Production && !force {
        return Err(CoreError::InProduction {
            message: format!(
                "{kind} {} is in production; archive it first",
                record.label()
            ),
        });
    }
    let runs = tx.runs_of_recipe(record.id)?;
    if runs > 0 {
        return Err(CoreError::InvalidInput {
            message: format!(
                "{kind} {} has {runs} run(s) that record it; a recipe with runs is kept",
                record.label()
            ),
        });
    }
    let artifact = artifact_of(tx, &record)?;
    tx.remove_version(record.id)?;
    tx.drop_artifact_if_empty(artifact)?;
    Ok(record)
}
