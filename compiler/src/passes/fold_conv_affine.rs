//! Folds per-channel constant scales and shifts into the `Conv` before them: a `Mul` by a
//! constant that varies only along the output-channel axis scales the weights and bias, an
//! `Add` of such a constant shifts the bias (exporters write unfused batch normalization this
//! way). Repeats until nothing matches. A constant that varies along another axis, a second
//! consumer of the Conv output, or a graph output leaves the graph alone.

use super::pattern::{add_constant, producers};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Tensor, ValueId};
use crate::ops::Op;

/// The per-channel values of `c` broadcast against an output of rank `rank` with `channels`
/// channels on axis 1, if `c` varies along no other axis.
fn per_channel(c: &Tensor, rank: usize, channels: usize) -> Option<Vec<f32>> {
    let values = c.as_f32()?;
    if values.len() == 1 {
        return Some(vec![values[0]; channels]);
    }
    if c.shape.len() > rank || rank < 2 {
        return None;
    }
    let lead = rank - c.shape.len();
    for (i, &d) in c.shape.iter().enumerate() {
        let axis = lead + i;
        if d != 1 && !(axis == 1 && d == channels) {
            return None;
        }
    }
    (values.len() == channels).then_some(values)
}

/// One fold, if any matches: returns the rewritten graph and whether it changed.
fn fold_once(mut graph: Graph) -> (Graph, bool) {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    for op_index in 0..graph.nodes.len() {
        let node = &graph.nodes[op_index];
        let is_mul = match node.op_type.as_str() {
            "Mul" => true,
            "Add" => false,
            _ => continue,
        };
        if !node.domain.is_empty() || node.inputs.len() != 2 {
            continue;
        }
        let (Some(Some(a)), Some(Some(b)), Some(Some(out))) = (
            node.inputs.first().copied(),
            node.inputs.get(1).copied(),
            node.outputs.first().copied(),
        ) else {
            continue;
        };
        // One operand is the Conv output, the other a constant.
        let (x, c) = if graph.value(b).constant.is_some() {
            (a, b)
        } else {
            (b, a)
        };
        let Some(constant) = graph.value(c).constant.clone() else {
            continue;
        };
        let Some(conv_index) = producer[x.index()] else {
            continue;
        };
        if uses[x.index()] != 1
            || graph.outputs.contains(&x)
            || graph.value(x).dtype != Some(DType::F32)
        {
            continue;
        }
        let conv_node = &graph.nodes[conv_index];
        let Some(Op::Conv(conv)) = &conv_node.op else {
            continue;
        };
        if !conv.activations.is_empty()
            || conv_node.guards != node.guards
            || graph.value(out).shape != graph.value(x).shape
        {
            continue;
        }
        let Some(rank) = graph.value(x).shape.as_ref().map(Vec::len) else {
            continue;
        };
        let w_id = conv_node.inputs.get(1).copied().flatten();
        let Some(w) = w_id
            .and_then(|w| graph.value(w).constant.as_ref())
            .and_then(Tensor::as_f32)
        else {
            continue;
        };
        let Some(w_shape) = w_id.and_then(|w| graph.value(w).shape.clone()) else {
            continue;
        };
        let channels = w_shape.first().copied().unwrap_or(0);
        let Some(k) = per_channel(&constant, rank, channels) else {
            continue;
        };
        let bias = match conv_node.inputs.get(2).copied().flatten() {
            Some(b) => match graph.value(b).constant.as_ref().and_then(Tensor::as_f32) {
                Some(v) => v,
                None => continue,
            },
            None => vec![0.0; channels],
        };
        if channels == 0 || w.len() % channels != 0 {
            continue;
        }
        let per = w.len() / channels;
        let (new_w, new_b): (Vec<f32>, Vec<f32>) = if is_mul {
            (
                w.iter().enumerate().map(|(i, &v)| v * k[i / per]).collect(),
                bias.iter().zip(&k).map(|(&b, &s)| b * s).collect(),
            )
        } else {
            (
                w.clone(),
                bias.iter().zip(&k).map(|(&b, &s)| b + s).collect(),
            )
        };
        let name = conv_node.name.clone();
        let w_new = if is_mul {
            Some(add_constant(
                &mut graph,
                format!("{name}/scaled_weight"),
                Tensor::from_f32(w_shape, &new_w),
            ))
        } else {
            None
        };
        let b_new: ValueId = add_constant(
            &mut graph,
            format!("{name}/folded_bias"),
            Tensor::from_f32(vec![channels], &new_b),
        );
        let conv_node = &mut graph.nodes[conv_index];
        conv_node.inputs.resize(3, None);
        if let Some(w_new) = w_new {
            conv_node.inputs[1] = Some(w_new);
        }
        conv_node.inputs[2] = Some(b_new);
        conv_node.outputs[0] = Some(out);
        graph.nodes.remove(op_index);
        return (graph, true);
    }
    (graph, false)
}

/// Folds Conv -> Mul/Add by per-channel constants, repeatedly.
pub fn fold_conv_affine(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    loop {
        let (next, changed) = fold_once(graph);
        graph = next;
        if !changed {
            return Ok(graph);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_per_channel_scale_and_shift() {
        use crate::passes::testing::{before_after, ints_attr, ModelBuilder};
        let w: Vec<f32> = (0..36).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let graph = ModelBuilder::new()
            .input("x", &[1, 2, 4, 4])
            .floats("w", &[2, 2, 3, 3], &w)
            .floats("scale", &[2, 1, 1], &[2.0, -0.5])
            .floats("shift", &[2, 1, 1], &[0.25, 1.0])
            .node_with(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node("Mul", &["c", "scale"], &["m"])
            .node("Add", &["m", "shift"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, fold_conv_affine);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
    }

    #[test]
    fn per_channel_shapes() {
        let t = |shape: Vec<usize>, n: usize| Tensor::from_f32(shape, &vec![2.0; n]);
        assert_eq!(per_channel(&t(vec![], 1), 4, 3), Some(vec![2.0; 3]));
        assert_eq!(per_channel(&t(vec![3, 1, 1], 3), 4, 3), Some(vec![2.0; 3]));
        assert_eq!(
            per_channel(&t(vec![1, 3, 1, 1], 3), 4, 3),
            Some(vec![2.0; 3])
        );
        assert_eq!(
            per_channel(&t(vec![3], 3), 4, 3),
            None,
            "a [3] constant varies along the last axis"
        );
        assert_eq!(per_channel(&t(vec![1, 1, 1, 5], 5), 4, 3), None);
    }
}
