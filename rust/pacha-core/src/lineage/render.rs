//! The JSON form of a query result, written here (not in Python) because a query can return
//! a hundred thousand nodes and the CLI prints them all in well under a second.
//!
//! Written by hand into one buffer rather than through intermediate structs: edge
//! parameters are already JSON text (checked when stored), so they are copied, not parsed
//! and re-serialised; every other string goes through serde_json's escaping.

use super::{Graph, NodeKind, Subgraph};

/// `kind/label` of a node.
pub fn node_id(graph: &Graph, node: u32) -> String {
    format!("{}/{}", graph.kind(node), graph.label(node))
}

fn string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // Writing into a Vec cannot fail, and a &str always serialises.
        let _ = serde_json::to_writer(&mut *out, text);
    } else {
        // The common case (validated names and versions): nothing to escape.
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// `"kind/label"`, escaped, without building the id as a String first.
fn node_id_json(out: &mut Vec<u8>, graph: &Graph, node: u32) {
    write_id(out, graph.kind(node), graph.label(node));
}

fn write_id(out: &mut Vec<u8>, kind: NodeKind, label: &str) {
    if label.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        string(out, &format!("{kind}/{label}"));
        return;
    }
    out.push(b'"');
    out.extend_from_slice(kind.as_str().as_bytes());
    out.push(b'/');
    out.extend_from_slice(label.as_bytes());
    out.push(b'"');
}

/// `{"start": ..., "nodes": [...], "edges": [...]}`. `start` is the first node when
/// `has_start`, else null (whole-graph queries). Each node has `id`, `kind`, `name`,
/// `version` (null for runs), `depth`, `direction` (`up`/`down`; null for the start and in
/// whole-graph lists) and `deleted`; each edge `from`, `to`, `relation` and `params`.
pub fn to_json(graph: &Graph, sub: &Subgraph, has_start: bool) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(64 + sub.nodes.len() * 140 + sub.edges.len() * 90);
    // Each node's id, escaped once into one buffer: edges name their endpoints again, and
    // looking labels up in a large graph costs a cache miss each time.
    let mut id_bytes: Vec<u8> = Vec::with_capacity(sub.nodes.len() * 32);
    let mut id_ends: Vec<usize> = Vec::with_capacity(sub.nodes.len());
    // Position + 1 of each reported node, by graph index (0: not reported). Zeroed memory
    // is mapped lazily, so only the pages of reported nodes are touched.
    let mut position = vec![0u32; graph.node_count()];
    for (i, &n) in sub.nodes.iter().enumerate() {
        position[n as usize] = i as u32 + 1;
    }
    out.extend_from_slice(b"{\"start\":");
    if !has_start || sub.nodes.is_empty() {
        out.extend_from_slice(b"null");
    }
    let mut digits = [0u8; 10];
    for (i, &n) in sub.nodes.iter().enumerate() {
        // One look-up of the label per node: it is a cache miss on a large graph.
        let kind = graph.kind(n);
        let label = graph.label(n);
        let id_start = id_bytes.len();
        write_id(&mut id_bytes, kind, label);
        id_ends.push(id_bytes.len());
        let id = &id_bytes[id_start..];
        if i == 0 && has_start {
            out.extend_from_slice(id);
        }
        out.extend_from_slice(if i == 0 { b",\"nodes\":[" } else { b"," });
        let (name, version) = super::name_and_version(kind, label);
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(id);
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"name\":");
        string(&mut out, name);
        out.extend_from_slice(b",\"version\":");
        match version {
            Some(v) => string(&mut out, v),
            None => out.extend_from_slice(b"null"),
        }
        let direction = match (!has_start || i == 0, sub.upward[i]) {
            (true, _) => "null",
            (false, true) => "\"up\"",
            (false, false) => "\"down\"",
        };
        out.extend_from_slice(b",\"depth\":");
        out.extend_from_slice(itoa(sub.depths[i], &mut digits));
        out.extend_from_slice(b",\"direction\":");
        out.extend_from_slice(direction.as_bytes());
        out.extend_from_slice(if graph.is_deleted(n) {
            b",\"deleted\":true}"
        } else {
            b",\"deleted\":false}"
        });
    }
    if sub.nodes.is_empty() {
        out.extend_from_slice(b",\"nodes\":[");
    }
    let id = |i: usize| {
        let start = if i == 0 { 0 } else { id_ends[i - 1] };
        &id_bytes[start..id_ends[i]]
    };
    let id_of = |out: &mut Vec<u8>, node: u32| match position[node as usize] {
        0 => node_id_json(out, graph, node),
        p => out.extend_from_slice(id(p as usize - 1)),
    };
    out.extend_from_slice(b"],\"edges\":[");
    for (i, &e) in sub.edges.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"from\":");
        id_of(&mut out, graph.edge_from(e));
        out.extend_from_slice(b",\"to\":");
        id_of(&mut out, graph.edge_to(e));
        out.extend_from_slice(b",\"relation\":\"");
        out.extend_from_slice(graph.relation(e).as_str().as_bytes());
        out.extend_from_slice(b"\",\"params\":");
        out.extend_from_slice(graph.params(e).as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    // Every piece written is UTF-8 (labels and parameters are `str`s).
    String::from_utf8(out).unwrap_or_default()
}

/// The decimal digits of `n`, written into `buffer`.
fn itoa(mut n: u32, buffer: &mut [u8; 10]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::{Direction, EdgeRow, LineageRows, NodeRecord, Relation, Walk};
    use serde_json::Value;

    #[test]
    fn json_is_valid_and_complete() {
        let node = |id: i64, kind: NodeKind, label: &str| NodeRecord {
            id,
            kind,
            label: label.into(),
            deleted: id == 3,
        };
        let graph = Graph::from_rows(LineageRows {
            token: "t".into(),
            nodes: vec![
                node(1, NodeKind::Dataset, "d:1.0.0"),
                node(2, NodeKind::Run, "ab12"),
                node(3, NodeKind::Model, "m\u{e9}:1.0.0+b"),
            ],
            edges: vec![
                EdgeRow {
                    from: 2,
                    to: 1,
                    relation: Relation::Used,
                    params: r#"{"split":"train \"x\""}"#.into(),
                },
                EdgeRow {
                    from: 3,
                    to: 2,
                    relation: Relation::ProducedBy,
                    params: "{}".into(),
                },
            ],
        })
        .expect("graph");
        let sub = graph.walk(0, &Walk::new(Direction::Down));
        let doc: Value = serde_json::from_str(&to_json(&graph, &sub, true)).expect("valid JSON");
        assert_eq!(doc["start"], "dataset/d:1.0.0");
        assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(3));
        assert_eq!(doc["nodes"][1]["version"], Value::Null);
        assert_eq!(doc["nodes"][1]["direction"], "down");
        assert_eq!(doc["nodes"][2]["name"], "m\u{e9}");
        assert_eq!(doc["nodes"][2]["version"], "1.0.0+b");
        assert_eq!(doc["nodes"][2]["deleted"], true);
        assert_eq!(doc["edges"][0]["params"]["split"], "train \"x\"");
        assert_eq!(doc["edges"][1]["relation"], "produced_by");
    }
}
