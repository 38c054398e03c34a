//! Common subexpression elimination: constants with the same type, shape and bytes become
//! one value, and a node that repeats an earlier one (same op type, domain, opset,
//! attributes and parsed op, same inputs, same optional outputs present, same guards)
//! goes, its readers reading the earlier node's outputs. Ops here are pure, so equal inputs
//! give equal outputs. A repeat whose output is a graph output stays (the output keeps its
//! name).

use std::collections::HashMap;

use super::pattern::{retain, rewire, unchanged};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Node, ValueId};

/// What makes two nodes compute the same thing, given that their inputs are equal.
fn signature(node: &Node) -> String {
    format!(
        "{}|{}|{}|{:?}|{:?}|{:?}|{:?}",
        node.domain,
        node.op_type,
        node.opset,
        node.attributes,
        node.op,
        node.guards,
        node.outputs.iter().map(Option::is_some).collect::<Vec<_>>()
    )
}

/// Nodes seen so far by signature and inputs.
type Seen = HashMap<(String, Vec<Option<ValueId>>), usize>;

/// If node `i` repeats an earlier node, maps its outputs to that node's and returns true.
fn merge_repeat(graph: &Graph, i: usize, seen: &mut Seen, map: &mut [ValueId]) -> bool {
    let node = &graph.nodes[i];
    if node.outputs.iter().all(Option::is_none) {
        return false;
    }
    let key = (signature(node), node.inputs.clone());
    let Some(&earlier) = seen.get(&key) else {
        seen.insert(key, i);
        return false;
    };
    if node
        .outputs
        .iter()
        .flatten()
        .any(|o| graph.outputs.contains(o))
    {
        return false;
    }
    for (mine, theirs) in node.outputs.iter().zip(&graph.nodes[earlier].outputs) {
        if let (Some(mine), Some(theirs)) = (mine, theirs) {
            map[mine.index()] = *theirs;
        }
    }
    true
}

/// Merges equal constants and repeated nodes.
pub fn eliminate_common(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let mut map = unchanged(&graph);

    // Equal constants: the first (in value order) stands for the rest.
    let mut first: HashMap<(DType, &[usize], &[u8]), ValueId> = HashMap::new();
    for (i, value) in graph.values.iter().enumerate() {
        if let Some(t) = &value.constant {
            let id = map[i];
            let kept = *first
                .entry((t.dtype, t.shape.as_slice(), t.bytes.as_slice()))
                .or_insert(id);
            map[i] = kept;
        }
    }
    drop(first);
    rewire(&mut graph, &map);

    // Repeated nodes, in topological order: each node's inputs are already rewired when its
    // signature is taken.
    let mut seen = HashMap::new();
    let mut remove = Vec::with_capacity(graph.nodes.len());
    for i in 0..graph.nodes.len() {
        let node = &mut graph.nodes[i];
        for v in node.inputs.iter_mut().flatten() {
            *v = map[v.index()];
        }
        for (g, _) in &mut node.guards {
            *g = map[g.index()];
        }
        remove.push(merge_repeat(&graph, i, &mut seen, &mut map));
    }
    retain(&mut graph, &remove);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, ModelBuilder};

    #[test]
    fn repeats_and_equal_constants_merge() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 3])
            .floats("two", &[], &[2.0])
            .floats("two_again", &[], &[2.0])
            .transpose("x", "a", &[1, 0])
            .transpose("x", "b", &[1, 0])
            .node("Mul", &["a", "two"], &["c"])
            .node("Mul", &["b", "two_again"], &["d"])
            .node("Add", &["c", "d"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, eliminate_common);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 3);
    }

    #[test]
    fn different_attributes_or_outputs_stay() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 2])
            .transpose("x", "a", &[1, 0])
            .transpose("x", "b", &[0, 1])
            .node("Relu", &["x"], &["c"])
            .node("Relu", &["x"], &["d"])
            .node("Sum", &["a", "b", "c"], &["y"])
            .output("y")
            .output("d")
            .build();
        let after = eliminate_common(graph, &PassCx::default()).expect("runs");
        assert_eq!(after.nodes.len(), 5);
    }

    #[test]
    fn guards_must_match() {
        let mut graph = ModelBuilder::new()
            .input("x", &[2])
            .typed_input("cond", 9, &[])
            .node("Relu", &["x"], &["a"])
            .node("Relu", &["x"], &["b"])
            .node("Add", &["a", "b"], &["y"])
            .output("y")
            .build();
        let cond = graph.inputs[1];
        graph.nodes[1].guards = vec![(cond, true)];
        let after = eliminate_common(graph, &PassCx::default()).expect("runs");
        assert_eq!(after.nodes.len(), 3);
    }
}
