//! Fuses a dense channels-last `Conv` with the float `MaxPool` that alone reads its output
//! (a network's stem: ResNet's, GoogLeNet's, DenseNet's, SqueezeNet's, ShuffleNet's) into one
//! `sinter::ConvMaxPool`: the convolution's rows go a few at a time to a slot of working
//! memory that the pooling reads from cache, so the convolution's output, the largest tensor
//! of those networks, is never written whole and read back. The same kernels compute each
//! pixel and each window: the results are the same bits. Runs once the layout is final.
//! Anything else (Winograd, grouped, residual or channels-first convolutions, another reader,
//! a graph output, a pooling with indices, dilation or windows wholly in the padding,
//! run-time shapes, different guards) is left alone.

use super::pattern::{producers, splice, touches_dynamic};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Node};
use crate::ops::conv::{ConvLayout, ConvMaxPool};
use crate::ops::Op;

/// Most kernel rows of a fused convolution (`sinter_rt::conv_nhwc::MAX_RUNS`).
const MAX_KERNEL_ROWS: usize = 64;

/// Fuses MaxPool nodes into the channels-last convolutions they alone read.
pub fn fuse_conv_pool(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    let mut replacements = Vec::new();
    for (pool_index, pool_node) in graph.nodes.iter().enumerate() {
        let Some(Op::Pool(pool)) = &pool_node.op else {
            continue;
        };
        let (Some(Some(x)), Some(Some(y))) = (
            pool_node.inputs.first().copied(),
            pool_node.outputs.first().copied(),
        ) else {
            continue;
        };
        let Some(shape) = graph.value(x).shape.clone() else {
            continue;
        };
        if !pool.max
            || !pool.channels_last
            || pool.lp.is_some()
            || !pool_node.domain.is_empty()
            || shape.len() != 4
            || graph.value(x).dtype != Some(DType::F32)
            || pool_node.outputs.iter().skip(1).any(Option::is_some)
            || uses[x.index()] != 1
            || graph.outputs.contains(&x)
            || touches_dynamic(&graph, pool_node)
        {
            continue;
        }
        let Ok(g) = pool.window.resolve(&shape[1..3], None) else {
            continue;
        };
        // Every window reaches into the image vertically (as the runtime requires).
        let (k, s, pad) = (g.kernel[0], g.strides[0], g.pads_begin[0]);
        if g.dilations.iter().any(|&d| d != 1)
            || s == 0
            || pad >= k
            || g.output[0] == 0
            || (g.output[0] - 1) * s >= shape[1] + pad
        {
            continue;
        }
        let Some(conv_index) = producer[x.index()] else {
            continue;
        };
        let conv_node = &graph.nodes[conv_index];
        let Some(Op::Conv(conv)) = &conv_node.op else {
            continue;
        };
        let kernel_rows = conv
            .packed_from
            .as_ref()
            .and_then(|w| w.get(2))
            .copied()
            .unwrap_or(usize::MAX);
        let present: Vec<_> = conv_node.inputs.iter().flatten().copied().collect();
        if !matches!(
            conv.layout,
            ConvLayout::ChannelsLast | ConvLayout::FromChannelsFirst
        ) || conv.group != 1
            || conv.residual
            || conv.winograd.is_some()
            || conv.packed_from.is_none()
            || kernel_rows > MAX_KERNEL_ROWS
            || conv.window.dilations.iter().any(|&v| v != 1)
            || conv_node.guards != pool_node.guards
            || touches_dynamic(&graph, conv_node)
            || conv_node.outputs.iter().skip(1).any(Option::is_some)
            || present.len() != conv_node.inputs.len()
            || present.len() > 3
        {
            continue;
        }
        remove[conv_index] = true;
        let fused = Node {
            name: conv_node.name.clone(),
            op_type: "ConvMaxPool".into(),
            domain: "sinter".into(),
            opset: 1,
            inputs: conv_node.inputs.clone(),
            outputs: vec![Some(y)],
            attributes: Vec::new(),
            op: Some(Op::ConvMaxPool(ConvMaxPool {
                conv: conv.clone(),
                pool: pool.clone(),
            })),
            guards: pool_node.guards.clone(),
        };
        replacements.push((pool_index, fused));
    }
    splice(&mut graph, &remove, replacements);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::pattern::ints_attr;
    use crate::passes::testing::ModelBuilder;

    /// A stem on a 1x3x12x12 input, channels last: a 3x3 stride-2 convolution `c` and a Relu
    /// `r` of it, then a 3x3 stride-2 max pool of `pooled`; `also_out` is a graph output
    /// besides the pool's.
    fn stem(pooled: &str, also_out: Option<&str>) -> Graph {
        let w: Vec<f32> = (0..16 * 27).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let mut builder = ModelBuilder::new()
            .input("x", &[1, 3, 12, 12])
            .floats("w", &[16, 3, 3, 3], &w)
            .node_with(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![
                    ints_attr("strides", &[2, 2]),
                    ints_attr("pads", &[1, 1, 1, 1]),
                ],
            )
            .node("Relu", &["c"], &["r"])
            .node_with(
                "MaxPool",
                &[pooled],
                &["y"],
                vec![
                    ints_attr("kernel_shape", &[3, 3]),
                    ints_attr("strides", &[2, 2]),
                ],
            )
            .output("y");
        if let Some(name) = also_out {
            builder = builder.output(name);
        }
        let graph = crate::passes::fuse_activation(builder.build(), &PassCx::default())
            .expect("fuses the Relu");
        crate::passes::channels_last(graph, &PassCx::default()).expect("channels last")
    }

    #[test]
    fn the_pool_joins_the_convolution_it_alone_reads() {
        let after = fuse_conv_pool(stem("r", None), &PassCx::default()).expect("runs");
        assert!(!after.nodes.iter().any(|n| n.op_type == "MaxPool"));
        let fused = after
            .nodes
            .iter()
            .find(|n| n.op_type == "ConvMaxPool")
            .expect("fused");
        assert!(matches!(
            &fused.op,
            Some(Op::ConvMaxPool(f)) if f.pool.max && f.conv.activations.len() == 1
        ));
    }

    #[test]
    fn a_convolution_read_elsewhere_keeps_its_pool() {
        // The pool reads the convolution, which is also a graph output.
        let after = fuse_conv_pool(stem("c", Some("c")), &PassCx::default()).expect("runs");
        assert!(after.nodes.iter().any(|n| n.op_type == "MaxPool"));
        assert!(!after.nodes.iter().any(|n| n.op_type == "ConvMaxPool"));
    }
}
