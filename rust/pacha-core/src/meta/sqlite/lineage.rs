//! The lineage half of the SQLite metadata store: the SQL of [`LineageTx`] (nodes, edges,
//! tombstones) and the rows the in-memory graph is built from. The rules (cycles, implied
//! edges) are in `meta::rules::lineage`.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::tx::SqliteTx;
use super::{versions_where, SqliteMetaStore};
use crate::lineage::{EdgeRow, LineageRows, NodeKind, NodeRecord, Relation};
use crate::meta::tx::{LineageTx, RowId};
use crate::meta::{Kind, VersionRecord};
use crate::Result;

const NODE_COLUMNS: &str = "id, kind, name, version, deleted_at IS NOT NULL";

fn node_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRecord> {
    node_from_row_at(row, 0)
}

/// A node from the [`NODE_COLUMNS`] starting at column `at`.
fn node_from_row_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<NodeRecord> {
    let kind: String = row.get(at + 1)?;
    let name: String = row.get(at + 2)?;
    let version: Option<String> = row.get(at + 3)?;
    Ok(NodeRecord {
        id: row.get(at)?,
        kind: NodeKind::parse(&kind).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                at + 1,
                rusqlite::types::Type::Text,
                "kind".into(),
            )
        })?,
        label: match version {
            Some(v) => format!("{name}:{v}"),
            None => name,
        },
        deleted: row.get(at + 4)?,
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

impl LineageTx for SqliteTx<'_> {
    fn node_of_version(&mut self, version: RowId) -> Result<Option<NodeRecord>> {
        node_where(self.store, self.conn, "version_id = ?1", &[&version])
    }

    fn node_of_run(&mut self, run_id: &str) -> Result<Option<NodeRecord>> {
        node_where(self.store, self.conn, "run_id = ?1", &[&run_id])
    }

    fn node(&mut self, id: RowId) -> Result<Option<NodeRecord>> {
        node_where(self.store, self.conn, "id = ?1", &[&id])
    }

    fn tombstone(&mut self, kind: Kind, name: &str, key: &str) -> Result<Option<NodeRecord>> {
        node_where(
            self.store,
            self.conn,
            "kind = ?1 AND name = ?2 AND version_key = ?3 AND deleted_at IS NOT NULL",
            &[&kind.as_str(), &name, &key],
        )
    }

    fn insert_version_node(&mut self, record: &VersionRecord, key: &str) -> Result<NodeRecord> {
        self.conn
            .prepare_cached(
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
            .map_err(|e| self.store.err(e))?;
        Ok(NodeRecord {
            id: self.conn.last_insert_rowid(),
            kind: record.kind.into(),
            label: record.label(),
            deleted: false,
        })
    }

    fn insert_run_node(&mut self, run_id: &str) -> Result<NodeRecord> {
        self.conn
            .prepare_cached("INSERT INTO lineage_nodes (kind, name, run_id) VALUES ('run', ?1, ?1)")
            .and_then(|mut s| s.execute([run_id]))
            .map_err(|e| self.store.err(e))?;
        Ok(NodeRecord {
            id: self.conn.last_insert_rowid(),
            kind: NodeKind::Run,
            label: run_id.to_string(),
            deleted: false,
        })
    }

    fn has_descendants(&mut self, node: RowId) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM lineage_edges WHERE dst = ?1)")
            .and_then(|mut s| s.query_row([node], |r| r.get(0)))
            .map_err(|e| self.store.err(e))
    }

    fn parents(&mut self, node: RowId) -> Result<Vec<RowId>> {
        self.conn
            .prepare_cached("SELECT dst FROM lineage_edges WHERE src = ?1")
            .and_then(|mut s| s.query_map([node], |r| r.get(0))?.collect())
            .map_err(|e| self.store.err(e))
    }

    fn edges_from(
        &mut self,
        node: RowId,
        relations: &[Relation],
    ) -> Result<Vec<(Relation, String, NodeRecord)>> {
        let wanted =
            Value::from(relations.iter().map(|r| r.as_str()).collect::<Vec<_>>()).to_string();
        let rows: Vec<(String, String, NodeRecord)> = self
            .conn
            .prepare_cached(
                "SELECT e.relation, e.params, n.id, n.kind, n.name, n.version, \
                 n.deleted_at IS NOT NULL \
                 FROM lineage_edges e JOIN lineage_nodes n ON n.id = e.dst \
                 WHERE e.src = ?1 AND e.relation IN (SELECT value FROM json_each(?2))",
            )
            .and_then(|mut s| {
                s.query_map(params![node, wanted], |r| {
                    Ok((r.get(0)?, r.get(1)?, node_from_row_at(r, 2)?))
                })?
                .collect()
            })
            .map_err(|e| self.store.err(e))?;
        rows.into_iter()
            .map(|(relation, params, node)| Ok((Relation::parse(&relation)?, params, node)))
            .collect()
    }

    fn insert_edge(
        &mut self,
        from: RowId,
        to: RowId,
        relation: Relation,
        params: &str,
        actor: &str,
    ) -> Result<bool> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO lineage_edges (src, dst, relation, params, created_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![from, to, relation.as_str(), params, actor]))
            .map_err(|e| self.store.err(e))?;
        Ok(inserted == 1)
    }
}

/// Turn a version's node into a tombstone (the version row is about to be deleted).
pub(super) fn bury(store: &SqliteMetaStore, tx: &Connection, version_id: i64) -> Result<()> {
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
            edges.push(EdgeRow::stored(from, to, &relation, params, store.path())?);
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
