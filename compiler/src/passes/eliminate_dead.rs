//! Removes nodes none of whose outputs reaches a graph output.

use super::PassCx;
use crate::error::Result;
use crate::ir::Graph;

/// Drops dead nodes (walking backwards so that chains of dead nodes go at once).
pub fn eliminate_dead(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let mut live = vec![false; graph.values.len()];
    for o in &graph.outputs {
        live[o.index()] = true;
    }
    let mut keep = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate().rev() {
        if node.outputs.iter().flatten().any(|o| live[o.index()]) {
            keep[i] = true;
            for input in node
                .inputs
                .iter()
                .flatten()
                .chain(node.guards.iter().map(|(g, _)| g))
            {
                live[input.index()] = true;
            }
        }
    }
    let mut index = 0;
    graph.nodes.retain(|_| {
        index += 1;
        keep[index - 1]
    });
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::passes::testing::{before_after, ModelBuilder};

    #[test]
    fn snapshot_unread_nodes_go() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 3])
            .floats("unused", &[3], &[1.0, 2.0, 3.0])
            .node("Relu", &["x"], &["y"])
            .node("Sigmoid", &["x"], &["dead"])
            .node("Add", &["dead", "unused"], &["dead2"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, eliminate_dead);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
    }
}
