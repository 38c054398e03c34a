//! Fuses a skip connection into the convolution before it: `Add(Conv(x), r)` or a two-input
//! `Sum` (either order),
//! with `r` a tensor of the convolution's output shape computed before the convolution runs,
//! becomes a convolution that adds `r` in its epilogue, after the bias and before any
//! activation (which `fuse_activation`, running next, can then fuse as well: ResNet's
//! `Relu(Conv(x) + r)`). The output is the same sum of the same two values, so results are
//! unchanged. A convolution that already has activations, a second reader of its output,
//! broadcasting, another type or different guards leave the Add alone.

use super::pattern::{input, producers, retain};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph};
use crate::ops::Op;

/// Fuses Conv -> Add(residual) pairs.
pub fn fuse_residual(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let mut producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    for add_index in 0..graph.nodes.len() {
        let add = &graph.nodes[add_index];
        let sum = matches!(add.op_type.as_str(), "Add" | "Sum");
        if !sum || !add.domain.is_empty() || add.inputs.len() != 2 {
            continue;
        }
        let (Some(a), Some(b), Some(Some(out))) =
            (input(add, 0), input(add, 1), add.outputs.first().copied())
        else {
            continue;
        };
        let shape = graph.value(out).shape.clone();
        let fits = |v| {
            let value = graph.value(v);
            value.dtype == Some(DType::F32) && value.shape == shape && shape.is_some()
        };
        if !fits(a) || !fits(b) || a == b {
            continue;
        }
        // The convolution operand: produced by a Conv that nothing else reads; the other
        // operand must exist before that Conv runs.
        let candidates = [(a, b), (b, a)];
        let Some((conv_index, residual)) = candidates.into_iter().find_map(|(c, r)| {
            let index = producer[c.index()]?;
            let node = &graph.nodes[index];
            let plain_conv = matches!(
                &node.op,
                Some(Op::Conv(conv)) if conv.activations.is_empty() && !conv.residual
            );
            let ready = producer[r.index()].is_none_or(|p| p < index);
            (plain_conv
                && !remove[index]
                && ready
                && uses[c.index()] == 1
                && !graph.outputs.contains(&c)
                && node.guards == add.guards)
                .then_some((index, r))
        }) else {
            continue;
        };
        let conv_node = &mut graph.nodes[conv_index];
        if let Some(Op::Conv(conv)) = &mut conv_node.op {
            conv.residual = true;
        }
        conv_node.inputs.resize(3, None);
        conv_node.inputs.push(Some(residual));
        conv_node.outputs[0] = Some(out);
        producer[out.index()] = Some(conv_index);
        remove[add_index] = true;
    }
    retain(&mut graph, &remove);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, ModelBuilder};

    /// `Relu(Conv(x) + skip)` on a 1x2x4x4 input, with `skip` made by `make_skip` from `x`.
    fn block(skip_first: bool) -> Graph {
        let w: Vec<f32> = (0..2 * 2 * 9).map(|i| i as f32 * 0.1).collect();
        let add_inputs: &[&str] = if skip_first { &["s", "c"] } else { &["c", "s"] };
        ModelBuilder::new()
            .input("x", &[1, 2, 4, 4])
            .floats("w", &[2, 2, 3, 3], &w)
            .node("Neg", &["x"], &["s"])
            .node_with(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![crate::passes::testing::ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node("Add", add_inputs, &["y"])
            .node("Relu", &["y"], &["z"])
            .output("z")
            .build()
    }

    #[test]
    fn a_skip_connection_joins_the_convolution() {
        let (after, text) = before_after(block(false), fuse_residual);
        insta::assert_snapshot!(text);
        assert!(!after.nodes.iter().any(|n| n.op_type == "Add"));
        let conv = after
            .nodes
            .iter()
            .find(|n| n.op_type == "Conv")
            .expect("conv");
        assert!(matches!(&conv.op, Some(Op::Conv(c)) if c.residual));
        // Either operand order.
        let swapped = fuse_residual(block(true), &PassCx::default()).expect("runs");
        assert!(!swapped.nodes.iter().any(|n| n.op_type == "Add"));
    }

    #[test]
    fn a_residual_computed_after_the_convolution_stays() {
        // The skip operand is produced after the Conv in the schedule: fusing would read it
        // before it exists.
        let w: Vec<f32> = (0..2 * 2 * 9).map(|i| i as f32 * 0.1).collect();
        let graph = ModelBuilder::new()
            .input("x", &[1, 2, 4, 4])
            .floats("w", &[2, 2, 3, 3], &w)
            .node_with(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![crate::passes::testing::ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node("Neg", &["x"], &["s"])
            .node("Add", &["c", "s"], &["y"])
            .output("y")
            .build();
        let after = fuse_residual(graph, &PassCx::default()).expect("runs");
        assert!(after.nodes.iter().any(|n| n.op_type == "Add"));
    }
}
