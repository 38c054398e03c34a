//! Recognizes hard-swish written out as elementwise ops and replaces it with one `HardSwish`
//! node: `x * Clip(x + 3, 0, 6) / 6` (Paddle and PyTorch exports) and `x * HardSigmoid(x)`
//! with alpha 1/6, beta 1/2. Every intermediate must have this one consumer; otherwise, or
//! when a constant differs, the graph is left alone.

use super::fuse_conv_bn::producers;
use super::PassCx;
use crate::error::Result;
use crate::ir::{Graph, Node, ValueId};
use crate::ops::{self, NodeCx};

fn scalar(graph: &Graph, v: Option<ValueId>) -> Option<f32> {
    let t = graph.value(v?).constant.as_ref()?;
    let values = t.to_f64s();
    (values.len() == 1).then(|| values[0] as f32)
}

fn attr_f32(node: &Node, name: &str) -> Option<f32> {
    node.attributes
        .iter()
        .find(|a| a.name() == name)
        .map(|a| a.f())
}

/// The other operand of a two-input node, given one of them.
fn other(node: &Node, x: ValueId) -> Option<ValueId> {
    match (
        node.inputs.first().copied().flatten(),
        node.inputs.get(1).copied().flatten(),
    ) {
        (Some(a), Some(b)) if a == x => Some(b),
        (Some(a), Some(b)) if b == x => Some(a),
        _ => None,
    }
}

/// If `div` ends a hard-swish of some `x`, the nodes to remove and `x`.
fn match_at(
    graph: &Graph,
    producer: &[Option<usize>],
    uses: &[usize],
    end: usize,
) -> Option<(Vec<usize>, ValueId)> {
    let node = &graph.nodes[end];
    let single = |v: ValueId| uses[v.index()] == 1 && !graph.outputs.contains(&v);
    let by = |n: &Node| -> Option<usize> { producer[n.inputs.first().copied().flatten()?.index()] };
    match node.op_type.as_str() {
        // x * HardSigmoid(x) with alpha 1/6, beta 1/2.
        "Mul" => {
            let (a, b) = (
                node.inputs.first().copied().flatten()?,
                node.inputs.get(1).copied().flatten()?,
            );
            for (x, h) in [(a, b), (b, a)] {
                let hi = producer[h.index()]?;
                let hs = &graph.nodes[hi];
                let alpha = attr_f32(hs, "alpha").unwrap_or(0.2);
                let beta = attr_f32(hs, "beta").unwrap_or(0.5);
                if hs.op_type == "HardSigmoid"
                    && hs.inputs.first().copied().flatten() == Some(x)
                    && single(h)
                    && (alpha - 1.0 / 6.0).abs() < 1e-6
                    && beta == 0.5
                {
                    return Some((vec![hi, end], x));
                }
            }
            None
        }
        // (x * Clip(x + 3, 0, 6)) / 6.
        "Div" => {
            if scalar(graph, node.inputs.get(1).copied().flatten()) != Some(6.0) {
                return None;
            }
            let mi = by(node)?;
            let mul = &graph.nodes[mi];
            if mul.op_type != "Mul" || !single(mul.outputs.first().copied().flatten()?) {
                return None;
            }
            for clip_out in [
                mul.inputs.first().copied().flatten()?,
                mul.inputs.get(1).copied().flatten()?,
            ] {
                let Some(ci) = producer[clip_out.index()] else {
                    continue;
                };
                let clip = &graph.nodes[ci];
                if clip.op_type != "Clip" || !single(clip_out) {
                    continue;
                }
                let (lo, hi) = if clip.opset < 11 {
                    (attr_f32(clip, "min"), attr_f32(clip, "max"))
                } else {
                    (
                        scalar(graph, clip.inputs.get(1).copied().flatten()),
                        scalar(graph, clip.inputs.get(2).copied().flatten()),
                    )
                };
                if (lo, hi) != (Some(0.0), Some(6.0)) {
                    continue;
                }
                let ai = by(clip)?;
                let add = &graph.nodes[ai];
                let add_out = add.outputs.first().copied().flatten()?;
                if add.op_type != "Add" || !single(add_out) {
                    continue;
                }
                let x = other(mul, clip_out)?;
                let three = other(add, x)?;
                if scalar(graph, Some(three)) == Some(3.0) {
                    return Some((vec![ai, ci, mi, end], x));
                }
            }
            None
        }
        _ => None,
    }
}

/// Replaces written-out hard-swish with `HardSwish` nodes.
pub fn fuse_hardswish(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let producer = producers(&graph);
    let uses = graph.use_counts();
    let mut remove = vec![false; graph.nodes.len()];
    let mut replacements: Vec<(usize, Node)> = Vec::new();
    for end in 0..graph.nodes.len() {
        let Some((nodes, x)) = match_at(&graph, &producer, &uses, end) else {
            continue;
        };
        if nodes.iter().any(|&i| remove[i])
            || nodes
                .iter()
                .any(|&i| graph.nodes[i].guards != graph.nodes[end].guards)
        {
            continue;
        }
        let last = &graph.nodes[end];
        let mut node = Node {
            name: format!("{}/hardswish", last.name),
            op_type: "HardSwish".into(),
            domain: String::new(),
            opset: 14,
            inputs: vec![Some(x)],
            outputs: vec![last.outputs.first().copied().flatten()],
            attributes: Vec::new(),
            op: None,
            guards: last.guards.clone(),
        };
        let Some(Ok(op)) = ops::parse(&NodeCx { node: &node }) else {
            continue;
        };
        node.op = Some(op);
        for &i in &nodes {
            remove[i] = true;
        }
        replacements.push((end, node));
    }
    let mut out = Vec::with_capacity(graph.nodes.len());
    let mut replacements = replacements.into_iter().peekable();
    for (i, node) in std::mem::take(&mut graph.nodes).into_iter().enumerate() {
        if replacements.peek().is_some_and(|(at, _)| *at == i) {
            if let Some((_, new)) = replacements.next() {
                out.push(new);
            }
        } else if !remove[i] {
            out.push(node);
        }
    }
    graph.nodes = out;
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{run_passes, OptLevel};

    fn model(path: &str, dims: &[(&str, usize)]) -> Graph {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let mut builder = crate::Builder::new(path);
        for (n, v) in dims {
            builder = builder.dim(*n, *v);
        }
        let cx = PassCx {
            opt_level: OptLevel::O1,
            dims: dims.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            ..PassCx::default()
        };
        run_passes(builder.load().expect("loads"), &cx)
            .expect("compiles")
            .0
    }

    fn count(graph: &Graph, op: &str) -> usize {
        graph
            .op_histogram()
            .iter()
            .find(|(o, _)| o == op)
            .map_or(0, |(_, n)| *n)
    }

    #[test]
    fn paddle_hardswish_becomes_one_node() {
        let graph = model(
            "../tests/data/models/ppocr_cls/model.onnx",
            &[("x.0", 1), ("x.2", 48), ("x.3", 192)],
        );
        let (clips, divs) = (count(&graph, "Clip"), count(&graph, "Div"));
        assert!(clips > 0 && divs > 0);
        let after = fuse_hardswish(graph, &PassCx::default()).expect("runs");
        assert_eq!(count(&after, "HardSwish"), clips);
        assert_eq!(count(&after, "Clip") + count(&after, "Div"), 0);
    }

    #[test]
    fn graphs_without_the_pattern_are_unchanged() {
        let graph = model("../tests/data/tiny_cnn/model.onnx", &[]);
        let before = graph.op_histogram();
        let after = fuse_hardswish(graph, &PassCx::default()).expect("runs");
        assert_eq!(after.op_histogram(), before);
    }
}
