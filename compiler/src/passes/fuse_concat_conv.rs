//! Fuses a channels-last `Concat` over the channels whose inputs are all dense channels-last
//! convolutions that nothing else reads (SqueezeNet's fire modules, GoogLeNet's inception
//! blocks) into one `sinter::ConcatConv`: each convolution writes its channels of the
//! concatenation in place, at the concatenation's row stride, so the concatenation is never
//! copied (the planner makes a Concat in place only when its inputs are contiguous blocks of
//! its output, which channels last they are not). The convolutions run at the Concat's
//! place, in its order, with the same kernels: the results are the same bits. Runs once the
//! layout is final. Anything else (a depthwise, grouped or residual convolution, a
//! channels-first one, another reader, a graph output, run-time shapes, different guards)
//! is left alone.

use super::pattern::{producers, splice, touches_dynamic};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Node};
use crate::ops::conv::{ConcatConv, ConvLayout};
use crate::ops::{normalize_axis, Op};

/// Fuses Concat nodes over the outputs of channels-last convolutions.
pub fn fuse_concat_conv(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    let mut replacements = Vec::new();
    for (concat_index, concat_node) in graph.nodes.iter().enumerate() {
        let Some(Op::Concat(concat)) = &concat_node.op else {
            continue;
        };
        let Some(Some(out)) = concat_node.outputs.first().copied() else {
            continue;
        };
        let Some(rank) = graph.value(out).shape.as_ref().map(Vec::len) else {
            continue;
        };
        if !concat_node.domain.is_empty()
            || touches_dynamic(&graph, concat_node)
            || graph.value(out).dtype != Some(DType::F32)
            || concat_node.inputs.len() < 2
            || rank < 3
            || normalize_axis(concat.axis, rank, "axis").ok() != Some(rank - 1)
        {
            continue;
        }
        let mut parts = Vec::new();
        let mut arity = Vec::new();
        let mut inputs = Vec::new();
        let mut convs = Vec::new();
        for part in &concat_node.inputs {
            let Some(part) = *part else { break };
            let Some(conv_index) = producer[part.index()] else {
                break;
            };
            let conv_node = &graph.nodes[conv_index];
            let Some(Op::Conv(conv)) = &conv_node.op else {
                break;
            };
            let dense = conv.layout == ConvLayout::ChannelsLast
                && conv.group == 1
                && !conv.residual
                && conv.packed_from.is_some();
            if !dense
                || uses[part.index()] != 1
                || graph.outputs.contains(&part)
                || conv_node.guards != concat_node.guards
                || touches_dynamic(&graph, conv_node)
                || conv_node.outputs.iter().skip(1).any(Option::is_some)
            {
                break;
            }
            // X, W and B if any, none missing (a residual, input 3, is ruled out above).
            let present: Vec<_> = conv_node.inputs.iter().flatten().copied().collect();
            if present.len() != conv_node.inputs.len() || present.len() > 3 {
                break;
            }
            arity.push(present.len());
            inputs.extend(present.into_iter().map(Some));
            parts.push(conv.clone());
            convs.push(conv_index);
        }
        if parts.len() != concat_node.inputs.len() {
            continue;
        }
        for &c in &convs {
            remove[c] = true;
        }
        let fused = Node {
            name: concat_node.name.clone(),
            op_type: "ConcatConv".into(),
            domain: "sinter".into(),
            opset: 1,
            inputs,
            outputs: concat_node.outputs.clone(),
            attributes: Vec::new(),
            op: Some(Op::ConcatConv(ConcatConv { parts, arity })),
            guards: concat_node.guards.clone(),
        };
        replacements.push((concat_index, fused));
    }
    splice(&mut graph, &remove, replacements);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::pattern::{int_attr, ints_attr};
    use crate::passes::testing::{before_after, ModelBuilder};

    /// A fire module on a 1x4x5x5 input, channels last: a squeeze convolution, then a 1x1 and
    /// a 3x3 convolution of it (16 channels each, one panel) concatenated over the channels; `also_out` is a graph output
    /// besides the Concat's.
    fn fire(also_out: Option<&str>) -> Graph {
        let w = |n: usize| -> Vec<f32> { (0..n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect() };
        let mut builder = ModelBuilder::new()
            .input("x", &[1, 4, 5, 5])
            .floats("ws", &[16, 4, 1, 1], &w(64))
            .floats("w1", &[16, 16, 1, 1], &w(256))
            .floats("w3", &[16, 16, 3, 3], &w(2304))
            .node("Conv", &["x", "ws"], &["s"])
            .node("Conv", &["s", "w1"], &["e1"])
            .node_with(
                "Conv",
                &["s", "w3"],
                &["e3"],
                vec![ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node_with("Concat", &["e1", "e3"], &["y"], vec![int_attr("axis", 1)])
            .output("y");
        if let Some(name) = also_out {
            builder = builder.output(name);
        }
        crate::passes::channels_last(builder.build(), &PassCx::default()).expect("channels last")
    }

    #[test]
    fn the_convolutions_write_their_channels_of_the_concat() {
        let (after, text) = before_after(fire(None), fuse_concat_conv);
        insta::assert_snapshot!(text);
        assert!(!after.nodes.iter().any(|n| n.op_type == "Concat"));
        let fused = after
            .nodes
            .iter()
            .find(|n| n.op_type == "ConcatConv")
            .expect("fused");
        assert!(
            matches!(&fused.op, Some(Op::ConcatConv(c)) if c.parts.len() == 2 && c.arity == [2, 2])
        );
    }

    #[test]
    fn a_convolution_read_elsewhere_keeps_the_concat() {
        let after = fuse_concat_conv(fire(Some("e1")), &PassCx::default()).expect("runs");
        assert!(after.nodes.iter().any(|n| n.op_type == "Concat"));
        assert!(!after.nodes.iter().any(|n| n.op_type == "ConcatConv"));
    }
}
