use super::*;
use crate::lineage::{cache, EdgeRow, LineageRows, NodeKind, NodeRecord, Relation};

/// A chain 0 ← 1 ← 2 ← ... (node i+1 derived from node i) plus a second parent for node 3.
fn chain(n: i64) -> Graph {
    let nodes = (1..=n)
        .map(|id| NodeRecord {
            id,
            kind: NodeKind::Model,
            label: format!("m{id}:1.0.0"),
            deleted: false,
        })
        .chain(std::iter::once(NodeRecord {
            id: n + 1,
            kind: NodeKind::Dataset,
            label: "d:1.0.0".into(),
            deleted: false,
        }))
        .collect();
    let mut edges: Vec<EdgeRow> = (2..=n)
        .map(|id| EdgeRow {
            from: id,
            to: id - 1,
            relation: Relation::FineTuned,
            params: "{}".into(),
        })
        .collect();
    edges.push(EdgeRow {
        from: 3,
        to: n + 1,
        relation: Relation::TrainedOn,
        params: r#"{"split":"train"}"#.into(),
    });
    Graph::from_rows(LineageRows {
        token: "t".into(),
        nodes,
        edges,
    })
    .expect("graph")
}

#[test]
fn walks_both_ways_with_depth_and_filters() {
    let g = chain(6);
    let first = g.index_of(1).expect("node 1");
    let down = g.walk(first, &Walk::new(Direction::Down));
    assert_eq!(down.nodes.len(), 6);
    assert_eq!(down.edges.len(), 5);
    let mut limited = Walk::new(Direction::Down);
    limited.max_depth = Some(2);
    assert_eq!(g.walk(first, &limited).nodes.len(), 3);
    let last = g.index_of(6).expect("node 6");
    let up = g.walk(last, &Walk::new(Direction::Up));
    assert_eq!(up.nodes.len(), 7, "six models and the dataset");
    let mut only_datasets = Walk::new(Direction::Up);
    only_datasets.kinds = 1 << NodeKind::Dataset.index();
    let datasets = g.walk(last, &only_datasets);
    assert_eq!(
        datasets.nodes.len(),
        2,
        "the start and the dataset, reached through models"
    );
    let mut only_fine_tuned = Walk::new(Direction::Up);
    only_fine_tuned.relations = 1 << Relation::FineTuned.index();
    assert_eq!(g.walk(last, &only_fine_tuned).nodes.len(), 6);
    let both = g.walk(g.index_of(3).expect("3"), &Walk::new(Direction::Both));
    assert_eq!(both.nodes.len(), 7);
}

#[test]
fn paths_roots_leaves_and_order() {
    let g = chain(5);
    let (a, b) = (g.index_of(5).expect("5"), g.index_of(2).expect("2"));
    let path = g.path(a, b).expect("path");
    assert_eq!(path.len(), 3);
    let back = g.path(b, a).expect("either way");
    assert_eq!(back.len(), 3);
    // Listed from the first argument's end: node 2 is the target of the first edge.
    assert_eq!(g.id(g.edge_to(back[0])), 2);
    assert_eq!(g.id(g.edge_from(back[2])), 5);
    assert!(g
        .path(g.index_of(2).expect("2"), g.index_of(6).expect("d"))
        .is_none());
    let roots: Vec<i64> = g.roots(None).into_iter().map(|n| g.id(n)).collect();
    assert_eq!(roots, vec![1, 6]);
    let leaves: Vec<i64> = g.leaves(None).into_iter().map(|n| g.id(n)).collect();
    assert_eq!(leaves, vec![5]);
    let order: Vec<i64> = g.topological(None).into_iter().map(|n| g.id(n)).collect();
    let position = |id: i64| order.iter().position(|&x| x == id).expect("present");
    assert_eq!(order.len(), 6);
    assert!(position(1) < position(2) && position(6) < position(3) && position(4) < position(5));
}

#[test]
fn cache_round_trips_and_rejects_damage() {
    let g = chain(50);
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = crate::fsutil::Dir::open(dir.path()).expect("dir");
    cache::save(&g, &handle, 0o600).expect("save");
    let loaded = cache::load(&handle, "t").expect("load");
    assert_eq!(loaded.node_count(), g.node_count());
    assert_eq!(loaded.edge_count(), g.edge_count());
    let e = g.walk(0, &Walk::new(Direction::Down)).edges;
    assert_eq!(loaded.walk(0, &Walk::new(Direction::Down)).edges, e);
    assert_eq!(loaded.label(3), g.label(3));
    assert!(cache::load(&handle, "other-token").is_none(), "stale");
    let path = dir.path().join(cache::FILE_NAME);
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    assert!(cache::load(&handle, "t").is_none(), "damaged");
}
