//! The lineage half of the PostgreSQL metadata store: the SQL of [`LineageTx`] (nodes, edges,
//! tombstones) and the rows the in-memory graph is built from. The rules (cycles, implied
//! edges) are in `meta::rules::lineage`.

use std::collections::HashMap;

use tokio_postgres::Row;

use super::damaged;
use super::tx::{Params, PgTx};
use crate::lineage::{EdgeRow, LineageRows, NodeKind, NodeRecord, Relation};
use crate::meta::tx::{LineageTx, RowId};
use crate::meta::{Kind, VersionRecord};
use crate::Result;

const NODE_COLUMNS: &str = "id, kind, name, version, deleted_at IS NOT NULL";

impl PgTx<'_> {
    /// A node from the [`NODE_COLUMNS`] starting at column `at`.
    fn node_at(&self, row: &Row, at: usize) -> Result<NodeRecord> {
        let kind: String = self.get(row, at + 1)?;
        let name: String = self.get(row, at + 2)?;
        let version: Option<String> = self.get(row, at + 3)?;
        Ok(NodeRecord {
            id: self.get(row, at)?,
            kind: NodeKind::parse(&kind)
                .map_err(|_| damaged(self.shown(), &format!("unknown node kind {kind:?}")))?,
            label: match version {
                Some(v) => format!("{name}:{v}"),
                None => name,
            },
            deleted: self.get(row, at + 4)?,
        })
    }

    fn node_where(&mut self, condition: &str, params: &Params<'_>) -> Result<Option<NodeRecord>> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM lineage_nodes WHERE {condition}");
        match self.query_opt(&sql, params)? {
            Some(row) => self.node_at(&row, 0).map(Some),
            None => Ok(None),
        }
    }
}

impl LineageTx for PgTx<'_> {
    fn node_of_version(&mut self, version: RowId) -> Result<Option<NodeRecord>> {
        self.node_where("version_id = $1", &[&version])
    }

    fn node_of_run(&mut self, run_id: &str) -> Result<Option<NodeRecord>> {
        self.node_where("run_id = $1", &[&run_id])
    }

    fn node(&mut self, id: RowId) -> Result<Option<NodeRecord>> {
        self.node_where("id = $1", &[&id])
    }

    fn tombstone(&mut self, kind: Kind, name: &str, key: &str) -> Result<Option<NodeRecord>> {
        self.node_where(
            "kind = $1 AND name = $2 AND version_key = $3 AND deleted_at IS NOT NULL",
            &[&kind.as_str(), &name, &key],
        )
    }

    fn insert_version_node(&mut self, record: &VersionRecord, key: &str) -> Result<NodeRecord> {
        let row = self.query_one(
            "INSERT INTO lineage_nodes (kind, name, version, version_key, version_id) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &record.kind.as_str(),
                &record.name,
                &record.version,
                &key,
                &record.id,
            ],
        )?;
        Ok(NodeRecord {
            id: self.get(&row, 0)?,
            kind: record.kind.into(),
            label: record.label(),
            deleted: false,
        })
    }

    fn insert_run_node(&mut self, run_id: &str) -> Result<NodeRecord> {
        let row = self.query_one(
            "INSERT INTO lineage_nodes (kind, name, run_id) VALUES ('run', $1, $1) RETURNING id",
            &[&run_id],
        )?;
        Ok(NodeRecord {
            id: self.get(&row, 0)?,
            kind: NodeKind::Run,
            label: run_id.to_string(),
            deleted: false,
        })
    }

    fn has_descendants(&mut self, node: RowId) -> Result<bool> {
        let row = self.query_one(
            "SELECT EXISTS (SELECT 1 FROM lineage_edges WHERE dst = $1)",
            &[&node],
        )?;
        self.get(&row, 0)
    }

    fn parents(&mut self, node: RowId) -> Result<Vec<RowId>> {
        let rows = self.query("SELECT dst FROM lineage_edges WHERE src = $1", &[&node])?;
        rows.iter().map(|row| self.get(row, 0)).collect()
    }

    fn edges_from(
        &mut self,
        node: RowId,
        relations: &[Relation],
    ) -> Result<Vec<(Relation, String, NodeRecord)>> {
        let wanted: Vec<&str> = relations.iter().map(|r| r.as_str()).collect();
        let rows = self.query(
            "SELECT e.relation, e.params, n.id, n.kind, n.name, n.version, \
             n.deleted_at IS NOT NULL \
             FROM lineage_edges e JOIN lineage_nodes n ON n.id = e.dst \
             WHERE e.src = $1 AND e.relation = ANY($2) ORDER BY e.id",
            &[&node, &wanted],
        )?;
        rows.iter()
            .map(|row| {
                let relation: String = self.get(row, 0)?;
                Ok((
                    Relation::parse(&relation)?,
                    self.get(row, 1)?,
                    self.node_at(row, 2)?,
                ))
            })
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
        let inserted = self.execute(
            "INSERT INTO lineage_edges (src, dst, relation, params, created_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (src, dst, relation) DO NOTHING",
            &[&from, &to, &relation.as_str(), &params, &actor],
        )?;
        Ok(inserted == 1)
    }
}

/// Turn a version's node into a tombstone (the version row is about to be deleted).
pub(super) fn bury(tx: &mut PgTx<'_>, version_id: RowId) -> Result<()> {
    tx.execute(
        "UPDATE lineage_nodes SET version_id = NULL, deleted_at = now() WHERE version_id = $1",
        &[&version_id],
    )
    .map(drop)
}

pub(super) fn token(tx: &mut PgTx<'_>) -> Result<String> {
    let row = tx.query_one(
        "SELECT 'c' || COALESCE(MAX(id), 0)::text FROM lineage_changes",
        &[],
    )?;
    tx.get(&row, 0)
}

/// Every node and edge with the token naming this state (the caller reads them in one
/// snapshot).
pub(super) fn rows(tx: &mut PgTx<'_>) -> Result<LineageRows> {
    let token = token(tx)?;
    let node_rows = tx.query(
        &format!("SELECT {NODE_COLUMNS} FROM lineage_nodes ORDER BY id"),
        &[],
    )?;
    let nodes = node_rows
        .iter()
        .map(|row| tx.node_at(row, 0))
        .collect::<Result<Vec<_>>>()?;
    let edge_rows = tx.query(
        "SELECT src, dst, relation, params FROM lineage_edges ORDER BY id",
        &[],
    )?;
    let mut edges = Vec::with_capacity(edge_rows.len());
    for row in &edge_rows {
        let from: i64 = tx.get(row, 0)?;
        let to: i64 = tx.get(row, 1)?;
        let relation: String = tx.get(row, 2)?;
        let params: String = tx.get(row, 3)?;
        let database = std::path::PathBuf::from(tx.shown());
        edges.push(EdgeRow::stored(from, to, &relation, params, &database)?);
    }
    Ok(LineageRows {
        token,
        nodes,
        edges,
    })
}

/// The current versions behind the given nodes (tombstones and runs are skipped), with
/// their node ids.
pub(super) fn versions_of_nodes(
    tx: &mut PgTx<'_>,
    node_ids: &[i64],
) -> Result<Vec<(i64, VersionRecord)>> {
    let pairs = tx.query(
        "SELECT id, version_id FROM lineage_nodes \
         WHERE id = ANY($1) AND version_id IS NOT NULL",
        &[&node_ids],
    )?;
    let mut node_of: HashMap<i64, i64> = HashMap::new();
    for row in &pairs {
        node_of.insert(tx.get(row, 1)?, tx.get(row, 0)?);
    }
    let version_ids: Vec<i64> = node_of.keys().copied().collect();
    let mut records = tx.versions_where("v.id = ANY($1)", &[&version_ids])?;
    tx.labels(&mut records)?;
    Ok(records
        .into_iter()
        .map(|r| (node_of.get(&r.id).copied().unwrap_or_default(), r))
        .collect())
}
