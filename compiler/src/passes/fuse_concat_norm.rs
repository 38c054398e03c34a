//! Fuses a `Concat` whose only reader is an inference `BatchNormalization` over the
//! concatenation axis into one `sinter::ConcatAffine` (DenseNet: each dense layer
//! concatenates the block's features and normalizes them, with the Relu already riding on
//! the normalization): the inputs are normalized as they are copied, so the concatenation is
//! never written and read back. The per-channel factors `k = scale / sqrt(var + epsilon)` and
//! `shift = bias - mean * k` are computed here in f32 with the normalization kernel's
//! arithmetic, so the results are the same bits. Runs last, once the layout is final: the
//! axis must be the normalization's channel axis (the last one channels last, else 1).
//! Anything else (another reader, a graph output, run-time shapes or statistics, a training
//! normalization, different guards) is left alone.

use super::pattern::{add_constant, producers, retain, touches_dynamic};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Node, Tensor};
use crate::ops::norm::ConcatAffine;
use crate::ops::{normalize_axis, Op};

/// Fuses Concat -> BatchNormalization pairs.
pub fn fuse_concat_norm(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    for bn_index in 0..graph.nodes.len() {
        let bn_node = &graph.nodes[bn_index];
        let Some(Op::BatchNorm(bn)) = &bn_node.op else {
            continue;
        };
        if bn.training_momentum.is_some() || touches_dynamic(&graph, bn_node) {
            continue;
        }
        let Some(Some(x)) = bn_node.inputs.first().copied() else {
            continue;
        };
        let Some(concat_index) = producer[x.index()] else {
            continue;
        };
        let concat_node = &graph.nodes[concat_index];
        let Some(Op::Concat(concat)) = &concat_node.op else {
            continue;
        };
        let Some(shape) = graph.value(x).shape.clone() else {
            continue;
        };
        let rank = shape.len();
        let channel_axis = if bn.channels_last {
            rank.wrapping_sub(1)
        } else {
            1
        };
        let parts_ok = concat_node
            .inputs
            .iter()
            .all(|v| v.is_some_and(|v| graph.value(v).dtype == Some(DType::F32)));
        if remove[concat_index]
            || uses[x.index()] != 1
            || graph.outputs.contains(&x)
            || concat_node.guards != bn_node.guards
            || !concat_node.domain.is_empty()
            || touches_dynamic(&graph, concat_node)
            || !parts_ok
            || rank < 2
            || normalize_axis(concat.axis, rank, "axis").ok() != Some(channel_axis)
        {
            continue;
        }
        let Some(factors) = factors(&graph, bn_node, bn.epsilon, shape[channel_axis]) else {
            continue;
        };
        let activations = bn.activations.clone();
        let name = bn_node.name.clone();
        let factors = add_constant(&mut graph, format!("{name}/concat_factors"), factors);
        let (bn_node, concat_node) = (&graph.nodes[bn_index], &graph.nodes[concat_index]);
        let mut inputs = concat_node.inputs.clone();
        inputs.push(Some(factors));
        let fused = Node {
            name,
            op_type: "ConcatAffine".into(),
            domain: "sinter".into(),
            opset: 1,
            inputs,
            outputs: bn_node.outputs[..1].to_vec(),
            attributes: Vec::new(),
            op: Some(Op::ConcatAffine(ConcatAffine {
                axis: channel_axis,
                activations,
            })),
            guards: bn_node.guards.clone(),
        };
        graph.nodes[bn_index] = fused;
        remove[concat_index] = true;
    }
    retain(&mut graph, &remove);
    Ok(graph)
}

/// The `[2, channels]` factors (`k`, then `shift`) of a BatchNormalization with constant
/// operands, in the kernel's f32 arithmetic (`sinter_rt::norm`).
fn factors(graph: &Graph, bn: &Node, epsilon: f32, channels: usize) -> Option<Tensor> {
    let operand = |i: usize| -> Option<Vec<f32>> {
        let v = bn.inputs.get(i).copied().flatten()?;
        let t = graph.value(v).constant.as_ref()?.as_f32()?;
        (t.len() == channels).then_some(t)
    };
    let (scale, bias, mean, var) = (operand(1)?, operand(2)?, operand(3)?, operand(4)?);
    let mut data = vec![0.0f32; 2 * channels];
    for c in 0..channels {
        let k = scale[c] / (var[c] + epsilon).sqrt();
        data[c] = k;
        data[channels + c] = bias[c] - mean[c] * k;
    }
    Some(Tensor::from_f32(vec![2, channels], &data))
}
