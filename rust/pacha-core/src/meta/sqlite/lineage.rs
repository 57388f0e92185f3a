//! The lineage half of the SQLite metadata store: nodes, edges, tombstones, the cycle check
//! and the rows the in-memory graph is built from.

use std::collections::{HashMap, VecDeque};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value};

use super::runs::resolve_run;
use super::{resolve_in, version_key, versions_where, SqliteMetaStore};
use crate::lineage::{
    describe_cycle, EdgeRow, LineageRows, NewEdge, NodeKind, NodeRecord, NodeRef, Relation,
};
use crate::meta::{Kind, Reference, Selector, VersionRecord};
use crate::{CoreError, Result};

const NODE_COLUMNS: &str = "id, kind, name, version, deleted_at IS NOT NULL";

fn node_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRecord> {
    let kind: String = row.get(1)?;
    let name: String = row.get(2)?;
    let version: Option<String> = row.get(3)?;
    Ok(NodeRecord {
        id: row.get(0)?,
        kind: NodeKind::parse(&kind).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, "kind".into())
        })?,
        label: match version {
            Some(v) => format!("{name}:{v}"),
            None => name,
        },
        deleted: row.get(4)?,
    })
}

fn node_where(
    store: &SqliteMetaStore,
    conn: &Connection,
    condition: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Option<NodeRecord>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM lineage_nodes WHERE {condition}");
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| stmt.query_row(args, node_from_row).optional())
        .map_err(|e| store.err(e))
}

/// Record the node of a version just inserted.
pub(super) fn add_version_node(
    store: &SqliteMetaStore,
    tx: &Transaction<'_>,
    record: &VersionRecord,
    key: &str,
) -> Result<NodeRecord> {
    tx.prepare_cached(
        "INSERT INTO lineage_nodes (kind, name, version, version_key, version_id) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            record.kind.as_str(),
            record.name,
            record.version,
            key,
            record.id
        ])
    })
    .map_err(|e| store.err(e))?;
    Ok(NodeRecord {
        id: tx.last_insert_rowid(),
        kind: record.kind.into(),
        label: record.label(),
        deleted: false,
    })
}

/// Record the node of a run just created.
pub(super) fn add_run_node(
    store: &SqliteMetaStore,
    tx: &Transaction<'_>,
    run_id: &str,
) -> Result<NodeRecord> {
    tx.prepare_cached("INSERT INTO lineage_nodes (kind, name, run_id) VALUES ('run', ?1, ?1)")
        .and_then(|mut s| s.execute([run_id]))
        .map_err(|e| store.err(e))?;
    Ok(NodeRecord {
        id: tx.last_insert_rowid(),
        kind: NodeKind::Run,
        label: run_id.to_string(),
        deleted: false,
    })
}

/// A deleted version's tombstone, for references that name it exactly.
fn tombstone(
    store: &SqliteMetaStore,
    conn: &Connection,
    kind: Kind,
    reference: &Reference,
) -> Result<Option<NodeRecord>> {
    let Selector::Exact(version) = &reference.selector else {
        return Ok(None);
    };
    let key = version_key(version);
    node_where(
        store,
        conn,
        "kind = ?1 AND name = ?2 AND version_key = ?3 AND deleted_at IS NOT NULL",
        &[&kind.as_str(), &reference.name, &key],
    )
}

fn node_of_version(
    store: &SqliteMetaStore,
    conn: &Connection,
    kind: Kind,
    reference: &Reference,
) -> Result<NodeRecord> {
    match resolve_in(store, conn, kind, reference) {
        Ok(record) => node_where(store, conn, "version_id = ?1", &[&record.id])?.ok_or_else(|| {
            CoreError::Corrupt {
                message: format!(
                    "{kind} {} has no lineage node; the registry database is inconsistent",
                    record.label()
                ),
            }
        }),
        Err(CoreError::NotFound { message }) => {
            tombstone(store, conn, kind, reference)?.ok_or(CoreError::NotFound { message })
        }
        Err(e) => Err(e),
    }
}

/// The node a reference names (a deleted version's tombstone included).
pub(super) fn find_node(
    store: &SqliteMetaStore,
    conn: &Connection,
    node: &NodeRef,
) -> Result<NodeRecord> {
    match node {
        NodeRef::Version(kind, reference) => node_of_version(store, conn, *kind, reference),
        NodeRef::Run(prefix) => {
            let run = resolve_run(store, conn, prefix)?;
            node_where(store, conn, "run_id = ?1", &[&run.id])?.ok_or_else(|| CoreError::Corrupt {
                message: format!(
                    "run {} has no lineage node; the registry database is inconsistent",
                    run.id
                ),
            })
        }
        NodeRef::Untyped(reference) => {
            let mut found = Vec::new();
            for kind in [Kind::Model, Kind::Dataset, Kind::Recipe] {
                match node_of_version(store, conn, kind, reference) {
                    Ok(node) => found.push(node),
                    Err(CoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let text = match &reference.selector {
                Selector::Exact(v) => format!("{}:{v}", reference.name),
                Selector::Latest => format!("{}:latest", reference.name),
                Selector::Stage(s) => format!("{}@{s}", reference.name),
                Selector::Alias(a) => format!("{}@{a}", reference.name),
            };
            match found.len() {
                0 => Err(CoreError::NotFound {
                    message: format!(
                        "no model, dataset or recipe {text}; `pacha model list` and `pacha data list` show what exists"
                    ),
                }),
                1 => Ok(found.remove(0)),
                _ => Err(CoreError::InvalidInput {
                    message: format!(
                        "{text} is ambiguous ({}); write it as {}",
                        found.iter().map(|n| n.kind.as_str()).collect::<Vec<_>>().join(" and "),
                        found.iter().map(|n| format!("{}/{text}", n.kind)).collect::<Vec<_>>().join(" or ")
                    ),
                }),
            }
        }
    }
}

/// Insert one edge after checking its endpoints, parameters and (unless the derived node
/// is brand new, so that nothing can derive from it yet) that it closes no cycle.
/// Returns false if the same edge already existed.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_edge(
    store: &SqliteMetaStore,
    tx: &Transaction<'_>,
    from: &NodeRecord,
    to: &NodeRecord,
    relation: Relation,
    params: &Map<String, Value>,
    actor: &str,
    new_node: bool,
) -> Result<bool> {
    relation.check_endpoints(from.kind, to.kind)?;
    let params = relation.check_params(params)?;
    for node in [from, to] {
        if node.deleted {
            return Err(CoreError::InvalidInput {
                message: format!(
                    "{} was deleted; lineage keeps it as history but takes no new edges",
                    node.typed_label()
                ),
            });
        }
    }
    if from.id == to.id {
        return Err(CoreError::LineageCycle {
            cycle: describe_cycle(&[from.typed_label(), from.typed_label()]),
        });
    }
    if !new_node {
        if let Some(chain) = path_up(store, tx, to.id, from.id)? {
            let mut labels = vec![from.typed_label()];
            for id in chain {
                let node = node_where(store, tx, "id = ?1", &[&id])?;
                labels.push(
                    node.map(|n| n.typed_label())
                        .unwrap_or_else(|| format!("#{id}")),
                );
            }
            return Err(CoreError::LineageCycle {
                cycle: describe_cycle(&labels),
            });
        }
    }
    let params_text = Value::Object(params).to_string();
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO lineage_edges (src, dst, relation, params, created_by) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                from.id,
                to.id,
                relation.as_str(),
                params_text,
                actor
            ])
        })
        .map_err(|e| store.err(e))?;
    Ok(inserted == 1)
}

/// The chain of node ids from `start` up to `target` (both included), if `start` came from
/// `target`. Walks the database inside the caller's transaction, so that the answer holds
/// for the edge being added.
fn path_up(
    store: &SqliteMetaStore,
    conn: &Connection,
    start: i64,
    target: i64,
) -> Result<Option<Vec<i64>>> {
    // Nothing can close a cycle through a node that nothing derives from.
    let has_descendants: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM lineage_edges WHERE dst = ?1)")
        .and_then(|mut s| s.query_row([target], |r| r.get(0)))
        .map_err(|e| store.err(e))?;
    if !has_descendants {
        return Ok(None);
    }
    let mut stmt = conn
        .prepare_cached("SELECT dst FROM lineage_edges WHERE src = ?1")
        .map_err(|e| store.err(e))?;
    let mut parent: HashMap<i64, i64> = HashMap::from([(start, start)]);
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let next: Vec<i64> = stmt
            .query_map([node], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| store.err(e))?;
        for n in next {
            if parent.contains_key(&n) {
                continue;
            }
            parent.insert(n, node);
            if n == target {
                let mut chain = vec![n];
                let mut at = n;
                while at != start {
                    at = parent[&at];
                    chain.push(at);
                }
                chain.reverse();
                return Ok(Some(chain));
            }
            queue.push_back(n);
        }
    }
    Ok(None)
}

/// Record the edges a new version brings: the ones asked for, and those implied by the run
/// that produced it (the run itself, its recipe, the datasets it used).
pub(super) fn record_version_edges(
    store: &SqliteMetaStore,
    tx: &Transaction<'_>,
    node: &NodeRecord,
    edges: &[NewEdge],
    run_id: Option<&str>,
    actor: &str,
) -> Result<()> {
    for edge in edges {
        let to = find_node(store, tx, &edge.to)?;
        insert_edge(
            store,
            tx,
            node,
            &to,
            edge.relation,
            &edge.params,
            actor,
            true,
        )?;
    }
    let Some(run_id) = run_id else {
        return Ok(());
    };
    let run =
        node_where(store, tx, "run_id = ?1", &[&run_id])?.ok_or_else(|| CoreError::Corrupt {
            message: format!(
                "run {run_id} has no lineage node; the registry database is inconsistent"
            ),
        })?;
    if node.kind != NodeKind::Model {
        return Ok(());
    }
    insert_edge(
        store,
        tx,
        node,
        &run,
        Relation::ProducedBy,
        &Map::new(),
        actor,
        true,
    )?;
    let mut stmt = tx
        .prepare_cached(
            "SELECT e.relation, e.params, n.id, n.kind, n.name, n.version, n.deleted_at IS NOT NULL \
             FROM lineage_edges e JOIN lineage_nodes n ON n.id = e.dst \
             WHERE e.src = ?1 AND e.relation IN ('executed', 'used')",
        )
        .map_err(|e| store.err(e))?;
    let inputs: Vec<(String, String, NodeRecord)> = stmt
        .query_map([run.id], |r| {
            let node = NodeRecord {
                id: r.get(2)?,
                kind: NodeKind::parse(&r.get::<_, String>(3)?).unwrap_or(NodeKind::Dataset),
                label: match r.get::<_, Option<String>>(5)? {
                    Some(v) => format!("{}:{v}", r.get::<_, String>(4)?),
                    None => r.get(4)?,
                },
                deleted: r.get(6)?,
            };
            Ok((r.get(0)?, r.get(1)?, node))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| store.err(e))?;
    for (relation, params, input) in inputs {
        if input.deleted {
            continue;
        }
        let (implied, params) = if relation == "executed" {
            (Relation::TrainedWith, Map::new())
        } else {
            let params = match serde_json::from_str(&params) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            (Relation::TrainedOn, params)
        };
        insert_edge(store, tx, node, &input, implied, &params, actor, true)?;
    }
    Ok(())
}

/// Record a run's inputs: the recipe it executes and the datasets it uses.
pub(super) fn record_run_edges(
    store: &SqliteMetaStore,
    tx: &Transaction<'_>,
    run: &NodeRecord,
    recipe_version_id: Option<i64>,
    used: &[(Reference, Option<String>)],
    actor: &str,
) -> Result<()> {
    if let Some(id) = recipe_version_id {
        if let Some(recipe) = node_where(store, tx, "version_id = ?1", &[&id])? {
            insert_edge(
                store,
                tx,
                run,
                &recipe,
                Relation::Executed,
                &Map::new(),
                actor,
                true,
            )?;
        }
    }
    for (reference, split) in used {
        let dataset = node_of_version(store, tx, Kind::Dataset, reference)?;
        let mut params = Map::new();
        if let Some(split) = split {
            params.insert("split".into(), Value::String(split.clone()));
        }
        insert_edge(
            store,
            tx,
            run,
            &dataset,
            Relation::Used,
            &params,
            actor,
            true,
        )?;
    }
    Ok(())
}

/// Turn a version's node into a tombstone (the version row is about to be deleted).
pub(super) fn bury(store: &SqliteMetaStore, tx: &Transaction<'_>, version_id: i64) -> Result<()> {
    tx.execute(
        "UPDATE lineage_nodes SET version_id = NULL, \
         deleted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE version_id = ?1",
        [version_id],
    )
    .map_err(|e| store.err(e))?;
    Ok(())
}

pub(super) fn token(store: &SqliteMetaStore, conn: &Connection) -> Result<String> {
    conn.prepare_cached("SELECT token FROM lineage_state")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| store.err(e))
}

/// Every node and edge with the token naming this state, read in one transaction.
pub(super) fn rows(store: &SqliteMetaStore, conn: &Connection) -> Result<LineageRows> {
    let tx = conn.unchecked_transaction().map_err(|e| store.err(e))?;
    let token = token(store, &tx)?;
    let nodes = {
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {NODE_COLUMNS} FROM lineage_nodes ORDER BY id"
            ))
            .map_err(|e| store.err(e))?;
        let rows = stmt
            .query_map([], node_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| store.err(e))?;
        rows
    };
    let edges = {
        let mut stmt = tx
            .prepare("SELECT src, dst, relation, params FROM lineage_edges")
            .map_err(|e| store.err(e))?;
        let raw = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| store.err(e))?;
        let mut edges = Vec::new();
        for row in raw {
            let (from, to, relation, params) = row.map_err(|e| store.err(e))?;
            // Renderers embed the text as it is: it must be a JSON object.
            if params != "{}" && serde_json::from_str::<Map<String, Value>>(&params).is_err() {
                return Err(CoreError::Database {
                    path: store.path().to_path_buf(),
                    message: format!(
                        "a value in the database is damaged (the parameters of lineage edge \
                         {from} → {to} are not a JSON object); restore the database from a backup"
                    ),
                });
            }
            edges.push(EdgeRow {
                from,
                to,
                relation: Relation::parse(&relation)?,
                params,
            });
        }
        edges
    };
    tx.finish().map_err(|e| store.err(e))?;
    Ok(LineageRows {
        token,
        nodes,
        edges,
    })
}

/// The current versions behind the given nodes (tombstones and runs are skipped), with
/// their node ids.
pub(super) fn versions_of_nodes(
    store: &SqliteMetaStore,
    conn: &Connection,
    node_ids: &[i64],
) -> Result<Vec<(i64, VersionRecord)>> {
    let ids = Value::from(node_ids.to_vec()).to_string();
    let mut stmt = conn
        .prepare(
            "SELECT id, version_id FROM lineage_nodes \
             WHERE id IN (SELECT value FROM json_each(?1)) AND version_id IS NOT NULL",
        )
        .map_err(|e| store.err(e))?;
    let pairs: Vec<(i64, i64)> = stmt
        .query_map([&ids], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| store.err(e))?;
    let node_of: HashMap<i64, i64> = pairs.iter().map(|(n, v)| (*v, *n)).collect();
    let version_ids = Value::from(pairs.iter().map(|(_, v)| *v).collect::<Vec<_>>()).to_string();
    let mut records = versions_where(
        store,
        conn,
        "v.id IN (SELECT value FROM json_each(?1))",
        &[&version_ids],
    )?;
    super::attach_labels(store, conn, &mut records)?;
    Ok(records
        .into_iter()
        .map(|r| (node_of.get(&r.id).copied().unwrap_or_default(), r))
        .collect())
}
