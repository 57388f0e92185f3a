//! The rules of the lineage graph, written once over [`MetaTx`]: what a reference names (a
//! deleted version's tombstone included; an untyped name must be unambiguous), which edges
//! are allowed (endpoints, parameters, never to or from a tombstone, never closing a
//! cycle), and the edges a new version or run brings with it.

use std::collections::{HashMap, VecDeque};

use serde_json::{Map, Value};

use super::runs::resolve_run;
use super::{resolve, version_key};
use crate::lineage::{describe_cycle, NewEdge, NodeRecord, NodeRef, Relation};
use crate::meta::tx::{MetaTx, RowId};
use crate::meta::{Kind, NewRun, Reference, Selector, VersionRecord};
use crate::{CoreError, Result};

fn node_of_version(tx: &mut dyn MetaTx, kind: Kind, reference: &Reference) -> Result<NodeRecord> {
    match resolve(tx, kind, reference) {
        Ok(record) => tx
            .node_of_version(record.id)?
            .ok_or_else(|| CoreError::Corrupt {
                message: format!(
                    "{kind} {} has no lineage node; the registry database is inconsistent",
                    record.label()
                ),
            }),
        // An exact reference to a deleted version names its tombstone.
        Err(CoreError::NotFound { message }) => {
            let tombstone = match &reference.selector {
                Selector::Exact(version) => {
                    tx.tombstone(kind, &reference.name, &version_key(version))?
                }
                _ => None,
            };
            tombstone.ok_or(CoreError::NotFound { message })
        }
        Err(e) => Err(e),
    }
}

/// The node a reference names (a deleted version's tombstone included).
pub(crate) fn find_node(tx: &mut dyn MetaTx, node: &NodeRef) -> Result<NodeRecord> {
    match node {
        NodeRef::Version(kind, reference) => node_of_version(tx, *kind, reference),
        NodeRef::Run(prefix) => {
            let run = resolve_run(tx, prefix)?;
            tx.node_of_run(&run.id)?.ok_or_else(|| CoreError::Corrupt {
                message: format!(
                    "run {} has no lineage node; the registry database is inconsistent",
                    run.id
                ),
            })
        }
        NodeRef::Untyped(reference) => {
            let mut found = Vec::new();
            for kind in [Kind::Model, Kind::Dataset, Kind::Recipe] {
                match node_of_version(tx, kind, reference) {
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
                        "no model, dataset or recipe {text}; `pacha model list` and `pacha data \
                         list` show what exists"
                    ),
                }),
                1 => Ok(found.remove(0)),
                _ => Err(CoreError::InvalidInput {
                    message: format!(
                        "{text} is ambiguous ({}); write it as {}",
                        found
                            .iter()
                            .map(|n| n.kind.as_str())
                            .collect::<Vec<_>>()
                            .join(" and "),
                        found
                            .iter()
                            .map(|n| format!("{}/{text}", n.kind))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                }),
            }
        }
    }
}

/// Insert one edge after checking its endpoints, parameters and (unless the derived node
/// is brand new, so that nothing can derive from it yet) that it closes no cycle.
/// Returns false if the same edge already existed.
pub(crate) fn add_edge(
    tx: &mut dyn MetaTx,
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
        if let Some(chain) = path_up(tx, to.id, from.id)? {
            let mut labels = vec![from.typed_label()];
            for id in chain {
                labels.push(
                    tx.node(id)?
                        .map(|n| n.typed_label())
                        .unwrap_or_else(|| format!("#{id}")),
                );
            }
            return Err(CoreError::LineageCycle {
                cycle: describe_cycle(&labels),
            });
        }
    }
    let params_text = Value::Object(params).to_string();
    tx.insert_edge(from.id, to.id, relation, &params_text, actor)
}

/// The chain of node ids from `start` up to `target` (both included), if `start` came from
/// `target`. Walks the database inside the caller's transaction, so that the answer holds
/// for the edge being added.
fn path_up(tx: &mut dyn MetaTx, start: RowId, target: RowId) -> Result<Option<Vec<RowId>>> {
    // Nothing can close a cycle through a node that nothing derives from.
    if !tx.has_descendants(target)? {
        return Ok(None);
    }
    let mut parent: HashMap<RowId, RowId> = HashMap::from([(start, start)]);
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for n in tx.parents(node)? {
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

/// Record a new version's node and the edges it brings: the ones asked for, and those
/// implied by the run that produced a model (the run itself, the recipe it executed as
/// trained-with, the datasets it used as trained-on with their parameters).
pub(crate) fn record_version(
    tx: &mut dyn MetaTx,
    record: &VersionRecord,
    key: &str,
    edges: &[NewEdge],
    actor: &str,
) -> Result<NodeRecord> {
    let node = tx.insert_version_node(record, key)?;
    for edge in edges {
        let to = find_node(tx, &edge.to)?;
        add_edge(tx, &node, &to, edge.relation, &edge.params, actor, true)?;
    }
    let Some(run_id) = record.run_id.as_deref() else {
        return Ok(node);
    };
    let run = tx.node_of_run(run_id)?.ok_or_else(|| CoreError::Corrupt {
        message: format!("run {run_id} has no lineage node; the registry database is inconsistent"),
    })?;
    if record.kind != Kind::Model {
        return Ok(node);
    }
    add_edge(
        tx,
        &node,
        &run,
        Relation::ProducedBy,
        &Map::new(),
        actor,
        true,
    )?;
    let inputs = tx.edges_from(run.id, &[Relation::Executed, Relation::Used])?;
    for (relation, params, input) in inputs {
        if input.deleted {
            continue;
        }
        let (implied, params) = if relation == Relation::Executed {
            (Relation::TrainedWith, Map::new())
        } else {
            let params = match serde_json::from_str(&params) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            (Relation::TrainedOn, params)
        };
        add_edge(tx, &node, &input, implied, &params, actor, true)?;
    }
    Ok(node)
}

/// Record a new run's node and its inputs: the recipe version it executes and the datasets
/// it uses (with their split).
pub(crate) fn record_run(
    tx: &mut dyn MetaTx,
    run_id: &str,
    recipe: Option<RowId>,
    new: &NewRun,
) -> Result<()> {
    let run = tx.insert_run_node(run_id)?;
    if let Some(version) = recipe {
        if let Some(recipe) = tx.node_of_version(version)? {
            add_edge(
                tx,
                &run,
                &recipe,
                Relation::Executed,
                &Map::new(),
                &new.actor,
                true,
            )?;
        }
    }
    for (reference, split) in &new.used {
        let dataset = node_of_version(tx, Kind::Dataset, reference)?;
        let mut params = Map::new();
        if let Some(split) = split {
            params.insert("split".into(), Value::String(split.clone()));
        }
        add_edge(
            tx,
            &run,
            &dataset,
            Relation::Used,
            &params,
            &new.actor,
            true,
        )?;
    }
    Ok(())
}
