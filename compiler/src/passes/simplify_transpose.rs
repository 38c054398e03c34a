//! Simplifies chains of data-movement ops:
//!
//! - `Transpose(Transpose(x, p), q)` becomes one `Transpose(x, p[q[i]])`;
//! - a `Transpose` that keeps the order of every axis longer than 1 (it only moves axes of
//!   size 1) becomes a `Reshape`, which costs nothing (the planner makes it a view);
//! - a chain of `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze` and `Identity` becomes one
//!   `Reshape` to the chain's final shape.
//!
//! The first node of a pair goes when its output has no other reader; both must run under the
//! same guards. What ends up an identity (a `Squeeze` undoing an `Unsqueeze`, a transpose
//! undone by another) is then removed by [`remove_noops`](super::remove_noops).

use super::pattern::{add_constant, input, ints_attr, new_node, output, producers, retain};
use super::{remove_noops, PassCx};
use crate::error::Result;
use crate::ir::{Graph, Node, Tensor};
use crate::ops::Op;

/// The permutation of a Transpose node, resolved against its input's rank.
fn perm_of(graph: &Graph, node: &Node) -> Option<Vec<usize>> {
    let Some(Op::Transpose(t)) = &node.op else {
        return None;
    };
    let rank = graph.value(input(node, 0)?).shape.as_ref()?.len();
    match &t.perm {
        None => Some((0..rank).rev().collect()),
        Some(p) => {
            let perm: Vec<usize> = p
                .iter()
                .map(|&a| usize::try_from(a).ok())
                .collect::<Option<_>>()?;
            (perm.len() == rank).then_some(perm)
        }
    }
}

/// Whether a node only reinterprets its input's shape (one output, same elements in order).
fn is_reshape(node: &Node) -> bool {
    node.domain.is_empty()
        && node.outputs.len() == 1
        && matches!(node.op, Some(Op::Reshape(_) | Op::Squeeze(_)))
}

/// A `Reshape` of `x` to `node`'s output shape, replacing `node`.
fn reshape_to(graph: &mut Graph, node: &Node, x: crate::ir::ValueId) -> Option<Node> {
    let out = output(node, 0)?;
    let shape = graph.value(out).shape.clone()?;
    // A 0 in a Reshape's shape copies the input's dim unless allowzero (opset 14) is set.
    if shape.contains(&0) || node.opset < 5 {
        return None;
    }
    let dims: Vec<i64> = shape
        .iter()
        .map(|&d| i64::try_from(d).ok())
        .collect::<Option<_>>()?;
    let shape_value = add_constant(
        graph,
        format!("{}/shape", node.name),
        Tensor::from_i64(vec![dims.len()], &dims),
    );
    new_node(
        node.name.clone(),
        "Reshape",
        vec![Some(x), Some(shape_value)],
        vec![Some(out)],
        Vec::new(),
        node,
    )
}

/// Composes transposes and reshapes (see the module doc), until nothing changes.
pub fn simplify_transpose(mut graph: Graph, cx: &PassCx) -> Result<Graph> {
    // Each round shortens a chain by at least one node, or stops.
    for _ in 0..graph.nodes.len() {
        let before = graph.nodes.len();
        graph = remove_noops(simplify_once(graph), cx)?;
        if graph.nodes.len() == before {
            break;
        }
    }
    Ok(graph)
}

/// One round over the nodes in order.
fn simplify_once(mut graph: Graph) -> Graph {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    for i in 0..graph.nodes.len() {
        let node = graph.nodes[i].clone();
        let Some(t) = input(&node, 0) else { continue };
        // Values of run-time shape: transposes compose (no shape is baked in), reshapes stay.
        let touches_dynamic =
            |id: Option<crate::ir::ValueId>| id.is_some_and(|v| graph.value(v).is_dynamic());
        let dynamic = touches_dynamic(Some(t)) || node.outputs.iter().any(|&o| touches_dynamic(o));
        if dynamic && perm_of(&graph, &node).is_none() {
            continue;
        }
        let first = producer[t.index()].filter(|&j| {
            !remove[j] && graph.nodes[j].guards == node.guards && graph.nodes[j].outputs.len() == 1
        });
        let mut replacement = None;
        if let Some(perm) = perm_of(&graph, &node) {
            // Transpose of a transpose: one transpose.
            let composed = first.and_then(|j| {
                let inner = perm_of(&graph, &graph.nodes[j])?;
                let composed: Vec<usize> = perm
                    .iter()
                    .map(|&a| inner.get(a).copied())
                    .collect::<Option<_>>()?;
                (inner.len() == perm.len()).then_some((input(&graph.nodes[j], 0)?, composed))
            });
            let (x, perm) = composed.unwrap_or((t, perm));
            let in_shape = graph.value(x).shape.clone().unwrap_or_default();
            let moved: Vec<usize> = perm
                .iter()
                .copied()
                .filter(|&a| in_shape.get(a) != Some(&1))
                .collect();
            if dynamic {
                // A copy where the two transposes cancel; else one transpose (below).
                if perm.iter().enumerate().all(|(i, &a)| i == a) {
                    replacement = new_node(
                        node.name.clone(),
                        "Identity",
                        vec![Some(x)],
                        node.outputs.clone(),
                        vec![],
                        &node,
                    );
                }
            } else if moved.windows(2).all(|w| w[0] < w[1]) {
                replacement = reshape_to(&mut graph, &node, x);
            }
            if replacement.is_none() && x != t {
                let perm: Vec<i64> = perm
                    .iter()
                    .map(|&a| i64::try_from(a).unwrap_or(0))
                    .collect();
                replacement = new_node(
                    node.name.clone(),
                    "Transpose",
                    vec![Some(x)],
                    node.outputs.clone(),
                    vec![ints_attr("perm", &perm)],
                    &node,
                );
            }
        } else if is_reshape(&node) {
            // Reshape of a reshape: one reshape.
            if let Some(j) = first.filter(|&j| is_reshape(&graph.nodes[j])) {
                if let Some(x) = input(&graph.nodes[j], 0) {
                    replacement = reshape_to(&mut graph, &node, x);
                }
            }
        }
        let Some(new) = replacement else { continue };
        if input(&new, 0) != Some(t) {
            if let Some(j) = first {
                if uses[t.index()] == 1 && !graph.outputs.contains(&t) {
                    remove[j] = true;
                }
            }
        }
        graph.nodes[i] = new;
    }
    retain(&mut graph, &remove);
    graph
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, ModelBuilder};

    #[test]
    fn a_keras_cnn_reads_its_nhwc_input_without_a_transpose() {
        // tests/data/keras_cnn (scripts/make_keras_cnn.py): tf2onnx turns the NHWC image
        // channels first with a Transpose; the channels-last layout cancels it, so the first
        // convolution reads the caller's NHWC image where it lies.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/keras_cnn/model.onnx");
        let loaded = crate::Builder::new(&path).load().expect("loads");
        assert_eq!(
            loaded
                .nodes
                .iter()
                .filter(|n| n.op_type == "Transpose")
                .count(),
            1,
            "tf2onnx's input transpose"
        );
        let compiled = crate::Builder::new(&path).compile().expect("compiles");
        let ops: Vec<&str> = compiled
            .graph
            .nodes
            .iter()
            .map(|n| n.op_type.as_str())
            .collect();
        assert!(!ops.contains(&"Transpose"), "{ops:?}");
    }

    #[test]
    fn chains_compose_and_cancel() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 3, 4])
            .ints("axes", &[1], &[0])
            .ints("flat", &[2], &[6, 4])
            .transpose("x", "a", &[1, 0, 2])
            .transpose("a", "b", &[0, 2, 1])
            .node("Unsqueeze", &["b", "axes"], &["c"])
            .node("Squeeze", &["c", "axes"], &["d"])
            .transpose("d", "e", &[2, 0, 1])
            .node("Reshape", &["e", "flat"], &["f"])
            .node("Flatten", &["f"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, simplify_transpose);
        insta::assert_snapshot!(text);
        // The transposes undo each other, the Unsqueeze/Squeeze pair cancels.
        assert_eq!(after.op_histogram(), [("Reshape".to_string(), 1)]);
    }

    #[test]
    fn transposes_of_unit_axes_become_reshapes_and_shared_ones_stay() {
        let graph = ModelBuilder::new()
            .input("x", &[1, 3, 1, 4])
            .transpose("x", "a", &[2, 1, 0, 3])
            .transpose("x", "b", &[3, 1, 2, 0])
            .transpose("b", "c", &[0, 2, 1, 3])
            .output("a")
            .output("b")
            .output("c")
            .build();
        let (after, text) = before_after(graph, simplify_transpose);
        insta::assert_snapshot!(text);
        assert_eq!(
            after.op_histogram(),
            [("Reshape".to_string(), 1), ("Transpose".to_string(), 2)]
        );
    }
}
