//! Fuses a channels-last depthwise `Conv` with the pointwise (1x1) `Conv` that alone reads its
//! output (the second half of an inverted-residual block: MobileNet, MnasNet, EfficientNet,
//! ShuffleNet) into one `sinter::DepthwisePointwise`: the depthwise rows go a few at a time to
//! a slot of working memory that the pointwise layer reads from cache, so the depthwise output,
//! as big as the block's expanded tensor, is never written whole and read back. The same
//! kernels compute each row and each pixel: the results are the same bits. The 1x1 expansion
//! that alone writes the depthwise input joins too when its output is at least
//! [`EXPAND_MIN_BYTES`] (the whole block then runs as one pass: each step expands the rows its
//! depthwise rows read). A depthwise layer that does not pair (its output read by more than a
//! 1x1 layer, as EfficientNet's squeeze-excitation reads it) still takes such an expansion, as
//! `sinter::ExpandDepthwise`. Runs once the layout is final, before `fuse_concat_conv`. Anything else (a pointwise layer with a stride,
//! padding or several groups, or whose output a Concat reads, Winograd, a depthwise layer with
//! a residual, another reader, a graph output, run-time shapes, different guards) is left
//! alone.

use super::pattern::{producers, splice, touches_dynamic};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Node};
use crate::ops::conv::{AutoPad, ConvLayout, DepthwisePointwise, ExpandDepthwise};
use crate::ops::Op;

/// Fuses pointwise convolutions into the depthwise convolutions they alone read.
pub fn fuse_dw_pw(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    // Values a Concat reads: a 1x1 layer that writes one keeps its place for
    // `fuse_concat_conv`, which writes it into the concatenation (ShuffleNet's branches).
    let mut concatenated = vec![false; graph.values.len()];
    for node in &graph.nodes {
        if matches!(node.op, Some(Op::Concat(_))) {
            for v in node.inputs.iter().flatten() {
                concatenated[v.index()] = true;
            }
        }
    }
    let mut remove = vec![false; graph.nodes.len()];
    let mut replacements = Vec::new();
    let mut replaced = vec![false; graph.nodes.len()];
    for (pw_index, pw_node) in graph.nodes.iter().enumerate() {
        let Some(Op::Conv(pw)) = &pw_node.op else {
            continue;
        };
        let (Some(Some(mid)), Some(Some(y))) = (
            pw_node.inputs.first().copied(),
            pw_node.outputs.first().copied(),
        ) else {
            continue;
        };
        let (Some(mid_shape), Some(y_shape)) =
            (graph.value(mid).shape.clone(), graph.value(y).shape.clone())
        else {
            continue;
        };
        if pw.layout != ConvLayout::ChannelsLast
            || pw.group != 1
            || pw.winograd.is_some()
            || !pointwise(pw)
            || !pw_node.domain.is_empty()
            || mid_shape.len() != 4
            || y_shape.len() != 4
            || mid_shape[..3] != y_shape[..3]
            || graph.value(mid).dtype != Some(DType::F32)
            || uses[mid.index()] != 1
            || graph.outputs.contains(&mid)
            || concatenated[y.index()]
            || pw_node.inputs.len() > 4
            || pw_node.outputs.iter().skip(1).any(Option::is_some)
            || touches_dynamic(&graph, pw_node)
        {
            continue;
        }
        let Some(dw_index) = producer[mid.index()] else {
            continue;
        };
        let dw_node = &graph.nodes[dw_index];
        let Some((dw, x)) = depthwise_layer(&graph, dw_node) else {
            continue;
        };
        if dw_node.guards != pw_node.guards {
            continue;
        }
        let inputs = vec![
            Some(x),
            input(dw_node, 1),
            input(dw_node, 2),
            input(pw_node, 1),
            input(pw_node, 2),
            input(pw_node, 3),
        ];
        if inputs[3].is_none() || pw.residual != inputs[5].is_some() {
            continue;
        }
        remove[dw_index] = true;
        // The expansion before the depthwise layer joins too when its output is big enough
        // to leave the cache between the layers.
        let expand = expansion(&graph, &uses, &producer, x, dw_node)
            // A layer already fused as another pair's 1x1 layer stays there.
            .filter(|(ex_index, ..)| !replaced[*ex_index]);
        let (inputs, expand) = match expand {
            Some((ex_index, ex_node, ex)) => {
                remove[ex_index] = true;
                let mut all = vec![input(ex_node, 0), input(ex_node, 1), input(ex_node, 2)];
                all.extend(&inputs[1..]);
                (all, Some(Box::new(ex)))
            }
            None => (inputs, None),
        };
        let fused = Node {
            name: pw_node.name.clone(),
            op_type: "DepthwisePointwise".into(),
            domain: "sinter".into(),
            opset: 1,
            inputs,
            outputs: vec![Some(y)],
            attributes: Vec::new(),
            op: Some(Op::DepthwisePointwise(DepthwisePointwise {
                expand,
                dw: dw.clone(),
                pw: pw.clone(),
            })),
            guards: pw_node.guards.clone(),
        };
        replaced[pw_index] = true;
        replacements.push((pw_index, fused));
    }
    // Depthwise layers left alone (their output read by more than a 1x1 layer: EfficientNet's
    // squeeze-excitation) still take a big expansion before them.
    for (dw_index, dw_node) in graph.nodes.iter().enumerate() {
        if remove[dw_index] || replaced[dw_index] {
            continue;
        }
        let Some((dw, x)) = depthwise_layer(&graph, dw_node) else {
            continue;
        };
        let Some((ex_index, ex_node, ex)) = expansion(&graph, &uses, &producer, x, dw_node)
            .filter(|(i, ..)| !remove[*i] && !replaced[*i])
        else {
            continue;
        };
        remove[ex_index] = true;
        let fused = Node {
            name: dw_node.name.clone(),
            op_type: "ExpandDepthwise".into(),
            domain: "sinter".into(),
            opset: 1,
            inputs: vec![
                input(ex_node, 0),
                input(ex_node, 1),
                input(ex_node, 2),
                input(dw_node, 1),
                input(dw_node, 2),
            ],
            outputs: vec![dw_node.outputs.first().copied().flatten()],
            attributes: Vec::new(),
            op: Some(Op::ExpandDepthwise(ExpandDepthwise {
                expand: ex,
                dw: dw.clone(),
            })),
            guards: dw_node.guards.clone(),
        };
        replacements.push((dw_index, fused));
    }
    splice(&mut graph, &remove, replacements);
    Ok(graph)
}

/// Input `i` of `node`, if present.
fn input(node: &Node, i: usize) -> Option<crate::ir::ValueId> {
    node.inputs.get(i).copied().flatten()
}

/// Whether `conv` (its weights packed) is 1x1, stride 1 and unpadded.
fn pointwise(conv: &crate::ops::conv::Conv) -> bool {
    conv.packed_from.as_ref().and_then(|w| w.get(2..)) == Some(&[1, 1][..])
        && conv.window.strides.iter().all(|&s| s == 1)
        && conv.window.pads.iter().all(|&p| p == 0)
        && matches!(conv.window.auto_pad, AutoPad::NotSet | AutoPad::Valid)
}

/// The channels-last depthwise `Conv` of `node` and its input, if a fused pass can run it:
/// 2-D float32 images, weights present, no residual, Winograd or second output, fixed shapes.
fn depthwise_layer<'g>(
    graph: &'g Graph,
    node: &'g Node,
) -> Option<(&'g crate::ops::conv::Conv, crate::ir::ValueId)> {
    let Some(Op::Conv(dw)) = &node.op else {
        return None;
    };
    let (x, y) = (input(node, 0)?, node.outputs.first().copied().flatten()?);
    let shape = |v| graph.value(v).shape.as_deref().filter(|s| s.len() == 4);
    let depthwise = matches!(
        (shape(x), shape(y)),
        (Some(xs), Some(ys)) if dw.group > 1 && xs[3] == dw.group && ys[3] == dw.group
    ) && dw.packed_from.as_ref().and_then(|w| w.first()) == Some(&dw.group);
    let fuses = dw.layout == ConvLayout::ChannelsLast
        && depthwise
        && !dw.residual
        && dw.winograd.is_none()
        && node.domain.is_empty()
        && node.inputs.len() <= 3
        && input(node, 1).is_some()
        && node.outputs.iter().skip(1).all(Option::is_none)
        && graph.value(y).dtype == Some(DType::F32)
        && !touches_dynamic(graph, node);
    fuses.then_some((dw, x))
}

/// Bytes of expanded image from which the expansion joins the fused pass: about half of a
/// core's L2 (2 MB on the machines measured), below which the image stays in cache between
/// the layers anyway, and splitting it into bands would only recompute their shared rows.
const EXPAND_MIN_BYTES: usize = 1 << 20;

/// The pointwise (1x1) channels-last `Conv` that writes `x`, the depthwise node `dw_node`'s
/// input, if it can run in the same pass: `x` read by that node alone, of at least
/// [`EXPAND_MIN_BYTES`], and the layer dense, unstrided, unpadded, without a residual.
fn expansion<'g>(
    graph: &'g Graph,
    uses: &[usize],
    producer: &[Option<usize>],
    x: crate::ir::ValueId,
    dw_node: &Node,
) -> Option<(usize, &'g Node, crate::ops::conv::Conv)> {
    let index = producer[x.index()]?;
    let node = &graph.nodes[index];
    let Some(Op::Conv(ex)) = &node.op else {
        return None;
    };
    let shape = graph.value(x).shape.as_ref()?;
    let fuses = ex.layout == ConvLayout::ChannelsLast
        && ex.group == 1
        && ex.winograd.is_none()
        && !ex.residual
        && pointwise(ex)
        && node.domain.is_empty()
        && shape.len() == 4
        && shape.iter().product::<usize>() * 4 >= EXPAND_MIN_BYTES
        && uses[x.index()] == 1
        && !graph.outputs.contains(&x)
        && node.inputs.len() <= 3
        && input(node, 1).is_some()
        && input(node, 0).is_some()
        && node.outputs.iter().skip(1).all(Option::is_none)
        && node.guards == dw_node.guards
        && !touches_dynamic(graph, node);
    fuses.then(|| (index, node, ex.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::pattern::{int_attr, ints_attr};
    use crate::passes::testing::ModelBuilder;

    /// On a 1x8x6x6 input, channels last: a 3x3 depthwise layer `d`, then a 1x1 layer of it to
    /// 16 channels `y`; `also_out` is a graph output besides `y`.
    fn pair(also_out: Option<&str>) -> Graph {
        let w = |n: usize| -> Vec<f32> { (0..n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect() };
        let mut builder = ModelBuilder::new()
            .input("x", &[1, 8, 6, 6])
            .floats("wd", &[8, 1, 3, 3], &w(72))
            .floats("wp", &[16, 8, 1, 1], &w(128))
            .node_with(
                "Conv",
                &["x", "wd"],
                &["d"],
                vec![int_attr("group", 8), ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node("Conv", &["d", "wp"], &["y"])
            .output("y");
        if let Some(name) = also_out {
            builder = builder.output(name);
        }
        crate::passes::channels_last(builder.build(), &PassCx::default()).expect("channels last")
    }

    #[test]
    fn the_pointwise_layer_joins_the_depthwise_one_it_alone_reads() {
        let after = fuse_dw_pw(pair(None), &PassCx::default()).expect("runs");
        let fused = after
            .nodes
            .iter()
            .find(|n| n.op_type == "DepthwisePointwise")
            .expect("fused");
        assert_eq!(fused.inputs.len(), 6);
        assert!(!after.nodes.iter().any(|n| n.op_type == "Conv"));
    }

    /// On a 1x16x32x32 input, channels last: a 1x1 layer `s` (which reads the input channels
    /// first), a 1x1 expansion of it to `c` channels `e`, a 3x3 depthwise layer over that and
    /// a 1x1 projection back to 16 channels `y`; `also_out` is a graph output besides `y`.
    fn block(c: i64, also_out: Option<&str>) -> Graph {
        let w = |n: i64| -> Vec<f32> { (0..n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect() };
        let mut builder = ModelBuilder::new()
            .input("x", &[1, 16, 32, 32])
            .floats("ws", &[16, 16, 1, 1], &w(256))
            .floats("we", &[c, 16, 1, 1], &w(16 * c))
            .floats("wd", &[c, 1, 3, 3], &w(9 * c))
            .floats("wp", &[16, c, 1, 1], &w(16 * c))
            .node("Conv", &["x", "ws"], &["s"])
            .node("Conv", &["s", "we"], &["e"])
            .node_with(
                "Conv",
                &["e", "wd"],
                &["d"],
                vec![int_attr("group", c), ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node("Conv", &["d", "wp"], &["y"])
            .output("y");
        if let Some(name) = also_out {
            builder = builder.output(name);
        }
        crate::passes::channels_last(builder.build(), &PassCx::default()).expect("channels last")
    }

    /// Whether the fused node took the expansion (`None` when nothing fused).
    fn fused_expansion(graph: &Graph) -> Option<bool> {
        graph.nodes.iter().find_map(|n| match &n.op {
            Some(Op::DepthwisePointwise(f)) => Some(f.expand.is_some()),
            _ => None,
        })
    }

    #[test]
    fn a_big_expansion_joins_the_pair() {
        // 32 x 32 x 256 floats, 1 MiB.
        let after = fuse_dw_pw(block(256, None), &PassCx::default()).expect("runs");
        assert_eq!(fused_expansion(&after), Some(true));
        let fused = after
            .nodes
            .iter()
            .find(|n| n.op_type == "DepthwisePointwise")
            .expect("fused");
        assert_eq!(fused.inputs.len(), 8);
        // The first 1x1 layer is all that is left of the convolutions.
        let convs = after.nodes.iter().filter(|n| n.op_type == "Conv").count();
        assert_eq!(convs, 1);
    }

    #[test]
    fn a_depthwise_layer_read_elsewhere_still_takes_its_expansion() {
        // Its output a graph output too: no pair, but sinter::ExpandDepthwise.
        let after = fuse_dw_pw(block(256, Some("d")), &PassCx::default()).expect("runs");
        assert_eq!(fused_expansion(&after), None);
        let fused: Vec<_> = after
            .nodes
            .iter()
            .filter(|n| n.op_type == "ExpandDepthwise")
            .collect();
        assert_eq!(fused.len(), 1);
        assert_eq!(fused[0].inputs.len(), 5);
        // A small one stays apart there too.
        let after = fuse_dw_pw(block(64, Some("d")), &PassCx::default()).expect("runs");
        assert!(!after.nodes.iter().any(|n| n.op_type == "ExpandDepthwise"));
    }

    #[test]
    fn a_small_or_shared_expansion_stays_apart() {
        // 32 x 32 x 64 floats, 256 KiB: it stays in cache between the layers.
        let after = fuse_dw_pw(block(64, None), &PassCx::default()).expect("runs");
        assert_eq!(fused_expansion(&after), Some(false));
        // A graph output: the depthwise and 1x1 layers pair without it.
        let after = fuse_dw_pw(block(256, Some("e")), &PassCx::default()).expect("runs");
        assert_eq!(fused_expansion(&after), Some(false));
    }

    #[test]
    fn a_depthwise_output_read_elsewhere_stays_apart() {
        let after = fuse_dw_pw(pair(Some("d")), &PassCx::default()).expect("runs");
        assert!(!after
            .nodes
            .iter()
            .any(|n| n.op_type == "DepthwisePointwise"));
    }
}
