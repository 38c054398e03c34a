//! Folds an inference `BatchNormalization` into the `Conv` before it: when the Conv's output
//! feeds only the BatchNormalization and the weights, bias and every normalization operand are
//! constants, the Conv takes `W' = W * s` and `B' = (B - mean) * s + beta` per output channel,
//! with `s = gamma / sqrt(var + epsilon)` (computed in f64), and the BatchNormalization goes.
//! Anything else (a second consumer, a run-time operand, a non-f32 type) is left alone.

use super::pattern::{add_constant, producers, retain};
use super::PassCx;
use crate::error::Result;
use crate::ir::{Graph, Tensor};
use crate::ops::Op;

/// Folds Conv -> BatchNormalization pairs.
pub fn fuse_conv_bn(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    for bn_index in 0..graph.nodes.len() {
        let Some(Op::BatchNorm(bn)) = &graph.nodes[bn_index].op else {
            continue;
        };
        if bn.training_momentum.is_some() {
            // Batch statistics depend on the input: nothing to fold.
            continue;
        }
        let epsilon = f64::from(bn.epsilon);
        let bn_node = &graph.nodes[bn_index];
        if !bn_node.guards.is_empty() {
            continue;
        }
        let Some(Some(x)) = bn_node.inputs.first().copied() else {
            continue;
        };
        let Some(conv_index) = producer[x.index()] else {
            continue;
        };
        let conv_node = &graph.nodes[conv_index];
        if remove[conv_index]
            || !matches!(conv_node.op, Some(Op::Conv(_)))
            || uses[x.index()] != 1
            || graph.outputs.contains(&x)
            || conv_node.guards != bn_node.guards
        {
            continue;
        }
        let constant = |i: usize, node: &crate::ir::Node| -> Option<Vec<f32>> {
            node.inputs
                .get(i)
                .copied()
                .flatten()
                .and_then(|v| graph.value(v).constant.as_ref())
                .and_then(Tensor::as_f32)
        };
        let (Some(w), Some(gamma), Some(beta), Some(mean), Some(var)) = (
            constant(1, conv_node),
            constant(1, bn_node),
            constant(2, bn_node),
            constant(3, bn_node),
            constant(4, bn_node),
        ) else {
            continue;
        };
        let channels = gamma.len();
        let bias = match conv_node.inputs.get(2).copied().flatten() {
            Some(_) => match constant(2, conv_node) {
                Some(b) => b,
                None => continue,
            },
            None => vec![0.0; channels],
        };
        if channels == 0
            || w.len() % channels != 0
            || [beta.len(), mean.len(), var.len(), bias.len()]
                .iter()
                .any(|&n| n != channels)
        {
            continue;
        }
        let per_channel = w.len() / channels;
        let scale: Vec<f64> = (0..channels)
            .map(|c| f64::from(gamma[c]) / (f64::from(var[c]) + epsilon).sqrt())
            .collect();
        let new_w: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, &v)| (f64::from(v) * scale[i / per_channel]) as f32)
            .collect();
        let new_b: Vec<f32> = (0..channels)
            .map(|c| {
                ((f64::from(bias[c]) - f64::from(mean[c])) * scale[c] + f64::from(beta[c])) as f32
            })
            .collect();
        let Some(w_shape) = conv_node.inputs[1].and_then(|v| graph.value(v).shape.clone()) else {
            continue;
        };
        let name = conv_node.name.clone();
        let out = bn_node.outputs.first().copied().flatten();
        let w_id = add_constant(
            &mut graph,
            format!("{name}/bn_folded_weight"),
            Tensor::from_f32(w_shape, &new_w),
        );
        let b_id = add_constant(
            &mut graph,
            format!("{name}/bn_folded_bias"),
            Tensor::from_f32(vec![channels], &new_b),
        );
        let conv = &mut graph.nodes[conv_index];
        conv.inputs.resize(3, None);
        conv.inputs[1] = Some(w_id);
        conv.inputs[2] = Some(b_id);
        conv.outputs[0] = out;
        remove[bn_index] = true;
    }
    retain(&mut graph, &remove);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::ModelBuilder;

    #[test]
    fn snapshot_conv_then_batch_norm() {
        use crate::passes::testing::{before_after, ints_attr, ModelBuilder};
        let w: Vec<f32> = (0..36).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let graph = ModelBuilder::new()
            .input("x", &[1, 2, 4, 4])
            .floats("w", &[2, 2, 3, 3], &w)
            .floats("gamma", &[2], &[1.5, 0.5])
            .floats("beta", &[2], &[0.1, -0.2])
            .floats("mean", &[2], &[0.3, 0.0])
            .floats("var", &[2], &[1.0, 4.0])
            .node_with(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node(
                "BatchNormalization",
                &["c", "gamma", "beta", "mean", "var"],
                &["y"],
            )
            .output("y")
            .build();
        let (after, text) = before_after(graph, fuse_conv_bn);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
    }

    /// `x -> Conv -> BatchNormalization -> y`, typed.
    fn conv_bn_graph() -> Graph {
        ModelBuilder::new()
            .input("x", &[1, 1, 2, 2])
            .floats("w", &[2, 1, 1, 1], &[1.0, 2.0])
            .floats("b", &[2], &[0.5, -0.5])
            .floats("g", &[2], &[1.0, 3.0])
            .floats("beta", &[2], &[0.0, 1.0])
            .floats("m", &[2], &[0.5, 0.0])
            .floats("v", &[2], &[1.0, 4.0])
            .node("Conv", &["x", "w", "b"], &["c"])
            .node("BatchNormalization", &["c", "g", "beta", "m", "v"], &["y"])
            .output("y")
            .build()
    }

    #[test]
    fn folds_bn_into_conv_weights() {
        let cx = PassCx::default();
        let graph = conv_bn_graph();
        assert_eq!(
            graph.op_histogram(),
            [
                ("BatchNormalization".to_string(), 1),
                ("Conv".to_string(), 1)
            ]
        );
        let folded = fuse_conv_bn(graph, &cx).expect("folds");
        assert_eq!(folded.op_histogram(), [("Conv".to_string(), 1)]);
        let conv = &folded.nodes[0];
        let w = folded
            .value(conv.inputs[1].expect("w"))
            .constant
            .as_ref()
            .and_then(Tensor::as_f32)
            .expect("f32");
        let b = folded
            .value(conv.inputs[2].expect("b"))
            .constant
            .as_ref()
            .and_then(Tensor::as_f32)
            .expect("f32");
        // Channel 0: s = 1 / sqrt(1 + 1e-5); channel 1: s = 3 / sqrt(4 + 1e-5).
        let s0 = 1.0 / (1.0f64 + 1e-5).sqrt();
        let s1 = 3.0 / (4.0f64 + 1e-5).sqrt();
        assert!(
            (f64::from(w[0]) - s0).abs() < 1e-6 && (f64::from(w[1]) - 2.0 * s1).abs() < 1e-6,
            "{w:?}"
        );
        assert!(
            (f64::from(b[0]) - 0.0).abs() < 1e-6
                && (f64::from(b[1]) - (-0.5 * s1 + 1.0)).abs() < 1e-6,
            "{b:?}"
        );
        assert_eq!(conv.outputs[0], folded.outputs.first().copied());
    }

    #[test]
    fn leaves_shared_conv_outputs_alone() {
        let cx = PassCx::default();
        let mut graph = conv_bn_graph();
        // Make the Conv output a graph output too: it has another consumer now.
        let conv_out = graph.nodes[0].outputs[0].expect("c");
        graph.outputs.push(conv_out);
        let after = fuse_conv_bn(graph, &cx).expect("runs");
        assert_eq!(after.nodes.len(), 2);
    }
}
